// The call's safety number (docs/e2ee.md §7): every participant computes it from the device
// and media keys of everyone in the call, and the same keys give the same 30 digits anywhere.
//
//   digest = SHA-256("callbook safety number v1\0" || sorted(device_key || media_key)...)
//   groups i = 0..5: int(digest[5i : 5i+5]) mod 100000, five digits each

import { compareBytes, concat, utf8 } from "./bytes.js";

const LABEL = utf8("callbook safety number v1\x00");

/** ``keys``: [{deviceKey, mediaKey}] (raw bytes) of every participant, us included. */
export async function safetyNumber(keys) {
  const entries = keys.map(({ deviceKey, mediaKey }) => concat(deviceKey, mediaKey));
  entries.sort(compareBytes);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", concat(LABEL, ...entries)));
  const groups = [];
  for (let i = 0; i < 6; i += 1) {
    let value = 0;
    for (const byte of digest.subarray(5 * i, 5 * i + 5)) value = value * 256 + byte;
    groups.push(String(value % 100000).padStart(5, "0"));
  }
  return groups.join(" ");
}
