// SFrame (RFC 9605) with cipher suite AES_128_GCM_SHA256_128 (0x0004), on WebCrypto, and the
// unencrypted prefix of docs/e2ee.md §5: the first bytes of a VP8 or Opus frame stay in clear so
// the SFU still reads the VP8 payload header (keyframe bit, sizes) without any key.
//
//   encrypted frame = prefix || sframe header || ciphertext || tag,  AAD = header || prefix
//
// Pure functions of their inputs (no state, no clock): the worker keeps keys and counters.

import { concat, uintBE, utf8 } from "./bytes.js";

export const SUITE = 0x0004;
export const TAG_LENGTH = 16;
const NONCE_LENGTH = 12;
const KEY_LABEL = utf8("SFrame 1.0 Secret key ");
const SALT_LABEL = utf8("SFrame 1.0 Secret salt ");
const EMPTY = new Uint8Array(0);

/** Clear bytes at the head of a frame: VP8 keyframe 10, VP8 delta frame 3, Opus 1. */
export function prefixLength(kind, data) {
  if (data.length === 0) return 0;
  let wanted = 1;
  if (kind === "video") wanted = (data[0] & 0x01) === 0 ? 10 : 3; // VP8 frame tag: P=0 keyframe
  return Math.min(wanted, data.length);
}

async function expand(secretKey, label, kid, bits) {
  const info = concat(label, uintBE(kid, 8), uintBE(SUITE, 2));
  const params = { name: "HKDF", hash: "SHA-256", salt: EMPTY, info };
  return new Uint8Array(await crypto.subtle.deriveBits(params, secretKey, bits));
}

/**
 * The frame key and salt of (base key, KID) per RFC 9605 §4.4.2. WebCrypto's HKDF does
 * extract (with the empty salt) and expand in one call, which is the RFC's pair of steps.
 * ``extractable`` only for the cross-check tests.
 */
export async function deriveKey(baseKey, kid, extractable = false) {
  const secret = await crypto.subtle.importKey("raw", baseKey, "HKDF", false, ["deriveBits"]);
  const keyBytes = await expand(secret, KEY_LABEL, kid, 128);
  const salt = await expand(secret, SALT_LABEL, kid, NONCE_LENGTH * 8);
  const usages = ["encrypt", "decrypt"];
  const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", extractable, usages);
  return { kid, key, salt };
}

function minimalLength(value) {
  let length = 1;
  while (length < 8 && value >= 2 ** (8 * length)) length += 1;
  return length;
}

/** The SFrame header (RFC 9605 §4.3): config byte X|K|Y|C, then long KID, then long CTR. */
export function encodeHeader(kid, ctr) {
  let config = 0;
  const parts = [];
  if (kid < 8) config |= kid << 4;
  else {
    const length = minimalLength(kid);
    config |= 0x80 | ((length - 1) << 4);
    parts.push(uintBE(kid, length));
  }
  if (ctr < 8) config |= ctr;
  else {
    const length = minimalLength(ctr);
    config |= 0x08 | (length - 1);
    parts.push(uintBE(ctr, length));
  }
  return concat(Uint8Array.of(config), ...parts);
}

function readUint(data, offset, length) {
  let value = 0;
  for (let i = 0; i < length; i += 1) value = value * 256 + data[offset + i];
  return value;
}

/** {kid, ctr, length} of the header at ``offset``, or null when truncated or out of range. */
export function parseHeader(data, offset = 0) {
  if (offset >= data.length) return null;
  const config = data[offset];
  const kidLength = config & 0x80 ? ((config >> 4) & 0x07) + 1 : 0;
  const ctrLength = config & 0x08 ? (config & 0x07) + 1 : 0;
  const length = 1 + kidLength + ctrLength;
  if (offset + length > data.length) return null;
  const kid = kidLength ? readUint(data, offset + 1, kidLength) : (config >> 4) & 0x07;
  const ctr = ctrLength ? readUint(data, offset + 1 + kidLength, ctrLength) : config & 0x07;
  // Beyond 2**53 a JavaScript number is no longer exact: no sender of ours gets there.
  if (kid > Number.MAX_SAFE_INTEGER || ctr > Number.MAX_SAFE_INTEGER) return null;
  return { kid, ctr, length };
}

/** salt XOR CTR (big-endian, left-padded to the nonce's 12 bytes). */
export function frameNonce(salt, ctr) {
  const nonce = uintBE(ctr, NONCE_LENGTH);
  for (let i = 0; i < NONCE_LENGTH; i += 1) nonce[i] ^= salt[i];
  return nonce;
}

/** RFC 9605 §4.4.3: header || AEAD(plaintext) with AAD header || metadata. */
export async function seal(keys, ctr, metadata, plaintext) {
  const header = encodeHeader(keys.kid, ctr);
  const params = {
    name: "AES-GCM",
    iv: frameNonce(keys.salt, ctr),
    additionalData: concat(header, metadata),
    tagLength: TAG_LENGTH * 8,
  };
  const sealed = new Uint8Array(await crypto.subtle.encrypt(params, keys.key, plaintext));
  return concat(header, sealed);
}

/** RFC 9605 §4.4.4 with a parsed header; rejects (OperationError) when the tag fails. */
export async function open(keys, header, headerBytes, metadata, sealed) {
  const params = {
    name: "AES-GCM",
    iv: frameNonce(keys.salt, header.ctr),
    additionalData: concat(headerBytes, metadata),
    tagLength: TAG_LENGTH * 8,
  };
  return new Uint8Array(await crypto.subtle.decrypt(params, keys.key, sealed));
}

/** A whole encoded frame: prefix || header || ciphertext || tag. */
export async function encryptFrame(keys, ctr, kind, data) {
  const prefix = data.subarray(0, prefixLength(kind, data));
  const body = await seal(keys, ctr, prefix, data.subarray(prefix.length));
  return concat(prefix, body);
}

/**
 * The parts of an encrypted frame ({prefix, header, headerBytes, sealed}), or null when it is
 * too short or its header is malformed. The prefix length comes from the clear first byte.
 */
export function splitFrame(kind, data) {
  const prefixEnd = prefixLength(kind, data);
  const header = parseHeader(data, prefixEnd);
  if (!header) return null;
  const sealedStart = prefixEnd + header.length;
  if (data.length - sealedStart < TAG_LENGTH) return null;
  return {
    prefix: data.subarray(0, prefixEnd),
    header,
    headerBytes: data.subarray(prefixEnd, sealedStart),
    sealed: data.subarray(sealedStart),
  };
}

/** The clear frame of ``parts`` (from splitFrame); rejects when the tag fails. */
export async function decryptFrame(keys, parts) {
  const clear = await open(keys, parts.header, parts.headerBytes, parts.prefix, parts.sealed);
  return concat(parts.prefix, clear);
}
