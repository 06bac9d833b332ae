// Who the host of a group call invited, and where each stands (docs/protocol.md 11.15):
// "Ringing…" until they join or the ring time is over, then "No answer"; "In the call" and
// "Left". The server says nothing per invitee, on purpose: someone the host may not ring must
// look exactly like someone who does not answer, and a decline looks like no answer too. So
// this is worked out here, from the handles the host typed, ``participants`` and the clock.
// The words are the app's, the bookkeeping the SDK's (sdk/invitees.js). Also the host's
// "Add people" form, which rings more people into the running call.

import { $, h, typedHandle } from "./ui.js";

const WORDS = {
  ringing: "Ringing…",
  no_answer: "No answer",
  in_call: "In the call",
  left: "Left",
};

/** Paint the host's list of invitees and its "Add people" form (hidden for everyone else). */
export function paintRoster(call, nameOf = (handle) => `@${handle}`) {
  const box = $("#group-roster");
  const host = call.direction === "outgoing" && call.state === "joined";
  box.hidden = !host;
  if (!host) return;
  const list = $("#group-invitees");
  const items = call.invitees.states(Date.now()).map(({ handle, state }) =>
    h(
      "li.invitee",
      { dataset: { state, handle: handle.toLowerCase() } },
      h("span.invitee-name", {}, nameOf(handle)),
      h("span.invitee-state", {}, WORDS[state]),
    ),
  );
  const said = items.map((item) => `${item.dataset.handle}:${item.dataset.state}`).join(" ");
  if (list.dataset.said !== said) {
    list.dataset.said = said;
    list.replaceChildren(...items);
  }
}

/** Wire the "Add people" form: ``current()`` is the group call on screen. */
export function bindRoster(current, onError) {
  const form = $("#group-add");
  const input = $("#group-add-handles");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const handles = input.value.split(/[\s,;]+/).map(typedHandle).filter(Boolean);
    if (!handles.length) {
      onError("Type one or more handles, like @sam.");
      input.focus();
      return;
    }
    current()?.add(handles);
    input.value = "";
  });
}
