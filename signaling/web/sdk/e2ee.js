// End-to-end encryption of one SFU call on this device (docs/e2ee.md), the page's half:
// who is in the call and with which keys, our sending key and when to draw a new one, the key
// messages on the call WebSocket, and the frame-encrypting worker (e2ee-worker.js).
//
//   participants [...{participant, device_key, media_key, media_key_signature}]
//       → check each media key's signature; a new key of ours at every membership change,
//         sealed to every other participant:  media_keys {call_id, kid, keys: [{participant, blob}]}
//   ← media_key {participant, kid, blob}     → open, hand to the worker
//   ← media_key_request {participant}        → our current key, to that participant alone
//   worker: no key for a frame               → media_key_request (at most 1/s per sender)
//
// Events: ``change`` (encrypted, safety number, counts).

import { b64url, fromB64url } from "./bytes.js";
import { BASE_KEY_LENGTH, BlobError, openBlob, sealBlob, verifyMediaKey } from "./keyblob.js";
import { SendSchedule } from "./keyschedule.js";
import { safetyNumber } from "./safety.js";

export class CallE2ee extends EventTarget {
  /**
   * ``identity``: this device's keys ({keyPair: Ed25519, mediaKeyPair: X25519, with
   * ``devicePublicRaw`` and ``mediaPublicRaw``}); ``me``: our participant id in the call.
   */
  constructor({ line, callId, me, identity }) {
    super();
    this.line = line;
    this.callId = callId;
    this.me = me;
    this.identity = identity;
    this.worker = new Worker(new URL("./e2ee-worker.js", import.meta.url), {
      type: "module",
      name: "callbook-e2ee",
    });
    this.worker.onmessage = (event) => this._fromWorker(event.data);
    this.peers = new Map(); // participant → {deviceKey, mediaKey, kid (last received) | null}
    this.schedule = new SendSchedule(me);
    this.sendKey = null; // {kid, baseKey}
    this.safetyNumber = "";
    this.counts = { bad_signature: 0, bad_blob: 0, unknown_sender: 0 };
    this._chain = Promise.resolve();
    this._statsWaiting = new Map();
    this._statsId = 0;
    this._routes = 0;
    this.closed = false;
  }

  /** Keys for everyone else in place, and ours sent: only then is the call shown encrypted. */
  get encrypted() {
    if (!this.sendKey) return false;
    for (const peer of this.peers.values()) if (peer.kid === null) return false;
    return true;
  }

  attachSender(sender, kind) {
    sender.transform = new RTCRtpScriptTransform(this.worker, { operation: "encrypt", kind });
  }

  /** ``source``: "camera", or "screen" for a shared screen (its own replay window). */
  attachReceiver(receiver, kind, participant, source = "camera") {
    const options = { operation: "decrypt", kind, participant, source };
    receiver.transform = new RTCRtpScriptTransform(this.worker, options);
  }

  /**
   * A receiver whose sender may change (one connection for everyone, bundle.js): its frames are
   * decrypted with the key of whoever ``route(id, …)`` last named for it, and dropped while no
   * one is. Returns its route id.
   */
  attachRoutedReceiver(receiver, kind) {
    this._routes += 1;
    const route = this._routes;
    const options = { operation: "decrypt", kind, route };
    receiver.transform = new RTCRtpScriptTransform(this.worker, options);
    return route;
  }

  /** The routed receiver ``route`` now carries ``source`` ("camera" | "screen") of ``participant``. */
  route(route, participant, source) {
    if (!this.closed) this.worker.postMessage({ type: "route", route, participant, source });
  }

  /** The routed receiver ``route`` carries no one now. */
  unroute(route) {
    if (!this.closed) this.worker.postMessage({ type: "unroute", route });
  }

  /** A call message for us (``participants``, ``media_key``, ``media_key_request``). */
  receive(message) {
    this._chain = this._chain
      .then(() => this._receive(message))
      .catch((error) => console.error("e2ee: could not handle", message.type, error));
    return this._chain;
  }

  async _receive(message) {
    if (this.closed) return;
    if (message.type === "participants") await this._onParticipants(message.participants);
    else if (message.type === "media_key") await this._onMediaKey(message);
    else if (message.type === "media_key_request") await this._onKeyRequest(message);
  }

  async _onParticipants(list) {
    const present = new Set([this.me]);
    const { devicePublicRaw, mediaPublicRaw } = this.identity;
    const keys = [{ deviceKey: devicePublicRaw, mediaKey: mediaPublicRaw }];
    for (const entry of list) {
      if (entry.participant === this.me) continue;
      const peer = await this._peer(entry);
      if (!peer) continue;
      present.add(entry.participant);
      keys.push({ deviceKey: peer.deviceKey, mediaKey: peer.mediaKey });
    }
    for (const participant of [...this.peers.keys()]) {
      if (present.has(participant)) continue;
      this.peers.delete(participant);
      this.worker.postMessage({ type: "forget", participant });
    }
    const step = this.schedule.update(present);
    if (step.rotate) await this._newSendKey(step.kid, step.recipients);
    this.safetyNumber = await safetyNumber(keys);
    this._emit();
  }

  /**
   * The peer of a participants entry once its media key's signature checks out, else null: a
   * participant whose keys don't verify gets no key of ours, and none of its keys is used.
   */
  async _peer(entry) {
    const source = `${entry.device_key} ${entry.media_key} ${entry.media_key_signature}`;
    const known = this.peers.get(entry.participant);
    if (known && known.source === source) return known;
    if (await this._verified(entry)) {
      const peer = {
        deviceKey: fromB64url(entry.device_key),
        mediaKey: fromB64url(entry.media_key),
        kid: null,
        source,
      };
      this.peers.set(entry.participant, peer);
      return peer;
    }
    this.counts.bad_signature += 1;
    return null;
  }

  async _verified(entry) {
    try {
      const mediaKey = fromB64url(entry.media_key);
      if (mediaKey.length !== 32) return false;
      const signature = fromB64url(entry.media_key_signature);
      return await verifyMediaKey(fromB64url(entry.device_key), mediaKey, signature);
    } catch {
      return false; // missing or not base64url
    }
  }

  async _newSendKey(kid, recipients) {
    const baseKey = crypto.getRandomValues(new Uint8Array(BASE_KEY_LENGTH));
    this.sendKey = { kid, baseKey };
    this.worker.postMessage({ type: "send_key", kid, baseKey });
    await this._sendKeys(recipients);
  }

  /** Our current key, sealed to each of ``recipients`` (participant ids), in one message. */
  async _sendKeys(recipients) {
    const { kid, baseKey } = this.sendKey;
    const keys = [];
    for (const participant of recipients) {
      const peer = this.peers.get(participant);
      if (!peer) continue;
      const blob = await sealBlob({
        baseKey,
        callId: this.callId,
        sender: this.me,
        recipient: participant,
        kid,
        recipientMediaKey: peer.mediaKey,
        signingKey: this.identity.keyPair.privateKey,
      });
      keys.push({ participant, blob: b64url(blob) });
    }
    if (keys.length && !this.closed) {
      this.line.send({ type: "media_keys", call_id: this.callId, kid, keys });
    }
  }

  async _onMediaKey(message) {
    const peer = this.peers.get(message.participant);
    if (!peer) {
      this.counts.unknown_sender += 1;
      return;
    }
    let baseKey;
    try {
      baseKey = await openBlob({
        blob: fromB64url(message.blob),
        callId: this.callId,
        sender: message.participant,
        recipient: this.me,
        kid: message.kid,
        mediaKeyPair: {
          privateKey: this.identity.mediaKeyPair.privateKey,
          publicRaw: this.identity.mediaPublicRaw,
        },
        senderDeviceKey: peer.deviceKey,
      });
    } catch (error) {
      if (!(error instanceof BlobError) && !(error instanceof TypeError)) throw error;
      this.counts.bad_blob += 1;
      return; // frames under that kid find no key, and the worker asks again (rate-limited)
    }
    this.worker.postMessage({
      type: "receive_key",
      participant: message.participant,
      kid: message.kid,
      baseKey,
    });
    const first = peer.kid === null;
    if (peer.kid === null || message.kid > peer.kid) peer.kid = message.kid;
    if (first) this._emit();
  }

  async _onKeyRequest(message) {
    if (!this.sendKey || !this.peers.has(message.participant)) return;
    await this._sendKeys([message.participant]);
  }

  _fromWorker(message) {
    if (message.type === "key_request" && this.peers.has(message.participant) && !this.closed) {
      this.line.send({
        type: "media_key_request",
        call_id: this.callId,
        participant: message.participant,
      });
    } else if (message.type === "stats") {
      this._statsWaiting.get(message.id)?.(message.counts);
      this._statsWaiting.delete(message.id);
    }
  }

  /** The worker's frame counters and ours (tests, benchmarks, and the call's details). */
  stats() {
    this._statsId += 1;
    const id = this._statsId;
    return new Promise((resolve) => {
      this._statsWaiting.set(id, (frames) => resolve({ ...frames, ...this.counts }));
      this.worker.postMessage({ type: "stats", id });
    });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.worker.terminate();
    for (const resolve of this._statsWaiting.values()) resolve({ ...this.counts });
    this._statsWaiting.clear();
  }

  _emit() {
    this.dispatchEvent(new CustomEvent("change"));
  }
}
