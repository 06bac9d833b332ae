// This browser's identity: an Ed25519 device key made with WebCrypto (the private key is
// non-extractable: script can sign with it but can never read it) kept in IndexedDB together
// with the account id, device id and handle, and beside it the X25519 media key that key
// blobs of end-to-end encrypted calls are sealed to (docs/e2ee.md §1), non-extractable too.
// Nothing here ever leaves the browser except the raw public keys and signatures.

import { b64url } from "./bytes.js";
import { newMediaKey, signMediaKey } from "./keyblob.js";

const DB_NAME = "callbook";
const DB_VERSION = 1;
const STORE = "identity";
const SELF = "self";
const SIGNED_OUT = "signed-out";

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(STORE)) {
        request.result.createObjectStore(STORE);
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error("Close other Callbook tabs and reload."));
  });
}

async function withStore(mode, work) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const result = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error("The browser's storage refused the write."));
    });
  } finally {
    db.close();
  }
}

/** What this browser needs to know to work without WebCrypto Ed25519 or IndexedDB: nothing. */
export async function supported() {
  if (!window.isSecureContext || !crypto.subtle || !window.indexedDB) return false;
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return true;
  } catch {
    return false;
  }
}

/** A fresh device key pair; ``publicKey`` is the raw 32 bytes, base64url. */
export async function newDeviceKey() {
  const keyPair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const raw = await crypto.subtle.exportKey("raw", keyPair.publicKey);
  return { keyPair, publicKey: b64url(raw) };
}

/**
 * A fresh media key pair signed by the device key: ``fields`` are the ``media_key`` and
 * ``media_key_signature`` of a sign-up, an enrolment or ``PUT /v1/devices/{id}/media-key``.
 */
export async function newSignedMediaKey(devicePrivateKey) {
  const { keyPair, publicRaw } = await newMediaKey();
  const signature = await signMediaKey(devicePrivateKey, publicRaw);
  return {
    mediaKeyPair: keyPair,
    fields: { media_key: b64url(publicRaw), media_key_signature: b64url(signature) },
  };
}

/** The raw public keys an E2EE call needs beside the key pairs themselves. */
export async function callKeys(identity) {
  const raw = async (key) => new Uint8Array(await crypto.subtle.exportKey("raw", key));
  return {
    keyPair: identity.keyPair,
    mediaKeyPair: identity.mediaKeyPair,
    devicePublicRaw: await raw(identity.keyPair.publicKey),
    mediaPublicRaw: await raw(identity.mediaKeyPair.publicKey),
  };
}

/** Sign a text (UTF-8) with the device's private key; the signature in base64url. */
export async function sign(privateKey, text) {
  const signature = await crypto.subtle.sign(
    { name: "Ed25519" },
    privateKey,
    new TextEncoder().encode(text),
  );
  return b64url(signature);
}

/**
 * The stored identity ({keyPair, mediaKeyPair, mediaKeyPublished, accountId, deviceId,
 * handle}) or null. Browsers that signed up before media keys have none until the app adds one (account.js).
 */
export async function loadIdentity() {
  const identity = await withStore("readonly", (store) => store.get(SELF));
  if (!identity || !identity.keyPair || !identity.accountId || !identity.deviceId) return null;
  return identity;
}

export async function saveIdentity(identity) {
  const record = {
    keyPair: identity.keyPair,
    mediaKeyPair: identity.mediaKeyPair ?? null,
    mediaKeyPublished: Boolean(identity.mediaKeyPublished),
    accountId: identity.accountId,
    deviceId: identity.deviceId,
    handle: identity.handle,
    savedAt: Date.now(),
  };
  await withStore("readwrite", (store) => {
    store.delete(SIGNED_OUT);
    return store.put(record, SELF);
  });
}

/**
 * Forget this browser's key and ids (after erase, revocation, or sign-out). With
 * ``signedOutOf`` (a handle, or "" when unknown) the browser remembers that it was signed out
 * from elsewhere, so the notice survives a reload until someone signs in here again.
 */
export async function clearIdentity(signedOutOf = null) {
  await withStore("readwrite", (store) => {
    if (signedOutOf === null) store.delete(SIGNED_OUT);
    else store.put({ handle: signedOutOf }, SIGNED_OUT);
    return store.delete(SELF);
  });
}

/** The handle this browser was signed out of from elsewhere ("" if unknown), or null. */
export async function signedOutNotice() {
  const notice = await withStore("readonly", (store) => store.get(SIGNED_OUT));
  return notice ? String(notice.handle ?? "") : null;
}
