// Callbook web client: where it starts. Each screen wires itself (welcome.js, home.js,
// settings.js, callscreen.js, groupview.js …); the calls are the SDK's (sdk/), tied to the
// screens in calls.js; this module binds them all and opens the right screen for this browser.

import { enter, signOut, signedOutHere } from "./account.js";
import { bindCalls, startCall } from "./calls.js";
import { bindCallScreen } from "./callscreen.js";
import { api, client, line, state } from "./context.js";
import { bindDevices } from "./devices.js";
import { activeGroup, bindGroup, currentGroup } from "./groupview.js";
import { bindHistory, recordGroupCall } from "./history.js";
import { bindHome, contactFor, contactName, personName, refreshContacts, refreshMissed, renderMissed } from "./home.js";
import { bindMediaDevices } from "./mediadevices.js";
import { bindReports } from "./reports.js";
import { guardPage } from "./resume.js";
import { confirmDialog, loadingMessage, show } from "./screens.js";
import * as keystore from "./sdk/keystore.js";
import { bindSettings, refreshBlocks } from "./settings.js";
import { $ } from "./ui.js";
import { bindWelcome, showSignedOut } from "./welcome.js";

function bindScreens() {
  bindWelcome(enter);
  bindHome();
  bindSettings();
  bindCallScreen();
  bindGroup({
    client,
    state,
    isBusy: () => Boolean(state.current?.active),
    nameOf: personName,
    onEnded: (call) => {
      recordGroupCall(call);
      if (call.endReason === "missed") refreshMissed();
    },
  });
  bindCalls();
  bindDevices({ api, identity: () => state.identity, confirm: confirmDialog, leave: signOut });
  bindMediaDevices(() => (state.current?.active ? state.current : currentGroup()));
  bindHistory({
    owner: () => state.identity?.accountId ?? null,
    nameOf: (entry) => (contactFor(entry.accountId) ? contactName(contactFor(entry.accountId)) : null),
    confirm: confirmDialog,
    call: startCall,
    changed: renderMissed,
  });
  bindReports({
    api,
    signedIn: () => Boolean(state.identity),
    blocked: () => Promise.all([refreshBlocks(), refreshContacts()]),
  });
}

/** The page as a whole: the tab's call survives a reload; the session follows the key. */
function bindPage() {
  guardPage(line, {
    inCall: () => Boolean(state.current?.active || activeGroup()),
    // A group call is not taken over: its fresh session ends it, as before.
    current: () => (activeGroup() ? undefined : state.current),
  });
  $("#banner-action").addEventListener("click", () => {
    $("#banner").hidden = true;
    line.start();
  });
  api.addEventListener("revoked", () => signedOutHere(state.identity?.handle));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || !state.me) return;
    api.ensureToken(90).catch(() => {});
    refreshMissed();
  });
}

async function boot() {
  bindScreens();
  bindPage();
  if (!(await keystore.supported())) {
    loadingMessage(
      "This browser can’t keep a Callbook key safely. Please use a recent version of Chrome, Edge, Firefox or Safari.",
    );
    return;
  }
  let identity = null;
  try {
    identity = await keystore.loadIdentity();
  } catch {
    loadingMessage(
      "This browser won’t let Callbook store its key (private browsing?). Open Callbook in a normal window.",
    );
    return;
  }
  if (!identity) {
    show("welcome");
    const notice = await keystore.signedOutNotice().catch(() => null);
    if (notice !== null) showSignedOut(notice);
    return;
  }
  await enter(identity);
}

boot();
