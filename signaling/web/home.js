// The home screen's calls view: who you are, dialling by handle, contacts (call, report,
// block, remove) and missed calls; and the router between it and settings.

import { startCall } from "./calls.js";
import { api, state } from "./context.js";
import * as keystore from "./sdk/keystore.js";
import { whomToCall } from "./dialler.js";
import { knownName } from "./history.js";
import { reportMenuItem } from "./reports.js";
import { clearFormErrorOnInput, confirmDialog, formError, invalid } from "./screens.js";
import { paintSettings, refreshBlocks } from "./settings.js";
import { problemText } from "./text.js";
import * as tones from "./tones.js";
import {
  $,
  $$,
  avatar,
  busy,
  formatWhen,
  h,
  handleHint,
  icon,
  paintAvatar,
  toast,
  typedHandle,
} from "./ui.js";

function displayName(me) {
  return me.display_name || `@${me.handle}`;
}

export function setMe(me) {
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
  paintSettings(me);
}

export function route() {
  const view = location.hash === "#settings" ? "settings" : "calls";
  for (const name of ["calls", "settings"]) {
    $(`#view-${name}`).hidden = name !== view;
    const tab = $(`#nav-${name}`);
    if (name === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
}

export async function refreshLists() {
  await Promise.all([refreshContacts(), refreshBlocks(), refreshMissed()]);
}

export async function refreshContacts() {
  try {
    state.contacts = await api.contacts();
    renderContacts();
  } catch (error) {
    if (state.me) toast(problemText(error), "error");
  }
}

export async function refreshMissed() {
  try {
    state.missed = await api.missedCalls();
    renderMissed();
  } catch {
    // the list stays as it was; not worth interrupting anyone
  }
}

export function contactName(contact) {
  return contact.nickname || contact.display_name || (contact.handle ? `@${contact.handle}` : "Unknown");
}

/** What to call a person card: your nickname for them, their display name, or their handle. */
export function personName(person) {
  const contact = person?.account_id ? contactFor(person.account_id) : null;
  if (contact) return contactName(contact);
  return person?.display_name || (person?.handle ? `@${person.handle}` : "Someone");
}

export function contactFor(accountId) {
  return state.contacts.find((c) => c.account_id === accountId) || null;
}

export function renderContacts() {
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

export function renderMissed() {
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

export async function removeContact(contact) {
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

export async function blockAccount(accountId, name) {
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

export function bindHome() {
  window.addEventListener("hashchange", route);
  bindMenus();
  bindDial();
  bindContactForm();
  bindMissed();
}

/** Open "more" menus close on a click elsewhere and on Escape; any gesture unlocks sounds. */
function bindMenus() {
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
}

/** Call someone by handle: an unknown handle is said at once (the same "no" for every kind). */
function bindDial() {
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
}

function bindContactForm() {
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
}

function bindMissed() {
  $("#missed-clear").addEventListener("click", async () => {
    try {
      await api.clearMissedCalls();
      state.missed = [];
      renderMissed();
    } catch (error) {
      toast(problemText(error), "error");
    }
  });
}
