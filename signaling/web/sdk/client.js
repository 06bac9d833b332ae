// One person's Callbook on this device: the device key, the REST API, the call WebSocket, and
// the calls on it. Server messages go to the call they name (by ``call_id``, or by the
// invite's ``ref`` until the server named it); what names no call of ours is the app's.
//
// Events: ``incoming`` (detail: a ringing Call or GroupCall, already listed), ``unrouted``
// (detail: a server message for no call of ours: a late ``ended``, an ``error`` about none).
// The line (``client.line``) tells its own ``state``/``welcome``/``lost``; the API
// (``client.api``) its ``revoked``/``token``.

import { Api } from "./api.js";
import { Call } from "./call.js";
import { GroupCall } from "./group.js";
import * as keystore from "./keystore.js";
import { Line } from "./line.js";

/** The call WebSocket's address for a server at ``base`` ("" for this page's own server). */
function socketUrl(base) {
  if (!base) return undefined; // the Line's default: this page's own origin
  return `${base.replace(/^http/, "ws").replace(/\/$/, "")}/v1/ws`;
}

export class Callbook extends EventTarget {
  /**
   * ``base``: the server's origin ("" = this page's); ``constraints``: {audio(),
   * video(width, height)} for getUserMedia (the devices a person picked); ``bundle``: media
   * through the SFU on one connection per call (false: the old way, a connection per sender).
   */
  constructor({ base = "", url = socketUrl(base), constraints = {}, bundle = true } = {}) {
    super();
    this.api = new Api(base);
    this.line = new Line(this.api, url);
    this.identity = null;
    this.calls = new Map(); // call id → Call | GroupCall
    this.byRef = new Map(); // invite ref → an outgoing call the server has not named yet
    this._options = { api: this.api, line: this.line, constraints, bundle };
    this.line.addEventListener("message", (event) => this._route(event.detail));
    this.line.addEventListener("welcome", (event) => {
      if (event.detail.resumed) for (const call of this.calls.values()) call.resumed?.();
    });
    this.line.addEventListener("lost", () => {
      for (const call of [...this.calls.values(), ...this.byRef.values()]) call.lost();
    });
  }

  // --- the device key ------------------------------------------------------------------------

  /** Whether this browser can keep a device key (WebCrypto Ed25519 and IndexedDB). */
  static supported() {
    return keystore.supported();
  }

  /** Use the identity this browser keeps (IndexedDB), if any; null when there is none. */
  async restore() {
    const identity = await keystore.loadIdentity();
    if (identity) this.use(identity);
    return identity;
  }

  /** Sign requests with ``identity`` ({keyPair, mediaKeyPair, accountId, deviceId, handle}). */
  use(identity) {
    this.identity = identity;
    this.api.use(identity);
  }

  /** A new account with a new device key: {identity, account, recoveryCode, saved}. */
  async signUp(handle, { displayName = null, deviceName = "Browser", save = true } = {}) {
    const { device, keyPair, mediaKeyPair } = await newDevice(deviceName);
    const done = await this.api.signup(handle, displayName, device);
    return this._enrolled(done, keyPair, mediaKeyPair, save);
  }

  /** This browser joins an account with its recovery code (which the answer replaces). */
  async recover(handle, recoveryCode, { deviceName = "Browser", revokeOthers = false, save = true } = {}) {
    const { device, keyPair, mediaKeyPair } = await newDevice(deviceName);
    const done = await this.api.recover(handle, recoveryCode, device, revokeOthers);
    return this._enrolled(done, keyPair, mediaKeyPair, save);
  }

  async _enrolled(done, keyPair, mediaKeyPair, save) {
    const identity = {
      keyPair,
      mediaKeyPair,
      mediaKeyPublished: true,
      accountId: done.account.id,
      deviceId: done.device.id,
      handle: done.account.handle,
    };
    let saved = false;
    if (save) {
      try {
        await keystore.saveIdentity(identity);
        saved = true;
      } catch {
        saved = false; // the caller says so: the recovery code is then the only way back
      }
    }
    this.use(identity);
    return { identity, account: done.account, recoveryCode: done.recovery_code, saved };
  }

  /** Sign in now (a signed server nonce for an access token); later requests do it themselves. */
  signIn() {
    return this.api.signIn();
  }

  /** Stop here: calls end, the line closes, and (``forget``) the key leaves this browser. */
  async signOut({ forget = true } = {}) {
    this.endAll();
    this.line.stop();
    this.api.forget();
    this.identity = null;
    if (forget) await keystore.clearIdentity();
  }

  // --- the address book ----------------------------------------------------------------------

  me() {
    return this.api.me();
  }

  /** A person's card by exact handle; an ApiError ``not_found`` for every "no". */
  lookup(handle) {
    return this.api.lookup(handle);
  }

  contacts() {
    return this.api.contacts();
  }

  addContact(handle, nickname = null) {
    return this.api.addContact(handle, nickname);
  }

  removeContact(accountId) {
    return this.api.removeContact(accountId);
  }

  // --- calls ---------------------------------------------------------------------------------

  /** Connect the call WebSocket and keep it connected (resuming after drops) until signOut. */
  connect() {
    this.line.start();
  }

  /** Call a person ({handle} or {account_id}); ``peer`` is what to show until they answer. */
  call(target, { media = "audio", peer = null } = {}) {
    const call = new Call({
      ...this._options,
      direction: "outgoing",
      media,
      peer: peer ?? {
        account_id: target.account_id ?? null,
        handle: target.handle ?? null,
        display_name: null,
      },
    });
    call.target = target;
    this._list(call);
    call.dial(target);
    return call;
  }

  /** Host a group call: ring ``handles`` (the server rings each at most once). */
  group(handles, { media = "audio" } = {}) {
    const call = new GroupCall({ ...this._options, direction: "outgoing", media });
    call.invited = handles;
    this._list(call);
    call.start(handles);
    return call;
  }

  /** Take over the 1:1 call a previous page of this tab was in (Call.snapshot()). */
  rejoin(kept) {
    const call = Call.rejoin({ ...this._options, kept });
    this._list(call);
    return call;
  }

  /** Stop routing messages to ``call`` (e.g. an invitation left to ring out unanswered). */
  release(call) {
    if (call.callId && this.calls.get(call.callId) === call) this.calls.delete(call.callId);
    if (call.ref && this.byRef.get(call.ref) === call) this.byRef.delete(call.ref);
  }

  /** Hang up every call (sign-out); with ``lost``, end them as a lost session does. */
  endAll(lost = false) {
    for (const call of [...this.calls.values(), ...this.byRef.values()]) {
      if (lost) call.lost();
      else if (call.active) call.hangup();
    }
    this.calls.clear();
    this.byRef.clear();
  }

  _list(call) {
    if (call.callId) this.calls.set(call.callId, call);
    else if (call.ref) this.byRef.set(call.ref, call);
    call.addEventListener("ended", () => this.release(call));
  }

  _named(call, callId) {
    if (call.ref) this.byRef.delete(call.ref);
    this.calls.set(callId, call);
  }

  _incoming(message) {
    const options = { ...this._options, direction: "incoming", media: message.media, callId: message.call_id };
    const call = message.group
      ? new GroupCall({ ...options, host: message.caller })
      : new Call({ ...options, peer: { ...message.caller }, busy: message.busy });
    call.target = { account_id: message.caller.account_id, handle: message.caller.handle };
    this._list(call);
    this.dispatchEvent(new CustomEvent("incoming", { detail: call }));
  }

  _route(message) {
    switch (message.type) {
      case "incoming":
        this._incoming(message);
        return;
      case "ringing":
      case "joined": {
        // An outgoing call (a group call we host: its first ``joined``) gets its id.
        let call = this.calls.get(message.call_id);
        if (!call && message.ref) call = this.byRef.get(message.ref);
        if (!call) {
          // A call this page no longer wants (hung up meanwhile, or from before a reload).
          this.line.send({ type: "hangup", call_id: message.call_id });
          return;
        }
        this._named(call, message.call_id);
        call.receive(message);
        return;
      }
      case "error": {
        const call =
          (message.ref && this.byRef.get(message.ref)) ||
          (message.call_id && this.calls.get(message.call_id));
        if (call) call.receive(message);
        else this._unrouted(message);
        // A server from before bundling refuses ``publish {bundle}`` without naming the call.
        if (!call && message.code === "invalid_message") {
          for (const each of this.calls.values()) each.sfu?.onInvalidMessage(message);
        }
        return;
      }
      default: {
        const call = message.call_id && this.calls.get(message.call_id);
        if (call) call.receive(message);
        else this._unrouted(message);
      }
    }
  }

  _unrouted(message) {
    this.dispatchEvent(new CustomEvent("unrouted", { detail: message }));
  }
}

/** A new device key and a media key signed by it: what a sign-up or recovery sends. */
async function newDevice(name) {
  const { keyPair, publicKey } = await keystore.newDeviceKey();
  const media = await keystore.newSignedMediaKey(keyPair.privateKey);
  return {
    keyPair,
    mediaKeyPair: media.mediaKeyPair,
    device: { name, public_key: publicKey, ...media.fields },
  };
}
