// The key schedule's bookkeeping (docs/e2ee.md §5-6), pure: no crypto, no I/O, time passed in.
// The worker keeps receive keys, replay windows and the key-request limit; the page keeps the
// sender's kid and decides when membership changed.

export const REPLAY_WINDOW = 128;
export const PREVIOUS_KEY_MS = 5000;
export const KEY_REQUEST_EVERY_MS = 1000;

/** The last 128 CTRs of one key: a CTR seen before, or older than the window, is a replay. */
export class ReplayWindow {
  constructor(size = REPLAY_WINDOW) {
    this.size = size;
    this.top = -1;
    this.slots = new Float64Array(size).fill(-1); // slot ctr % size holds the last ctr there
  }

  /** Whether ``ctr`` may be decrypted (nothing is recorded until ``accept``). */
  fresh(ctr) {
    if (ctr + this.size <= this.top) return false;
    return this.slots[ctr % this.size] !== ctr;
  }

  /** Record a CTR whose frame authenticated. */
  accept(ctr) {
    this.slots[ctr % this.size] = ctr;
    if (ctr > this.top) this.top = ctr;
  }
}

/**
 * One sender's receive keys: the newest, and the one before it for 5 s after the newest came
 * (frames in flight under the old key still decrypt). ``material`` is whatever the caller
 * derived (the worker's AES key and salt).
 *
 * Each key has a replay window per stream (``windows.audio``, ``windows.video``, and
 * ``windows.screen`` for a shared screen, docs/protocol.md 11.15.1): the sender numbers all its
 * frames with one counter, but a receiver gets them through separate pipelines, and a busy
 * machine can hold one back by more than 128 frames of another, which one shared window would
 * take for replays.
 */
export class SenderKeys {
  constructor() {
    this.current = null; // {kid, material, windows: {audio, video, screen}}
    this.previous = null;
    this.previousUntil = 0;
  }

  /** Add a key; a kid we already hold, or one older than the newest, changes nothing. */
  add(kid, material, now) {
    if (this.current && kid <= this.current.kid) return false;
    if (this.current) {
      this.previous = this.current;
      this.previousUntil = now + PREVIOUS_KEY_MS;
    }
    const windows = { audio: new ReplayWindow(), video: new ReplayWindow(), screen: new ReplayWindow() };
    this.current = { kid, material, windows };
    return true;
  }

  /** The entry for ``kid`` (with its replay windows), or null. */
  find(kid, now) {
    if (this.current && this.current.kid === kid) return this.current;
    if (this.previous && this.previous.kid === kid && now < this.previousUntil) {
      return this.previous;
    }
    return null;
  }
}

/** At most one key request per sender per interval (excess is not sent at all). */
export class RequestLimiter {
  constructor(everyMs = KEY_REQUEST_EVERY_MS) {
    this.everyMs = everyMs;
    this.last = new Map(); // participant → time of the last request
  }

  allow(participant, now) {
    const last = this.last.get(participant);
    if (last !== undefined && now - last < this.everyMs) return false;
    this.last.set(participant, now);
    return true;
  }

  forget(participant) {
    this.last.delete(participant);
  }
}

/**
 * The sender side: kid 0 at the first key, +1 at every new key; a new key whenever the set
 * of participants changes (a joiner never gets a key used before it joined, a leaver never
 * gets one used after). ``update`` returns whether to draw a new key and whom to send it to.
 */
export class SendSchedule {
  constructor(me) {
    this.me = me;
    this.kid = -1;
    this.members = new Set();
  }

  /** ``present``: the participant ids now in the call (us included). */
  update(present) {
    const others = [...present].filter((id) => id !== this.me);
    const same =
      this.kid >= 0 &&
      others.length === this.members.size &&
      others.every((id) => this.members.has(id));
    if (same) return { rotate: false, recipients: others };
    this.members = new Set(others);
    this.kid += 1;
    return { rotate: true, kid: this.kid, recipients: others };
  }
}
