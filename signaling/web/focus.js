// Where keyboard focus goes when a screen closes: back where it was before it opened, or, when
// that is gone (a re-rendered list) or was nowhere, to the dialler, else the page's heading.

const FALLBACKS = ["#dial-handle", "#hero-title", "main h1", "h1"];

function usable(element) {
  return (
    element instanceof HTMLElement &&
    element !== document.body &&
    document.contains(element) &&
    !element.disabled &&
    element.getClientRects().length > 0 &&
    !element.closest("[inert], [hidden]")
  );
}

export function focusBack(before) {
  const target = [before, ...FALLBACKS.map((selector) => document.querySelector(selector))].find(usable);
  if (!target) return;
  if (!target.matches("a[href], button, input, select, textarea, [tabindex]")) target.tabIndex = -1;
  target.focus();
}
