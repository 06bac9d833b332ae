// Reporting a person (docs/protocol.md §12.5) from a contact's menu or the end-of-call screen,
// and the notices in settings: operators' decisions on reports, with their statements of reasons,
// and suspensions. The server answers a report the same whoever the handle names, so the page
// can only say it was received; the decision arrives later as a notice.

import { problemText } from "./text.js";
import { $, busy, formatWhen, h, icon, toast } from "./ui.js";

let ctx = null; // {api, signedIn(), blocked()}: see bindReports
let subject = null; // {handle, name, callId} of the report being written

/** Open the report dialog about ``handle`` (``callId`` when it is about a call). */
export function openReport({ handle, name, callId = null }) {
  if (!handle) return;
  subject = { handle, name: name || `@${handle}`, callId };
  const form = $("#form-report");
  form.reset();
  showError(null);
  $("#report-name").textContent = subject.name;
  $("#report-block-name").textContent = subject.name;
  $("#dialog-report").showModal();
  $("input[name=category]", form).focus();
}

/** A button for a contact's "More" menu; ``close`` shuts the menu first. */
export function reportMenuItem(handle, name, close) {
  return h(
    "button.danger",
    {
      type: "button",
      disabled: !handle,
      onclick: () => {
        close();
        openReport({ handle, name });
      },
    },
    icon("alert"),
    "Report",
  );
}

function showError(text) {
  const box = $("#form-report .form-error");
  box.textContent = text || "";
  box.hidden = !text;
}

async function send(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const category = form.elements.category.value;
  if (!category) {
    showError("Choose what happened.");
    $("input[name=category]", form).focus();
    return;
  }
  const body = { handle: subject.handle, category, text: form.elements.text.value.trim() };
  if (subject.callId) body.call_id = subject.callId;
  const alsoBlock = form.elements.block.checked;
  await busy($("button[type=submit]", form), async () => {
    try {
      await ctx.api.request("POST", "/v1/reports", body);
    } catch (error) {
      showError(problemText(error));
      return;
    }
    let blocked = "";
    if (alsoBlock) {
      try {
        await ctx.api.request("POST", "/v1/blocks", { handle: subject.handle });
        blocked = ` ${subject.name} is blocked.`;
        ctx.blocked();
      } catch (error) {
        blocked = ` Blocking didn’t work: ${problemText(error)}`;
      }
    }
    $("#dialog-report").close();
    toast(`Report sent. Moderators decide it and tell you why under Settings → Notices.${blocked}`, "success");
  });
}

// --- notices -----------------------------------------------------------------------------------

const DECISIONS = {
  dismiss: "No action taken",
  warn: "A warning was given",
  suspend: "The account was suspended",
  ban_handle: "The account was suspended and its handle banned",
};

/** The headline of a notice, from whose side it is read. */
export function noticeTitle(notice) {
  if (notice.kind === "suspension") return "Your account is suspended";
  if (notice.kind === "unsuspension") return "Your account is no longer suspended";
  const decision = DECISIONS[notice.decision] || "Decided";
  return notice.role === "reported"
    ? `A report about you was decided: ${decision.toLowerCase()}`
    : `Your report was decided: ${decision.toLowerCase()}`;
}

export async function refreshNotices() {
  let notices;
  try {
    notices = (await ctx.api.request("GET", "/v1/me/notices")).notices;
  } catch {
    return; // shown again on the next visit to settings
  }
  const items = notices.map((notice) =>
    h(
      "li.notice",
      { dataset: { kind: notice.kind } },
      h("p.notice-title", {}, noticeTitle(notice)),
      h("p.notice-statement", {}, notice.statement),
      h("p.muted.small", {}, formatWhen(notice.at)),
    ),
  );
  $("#notices-list").replaceChildren(...items);
  $("#notices-empty").hidden = items.length > 0;
  $("#notices-count").textContent = items.length ? String(items.length) : "";
}

/** ``context``: {api, signedIn() → bool, blocked() after a report also blocked someone}. */
export function bindReports(context) {
  ctx = context;
  $("#form-report").addEventListener("submit", send);
  $("#form-report").addEventListener("input", () => showError(null));
  $("#report-cancel").addEventListener("click", () => $("#dialog-report").close());
  const refreshIfShown = () => {
    if (location.hash === "#settings" && ctx.signedIn()) refreshNotices();
  };
  window.addEventListener("hashchange", refreshIfShown);
  ctx.api.addEventListener("token", refreshIfShown);
}
