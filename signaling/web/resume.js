// A reload keeps the call (docs/protocol.md 11.2, 11.5.10): when the page goes away, the tab
// keeps its resume token and the call it was in (sessionStorage: this tab only, gone with it).
// The next page of the tab resumes the session with that token within the window and sets the
// call's media up again (Call.rejoin); the other side saw "peer_reconnecting" meanwhile.
// Leaving a page with a live call asks first.

const KEY = "callbook.session";

/** Keep the session for the tab's next page; ``call`` is the 1:1 Call on screen, or null;
 * undefined keeps nothing (the next page starts a fresh session, which ends this one's calls). */
export function keepSession(line, call) {
  if (!line.resumeToken || call === undefined) return;
  const kept = {
    token: line.resumeToken,
    window_s: line.resumeWindowS,
    at: Date.now(),
    call: call?.active && call.callId ? call.snapshot() : null,
  };
  try {
    sessionStorage.setItem(KEY, JSON.stringify(kept));
  } catch {
    // Storage full or refused: the next page starts a fresh session, as before.
  }
}

/** The session the tab's previous page kept (once), if it is still within its window. */
export function takeSession(now = Date.now()) {
  let kept = null;
  try {
    kept = JSON.parse(sessionStorage.getItem(KEY) || "null");
    sessionStorage.removeItem(KEY);
  } catch {
    return null;
  }
  if (!kept || typeof kept.token !== "string") return null;
  if (now - kept.at >= kept.window_s * 1000) return null;
  return kept;
}

/** Hand the kept token to the line before it connects, so its first connection resumes. */
export function resumeWith(line, kept) {
  line.resumeToken = kept.token;
  line.resumeWindowS = kept.window_s;
  line.lostAt = kept.at;
}

/**
 * Keep the session when the page goes; warn before leaving while ``inCall()``.
 * ``current()`` gives the 1:1 Call on screen, null, or undefined to keep nothing.
 */
export function guardPage(line, { inCall, current }) {
  window.addEventListener("beforeunload", (event) => {
    if (!inCall()) return;
    event.preventDefault();
    event.returnValue = ""; // older browsers show their prompt only with a value
  });
  window.addEventListener("pagehide", () => keepSession(line, current()));
}
