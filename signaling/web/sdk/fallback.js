// Relay fallback (docs/protocol.md 11.9.1): a peer-to-peer call that has not connected a few
// seconds after ``accepted``, or whose ICE failed, asks the server for a relay; ``relayed`` then
// moves it to TURN (an ICE restart under a relay-only policy) or to the SFU, and the call goes
// on. Both people see "Connecting through relay…" meanwhile (``call.throughRelay``).

export const FALLBACK_AFTER_MS = 5_000;
const RELAY_CONNECT_MS = 30_000;

/** Ask for a relay unless `call` connects peer to peer within FALLBACK_AFTER_MS. */
export function armFallback(call) {
  if (call.relayOnly || call.sfu) return;
  call._timer("fallback", FALLBACK_AFTER_MS, () => askForRelay(call));
}

/** The peer-to-peer path failed: ask once (the other device may ask too; that is fine). */
export function askForRelay(call) {
  if (!call.active || call.relayOnly || call.sfu || call.connectedAt || call.askedForRelay) return;
  call.askedForRelay = true;
  call.line.send({ type: "relay_fallback", call_id: call.callId });
}

/** The server moved the call to a relay (``relayed``): go on through it. */
export async function onRelayed(call, message) {
  call._clearTimer("fallback");
  call.relayOnly = true;
  call.throughRelay = true;
  call.state = "connecting";
  call._emit();
  call._timer("connect", RELAY_CONNECT_MS, () => call._giveUp());
  const pc = call.pc;
  if (message.sfu) {
    call.pc = null;
    pc?.close();
    for (const track of call.remoteStream.getTracks()) call.remoteStream.removeTrack(track);
    await call._throughSfu(message);
    return;
  }
  if (!pc) return;
  pc.setConfiguration({ ...pc.getConfiguration(), iceTransportPolicy: "relay" });
  if (call.role !== "caller") return;
  // An answer to the offer from before the move may still come: only the one marked
  // ``restart`` answers the offer below.
  call.awaitingRestartAnswer = true;
  if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
  await call._offer(true);
}
