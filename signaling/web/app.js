// Callbook web client: screens, forms and the calls on this device.

import { Api } from "./api.js";
import { Call } from "./call.js";
import { bindDevices } from "./devices.js";
import {
  bindHistory,
  forgetHistory,
  knownName,
  loadHistory,
  recordCall,
  recordGroupCall,
} from "./history.js";
import { activeGroup, bindGroup, currentGroup, onGroupIncoming } from "./groupview.js";
import { paintSecurity, securityOf } from "./e2eeview.js";
import { bindMediaDevices } from "./mediadevices.js";
import * as keystore from "./keystore.js";
import { whomToCall } from "./dialler.js";
import { focusBack } from "./focus.js";
import { Line } from "./line.js";
import { relayNote } from "./relaynote.js";
import { paintPeerState, peerStateText, showsPeerVideo } from "./peerstate.js";
import { guardPage, resumeWith, takeSession } from "./resume.js";
import { bindScreenButton, paintCallStage, paintScreenButton } from "./screenshare.js";
import { bindReports, openReport, reportMenuItem } from "./reports.js";
import { AUDIENCE_HELP, callErrorText, endText, problemText } from "./text.js";
import { CAMERA_OFF, MUTE, paintToggle } from "./toggles.js";
import * as tones from "./tones.js";
import {
  $,
  $$,
  avatar,
  browserName,
  busy,
  download,
  formatDuration,
  formatWhen,
  h,
  handleHint,
  icon,
  paintAvatar,
  clearToasts,
  setIcon,
  toast,
  typedHandle,
} from "./ui.js";

const api = new Api();
const line = new Line(api);

const state = {
  identity: null,
  me: null,
  contacts: [],
  blocks: [],
  missed: [],
  calls: new Map(), // call id → Call
  rejoin: undefined, // the call the tab's previous page was in, until the line says if it resumed
  byRef: new Map(), // invite ref → outgoing Call not yet named by the server
  current: null, // the Call on screen
  waiting: null, // an incoming Call while `current` is active ("call waiting")
  signingOut: false,
};

// For tests and debugging: the live peer connection and the pieces behind it.
window.callbook = {
  api,
  line,
  state,
  get call() {
    return state.current;
  },
  get pc() {
    return state.current?.pc ?? null;
  },
  /** The group call on screen (group.js), with its SfuMedia in ``group.sfu``. */
  get group() {
    return currentGroup();
  },
};

// --- screens -----------------------------------------------------------------------------------

const SCREENS = ["loading", "welcome", "code", "home"];

function show(name) {
  for (const screen of SCREENS) $(`#screen-${screen}`).hidden = screen !== name;
  document.body.dataset.screen = name;
}

function loadingMessage(text, retry = null) {
  show("loading");
  $("#loading-text").textContent = text;
  const button = $("#loading-retry");
  button.hidden = !retry;
  button.onclick = retry;
}

function formError(form, message) {
  const box = $(".form-error", form);
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
}

function clearFormErrorOnInput(form) {
  form.addEventListener("input", () => {
    formError(form, null);
    for (const input of $$("[aria-invalid]", form)) input.removeAttribute("aria-invalid");
  });
}

function invalid(input, form, message) {
  input.setAttribute("aria-invalid", "true");
  formError(form, message);
  input.focus();
}

// --- boot and identity ---------------------------------------------------------------------------

async function boot() {
  bindWelcome();
  bindCode();
  bindHome();
  bindCallScreen();
  bindGroup({
    api,
    line,
    state,
    isBusy: () => Boolean(state.current?.active),
    nameOf: personName,
    onEnded: (call) => {
      recordGroupCall(call);
      if (call.endReason === "missed") refreshMissed();
    },
  });
  bindLine();
  guardPage(line, {
    inCall: () => Boolean(state.current?.active || activeGroup()),
    // A group call is not taken over: its fresh session ends it, as before.
    current: () => (activeGroup() ? undefined : state.current),
  });
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

/** Sign in with a stored identity and open the home screen. */
async function enter(identity) {
  state.identity = identity;
  state.signingOut = false;
  api.use(identity);
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
  line.start();
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

async function signedOutHere(handle) {
  if (state.signingOut) return;
  state.signingOut = true;
  endAllCalls(); // hang-ups go out before the socket closes
  line.stop();
  api.forget();
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
async function signOut(farewell) {
  state.signingOut = true;
  endAllCalls();
  const message = await farewell();
  await forgetHistory(); // a shared computer keeps no trace of whom this person called
  line.stop();
  api.forget();
  await keystore.clearIdentity().catch(() => {});
  state.identity = null;
  state.me = null;
  selectTab("recover");
  show("welcome");
  $("#tab-recover").focus();
  toast(message, "success");
}

function showSignedOut(handle) {
  selectTab("recover");
  if (handle) $("#recover-handle").value = handle;
  formError(
    $("#form-recover"),
    `This browser is no longer signed in${handle ? ` to @${handle}` : ""}. Use your recovery code to sign in again.`,
  );
}

// --- welcome: sign up and recovery ------------------------------------------------------------

function selectTab(which) {
  for (const name of ["signup", "recover"]) {
    const tab = $(`#tab-${name}`);
    const selected = name === which;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`#form-${name}`).hidden = !selected;
  }
}

function bindWelcome() {
  const tabs = [$("#tab-signup"), $("#tab-recover")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab.id.replace("tab-", "")));
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
      const other = tabs.find((t) => t !== tab);
      selectTab(other.id.replace("tab-", ""));
      other.focus();
    });
  }

  const signup = $("#form-signup");
  clearFormErrorOnInput(signup);
  signup.addEventListener("submit", async (event) => {
    event.preventDefault();
    const handleInput = signup.elements.handle;
    const handle = typedHandle(handleInput.value);
    const hint = handleHint(handle);
    if (!handle) return invalid(handleInput, signup, "Choose a handle.");
    if (hint) return invalid(handleInput, signup, hint);
    const displayName = signup.elements.display_name.value.trim();
    await busy($("button[type=submit]", signup), async () => {
      try {
        const { keyPair, publicKey } = await keystore.newDeviceKey();
        const media = await keystore.newSignedMediaKey(keyPair.privateKey);
        const done = await api.signup(handle, displayName || null, {
          name: browserName(),
          public_key: publicKey,
          ...media.fields,
        });
        await adopt(done, keyPair, media.mediaKeyPair);
      } catch (error) {
        const field = ["handle_taken", "invalid_handle", "handle_reserved"].includes(error.code);
        if (field) invalid(handleInput, signup, problemText(error));
        else formError(signup, problemText(error));
      }
    });
  });

  const recover = $("#form-recover");
  clearFormErrorOnInput(recover);
  recover.addEventListener("submit", async (event) => {
    event.preventDefault();
    const handle = typedHandle(recover.elements.handle.value);
    const code = recover.elements.recovery_code.value.trim();
    if (!handle) return invalid(recover.elements.handle, recover, "Enter your handle.");
    if (code.replace(/[\s-]/g, "").length < 16) {
      return invalid(recover.elements.recovery_code, recover, "Enter the whole recovery code.");
    }
    await busy($("button[type=submit]", recover), async () => {
      try {
        const { keyPair, publicKey } = await keystore.newDeviceKey();
        const media = await keystore.newSignedMediaKey(keyPair.privateKey);
        const done = await api.recover(
          handle,
          code,
          { name: browserName(), public_key: publicKey, ...media.fields },
          recover.elements.revoke_other_devices.checked,
        );
        recover.reset();
        await adopt(done, keyPair, media.mediaKeyPair);
      } catch (error) {
        formError(recover, problemText(error));
      }
    });
  });
}

/** A new enrollment (sign-up or recovery): keep the key, then show the new recovery code. */
async function adopt(done, keyPair, mediaKeyPair) {
  const identity = {
    keyPair,
    mediaKeyPair,
    mediaKeyPublished: true,
    accountId: done.account.id,
    deviceId: done.device.id,
    handle: done.account.handle,
  };
  try {
    await keystore.saveIdentity(identity);
  } catch {
    toast("This browser couldn’t save your key; you’ll need the recovery code next time.", "error");
  }
  showRecoveryCode(done.recovery_code, done.account.handle, () => enter(identity));
}

// --- the recovery code, shown once -------------------------------------------------------------

let codeContinue = null;
let codeText = "";

function showRecoveryCode(code, handle, onContinue) {
  codeText = code;
  codeContinue = onContinue;
  const box = $("#recovery-code");
  box.replaceChildren(...code.split("-").map((group) => h("span", {}, group)));
  box.dataset.code = code;
  $("#code-handle").textContent = `@${handle}`;
  $("#code-saved").checked = false;
  $("#code-continue").disabled = true;
  show("code");
  $("#code-title").focus();
}

function bindCode() {
  $("#code-saved").addEventListener("change", (event) => {
    $("#code-continue").disabled = !event.target.checked;
  });
  $("#code-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(codeText);
      toast("Recovery code copied.", "success");
    } catch {
      toast("Couldn’t copy. Select the code and copy it by hand.", "error");
    }
  });
  $("#code-download").addEventListener("click", () => {
    const handle = $("#code-handle").textContent;
    download(
      `callbook-recovery-code-${handle.replace("@", "")}.txt`,
      `Callbook recovery code for ${handle}\n\n${codeText}\n\nKeep it private. It signs a new device into your account.\n`,
      "text/plain",
    );
  });
  $("#code-continue").addEventListener("click", () => {
    codeText = "";
    $("#recovery-code").replaceChildren();
    delete $("#recovery-code").dataset.code;
    const next = codeContinue;
    codeContinue = null;
    if (next) next();
  });
}

// --- home --------------------------------------------------------------------------------------

function displayName(me) {
  return me.display_name || `@${me.handle}`;
}

function setMe(me) {
  state.me = me;
  if (state.identity && state.identity.handle !== me.handle) {
    state.identity.handle = me.handle;
    keystore.saveIdentity(state.identity).catch(() => {});
  }
  $("#hero-title").textContent = `Hello, ${me.display_name || me.handle}`;
  const chip = $("#my-handle");
  chip.replaceChildren(h("span", {}, `@${me.handle}`), icon("copy"));
  chip.setAttribute("aria-label", `Your handle is @${me.handle}. Copy it`);
  paintAvatar($("#hero-avatar"), displayName(me), me.id);
  paintAvatar($("#me-avatar"), displayName(me), me.id);
  const profile = $("#form-profile");
  profile.elements.handle.value = me.handle;
  profile.elements.display_name.value = me.display_name || "";
  const privacy = $("#form-privacy");
  for (const field of ["discoverable", "who_can_call", "relay_calls"]) {
    for (const radio of privacy.elements[field]) radio.checked = radio.value === me[field];
    $(`#help-${field}`).textContent = AUDIENCE_HELP[field][me[field]];
  }
  checkRelay();
  $("#erase-handle").textContent = me.handle;
  renderPrivacyFacts();
}

let relayKnown = null; // this server's GET /v1/turn (asked once, when it matters)

async function checkRelay() {
  const box = $("#relay-warning");
  if (!state.me || state.me.relay_calls === "never") {
    box.hidden = true;
    return;
  }
  if (relayKnown === null) {
    try {
      relayKnown = await api.turn();
    } catch {
      return;
    }
  }
  const note = state.me && relayNote(relayKnown, state.me.relay_calls);
  box.hidden = !note;
  if (!note) return;
  box.dataset.kind = note.kind;
  $("span", box).textContent = note.text;
  setIcon($("svg", box), note.kind === "warning" ? "alert" : "shield");
}

const AUDIENCE_WORDS = { everyone: "Everyone", contacts: "Your contacts", nobody: "No one" };
const RELAY_FACTS = {
  strangers: ["shield", "Hidden from people who aren’t your contacts"],
  always: ["eye-off", "Hidden behind a relay"],
  never: ["alert", "Shared with the person you call, unless they relay"],
};

function renderPrivacyFacts() {
  const me = state.me;
  const fact = (iconName, term, value) =>
    h("div.fact", {}, h("span.fact-icon", {}, icon(iconName)), h("div", {}, h("dt", {}, term), h("dd", {}, value)));
  $("#privacy-facts").replaceChildren(
    fact("at", "Who can find you", AUDIENCE_WORDS[me.discoverable]),
    fact("phone", "Who can call you", AUDIENCE_WORDS[me.who_can_call]),
    fact(RELAY_FACTS[me.relay_calls][0], "Your IP address in calls", RELAY_FACTS[me.relay_calls][1]),
  );
}

function route() {
  const view = location.hash === "#settings" ? "settings" : "calls";
  for (const name of ["calls", "settings"]) {
    $(`#view-${name}`).hidden = name !== view;
    const tab = $(`#nav-${name}`);
    if (name === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
}

async function refreshLists() {
  await Promise.all([refreshContacts(), refreshBlocks(), refreshMissed()]);
}

async function refreshContacts() {
  try {
    state.contacts = await api.contacts();
    renderContacts();
  } catch (error) {
    if (state.me) toast(problemText(error), "error");
  }
}

async function refreshBlocks() {
  try {
    state.blocks = await api.blocks();
    renderBlocks();
  } catch (error) {
    if (state.me) toast(problemText(error), "error");
  }
}

async function refreshMissed() {
  try {
    state.missed = await api.missedCalls();
    renderMissed();
  } catch {
    // the list stays as it was; not worth interrupting anyone
  }
}

function contactName(contact) {
  return contact.nickname || contact.display_name || (contact.handle ? `@${contact.handle}` : "Unknown");
}

/** What to call a person card: your nickname for them, their display name, or their handle. */
function personName(person) {
  const contact = person?.account_id ? contactFor(person.account_id) : null;
  if (contact) return contactName(contact);
  return person?.display_name || (person?.handle ? `@${person.handle}` : "Someone");
}

function contactFor(accountId) {
  return state.contacts.find((c) => c.account_id === accountId) || null;
}

function renderContacts() {
  const list = $("#contacts-list");
  const items = state.contacts.map((contact) => {
    const name = contactName(contact);
    const sub = [];
    if (contact.nickname && contact.display_name) sub.push(contact.display_name);
    sub.push(contact.handle ? `@${contact.handle}` : "Can’t be found right now");
    const target = { account_id: contact.account_id, handle: contact.handle };
    const menu = h(
      "details.menu",
      {},
      h("summary.icon-btn", { "aria-label": `More options for ${name}`, title: "More" }, icon("more")),
      h(
        "div.menu-pop",
        {},
        reportMenuItem(contact.handle, name, () => {
          menu.open = false;
        }),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              menu.open = false;
              blockAccount(contact.account_id, name);
            },
          },
          icon("block"),
          "Block",
        ),
        h(
          "button.danger",
          {
            type: "button",
            onclick: () => {
              menu.open = false;
              removeContact(contact);
            },
          },
          icon("trash"),
          "Remove contact",
        ),
      ),
    );
    return h(
      "li.item",
      { dataset: { accountId: contact.account_id, handle: contact.handle || "" } },
      avatar(name, contact.account_id),
      h("div.item-main", {}, h("span.item-title", {}, name), h("span.item-sub", {}, sub.join(" · "))),
      h(
        "div.item-actions",
        {},
        h(
          "button.icon-btn.call",
          {
            type: "button",
            "aria-label": `Audio call ${name}`,
            title: "Audio call",
            onclick: () => startCall(target, "audio", name),
          },
          icon("phone"),
        ),
        h(
          "button.icon-btn.call",
          {
            type: "button",
            "aria-label": `Video call ${name}`,
            title: "Video call",
            onclick: () => startCall(target, "video", name),
          },
          icon("video"),
        ),
        menu,
      ),
    );
  });
  list.replaceChildren(...items);
  $("#contacts-empty").hidden = items.length > 0;
  $("#contacts-count").textContent = items.length ? String(items.length) : "";
}

function renderBlocks() {
  const items = state.blocks.map((block) => {
    const name = block.handle ? `@${block.handle}` : "Someone you can’t look up";
    return h(
      "li.item",
      { dataset: { accountId: block.account_id, handle: block.handle || "" } },
      avatar(name, block.account_id, "sm"),
      h(
        "div.item-main",
        {},
        h("span.item-title", {}, name),
        h("span.item-sub", {}, `Blocked ${block.blocked_day}`),
      ),
      h(
        "button.btn.btn-secondary.btn-small",
        {
          type: "button",
          "aria-label": `Unblock ${name}`,
          onclick: async (event) => {
            await busy(event.currentTarget, async () => {
              try {
                await api.unblock(block.account_id);
                toast(`${name} is unblocked.`, "success");
                await refreshBlocks();
              } catch (error) {
                toast(problemText(error), "error");
              }
            });
          },
        },
        "Unblock",
      ),
    );
  });
  $("#blocks-list").replaceChildren(...items);
  $("#blocks-empty").hidden = items.length > 0;
  $("#blocks-count").textContent = items.length ? String(items.length) : "";
}

function renderMissed() {
  const items = state.missed.slice(0, 20).map((missed) => {
    const contact = contactFor(missed.caller_account_id);
    const name = contact
      ? contactName(contact)
      : knownName(missed.caller_account_id) || `@${missed.caller_handle}`;
    return h(
      "li.item.item-missed",
      {},
      h("span.missed-icon", {}, icon("phone-missed")),
      h(
        "div.item-main",
        {},
        h("span.item-title", {}, name),
        h("span.item-sub", {}, formatWhen(missed.at)),
      ),
      h(
        "button.icon-btn.call",
        {
          type: "button",
          "aria-label": `Call ${name} back`,
          title: "Call back",
          onclick: () =>
            startCall({ account_id: missed.caller_account_id, handle: missed.caller_handle }, "audio", name),
        },
        icon("phone"),
      ),
    );
  });
  $("#missed-list").replaceChildren(...items);
  $("#missed-empty").hidden = items.length > 0;
  $("#missed-clear").hidden = items.length === 0;
  $("#missed-count").textContent = state.missed.length ? String(state.missed.length) : "";
}

async function removeContact(contact) {
  const name = contactName(contact);
  const ok = await confirmDialog(
    `Remove ${name}?`,
    "They won’t be told. You can add them again by their handle.",
    "Remove",
  );
  if (!ok) return;
  try {
    await api.removeContact(contact.account_id);
    toast(`${name} removed from your contacts.`, "success");
    await refreshContacts();
    renderMissed();
  } catch (error) {
    toast(problemText(error), "error");
  }
}

async function blockAccount(accountId, name) {
  const ok = await confirmDialog(
    `Block ${name}?`,
    "They won’t be able to find or call you, and they won’t be told. They stay in your contacts until you remove them.",
    "Block",
  );
  if (!ok) return;
  try {
    await api.block({ account_id: accountId });
    toast(`${name} is blocked.`, "success");
    await Promise.all([refreshBlocks(), refreshContacts()]);
  } catch (error) {
    toast(problemText(error), "error");
  }
}

function confirmDialog(title, text, okLabel) {
  const dialog = $("#dialog-confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function bindHome() {
  window.addEventListener("hashchange", route);
  document.addEventListener("click", (event) => {
    for (const menu of $$("details.menu[open]")) {
      if (!menu.contains(event.target)) menu.open = false;
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    for (const menu of $$("details.menu[open]")) {
      menu.open = false;
      $("summary", menu).focus();
    }
  });
  document.addEventListener("pointerdown", tones.unlock, { once: false, passive: true });
  document.addEventListener("keydown", tones.unlock, { passive: true });

  $("#my-handle").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(`@${state.me.handle}`);
      toast("Your handle is copied. Share it with people you want to hear from.", "success");
    } catch {
      toast(`Your handle is @${state.me.handle}`);
    }
  });

  // Call someone by handle
  const dial = $("#form-dial");
  clearFormErrorOnInput(dial);
  dial.addEventListener("submit", async (event) => {
    event.preventDefault();
    const media = event.submitter?.value === "video" ? "video" : "audio";
    const input = dial.elements.handle;
    const handle = typedHandle(input.value);
    if (!handle) return invalid(input, dial, "Type the handle of the person you want to call.");
    const hint = handleHint(handle);
    if (hint) return invalid(input, dial, `That isn’t a valid handle. ${hint}`);
    if (state.me && handle.toLowerCase() === state.me.handle) {
      return invalid(input, dial, "That’s you! Type someone else’s handle.");
    }
    const contact = state.contacts.find((c) => c.handle === handle.toLowerCase());
    const button = event.submitter || $("button[type=submit]", dial);
    const found = await busy(button, () => whomToCall(api, handle));
    if (found.notFound) return invalid(input, dial, problemText({ code: "not_found" }));
    startCall(found.target, media, contact ? contactName(contact) : found.name);
  });

  // Contacts
  const contactForm = $("#form-contact");
  const toggle = $("#contact-add-toggle");
  const openContactForm = (open) => {
    contactForm.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) contactForm.elements.handle.focus();
    else {
      contactForm.reset();
      formError(contactForm, null);
    }
  };
  toggle.addEventListener("click", () => openContactForm(contactForm.hidden));
  $("#contact-add-cancel").addEventListener("click", () => openContactForm(false));
  clearFormErrorOnInput(contactForm);
  contactForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = contactForm.elements.handle;
    const handle = typedHandle(input.value);
    if (!handle) return invalid(input, contactForm, "Type their exact handle.");
    const nickname = contactForm.elements.nickname.value.trim();
    await busy(event.submitter || $("button[type=submit]", contactForm), async () => {
      try {
        const contact = await api.addContact(handle, nickname || null);
        toast(`${contactName(contact)} added to your contacts.`, "success");
        openContactForm(false);
        await refreshContacts();
        renderMissed();
      } catch (error) {
        if (error.code === "not_found") invalid(input, contactForm, problemText(error));
        else formError(contactForm, problemText(error));
      }
    });
  });

  // Missed calls
  $("#missed-clear").addEventListener("click", async () => {
    try {
      await api.clearMissedCalls();
      state.missed = [];
      renderMissed();
    } catch (error) {
      toast(problemText(error), "error");
    }
  });

  // Profile
  const profile = $("#form-profile");
  clearFormErrorOnInput(profile);
  profile.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = {};
    const handle = typedHandle(profile.elements.handle.value);
    if (handle && handle.toLowerCase() !== state.me.handle) {
      const hint = handleHint(handle);
      if (hint) return invalid(profile.elements.handle, profile, hint);
      changes.handle = handle;
    }
    const name = profile.elements.display_name.value.trim();
    if (name !== (state.me.display_name || "")) changes.display_name = name || null;
    if (!Object.keys(changes).length) {
      toast("Nothing to save.");
      return;
    }
    await busy(event.submitter || $("button[type=submit]", profile), async () => {
      try {
        setMe(await api.updateMe(changes));
        toast("Profile saved.", "success");
      } catch (error) {
        const field = ["handle_taken", "invalid_handle", "handle_reserved"].includes(error.code);
        if (field) invalid(profile.elements.handle, profile, problemText(error));
        else formError(profile, problemText(error));
      }
    });
  });

  // Privacy: each change is saved at once
  const privacy = $("#form-privacy");
  let savedTimer = null;
  privacy.addEventListener("change", async (event) => {
    const input = event.target;
    const field = input.name;
    const value = input.type === "checkbox" ? input.checked : input.value;
    if (field in AUDIENCE_HELP) $(`#help-${field}`).textContent = AUDIENCE_HELP[field][value];
    formError(privacy, null);
    $("#privacy-saved").hidden = true;
    privacy.setAttribute("aria-busy", "true");
    try {
      setMe(await api.updateMe({ [field]: value }));
      clearTimeout(savedTimer);
      $("#privacy-saved").hidden = false;
      savedTimer = setTimeout(() => {
        $("#privacy-saved").hidden = true;
      }, 2500);
    } catch (error) {
      formError(privacy, problemText(error));
      setMe(state.me); // put the controls back as they are on the server
    } finally {
      privacy.removeAttribute("aria-busy");
    }
  });

  // Blocks
  const blockForm = $("#form-block");
  clearFormErrorOnInput(blockForm);
  blockForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = blockForm.elements.handle;
    const handle = typedHandle(input.value);
    if (!handle) return invalid(input, blockForm, "Type the handle to block.");
    await busy(event.submitter || $("button[type=submit]", blockForm), async () => {
      try {
        const block = await api.block({ handle });
        blockForm.reset();
        toast(`@${block.handle || handle} is blocked.`, "success");
        await Promise.all([refreshBlocks(), refreshContacts()]);
      } catch (error) {
        if (error.code === "not_found") invalid(input, blockForm, problemText(error));
        else formError(blockForm, problemText(error));
      }
    });
  });

  // Export and erase
  $("#export-btn").addEventListener("click", async (event) => {
    await busy(event.currentTarget, async () => {
      try {
        const text = await api.exportData();
        const day = new Date().toISOString().slice(0, 10);
        download(`callbook-export-${state.me.handle}-${day}.json`, text);
        toast("Your data is downloaded.", "success");
      } catch (error) {
        toast(problemText(error), "error");
      }
    });
  });

  const eraseDialog = $("#dialog-erase");
  const eraseForm = $("#form-erase");
  const eraseInput = $("#erase-confirm");
  const matches = () =>
    state.me && typedHandle(eraseInput.value).toLowerCase() === state.me.handle.toLowerCase();
  $("#erase-btn").addEventListener("click", () => {
    eraseForm.reset();
    formError(eraseForm, null);
    $("#erase-submit").disabled = true;
    eraseDialog.showModal();
    eraseInput.focus();
  });
  $("#erase-cancel").addEventListener("click", () => eraseDialog.close());
  eraseInput.addEventListener("input", () => {
    $("#erase-submit").disabled = !matches();
    formError(eraseForm, null);
  });
  eraseForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!matches()) return;
    await busy($("#erase-submit"), async () => {
      try {
        await api.erase();
      } catch (error) {
        formError(eraseForm, problemText(error));
        return;
      }
      eraseDialog.close();
      state.signingOut = true;
      endAllCalls();
      line.stop();
      api.forget();
      await keystore.clearIdentity().catch(() => {});
      await forgetHistory();
      state.identity = null;
      state.me = null;
      selectTab("signup");
      show("welcome");
      $("#dialog-erased").showModal();
    });
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

// --- the call WebSocket ------------------------------------------------------------------------

const STATUS_WORDS = {
  connecting: "Connecting…",
  online: "Online",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  replaced: "Open elsewhere",
};

function bindLine() {
  line.addEventListener("state", (event) => {
    const status = event.detail;
    $("#status-pill").dataset.state = status;
    $("#status-text").textContent = STATUS_WORDS[status] || status;
    $("#status-pill").title =
      status === "online"
        ? "Connected: you can receive calls"
        : status === "replaced"
          ? "Callbook is open in another tab"
          : "Not connected: calls can’t reach you right now";
    if (status === "replaced") {
      banner("Callbook is open in another tab or window, so calls ring there.", "Use here");
      endAllCalls("peer_lost");
    } else if (status === "online") {
      $("#banner").hidden = true;
    }
  });
  line.addEventListener("welcome", (event) => {
    if (event.detail.resumed) for (const call of state.calls.values()) call.resumed();
    if (state.rejoin !== undefined) takeOver(state.rejoin, event.detail.resumed);
    if (state.me) refreshMissed();
  });
  line.addEventListener("lost", () => {
    for (const call of [...state.calls.values()]) call.lost();
    for (const call of [...state.byRef.values()]) call.lost();
  });
  line.addEventListener("message", (event) => onServer(event.detail));
}

/** The call of the tab's previous page, now that the line knows whether the session resumed. */
function takeOver(kept, resumed) {
  state.rejoin = undefined;
  if (!kept) return;
  if (!resumed) {
    toast("Your call ended when the page reloaded.");
    return;
  }
  if (!kept.accepted) {
    if (kept.direction === "outgoing") line.send({ type: "hangup", call_id: kept.call_id });
    return; // a call ringing here rings again by itself (11.5.12)
  }
  if (kept.accepted.sfu) {
    // The SFU ends a relayed call once one side's media connection closes (protocol 11.16),
    // and a reload closes it: that call is over for both.
    toast("Your call ended when the page reloaded: a call relayed to hide an IP address can’t go on.");
    return;
  }
  const call = Call.rejoin({ api, line, kept });
  state.calls.set(call.callId, call);
  watch(call);
  state.current = call;
  openCallScreen();
}

function banner(text, action) {
  $("#banner-text").textContent = text;
  const button = $("#banner-action");
  button.hidden = !action;
  if (action) button.textContent = action;
  $("#banner").hidden = false;
}

function onServer(message) {
  switch (message.type) {
    case "ringing": {
      const call = state.byRef.get(message.ref);
      if (!call) {
        // A call this page no longer wants (e.g. from before a reload): cancel it.
        line.send({ type: "hangup", call_id: message.call_id });
        return;
      }
      state.byRef.delete(message.ref);
      state.calls.set(message.call_id, call);
      call.receive(message);
      return;
    }
    case "incoming":
      if (message.group) onGroupIncoming(message);
      else onIncoming(message);
      return;
    case "joined": {
      // A group call we host is named by its first ``joined`` (matched by the invite's ref).
      let call = state.calls.get(message.call_id);
      if (!call && message.ref && state.byRef.has(message.ref)) {
        call = state.byRef.get(message.ref);
        state.byRef.delete(message.ref);
        state.calls.set(message.call_id, call);
      }
      if (call) call.receive(message);
      else line.send({ type: "hangup", call_id: message.call_id });
      return;
    }
    case "error": {
      const call =
        (message.ref && state.byRef.get(message.ref)) ||
        (message.call_id && state.calls.get(message.call_id));
      if (call) {
        call.receive(message);
        return;
      }
      if (message.code !== "already_authenticated") toast(problemText(message), "error");
      return;
    }
    default: {
      const call = state.calls.get(message.call_id);
      if (call) call.receive(message);
      else if (message.type === "ended" && message.reason === "missed") refreshMissed();
    }
  }
}

// --- calls ---------------------------------------------------------------------------------------

function startCall(target, media, label) {
  if (state.current?.active || activeGroup()) {
    toast("You’re already in a call.", "error");
    return;
  }
  if (line.state !== "online") {
    toast("You’re not connected right now. Calls will work again once you’re back online.", "error");
    return;
  }
  const call = new Call({
    api,
    line,
    direction: "outgoing",
    media,
    peer: { account_id: target.account_id || null, handle: target.handle || null, display_name: null, label },
  });
  call.target = target;
  state.byRef.set(call.ref, call);
  watch(call);
  state.current = call;
  openCallScreen();
  call.dial(target);
}

function onIncoming(message) {
  const contact = contactFor(message.caller.account_id);
  const call = new Call({
    api,
    line,
    direction: "incoming",
    media: message.media,
    peer: { ...message.caller, label: contact ? contactName(contact) : null },
    callId: message.call_id,
    busy: message.busy,
  });
  call.target = { account_id: message.caller.account_id, handle: message.caller.handle };
  state.calls.set(message.call_id, call);
  watch(call);
  if (activeGroup()) {
    call.decline(true); // in a group call: the caller hears "busy"
    toast(`${call.label} called while you were in a group call.`);
    return;
  }
  if (state.current?.active) {
    if (state.waiting?.active) {
      call.decline(true); // already juggling two calls
      return;
    }
    state.waiting = call;
    renderWaiting();
    return;
  }
  state.current = call;
  openCallScreen();
}

function watch(call) {
  call.addEventListener("change", () => {
    if (call === state.current) renderCall();
    if (call === state.waiting) renderWaiting();
  });
  call.addEventListener("media", () => {
    if (call === state.current) attachMedia(call);
  });
  call.addEventListener("problem", (event) => {
    const { reason, error } = event.detail;
    toast(reason === "media" ? endText("media").text : problemText(error), "error");
  });
  call.addEventListener("ended", () => onCallEnded(call));
}

const QUIET_END = new Set(["declined_by_me", "gone"]);
const NO_AGAIN = new Set(["cancelled", "answered_elsewhere", "declined_elsewhere", "glare"]);
const SHORT_END = new Set(["hangup", "cancelled", "answered_elsewhere", "declined_elsewhere", "missed", "glare"]);

function onCallEnded(call) {
  recordCall(call);
  if (call.callId) state.calls.delete(call.callId);
  if (call.ref) state.byRef.delete(call.ref);
  if (call.endReason === "missed") refreshMissed();
  if (call === state.waiting) {
    state.waiting = null;
    renderWaiting();
    if (call.endReason === "missed") toast(`Missed call from ${call.label}.`);
    return;
  }
  if (call !== state.current) return;
  if (state.waiting?.active) {
    // Another call is ringing: it takes the screen at once; say how this one ended.
    if (!QUIET_END.has(call.endReason) && call.endReason !== "glare") {
      toast(`${endText(call.endReason, call.label).title} · ${call.label}`);
    }
    closeCallScreen();
    return;
  }
  if (QUIET_END.has(call.endReason)) {
    if (call.endReason === "gone") toast("That call has already ended.");
    closeCallScreen();
    return;
  }
  renderCall();
  const wait = SHORT_END.has(call.endReason) ? 2500 : 8000;
  clearTimeout(endedTimer);
  endedTimer = setTimeout(() => {
    if (state.current === call) closeCallScreen();
  }, wait);
}

function endAllCalls(reason = null) {
  for (const call of [...state.calls.values(), ...state.byRef.values()]) {
    if (reason) call.lost();
    else if (call.active) call.hangup();
  }
  state.calls.clear();
  state.byRef.clear();
  state.waiting = null;
  closeCallScreen();
}

// --- the call screen -----------------------------------------------------------------------------

let endedTimer = null;
let ticker = null;
let focusBefore = null;

function openCallScreen() {
  const screen = $("#screen-call");
  clearTimeout(endedTimer);
  if (screen.hidden) {
    focusBefore = document.activeElement;
    clearToasts();
  }
  screen.hidden = false;
  document.body.dataset.call = "open";
  $("#screen-home").inert = true;
  attachMedia(state.current);
  renderCall();
  renderWaiting();
  const call = state.current;
  const target = call.state === "incoming" ? $("#btn-answer-audio") : $("#call-name");
  requestAnimationFrame(() => target.focus());
  clearInterval(ticker);
  ticker = setInterval(() => {
    if (state.current) renderCall();
  }, 1000);
}

function closeCallScreen() {
  clearTimeout(endedTimer);
  clearInterval(ticker);
  tones.stop();
  const screen = $("#screen-call");
  const waiting = state.waiting;
  state.current = null;
  $("#remote-video").srcObject = null;
  $("#remote-screen").srcObject = null;
  $("#local-video").srcObject = null;
  $("#btn-sound").hidden = true;
  document.title = "Callbook";
  if (waiting?.active) {
    // The call on screen ended while another one rang: that one takes the screen.
    state.waiting = null;
    state.current = waiting;
    openCallScreen();
    return;
  }
  screen.hidden = true;
  delete document.body.dataset.call;
  $("#screen-home").inert = false;
  $("#call-announce").textContent = "";
  focusBack(focusBefore);
  focusBefore = null;
}

function attachMedia(call) {
  if (!call) return;
  const remote = $("#remote-video");
  if (remote.srcObject !== call.remoteStream) {
    remote.srcObject = call.remoteStream;
  }
  if (call.remoteStream.getTracks().length) {
    remote.play().then(
      () => {
        $("#btn-sound").hidden = true;
      },
      () => {
        $("#btn-sound").hidden = !call.active;
      },
    );
  }
  const local = $("#local-video");
  const stream = call.localStream;
  if (local.srcObject !== stream) local.srcObject = stream && stream.getVideoTracks().length ? stream : null;
  renderCall();
}

function hasRemoteVideo(call) {
  return call.remoteStream.getVideoTracks().some((track) => track.readyState === "live" && !track.muted);
}

function renderCall() {
  const call = state.current;
  if (!call) return;
  const screen = $("#screen-call");
  const s = call.state;
  screen.dataset.state = s;
  screen.dataset.direction = call.direction;
  const ended = s === "ended";
  const live = s === "connecting" || s === "connected" || s === "reconnecting";
  const video = !ended && live && hasRemoteVideo(call) && showsPeerVideo(call);
  screen.dataset.video = video ? "on" : "off";
  paintCallStage(call, !ended && live); // their shared screen, large (screenshare.js)

  const name = call.label;
  $("#call-name").textContent = name;
  const handle = call.peer?.handle ? `@${call.peer.handle}` : "";
  $("#call-handle").textContent = handle && handle !== name ? handle : "";
  paintAvatar($("#call-avatar"), name, call.peer?.account_id || name);

  const kindIcon = call.media === "video" ? "video" : "phone";
  let kind;
  if (call.direction === "incoming" && (s === "incoming" || s === "answering")) {
    kind = `${call.busy ? "Call waiting · " : ""}Incoming ${call.media === "video" ? "video" : "audio"} call`;
  } else {
    kind = call.media === "video" ? "Video call" : "Audio call";
  }
  $("#call-kind").replaceChildren(icon(kindIcon), h("span", {}, kind));

  let status = "";
  let note = "";
  switch (s) {
    case "dialing":
      status = "Calling…";
      break;
    case "ringing":
      status = "Ringing…";
      break;
    case "incoming":
      status = "";
      break;
    case "answering":
    case "connecting":
      status = call.throughRelay ? "Connecting through relay…" : "Connecting…";
      break;
    case "connected":
      status = call.peerReconnecting ? "Reconnecting…" : formatDuration(call.duration());
      break;
    case "reconnecting":
      status = "Reconnecting…";
      break;
    case "ended": {
      const text = endText(call.endReason, name, call.endedBySelf ? "self" : "peer");
      status = text.title;
      note = text.text;
      if (call.endReason === "error") {
        status = "Couldn’t place the call";
        note = callErrorText(call.endError);
      }
      if (call.connectedAt) {
        status = `${status} · ${formatDuration(call.endedAt - call.connectedAt)}`;
      }
      break;
    }
    default:
  }
  if (!ended && call.peerReconnecting) note = `${name}’s connection dropped. Waiting for them to come back…`;
  if (!ended && line.state === "reconnecting") note = "Your connection dropped. Reconnecting…";
  $("#call-status").textContent = status;
  // Screen readers hear each change of state once, not every tick of the clock.
  const spoken = [
    s === "incoming" ? `${kind} from ${name}` : s === "connected" ? `Connected with ${name}` : status,
    live ? peerStateText(call) : "",
    note,
  ]
    .filter(Boolean)
    .join(". ");
  if ($("#call-announce").dataset.said !== `${s}|${spoken}`) {
    $("#call-announce").dataset.said = `${s}|${spoken}`;
    $("#call-announce").textContent = spoken;
  }
  paintPeerState(call, live);
  $("#call-note").textContent = note;
  $("#call-note").hidden = !note;
  paintSecurity(
    "call",
    securityOf({ live, connected: s === "connected", e2ee: call.sfu ? call.e2ee : null }),
  );

  $("#controls-incoming").hidden = !(s === "incoming" || s === "answering");
  $("#controls-outgoing").hidden = !(s === "dialing" || s === "ringing");
  $("#controls-incall").hidden = !live;
  $("#controls-ended").hidden = !ended;

  const isVideo = call.media === "video";
  $("#answer-video-wrap").hidden = !isVideo;
  $("#lbl-answer-audio").textContent = isVideo ? "Audio only" : "Answer";
  $("#btn-answer-audio").setAttribute("aria-label", isVideo ? "Answer with audio only" : "Answer");
  $("#btn-answer-video").setAttribute("aria-label", "Answer with video");
  $("#btn-answer-audio").disabled = s === "answering";
  $("#btn-answer-video").disabled = s === "answering";
  $("#btn-decline").setAttribute("aria-label", "Decline");
  $("#btn-cancel").setAttribute("aria-label", "Cancel call");
  $("#btn-hangup").setAttribute("aria-label", "End call");

  paintToggle($("#btn-mute"), $("#lbl-mute"), { ...MUTE, pressed: call.muted });
  $("#camera-wrap").hidden = !call.sendsVideo;
  paintToggle($("#btn-camera"), $("#lbl-camera"), { ...CAMERA_OFF, pressed: call.cameraOff });
  paintScreenButton($("#btn-screen"), $("#lbl-screen"), call);

  const local = $("#local-video");
  local.hidden = ended || !call.sendsVideo || !local.srcObject;
  screen.dataset.preview = !local.hidden && !live ? "on" : "off";
  local.classList.toggle("is-off", call.cameraOff);

  const again = ended && call.target && !NO_AGAIN.has(call.endReason);
  $("#again-wrap").hidden = !again;
  $("#lbl-again").textContent = call.direction === "outgoing" ? "Call again" : "Call back";
  $("#report-wrap").hidden = !(ended && call.peer?.handle);

  // Sounds and the tab title follow the state.
  if (s === "incoming" && !call.busy) tones.start("ring");
  else if (s === "ringing") tones.start("ringback");
  else tones.stop();
  document.title =
    s === "incoming"
      ? `Incoming call · ${name}`
      : live
        ? `${status ? `${status} · ` : ""}${name}`
        : ended
          ? "Callbook"
          : `Calling ${name}…`;
}

function renderWaiting() {
  const call = state.waiting;
  const box = $("#call-waiting");
  if (!call?.active) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  $("#waiting-name").textContent = `${call.label} ${call.media === "video" ? "(video)" : ""}`.trim();
  paintAvatar($("#waiting-avatar"), call.label, call.peer?.account_id);
}

function bindCallScreen() {
  $("#btn-answer-audio").addEventListener("click", () => {
    tones.unlock();
    state.current?.answer(false);
  });
  $("#btn-answer-video").addEventListener("click", () => {
    tones.unlock();
    state.current?.answer(true);
  });
  $("#btn-decline").addEventListener("click", () => state.current?.decline(false));
  $("#btn-cancel").addEventListener("click", () => state.current?.hangup());
  $("#btn-hangup").addEventListener("click", () => state.current?.hangup());
  $("#btn-mute").addEventListener("click", () => state.current?.toggleMute());
  $("#btn-camera").addEventListener("click", () => state.current?.toggleCamera());
  bindScreenButton($("#btn-screen"), () => state.current);
  $("#btn-close").addEventListener("click", () => closeCallScreen());
  $("#btn-report").addEventListener("click", () => {
    const call = state.current;
    if (call) openReport({ handle: call.peer?.handle, name: call.label, callId: call.callId });
  });
  // Someone reaching for a button on the end-of-call screen keeps it open.
  $("#controls-ended").addEventListener("focusin", () => clearTimeout(endedTimer));
  $("#btn-again").addEventListener("click", () => {
    const call = state.current;
    if (!call?.target) return;
    closeCallScreen();
    startCall(call.target, call.media, call.peer?.label || null);
  });
  $("#btn-sound").addEventListener("click", () => {
    $("#remote-video").play().catch(() => {});
    $("#btn-sound").hidden = true;
  });
  $("#waiting-decline").addEventListener("click", () => state.waiting?.decline(true));
  $("#waiting-answer").addEventListener("click", () => {
    const next = state.waiting;
    const previous = state.current;
    if (!next?.active) return;
    state.waiting = null;
    state.current = next;
    if (previous?.active) previous.hangup();
    openCallScreen();
    next.answer(next.media === "video");
  });
  // Wherever focus is (after a hang-up it may be nowhere), Escape closes the end-of-call screen.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || $("#screen-call").hidden) return;
    if (state.current?.state === "ended") closeCallScreen();
  });
}

boot();
