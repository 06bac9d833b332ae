// Quality reports of a 1:1 call (docs/protocol.md 11.5, ``quality``), for the server's
// operators: RTT, jitter and loss of what this device receives, and its receive bitrate, from
// getStats. Only numbers: no addresses, no candidates.

const clamp = (v, max) => Math.min(Math.max(Number.isFinite(v) ? v : 0, 0), max);

/** Read the call's receiving connection's stats and send one ``quality`` report. */
export async function sendQuality(call) {
  // Through the SFU, what we receive arrives on our one connection (``call.pc``), or without
  // bundle on the subscription's.
  const pc = (call.sfu && [...call.sfu.downlinks.values()][0]?.pc) || call.pc;
  if (!pc || !call.callId || pc.connectionState !== "connected") return;
  const report = await pc.getStats();
  let rtt = 0, jitter = 0, received = 0, lost = 0, bytes = 0, pair = null;
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    if (s.type === "inbound-rtp") {
      received += s.packetsReceived || 0;
      lost += Math.max(0, s.packetsLost || 0);
      bytes += s.bytesReceived || 0;
      if (s.kind === "audio") jitter = Math.max(jitter, (s.jitter || 0) * 1000);
    }
  });
  if (pair) rtt = (pair.currentRoundTripTime || 0) * 1000;
  const local = pair && report.get(pair.localCandidateId);
  const remote = pair && report.get(pair.remoteCandidateId);
  const now = performance.now();
  const previous = call._qualityBase || { bytes, at: now };
  const seconds = Math.max((now - previous.at) / 1000, 0.001);
  call._qualityBase = { bytes, at: now };
  call.line.send({
    type: "quality",
    call_id: call.callId,
    rtt_ms: clamp(rtt, 60000),
    jitter_ms: clamp(jitter, 60000),
    loss: received + lost ? clamp(lost / (received + lost), 1) : 0,
    bitrate_kbps: clamp(((bytes - previous.bytes) * 8) / 1000 / seconds, 100000),
    relayed: Boolean(local && remote) &&
      (local.candidateType === "relay" || remote.candidateType === "relay"),
  });
}
