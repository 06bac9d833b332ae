// This browser's place in an account: signing in with the stored key and opening the home
// screen, publishing a media key for browsers that signed up before them, and the ways out
// (signed out from elsewhere, sign-out here, erase).

import { endAllCalls } from "./calls.js";
import { api, client, line, state } from "./context.js";
import { forgetHistory, loadHistory } from "./history.js";
import { refreshLists, route, setMe } from "./home.js";
import { resumeWith, takeSession } from "./resume.js";
import { loadingMessage, show } from "./screens.js";
import * as keystore from "./sdk/keystore.js";
import { problemText } from "./text.js";
import { $, toast } from "./ui.js";
import { selectTab, showSignedOut } from "./welcome.js";

/** Sign in with a stored identity and open the home screen. */
export async function enter(identity) {
  state.identity = identity;
  state.signingOut = false;
  client.use(identity);
  loadingMessage("Signing in…");
  let me;
  try {
    me = await api.me();
  } catch (error) {
    if (error.code === "device_revoked" || error.code === "unknown_device") {
      await signedOutHere(identity.handle);
      return;
    }
    loadingMessage(problemText(error), () => enter(identity));
    return;
  }
  setMe(me);
  show("home");
  route();
  const kept = takeSession();
  if (kept) {
    resumeWith(line, kept);
    state.rejoin = kept.call;
  }
  client.connect();
  refreshLists();
  loadHistory();
  publishMediaKey(identity);
}

/**
 * A browser that signed up before media keys makes one now and publishes it (encrypted calls
 * through the SFU need it). Failing here only delays that to the next start.
 */
async function publishMediaKey(identity) {
  if (identity.mediaKeyPublished) return;
  try {
    const media = await keystore.newSignedMediaKey(identity.keyPair.privateKey);
    await api.publishMediaKey(identity.deviceId, media.fields);
    identity.mediaKeyPair = media.mediaKeyPair;
    identity.mediaKeyPublished = true;
    await keystore.saveIdentity(identity);
  } catch (error) {
    console.warn("could not publish this browser's media key", error);
  }
}

/** This device was revoked (or its account is gone): say so, and forget the key. */
export async function signedOutHere(handle) {
  if (state.signingOut) return;
  state.signingOut = true;
  endAllCalls(); // hang-ups go out before the socket closes
  await client.signOut({ forget: false });
  try {
    await keystore.clearIdentity(handle ?? "");
  } catch {
    // nothing more to forget
  }
  state.identity = null;
  state.me = null;
  show("welcome");
  showSignedOut(handle);
}

/** Sign out here (devices.js): calls end, ``farewell`` tells the server, then both keys go. */
export async function signOut(farewell) {
  state.signingOut = true;
  endAllCalls();
  const message = await farewell();
  await forgetHistory(); // a shared computer keeps no trace of whom this person called
  await client.signOut().catch(() => {});
  state.identity = null;
  state.me = null;
  selectTab("recover");
  show("welcome");
  $("#tab-recover").focus();
  toast(message, "success");
}

/** The account was erased: nothing of it stays in this browser. */
export async function erased() {
  state.signingOut = true;
  endAllCalls();
  await client.signOut().catch(() => {});
  await forgetHistory();
  state.identity = null;
  state.me = null;
  selectTab("signup");
  show("welcome");
  $("#dialog-erased").showModal();
}
