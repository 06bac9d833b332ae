// A toggle button has one name for what it does and says whether it is on only in aria-pressed:
// a screen reader reads "Mute microphone, toggle button, pressed", never "Unmute microphone,
// pressed" (a name that changes with the state says the opposite of the pressed state).

import { $, setIcon } from "./ui.js";

/** ``icons``: [when off, when on]; ``text``: the visible caption (part of ``name``). */
export function paintToggle(button, caption, { pressed, name, text, icons }) {
  button.setAttribute("aria-pressed", String(pressed));
  button.setAttribute("aria-label", name);
  setIcon($("svg", button), pressed ? icons[1] : icons[0]);
  caption.textContent = text;
}

export const MUTE = { name: "Mute microphone", text: "Mute", icons: ["mic", "mic-off"] };
export const CAMERA_OFF = { name: "Turn camera off", text: "Camera off", icons: ["video", "video-off"] };
