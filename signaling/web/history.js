// Call history on this device only: each call that ends (1:1 or group) is kept in this browser's IndexedDB
// (its own database, apart from the keys) and never sent anywhere; the server keeps only the
// missed calls it needs to tell you about (docs/protocol.md §11.12). Entries belong to the
// account signed in here; signing out or erasing the account deletes them all.

import { $, busy, formatDuration, formatWhen, h, icon, toast } from "./ui.js";

const DB_NAME = "callbook-history";
const STORE = "calls";
const KEEP = 200; // entries kept per account, newest first

// {owner() → account id or null, nameOf(entry) → a contact's name or null, confirm(title, text,
// ok), call(target, media, name), changed() after the entries change}
let ctx = null;
let entries = []; // newest first, for the account signed in

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const store = request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
      store.createIndex("owner", "owner");
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, work) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error("The browser's storage refused the write."));
    });
  } finally {
    db.close();
  }
}

/** How a call ended, as history tells it: "missed", "declined", "answered" or "unanswered". */
export function outcomeOf(call) {
  if (call.connectedAt) return "answered";
  if (call.direction === "incoming") {
    return call.endReason === "declined_by_me" ? "declined" : "missed";
  }
  return call.endReason === "declined" ? "declined" : "unanswered";
}

// Endings that are no call to remember: the same call taken or refused on another of my devices,
// or one that never reached anyone.
const NOT_A_CALL = new Set(["answered_elsewhere", "declined_elsewhere", "glare", "gone", "error", "media"]);

/** Keep a 1:1 call (call.js) that just ended. */
export function recordCall(call) {
  if (NOT_A_CALL.has(call.endReason) || !call.peer) return Promise.resolve();
  return keep({
    at: call.connectedAt || call.endedAt || Date.now(),
    direction: call.direction,
    media: call.media,
    outcome: outcomeOf(call),
    durationMs: call.connectedAt ? Math.max(0, (call.endedAt || Date.now()) - call.connectedAt) : 0,
    accountId: call.peer.account_id || null,
    handle: call.peer.handle || null,
    displayName: call.peer.display_name || null,
  });
}

/** Keep a group call (group.js) that just ended: an invitation names its host. */
export function recordGroupCall(call) {
  if (NOT_A_CALL.has(call.endReason)) return Promise.resolve();
  const joined = Boolean(call.joinedAt);
  const host = call.direction === "incoming" ? call.host : null;
  return keep({
    at: call.joinedAt || Date.now(),
    direction: call.direction,
    media: call.media,
    outcome: joined ? "answered" : outcomeOf({ direction: call.direction, endReason: call.endReason }),
    durationMs: joined ? Math.max(0, Date.now() - call.joinedAt) : 0,
    accountId: host?.account_id || null,
    handle: host?.handle || null,
    displayName: host?.display_name || null,
    group: true,
  });
}

async function keep(fields) {
  const owner = ctx?.owner();
  if (!owner) return;
  const entry = { owner, ...fields };
  try {
    await withStore("readwrite", (store) => store.add(entry));
  } catch {
    return; // storage refused (private window): no history, the call itself is unaffected
  }
  await loadHistory();
}

/** Read this account's entries (dropping the oldest beyond KEEP) and show them. */
export async function loadHistory() {
  const owner = ctx?.owner();
  if (!owner) return;
  try {
    const all = await withStore("readonly", (store) => store.index("owner").getAll(owner));
    all.sort((a, b) => b.at - a.at);
    const stale = all.slice(KEEP);
    if (stale.length) await withStore("readwrite", (store) => stale.forEach((e) => store.delete(e.id)));
    entries = all.slice(0, KEEP);
  } catch {
    entries = [];
  }
  render();
}

/** Delete every entry in this browser (sign-out, erase): the next person here sees none. */
export async function forgetHistory() {
  entries = [];
  render();
  await withStore("readwrite", (store) => store.clear()).catch(() => {});
}

/** The display name a past call with this account showed, if any (for the missed-call list). */
export function knownName(accountId) {
  return entries.find((e) => e.accountId === accountId && e.displayName)?.displayName ?? null;
}

const WORDS = {
  incoming: { answered: "Incoming", missed: "Missed", declined: "Declined" },
  outgoing: { answered: "Outgoing", unanswered: "No answer", declined: "Declined by them" },
};

function render() {
  const list = $("#history-list");
  if (!list) return;
  const items = entries.slice(0, 50).map((entry) => {
    const person = ctx.nameOf(entry) || entry.displayName || (entry.handle ? `@${entry.handle}` : null);
    const name = entry.group ? (person ? `Group call · ${person}` : "Group call") : person || "Someone";
    const what = WORDS[entry.direction][entry.outcome] || entry.outcome;
    const sub = [what, entry.durationMs ? formatDuration(entry.durationMs) : null, formatWhen(entry.at / 1000)];
    const missed = entry.outcome === "missed";
    const arrow = missed ? "phone-missed" : entry.media === "video" ? "video" : "phone";
    return h(
      `li.item.history-item${missed ? ".item-missed" : ""}`,
      { dataset: { outcome: entry.outcome, direction: entry.direction } },
      h(`span.history-icon${missed ? ".missed-icon" : ""}`, {}, icon(arrow)),
      h("div.item-main", {}, h("span.item-title", {}, name), h("span.item-sub", {}, sub.filter(Boolean).join(" · "))),
      !entry.group && (entry.accountId || entry.handle)
        ? h(
            "button.icon-btn.call",
            {
              type: "button",
              "aria-label": `Call ${name}`,
              title: "Call",
              onclick: () => ctx.call({ account_id: entry.accountId, handle: entry.handle }, entry.media, name),
            },
            icon("phone"),
          )
        : null,
    );
  });
  list.replaceChildren(...items);
  ctx.changed();
  $("#history-empty").hidden = items.length > 0;
  $("#history-clear").hidden = items.length === 0;
}

export function bindHistory(context) {
  ctx = context;
  $("#history-clear").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const ok = await ctx.confirm(
      "Clear your call history?",
      "It is kept only in this browser, so it is gone for good. Missed calls the server told you about stay in their own list.",
      "Clear",
    );
    if (!ok) return;
    await busy(button, async () => {
      await forgetHistory();
      toast("Call history cleared.", "success");
      $("#history-title").focus();
    });
  });
}
