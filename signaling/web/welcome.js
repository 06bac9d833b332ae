// The welcome screen: sign up or sign in with a recovery code (a new device key either way,
// made by the SDK), then the recovery code, shown once.

import { client } from "./context.js";
import { clearFormErrorOnInput, formError, invalid, show } from "./screens.js";
import { problemText } from "./text.js";
import { $, browserName, busy, download, h, handleHint, toast, typedHandle } from "./ui.js";

let enterWith = null; // account.js's enter(identity), given to bindWelcome

export function selectTab(which) {
  for (const name of ["signup", "recover"]) {
    const tab = $(`#tab-${name}`);
    const selected = name === which;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`#form-${name}`).hidden = !selected;
  }
}

/** The welcome screen after this browser was signed out from elsewhere. */
export function showSignedOut(handle) {
  selectTab("recover");
  if (handle) $("#recover-handle").value = handle;
  formError(
    $("#form-recover"),
    `This browser is no longer signed in${handle ? ` to @${handle}` : ""}. Use your recovery code to sign in again.`,
  );
}

/** Wire the forms; ``enter(identity)`` opens the home screen once the code was seen. */
export function bindWelcome(enter) {
  enterWith = enter;
  bindTabs();
  bindSignup();
  bindRecover();
  bindCode();
}

function bindTabs() {
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
}

function bindSignup() {
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
        adopt(await client.signUp(handle, { displayName: displayName || null, deviceName: browserName() }));
      } catch (error) {
        const field = ["handle_taken", "invalid_handle", "handle_reserved"].includes(error.code);
        if (field) invalid(handleInput, signup, problemText(error));
        else formError(signup, problemText(error));
      }
    });
  });
}

function bindRecover() {
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
        const done = await client.recover(handle, code, {
          deviceName: browserName(),
          revokeOthers: recover.elements.revoke_other_devices.checked,
        });
        recover.reset();
        adopt(done);
      } catch (error) {
        formError(recover, problemText(error));
      }
    });
  });
}

/** A new enrolment (sign-up or recovery): the key is kept; show the new recovery code. */
function adopt(done) {
  if (!done.saved) {
    toast("This browser couldn’t save your key; you’ll need the recovery code next time.", "error");
  }
  showRecoveryCode(done.recoveryCode, done.account.handle, () => enterWith(done.identity));
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
