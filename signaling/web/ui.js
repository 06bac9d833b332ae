// Small DOM helpers. People's names are always inserted as text, never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** h("button.btn", {type: "button", onclick}, "Call", icon("phone")) */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "class") {
      node.className = [node.className, value].filter(Boolean).join(" ");
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

/** An icon from the sprite in index.html; decorative unless given a label. */
export function icon(name, label = null) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("viewBox", "0 0 24 24");
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  } else {
    svg.setAttribute("aria-hidden", "true");
  }
  const use = document.createElementNS(SVG, "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

/** Set a <use> inside an existing icon. */
export function setIcon(svg, name) {
  svg.querySelector("use").setAttribute("href", `#i-${name}`);
}

// Pairs that keep white initials readable (WCAG AA for large text) in light and dark themes.
const AVATAR_COLOURS = [
  ["#818cf8", "#4f46e5"],
  ["#a78bfa", "#6d28d9"],
  ["#f472b6", "#be185d"],
  ["#fb7185", "#be123c"],
  ["#fb923c", "#c2410c"],
  ["#34d399", "#047857"],
  ["#2dd4bf", "#0f766e"],
  ["#38bdf8", "#0369a1"],
  ["#60a5fa", "#1d4ed8"],
  ["#c084fc", "#7e22ce"],
];

function colours(seed) {
  let hash = 0;
  for (const char of String(seed || "")) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return AVATAR_COLOURS[hash % AVATAR_COLOURS.length];
}

function paint(node, seed) {
  const [from, to] = colours(seed);
  node.style.setProperty("--avatar-from", from);
  node.style.setProperty("--avatar-to", to);
}

export function initials(name) {
  const clean = String(name || "?").replace(/^@/, "").trim();
  const words = clean.split(/[\s._]+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[1]] : [clean];
  return letters
    .map((word) => [...word][0] || "")
    .join("")
    .slice(0, 2)
    .toUpperCase();
}

/** A round avatar with initials on a colour derived from the account id. */
export function avatar(name, seed, size = "md") {
  const node = h(`span.avatar.avatar-${size}`, { "aria-hidden": "true" }, initials(name));
  paint(node, seed || name);
  return node;
}

export function paintAvatar(node, name, seed) {
  node.textContent = initials(name);
  paint(node, seed || name);
}

// --- toasts -----------------------------------------------------------------------------------

export function toast(message, kind = "info", { timeout = kind === "error" ? 7000 : 4000 } = {}) {
  const region = $("#toasts");
  while (region.children.length >= 3) region.firstElementChild.remove();
  const item = h(
    `div.toast.toast-${kind}`,
    { role: kind === "error" ? "alert" : "status" },
    icon(kind === "error" ? "alert" : kind === "success" ? "check" : "info"),
    h("span.toast-text", {}, message),
    h(
      "button.toast-close",
      { type: "button", "aria-label": "Dismiss", onclick: () => dismiss() },
      icon("x"),
    ),
  );
  region.append(item);
  requestAnimationFrame(() => item.classList.add("is-in"));
  let timer = null;
  function dismiss() {
    clearTimeout(timer);
    item.classList.remove("is-in");
    setTimeout(() => item.remove(), 200);
  }
  item.dismiss = dismiss;
  if (timeout) timer = setTimeout(dismiss, timeout);
  return dismiss;
}

/** Clear every notice, e.g. when a call takes the screen. */
export function clearToasts() {
  for (const item of $$(".toast", $("#toasts"))) item.dismiss?.();
}

// --- formatting -------------------------------------------------------------------------------

export function formatDuration(ms) {
  const total = Math.floor(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  hour: "numeric",
  minute: "2-digit",
});
const dateOnly = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** "just now", "5 minutes ago", "Today 14:02"-ish, "Mon 09:15", "Nov 3". */
export function formatWhen(epochSeconds) {
  const then = new Date(epochSeconds * 1000);
  const ago = (Date.now() - then.getTime()) / 1000;
  if (ago < 45) return "just now";
  if (ago < 3600) return relative.format(-Math.round(ago / 60), "minute");
  const today = new Date();
  if (then.toDateString() === today.toDateString()) return `Today, ${timeOfDay.format(then)}`;
  if (ago < 6 * 86400) return dayAndTime.format(then);
  return dateOnly.format(then);
}

/** A device name for this browser, e.g. "Chrome on Linux". */
export function browserName() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /Firefox\//.test(ua)
      ? "Firefox"
      : /Chrome\//.test(ua)
        ? "Chrome"
        : /Safari\//.test(ua)
          ? "Safari"
          : "Browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad/.test(ua)
      ? "iOS"
      : /Mac OS X/.test(ua)
        ? "macOS"
        : /Windows/.test(ua)
          ? "Windows"
          : /Linux/.test(ua)
            ? "Linux"
            : "the web";
  return `${browser} on ${os}`;
}

/** Rules 3–4 of the handle rules, for instant feedback; the server has the last word. */
export function handleHint(text) {
  const value = text.trim().replace(/^@/, "").normalize("NFKC").toLowerCase();
  if (!value) return null;
  if (value.length < 3) return "At least 3 characters.";
  if (value.length > 32) return "At most 32 characters.";
  if (!/^[a-z0-9_]+(\.[a-z0-9_]+)*$/.test(value)) {
    return "Use letters, numbers and _, with single dots between them.";
  }
  return null;
}

/** Turn what someone typed ("@Bob ") into what the server expects ("Bob"). */
export function typedHandle(text) {
  return text.trim().replace(/^@+/, "");
}

export function download(filename, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Disable a form's controls while a request runs; show a spinner on the submit button. */
export async function busy(button, work) {
  const form = button.form;
  button.classList.add("is-busy");
  button.setAttribute("aria-busy", "true");
  const controls = form ? [...form.elements] : [button];
  const before = controls.map((c) => c.disabled);
  for (const c of controls) c.disabled = true;
  try {
    return await work();
  } finally {
    controls.forEach((c, i) => {
      c.disabled = before[i];
    });
    button.classList.remove("is-busy");
    button.removeAttribute("aria-busy");
  }
}
