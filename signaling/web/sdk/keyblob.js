// The device media key (X25519) and the key blob that carries a sender's base key to one
// recipient device (docs/e2ee.md §1 and §4), on WebCrypto:
//
//   blob   = eph_pub (32) || sealed (32: base key 16 + GCM tag 16) || signature (64)
//   ctx    = "callbook media key v1\0" call_id \0 sender \0 recipient \0 kid (8 bytes BE)
//   okm    = HKDF-SHA256(ikm = X25519(eph, recipient), salt = eph_pub || recipient_pub,
//                        info = ctx, 44 bytes);  key = okm[:32], nonce = okm[32:]
//   sealed = AES-256-GCM(key, nonce, base_key, aad = ctx)
//   signature = Ed25519(sender's device key, ctx || eph_pub || sealed)

import { concat, uintBE, utf8 } from "./bytes.js";

const LABEL = utf8("callbook media key v1\x00");
const NUL = Uint8Array.of(0);
export const BLOB_LENGTH = 128;
export const BASE_KEY_LENGTH = 16;

/** The bytes a device signs to vouch for its media key. */
export function mediaKeyMessage(mediaPublicRaw) {
  return concat(LABEL, mediaPublicRaw);
}

/** A fresh X25519 pair: the private key can derive but never be read by script. */
export async function newMediaKey() {
  const keyPair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const publicRaw = new Uint8Array(await crypto.subtle.exportKey("raw", keyPair.publicKey));
  return { keyPair, publicRaw };
}

export async function signMediaKey(signingKey, mediaPublicRaw) {
  const message = mediaKeyMessage(mediaPublicRaw);
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, signingKey, message));
}

async function ed25519Public(raw) {
  return crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
}

/** Whether ``signature`` is the device key's signature over the media key. */
export async function verifyMediaKey(deviceKeyRaw, mediaPublicRaw, signature) {
  try {
    const key = await ed25519Public(deviceKeyRaw);
    const message = mediaKeyMessage(mediaPublicRaw);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false; // a key of the wrong length or shape vouches for nothing
  }
}

/** The context every blob binds: the call, both participants and the kid. */
export function blobContext(callId, sender, recipient, kid) {
  return concat(
    LABEL,
    utf8(callId),
    NUL,
    utf8(sender),
    NUL,
    utf8(recipient),
    NUL,
    uintBE(kid, 8),
  );
}

async function wrapKey(shared, ephPublicRaw, recipientPublicRaw, context) {
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const params = {
    name: "HKDF",
    hash: "SHA-256",
    salt: concat(ephPublicRaw, recipientPublicRaw),
    info: context,
  };
  const okm = new Uint8Array(await crypto.subtle.deriveBits(params, ikm, 44 * 8));
  const key = await crypto.subtle.importKey("raw", okm.subarray(0, 32), "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  return { key, nonce: okm.slice(32, 44) };
}

async function x25519(privateKey, publicRaw) {
  const publicKey = await crypto.subtle.importKey("raw", publicRaw, { name: "X25519" }, false, []);
  return new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256),
  );
}

/**
 * Seal ``baseKey`` to one recipient. ``ephemeral`` ({privateKey, publicRaw}) only for the
 * known-answer tests: a real blob always uses a fresh pair.
 */
export async function sealBlob({
  baseKey,
  callId,
  sender,
  recipient,
  kid,
  recipientMediaKey,
  signingKey,
  ephemeral = null,
}) {
  let eph = ephemeral;
  if (!eph) {
    const { keyPair, publicRaw } = await newMediaKey();
    eph = { privateKey: keyPair.privateKey, publicRaw };
  }
  const context = blobContext(callId, sender, recipient, kid);
  const shared = await x25519(eph.privateKey, recipientMediaKey);
  const { key, nonce } = await wrapKey(shared, eph.publicRaw, recipientMediaKey, context);
  const params = { name: "AES-GCM", iv: nonce, additionalData: context, tagLength: 128 };
  const sealed = new Uint8Array(await crypto.subtle.encrypt(params, key, baseKey));
  const signed = concat(context, eph.publicRaw, sealed);
  const signature = new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, signingKey, signed),
  );
  return concat(eph.publicRaw, sealed, signature);
}

/** Why a blob was refused (the caller counts it and asks again later). */
export class BlobError extends Error {}

/**
 * The base key inside a blob addressed to us, after checking the sender's signature.
 * ``mediaKeyPair``: ours ({privateKey, publicRaw}); ``senderDeviceKey``: the sender's Ed25519
 * public key, raw, as its participant entry gave it (and its media key signature proved).
 */
export async function openBlob({ blob, callId, sender, recipient, kid, mediaKeyPair, senderDeviceKey }) {
  if (blob.length !== BLOB_LENGTH) throw new BlobError("a key blob is 128 bytes");
  const ephPublicRaw = blob.subarray(0, 32);
  const sealed = blob.subarray(32, 64);
  const signature = blob.subarray(64);
  const context = blobContext(callId, sender, recipient, kid);
  const signer = await ed25519Public(senderDeviceKey);
  const signed = concat(context, ephPublicRaw, sealed);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, signer, signature, signed))) {
    throw new BlobError("the blob's signature is not the sender's");
  }
  let shared;
  try {
    shared = await x25519(mediaKeyPair.privateKey, ephPublicRaw);
  } catch {
    throw new BlobError("the blob's ephemeral key is not a usable X25519 key");
  }
  const { key, nonce } = await wrapKey(shared, ephPublicRaw, mediaKeyPair.publicRaw, context);
  try {
    const params = { name: "AES-GCM", iv: nonce, additionalData: context, tagLength: 128 };
    return new Uint8Array(await crypto.subtle.decrypt(params, key, sealed));
  } catch {
    throw new BlobError("the blob does not decrypt with this device's media key");
  }
}
