// Client puzzles (docs/protocol.md, "Puzzles"): before a sign-up or a recovery, find a
// solution s such that SHA-256(challenge + ":" + s) starts with `bits` zero bits. Free when the
// server is quiet (0 bits); a second or so of this device's work when it is under a flood.
// WebCrypto's digest is asynchronous: candidates are hashed in batches, which keeps the page
// responsive and the cost per promise low.

const BATCH = 1024;
const encoder = new TextEncoder();

/** Leading zero bits of a digest. */
export function zeroBits(bytes) {
  let count = 0;
  for (const byte of bytes) {
    if (byte !== 0) return count + Math.clz32(byte) - 24;
    count += 8;
  }
  return count;
}

/** A solution (a decimal counter) for a challenge of ``bits`` zero bits. */
export async function solve(challenge, bits) {
  if (bits <= 0) return "0";
  for (let start = 0; ; start += BATCH) {
    const digests = await Promise.all(
      Array.from({ length: BATCH }, (_, i) =>
        crypto.subtle.digest("SHA-256", encoder.encode(`${challenge}:${start + i}`)),
      ),
    );
    for (let i = 0; i < BATCH; i += 1) {
      if (zeroBits(new Uint8Array(digests[i])) >= bits) return String(start + i);
    }
  }
}
