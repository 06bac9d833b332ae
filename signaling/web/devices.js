// The devices card in settings (docs/protocol.md §6.2) and signing out of this browser.
//
// Signing out revokes this browser's device on the server and deletes both its keys (the Ed25519
// device key and the X25519 media key) from IndexedDB: a device whose key is gone could never sign
// in again, so leaving it enrolled would only keep a dead entry in the list, count against the
// ten devices, and have callers keep sealing call keys to a media key nobody holds. If the server
// can't be reached the keys are deleted anyway, and the page says the device is still listed.

import { problemText } from "./text.js";
import { $, busy, h, icon, toast } from "./ui.js";

// {api, identity(), confirm(title, text, ok), leave(farewell)}: ``leave`` ends the calls, awaits
// ``farewell`` (which tells the server, and returns what to say) and then forgets this browser.
let ctx = null;
let devices = [];

const dayFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });

/** "today", "yesterday" or a date, for a server day ("2026-11-23", UTC). */
export function dayText(day, now = new Date()) {
  const today = now.toISOString().slice(0, 10);
  if (day === today) return "today";
  const yesterday = new Date(now.getTime() - 86400_000).toISOString().slice(0, 10);
  if (day === yesterday) return "yesterday";
  return dayFormat.format(new Date(`${day}T12:00:00Z`));
}

export function bindDevices(context) {
  ctx = context;
  $("#signout-btn").addEventListener("click", (event) => signOut(event.currentTarget));
  const refreshIfShown = () => {
    if (location.hash === "#settings" && ctx.identity()) refreshDevices();
  };
  window.addEventListener("hashchange", refreshIfShown);
  ctx.api.addEventListener("token", refreshIfShown);
}

export async function refreshDevices() {
  try {
    devices = (await ctx.api.request("GET", "/v1/devices")).devices;
  } catch (error) {
    if (ctx.identity()) showError(problemText(error));
    return;
  }
  showError("");
  render();
}

function showError(text) {
  $("#devices-error").textContent = text;
  $("#devices-error").hidden = !text;
}

function render() {
  const mine = ctx.identity()?.deviceId;
  const items = devices.map((device) => {
    const here = device.id === mine;
    return h(
      "li.item.device",
      { dataset: { deviceId: device.id } },
      h("span.device-icon", {}, icon(here ? "lock" : "key")),
      h(
        "div.item-main",
        {},
        h("span.item-title", {}, device.name, here ? h("span.tag", {}, "This browser") : null),
        h(
          "span.item-sub",
          {},
          `Added ${dayText(device.created_day)} · Last seen ${dayText(device.last_seen_day)}`,
        ),
      ),
      // This browser leaves by "Sign out" below the list, which says what that means.
      here
        ? null
        : h(
            "button.btn.btn-danger-soft.btn-small",
            {
              type: "button",
              "aria-label": `Revoke ${device.name}`,
              onclick: (event) => revoke(device, event.currentTarget),
            },
            "Revoke",
          ),
    );
  });
  $("#devices-list").replaceChildren(...items);
  $("#devices-count").textContent = items.length ? String(items.length) : "";
}

async function revoke(device, button) {
  const ok = await ctx.confirm(
    `Revoke ${device.name}?`,
    "It is signed out at once and can’t sign in again; any call it is in ends. To use it again, sign in there with your recovery code.",
    "Revoke",
  );
  if (!ok) return;
  await busy(button, async () => {
    try {
      await ctx.api.request("DELETE", `/v1/devices/${device.id}`);
      toast(`${device.name} is revoked.`, "success");
    } catch (error) {
      toast(problemText(error), "error");
    }
    await refreshDevices();
  });
}

async function signOut(button) {
  const identity = ctx.identity();
  if (!identity) return;
  const last = devices.length === 1 && devices[0].id === identity.deviceId;
  const ok = await ctx.confirm(
    "Sign out of this browser?",
    `This browser’s keys are deleted and it is removed from your devices. To use Callbook here again you’ll need your recovery code.${
      last ? " This is your only device: without the recovery code you can’t get back into your account." : ""
    }`,
    "Sign out",
  );
  if (!ok) return;
  await busy(button, () =>
    ctx.leave(async () => {
      devices = [];
      try {
        await ctx.api.request("DELETE", `/v1/devices/${identity.deviceId}`);
      } catch (error) {
        if (error.code !== "device_revoked" && error.code !== "unknown_device") {
          return "You’re signed out and this browser’s keys are deleted, but the server couldn’t be told: revoke this browser from another device.";
        }
      }
      return "You’re signed out. This browser’s keys are deleted.";
    }),
  );
}
