// The REST API (docs/protocol.md): sign-in by signing a server nonce with the device key,
// a short-lived access token renewed before it expires, and problem+json errors as ApiError.

import { sign } from "./keystore.js";
import { solve } from "./puzzle.js";

/** A failed request: the problem's stable ``code``, its ``detail`` sentence, ``status``. */
export class ApiError extends Error {
  constructor(status, code, detail, retryAfter = null) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

const RENEW_BEFORE_S = 60;
// A puzzle can go stale between solving and sending (the server got busier): ask again.
const PUZZLE_ATTEMPTS = 3;
const REAUTH_CODES = new Set(["token_missing", "token_invalid", "token_expired"]);
const GONE_CODES = new Set(["device_revoked", "unknown_device"]);

export function signinMessage(accountId, deviceId, nonce) {
  return `callbook-signin-v1\n${accountId}\n${deviceId}\n${nonce}`;
}

/**
 * Events: ``revoked`` (this device is no longer part of an account; detail = ApiError) and
 * ``token`` (a new access token).
 */
export class Api extends EventTarget {
  constructor(base = "") {
    super();
    this.base = base;
    this.identity = null;
    this.token = null;
    this.expiresAt = 0;
    this._signingIn = null;
    this._renewTimer = null;
  }

  /** Use this identity ({keyPair, accountId, deviceId}) from now on. */
  use(identity) {
    this.identity = identity;
    this.token = null;
    this.expiresAt = 0;
    clearTimeout(this._renewTimer);
  }

  forget() {
    this.use(null);
  }

  /** Sign in (challenge + signed nonce → token); concurrent callers share one attempt. */
  signIn() {
    if (!this._signingIn) {
      this._signingIn = this._signIn().finally(() => {
        this._signingIn = null;
      });
    }
    return this._signingIn;
  }

  async _signIn() {
    const identity = this.identity;
    if (!identity) throw new ApiError(0, "no_identity", "This browser is not signed in.");
    let lastError = null;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const challenge = await this.request("POST", "/v1/auth/challenge", undefined, { auth: false });
      const signature = await sign(
        identity.keyPair.privateKey,
        signinMessage(identity.accountId, identity.deviceId, challenge.nonce),
      );
      try {
        const answer = await this.request(
          "POST",
          "/v1/auth/token",
          {
            account_id: identity.accountId,
            device_id: identity.deviceId,
            nonce: challenge.nonce,
            signature,
          },
          { auth: false },
        );
        if (this.identity !== identity) throw new ApiError(0, "no_identity", "Signed out.");
        this.token = answer.access_token;
        this.expiresAt = Date.now() + answer.expires_in * 1000;
        this._scheduleRenewal(answer.expires_in);
        this.dispatchEvent(new CustomEvent("token", { detail: this.token }));
        return this.token;
      } catch (error) {
        lastError = error;
        // A nonce is spent by its first use; one fresh attempt covers a slow round trip.
        if (error.code !== "bad_challenge") break;
      }
    }
    if (lastError && GONE_CODES.has(lastError.code)) {
      this.dispatchEvent(new CustomEvent("revoked", { detail: lastError }));
    }
    throw lastError;
  }

  _scheduleRenewal(expiresIn) {
    clearTimeout(this._renewTimer);
    const lead = Math.min(RENEW_BEFORE_S, expiresIn / 4);
    const delay = Math.max(5, expiresIn - lead) * 1000;
    this._renewTimer = setTimeout(() => {
      this.signIn().catch(() => {
        // Tried again on the next request; a background renewal failing is not news.
      });
    }, delay);
  }

  /** A token valid for at least ``minValidS`` more seconds. */
  async ensureToken(minValidS = 30) {
    if (this.token && this.expiresAt - Date.now() > minValidS * 1000) return this.token;
    return this.signIn();
  }

  async request(method, path, body, { auth = true, retry = true, raw = false } = {}) {
    const headers = {};
    if (auth) headers.Authorization = `Bearer ${await this.ensureToken()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new ApiError(0, "unreachable", "Can’t reach the server.");
    }
    if (!response.ok) {
      const error = await problemOf(response);
      if (auth && retry && REAUTH_CODES.has(error.code)) {
        this.token = null;
        await this.signIn();
        return this.request(method, path, body, { auth, retry: false, raw });
      }
      if (auth && GONE_CODES.has(error.code)) {
        this.dispatchEvent(new CustomEvent("revoked", { detail: error }));
      }
      throw error;
    }
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  // --- endpoints -------------------------------------------------------------------------

  /** Ask for a puzzle, solve it, and send the sign-up or recovery with its solution. */
  async _enroll(path, body, puzzleRequest) {
    for (let attempt = 1; ; attempt += 1) {
      const given = await this.request("POST", "/v1/puzzles", puzzleRequest, { auth: false });
      const solution = await solve(given.challenge, given.bits);
      try {
        return await this.request(
          "POST",
          path,
          { ...body, puzzle: { challenge: given.challenge, solution } },
          { auth: false },
        );
      } catch (error) {
        if (error.code !== "puzzle_required" || attempt >= PUZZLE_ATTEMPTS) throw error;
      }
    }
  }

  signup(handle, displayName, device) {
    const body = { handle, device };
    if (displayName) body.display_name = displayName;
    return this._enroll("/v1/accounts", body, { purpose: "signup" });
  }

  recover(handle, recoveryCode, device, revokeOthers) {
    return this._enroll(
      "/v1/recovery",
      {
        handle,
        recovery_code: recoveryCode,
        device,
        revoke_other_devices: Boolean(revokeOthers),
      },
      { purpose: "recovery", handle },
    );
  }

  me() {
    return this.request("GET", "/v1/me");
  }

  /** This device's media key and its signature (docs/e2ee.md §1); replaces an older one. */
  publishMediaKey(deviceId, fields) {
    return this.request("PUT", `/v1/devices/${deviceId}/media-key`, fields);
  }

  updateMe(changes) {
    return this.request("PATCH", "/v1/me", changes);
  }

  /** A person's card by exact handle (protocol 5.1); ``not_found`` for every "no". */
  lookup(handle) {
    return this.request("GET", `/v1/handles/${encodeURIComponent(handle)}`);
  }

  contacts() {
    return this.request("GET", "/v1/contacts").then((list) => list.contacts);
  }

  addContact(handle, nickname) {
    return this.request("POST", "/v1/contacts", { handle, nickname: nickname || null });
  }

  renameContact(accountId, nickname) {
    return this.request("PATCH", `/v1/contacts/${accountId}`, { nickname: nickname || null });
  }

  removeContact(accountId) {
    return this.request("DELETE", `/v1/contacts/${accountId}`);
  }

  blocks() {
    return this.request("GET", "/v1/blocks").then((list) => list.blocks);
  }

  block(target) {
    return this.request("POST", "/v1/blocks", target);
  }

  unblock(accountId) {
    return this.request("DELETE", `/v1/blocks/${accountId}`);
  }

  turn() {
    return this.request("GET", "/v1/turn");
  }

  missedCalls() {
    return this.request("GET", "/v1/calls/missed").then((list) => list.missed_calls);
  }

  clearMissedCalls() {
    return this.request("DELETE", "/v1/calls/missed");
  }

  exportData() {
    return this.request("GET", "/v1/me/export", undefined, { raw: true }).then((r) => r.text());
  }

  erase() {
    return this.request("DELETE", "/v1/me");
  }
}

async function problemOf(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    problem = null;
  }
  if (problem && typeof problem.code === "string") {
    return new ApiError(response.status, problem.code, problem.detail, problem.retry_after ?? null);
  }
  return new ApiError(response.status, `http_${response.status}`, `The server answered ${response.status}.`);
}
