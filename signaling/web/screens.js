// Which screen is showing, and the small helpers every form uses: errors, invalid fields, and
// the confirmation dialog.

import { $, $$ } from "./ui.js";

const SCREENS = ["loading", "welcome", "code", "home"];

export function show(name) {
  for (const screen of SCREENS) $(`#screen-${screen}`).hidden = screen !== name;
  document.body.dataset.screen = name;
}

export function loadingMessage(text, retry = null) {
  show("loading");
  $("#loading-text").textContent = text;
  const button = $("#loading-retry");
  button.hidden = !retry;
  button.onclick = retry;
}

export function formError(form, message) {
  const box = $(".form-error", form);
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
}

export function clearFormErrorOnInput(form) {
  form.addEventListener("input", () => {
    formError(form, null);
    for (const input of $$("[aria-invalid]", form)) input.removeAttribute("aria-invalid");
  });
}

export function invalid(input, form, message) {
  input.setAttribute("aria-invalid", "true");
  formError(form, message);
  input.focus();
}

export function confirmDialog(title, text, okLabel) {
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
