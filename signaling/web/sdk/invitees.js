// Who the host of a group call invited, and where each stands (docs/protocol.md 11.15):
// ringing until they join or the ring time is over, then no answer; in the call, and left.
// The server says nothing per invitee, on purpose: someone the host may not ring must look
// exactly like someone who does not answer, and a decline looks like no answer too. So this is
// worked out here, from the handles the host typed, ``participants`` and the clock.

const DEFAULT_RING_S = 60;

export class Invitees {
  constructor() {
    this.entries = new Map(); // lower-case handle → {handle, until, seen}
    this.ringMs = DEFAULT_RING_S * 1000;
  }

  /** From ``joined``: how long invitees ring; the first ones started ringing at ``now``. */
  started(ringTimeoutS, now) {
    if (ringTimeoutS) this.ringMs = ringTimeoutS * 1000;
    for (const entry of this.entries.values()) entry.until = now + this.ringMs;
  }

  /** Ring ``handles`` from ``now``; the server restarts the ring time of everyone still ringing. */
  ring(handles, now) {
    for (const entry of this.entries.values()) {
      if (!entry.seen && entry.until > now) entry.until = now + this.ringMs;
    }
    for (const handle of handles) {
      const key = handle.toLowerCase();
      const entry = this.entries.get(key);
      if (entry && !entry.seen && entry.until > now) continue;
      this.entries.set(key, { handle, until: now + this.ringMs, seen: false, present: false });
    }
  }

  /** Who is in the call now (``participants``' person cards). */
  update(participants) {
    const present = new Set(participants.map((p) => p.person?.handle?.toLowerCase()).filter(Boolean));
    for (const [key, entry] of this.entries) {
      entry.present = present.has(key);
      if (entry.present) entry.seen = true;
    }
  }

  /** [{handle, state}] in the order they were invited; state: a key of WORDS. */
  states(now) {
    return [...this.entries.values()].map((entry) => {
      let state = entry.until > now ? "ringing" : "no_answer";
      if (entry.seen) state = entry.present ? "in_call" : "left";
      return { handle: entry.handle, state };
    });
  }

  get size() {
    return this.entries.size;
  }
}
