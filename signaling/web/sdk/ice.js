// The ICE servers a call uses, from ``GET /v1/turn`` (docs/protocol.md 11.10): the server's
// STUN, and its TURN relay with short-lived credentials when it has one.

/** ICE servers in RTCConfiguration form from ``GET /v1/turn``; none when it can't be asked. */
export async function iceServersOf(api) {
  try {
    const turn = await api.turn();
    return (turn.ice_servers || []).map((server) => {
      const entry = { urls: server.urls };
      if (server.username) entry.username = server.username;
      if (server.credential) entry.credential = server.credential;
      return entry;
    });
  } catch {
    return [];
  }
}

/** Whether ``turn`` lists a TURN relay: without TURN the server may still hand out its own STUN. */
export function hasTurn(turn) {
  return (turn.ice_servers ?? []).some((server) =>
    [server.urls].flat().some((url) => /^turns?:/.test(url)),
  );
}
