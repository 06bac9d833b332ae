// The settings view: profile, privacy (saved as each choice changes), the hide-my-IP note,
// blocked people, export and erase.

import { erased } from "./account.js";
import { refreshContacts, setMe } from "./home.js";
import { api, state } from "./context.js";
import { relayNote } from "./relaynote.js";
import { clearFormErrorOnInput, formError, invalid } from "./screens.js";
import { AUDIENCE_HELP, problemText } from "./text.js";
import { $, avatar, busy, download, h, handleHint, icon, setIcon, toast, typedHandle } from "./ui.js";

/** The settings view's forms as ``me`` (GET /v1/me) says. */
export function paintSettings(me) {
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
  renderPrivacyFacts(me);
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

function renderPrivacyFacts(me) {
  const fact = (iconName, term, value) =>
    h("div.fact", {}, h("span.fact-icon", {}, icon(iconName)), h("div", {}, h("dt", {}, term), h("dd", {}, value)));
  $("#privacy-facts").replaceChildren(
    fact("at", "Who can find you", AUDIENCE_WORDS[me.discoverable]),
    fact("phone", "Who can call you", AUDIENCE_WORDS[me.who_can_call]),
    fact(RELAY_FACTS[me.relay_calls][0], "Your IP address in calls", RELAY_FACTS[me.relay_calls][1]),
  );
}

export async function refreshBlocks() {
  try {
    state.blocks = await api.blocks();
    renderBlocks();
  } catch (error) {
    if (state.me) toast(problemText(error), "error");
  }
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

export function bindSettings() {
  bindProfile();
  bindPrivacy();
  bindBlocks();
  bindErase();
}

function bindProfile() {
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

}

/** Privacy: each change is saved at once. */
function bindPrivacy() {
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

}

function bindBlocks() {
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

}

/** Export and erase. */
function bindErase() {
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
      await erased();
    });
  });
}
