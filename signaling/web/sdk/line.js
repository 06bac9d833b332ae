// The call WebSocket (GET /v1/ws): signs in with the access token in Sec-WebSocket-Protocol
// (``callbook.v1, bearer.<token>``), keeps the resume token from ``welcome``, and when the
// connection drops reconnects with ``resume.<token>`` so calls survive a network blip.
// A draining server sends ``reconnect``: the line opens a new connection (another server
// answers at the same address) with the token it carries, and lets the old one go only when the
// new one is signed in (the server then closes the old one with 4000); messages sent meanwhile
// wait in order for the new connection.
//
// Events: ``state`` (detail: "connecting" | "online" | "reconnecting" | "replaced" | "offline"),
// ``welcome`` (detail: the welcome message), ``message`` (detail: any other server message),
// ``lost`` (a fresh session replaced a lost one: calls of the old session are over).

const SUBPROTOCOL = "callbook.v1";
const CLOSE_REPLACED = 4000;
const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
// When a call's media path breaks (often: the device changed networks), the socket is checked
// at once instead of at the next keepalive, which could come after the call gave up.
const PROBE_WITHIN_MS = 2_000;
const BACKOFF_MS = [250, 1000, 2000, 4000, 8000, 15000];
const MAX_OUTBOX = 200;

export class Line extends EventTarget {
  constructor(api, url = defaultUrl()) {
    super();
    this.api = api;
    this.url = url;
    this.ws = null;
    this.state = "offline";
    this.welcome = null;
    this.resumeToken = null;
    this.resumeWindowS = 30;
    this.lostAt = 0;
    this.lastError = null;
    this._wanted = false;
    this._attempt = 0;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._outbox = [];
    this._connecting = false;
    this._moving = false;
    this._onOnline = () => {
      if (this._wanted && this.state === "reconnecting") this._connectSoon(0);
    };
    window.addEventListener("online", this._onOnline);
  }

  /** Connect, and keep connected until stop(). */
  start() {
    this._wanted = true;
    this._attempt = 0;
    if (!this.ws && !this._connecting) this._connect();
  }

  /** Close on purpose (sign-out, erase): no reconnect, no resume. */
  stop() {
    this._wanted = false;
    clearTimeout(this._retryTimer);
    this._stopKeepalive();
    this.resumeToken = null;
    this._outbox = [];
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "bye");
    this._setState("offline");
  }

  /** Send a client message; while reconnecting it waits (in order) for the resumed session. */
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "online") {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    if (!this._wanted || this._outbox.length >= MAX_OUTBOX) return false;
    this._outbox.push(message);
    return true;
  }

  /** For tests and for a dead-feeling link: drop the socket as a network failure would. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    ws.close(4001, "dropped");
    // A dead link never completes the closing handshake: go on without waiting for it.
    ws.onclose({ code: 4001 });
  }

  async _connect() {
    clearTimeout(this._retryTimer);
    this._setState(this.resumeToken ? "reconnecting" : "connecting");
    let token;
    this._connecting = true;
    try {
      token = await this.api.ensureToken(15);
    } catch (error) {
      this._connecting = false;
      this.lastError = error;
      if (error.code === "device_revoked" || error.code === "unknown_device") {
        this.stop();
        return;
      }
      this._retry();
      return;
    }
    this._connecting = false;
    if (!this._wanted || this.ws) return;
    const protocols = [SUBPROTOCOL, `bearer.${token}`];
    const resume = this._resumable() ? this.resumeToken : null;
    if (resume) protocols.push(`resume.${resume}`);
    let ws;
    try {
      ws = new WebSocket(this.url, protocols);
    } catch (error) {
      this.lastError = error;
      this._retry();
      return;
    }
    this.ws = ws;
    let refusal = null;
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this._heard();
      if (message.type === "welcome") {
        this._welcomed(message, resume);
      } else if (message.type === "error" && !this.welcome) {
        refusal = message;
      } else if (message.type === "pong") {
        // keepalive only
      } else if (message.type === "reconnect") {
        this._move(ws, message);
      } else {
        this.dispatchEvent(new CustomEvent("message", { detail: message }));
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._stopKeepalive();
      if (this.state === "online") this.lostAt = Date.now();
      this.welcome = null;
      if (!this._wanted) return;
      if (event.code === CLOSE_REPLACED) {
        // The same device connected again elsewhere (another tab): that one owns the calls now.
        this._wanted = false;
        this.resumeToken = null;
        this._setState("replaced");
        return;
      }
      if (refusal) {
        this.lastError = refusal;
        if (refusal.code === "device_revoked") {
          this.api.dispatchEvent(
            new CustomEvent("revoked", { detail: { code: refusal.code, detail: refusal.detail } }),
          );
          this.stop();
          return;
        }
        if (refusal.code.startsWith("token_")) this.api.token = null;
      }
      this._retry();
    };
  }

  /** The server is draining: connect again and resume; the old socket keeps delivering (its
   * close is no longer this line's business) until the server closes it. */
  _move(old, reconnect) {
    if (this.ws !== old || this._moving) return;
    this._moving = true;
    this.resumeToken = reconnect.resume_token;
    this.resumeWindowS = reconnect.resume_window_s;
    this.lostAt = 0;
    this._stopKeepalive();
    this.ws = null;
    this._attempt = 0;
    this._connect();
  }

  _welcomed(welcome, offeredResume) {
    this._moving = false;
    const hadSession = Boolean(offeredResume) || this.lostAt > 0;
    this.welcome = welcome;
    this.resumeToken = welcome.resume_token;
    this.resumeWindowS = welcome.resume_window_s;
    this._attempt = 0;
    this.lastError = null;
    this._setState("online");
    this._startKeepalive();
    if (!welcome.resumed) {
      // The server does not know the old session any more: messages for its calls are moot.
      this._outbox = [];
      if (hadSession) this.dispatchEvent(new CustomEvent("lost"));
    }
    this.lostAt = 0;
    this.dispatchEvent(new CustomEvent("welcome", { detail: welcome }));
    const waiting = this._outbox;
    this._outbox = [];
    for (const message of waiting) this.send(message);
  }

  _resumable() {
    if (!this.resumeToken) return false;
    if (!this.lostAt) return true;
    return Date.now() - this.lostAt < this.resumeWindowS * 1000;
  }

  _retry() {
    if (!this._wanted) return;
    this._setState(this.resumeToken || this.lostAt ? "reconnecting" : "connecting");
    const base = BACKOFF_MS[Math.min(this._attempt, BACKOFF_MS.length - 1)];
    this._attempt += 1;
    this._connectSoon(base + Math.random() * base * 0.3);
  }

  _connectSoon(delay) {
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (this._wanted && !this.ws && !this._connecting) this._connect();
    }, delay);
  }

  _startKeepalive() {
    this._stopKeepalive();
    this._pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(JSON.stringify({ type: "ping" }));
      clearTimeout(this._pongTimer);
      this._pongTimer = setTimeout(() => this.drop(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  /** Check the connection now: a ping, and a reconnect (resuming) if no answer comes soon. */
  probe() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: "ping" }));
    clearTimeout(this._pongTimer);
    this._pongTimer = setTimeout(() => this.drop(), PROBE_WITHIN_MS);
  }

  _heard() {
    clearTimeout(this._pongTimer);
  }

  _stopKeepalive() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws`;
}
