// Receiving everything over the one connection that publishes (docs/protocol.md 11.15, "one
// connection per participant"): the SFU renegotiates our own sending connection whenever what we
// receive changes, and says which m-section carries whose track.
//
//   publish {sdp, bundle: true}  →   ← publish_answer {sdp}
//   ← renegotiate {revision, sdp: offer, streams: [{mid, participant, source, kind}]}
//   renegotiate_answer {revision, sdp: answer} →      (same ICE/DTLS transport: no gathering)
//
// ``streams`` is the complete list each time: a mid not listed any more carries nothing (its
// tile or track goes), a mid listed under another participant now carries theirs (the SFU may
// recycle an m-section). Every receiver gets one frame-decrypting transform for good, routed to
// the participant its mid carries now (e2ee.js ``route``), so a recycled m-section decrypts with
// its new sender's key and replay windows.
//
// At most one offer is outstanding: the server folds changes into the next one. After a resume
// it sends the outstanding offer again; one we already answered gets the same answer again.

/** The key of one received source of one participant ("camera" or "screen"). */
const keyOf = (participant, source) => `${source}\u0000${participant}`;

/**
 * Pure: from what each mid carried (``current``: Map mid → {participant, source, kind}) to the
 * server's new ``streams`` list. Returns the mids to drop (no longer listed, or now carrying
 * something else) and the entries to take up (new, or changed), each in the list's order.
 */
export function planStreams(current, streams) {
  const wanted = new Map();
  for (const entry of streams) {
    if (entry && typeof entry.mid === "string") wanted.set(entry.mid, entry);
  }
  const drop = [];
  for (const [mid, was] of current) {
    const now = wanted.get(mid);
    if (!now || now.participant !== was.participant || (now.source ?? "camera") !== was.source) {
      drop.push(mid);
    }
  }
  const take = [];
  for (const entry of wanted.values()) {
    if (!current.has(entry.mid) || drop.includes(entry.mid)) {
      take.push({ ...entry, source: entry.source ?? "camera" });
    }
  }
  return { drop, take };
}

export class BundleReceiver {
  /**
   * ``sfu``: the call's SfuMedia (its ``uplink`` is the connection, its ``e2ee`` decrypts, its
   * events ``track``/``closed`` tell the call what came and went).
   */
  constructor(sfu) {
    this.sfu = sfu;
    this.mids = new Map(); // mid → {participant, source, kind, transceiver, track}
    this.streams = new Map(); // keyOf(participant, source) → MediaStream
    this.revision = 0; // the last revision we answered
    this.answer = null; // its answer's sdp, sent again if the server repeats that offer
    this.routes = new WeakMap(); // RTCRtpReceiver → its route id in the E2EE worker
    this.offers = []; // the last few offers' {revision, streams}, to tell what happened
    this.lastOffer = null; // the last ``renegotiate`` message applied
  }

  /** ``renegotiate``: apply the offer, map the mids, answer. */
  async onRenegotiate(message) {
    const { sfu } = this;
    const pc = sfu.uplink;
    if (!pc || sfu.closed || message.revision < this.revision) return;
    this.offers = [...this.offers.slice(-9), { revision: message.revision, streams: message.streams }];
    if (message.revision === this.revision && this.answer) {
      this._sendAnswer(message.revision, this.answer); // a resume repeated it: ours was lost
      return;
    }
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    if (sfu.closed) return;
    this._apply(pc, message.streams ?? []);
    await pc.setLocalDescription(await pc.createAnswer());
    if (sfu.closed) return;
    this.revision = message.revision;
    this.answer = pc.localDescription.sdp;
    this.lastOffer = message;
    this._sendAnswer(message.revision, this.answer);
  }

  _sendAnswer(revision, sdp) {
    const { sfu } = this;
    sfu.line.send({ type: "renegotiate_answer", call_id: sfu.callId, revision, sdp });
  }

  /** Drop what is no longer listed, take up what is new, each through its transceiver. */
  _apply(pc, streams) {
    const { drop, take } = planStreams(this.mids, streams);
    for (const mid of drop) this._drop(mid);
    const byMid = new Map();
    for (const transceiver of pc.getTransceivers()) {
      const stopped = transceiver.stopped || transceiver.currentDirection === "stopped";
      if (transceiver.mid !== null && !stopped) byMid.set(transceiver.mid, transceiver);
    }
    for (const entry of take) {
      const transceiver = byMid.get(entry.mid);
      if (!transceiver) {
        console.warn("sfu: the offer has no receiving m-section", entry.mid);
        continue;
      }
      this._take(entry, transceiver);
    }
  }

  _take(entry, transceiver) {
    const { receiver } = transceiver;
    const { track } = receiver;
    const kind = track.kind;
    let route = this.routes.get(receiver);
    if (route === undefined) {
      route = this.sfu.e2ee.attachRoutedReceiver(receiver, kind);
      this.routes.set(receiver, route);
    }
    this.sfu.e2ee.route(route, entry.participant, entry.source);
    const mapped = { participant: entry.participant, source: entry.source, kind, transceiver, track };
    this.mids.set(entry.mid, mapped);
    const key = keyOf(entry.participant, entry.source);
    let stream = this.streams.get(key);
    if (!stream) {
      stream = new MediaStream();
      this.streams.set(key, stream);
    }
    if (!stream.getTracks().includes(track)) stream.addTrack(track);
    const detail = { participant: entry.participant, track, stream, source: entry.source };
    this.sfu.dispatchEvent(new CustomEvent("track", { detail }));
    // Remote tracks start muted and unmute when media flows: the view shows video only then.
    track.onunmute = () => this.sfu.dispatchEvent(new CustomEvent("track", { detail }));
    track.onmute = () => this.sfu.dispatchEvent(new CustomEvent("track", { detail }));
  }

  _drop(mid) {
    const entry = this.mids.get(mid);
    if (!entry) return;
    this.mids.delete(mid);
    entry.track.onmute = null;
    entry.track.onunmute = null;
    const route = this.routes.get(entry.transceiver.receiver);
    if (route !== undefined) this.sfu.e2ee.unroute(route);
    const key = keyOf(entry.participant, entry.source);
    const stream = this.streams.get(key);
    if (!stream) return;
    stream.removeTrack(entry.track);
    if (stream.getTracks().length) return;
    this.streams.delete(key);
    const detail = { participant: entry.participant, source: entry.source };
    this.sfu.dispatchEvent(new CustomEvent("closed", { detail }));
  }

  /** Stop showing what ``reject(entry)`` picks now, before the server's next offer says so. */
  dropWhere(reject) {
    for (const [mid, entry] of [...this.mids]) if (reject(entry)) this._drop(mid);
  }

  /** What we receive: [{participant, source, kind, mid, receiver}]. */
  receiving() {
    return [...this.mids].map(([mid, e]) => ({
      mid,
      participant: e.participant,
      source: e.source,
      kind: e.kind,
      receiver: e.transceiver.receiver,
    }));
  }

  close() {
    for (const mid of [...this.mids.keys()]) this._drop(mid);
  }
}
