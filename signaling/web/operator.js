// The operator dashboard: live calls over server-sent events, nodes, reports and the audit log.
//
// The live stream is read with fetch() rather than EventSource, because EventSource cannot send
// an Authorization header and the token must never travel in a URL (logs, history, referrers).
// The token is kept in sessionStorage: it survives a reload of this tab and nothing else.

const TOKEN_KEY = "callbook.operator.token";
const $ = (selector) => document.querySelector(selector);
let stream = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json();
  if (!response.ok) throw Object.assign(new Error(data.detail || "failed"), { problem: data });
  return data;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// An inline SVG sparkline of one metric over the leg's recent samples.
function sparkline(values, color) {
  const width = 80, height = 20;
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark" });
  if (values.length < 2) return svg;
  const max = Math.max(...values, 1e-9), min = Math.min(...values, 0);
  const step = width / (values.length - 1);
  const points = values.map((v, i) =>
    `${(i * step).toFixed(1)},${(height - 1 - ((v - min) / (max - min || 1)) * (height - 2)).toFixed(1)}`);
  svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: color,
    "stroke-width": "1.5" }));
  return svg;
}

function fmt(value, digits = 0) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function time(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

function legCell(leg) {
  const rtt = leg.history.map((s) => s.rtt_ms);
  const kbps = leg.history.map((s) => s.bitrate_kbps);
  return el("div", { className: "leg" },
    el("span", { className: "mono", textContent: leg.participant }),
    el("span", { textContent: `${fmt(leg.rtt_ms)} · ${fmt(leg.jitter_ms, 1)} · ` +
      `${fmt(leg.loss === null ? null : leg.loss * 100, 1)}% · ${fmt(leg.bitrate_kbps)}` }),
    sparkline(rtt, "#2f6fde"), sparkline(kbps, "#1b8a4b"));
}

async function withReason(action, callId) {
  const reason = prompt(`Reason to ${action} call ${callId.slice(0, 8)} (10-500 characters)`);
  if (!reason) return null;
  return reason;
}

function renderCalls(calls) {
  const body = $("#calls tbody");
  body.replaceChildren(...calls.map((call) => {
    const end = el("button", { type: "button", textContent: "End" });
    end.onclick = async () => {
      const reason = await withReason("end", call.id);
      if (reason) await api("POST", `/v1/operator/calls/${call.id}/end`, { reason }).catch(alert);
    };
    const reveal = el("button", { type: "button", textContent: "Reveal" });
    reveal.onclick = async () => {
      const reason = await withReason("reveal the participants of", call.id);
      if (!reason) return;
      try {
        const who = await api("POST", `/v1/operator/calls/${call.id}/reveal`, { reason });
        renderRevealed(who);
        loadAudit();
      } catch (error) { alert(error.message); }
    };
    const row = el("tr", {},
      el("td", { className: "mono", textContent: call.id.slice(0, 12) }),
      el("td", { textContent: call.kind }),
      el("td", { textContent: call.state }),
      el("td", { textContent: `${Math.round(call.duration_s)} s` }),
      el("td", { className: "mono", textContent: call.node }),
      el("td", { className: "mono", textContent: `${call.participant_count}: ` +
        call.participants.join(", ") }),
      el("td", { textContent: call.relay }),
      el("td", {}, ...call.legs.map(legCell)),
      el("td", {}, reveal, end));
    row.dataset.callId = call.id;
    row.dataset.state = call.state;
    return row;
  }));
  $("#call-count").textContent = String(calls.length);
  $("#no-calls").hidden = calls.length > 0;
}

// The people behind a revealed call, with the actions that need their ids.
function renderRevealed(who) {
  const box = $("#revealed");
  box.hidden = false;
  box.replaceChildren(el("strong", { textContent: `Call ${who.call_id.slice(0, 12)}` }),
    ...who.participants.map((p) => {
      const act = (label, path) => {
        const button = el("button", { type: "button", textContent: label });
        button.onclick = async () => {
          const reason = prompt(`Reason to ${label.toLowerCase()} ${p.handle} (10-500 characters)`);
          if (!reason) return;
          try {
            await api("POST", path, { reason });
            loadAudit();
          } catch (error) { alert(error.message); }
        };
        return button;
      };
      const row = el("div", {}, el("span", { textContent:
        `${p.role}: ${p.handle ?? "(erased)"} · account ${p.account_id} · ${p.participant} ` }),
        act("Suspend", `/v1/operator/accounts/${p.account_id}/suspend`),
        act("Unsuspend", `/v1/operator/accounts/${p.account_id}/unsuspend`));
      if (p.device_id) {
        row.append(act("Disconnect", `/v1/operator/devices/${p.account_id}/${p.device_id}/disconnect`));
      }
      return row;
    }));
}

function renderNodes(nodes) {
  $("#nodes tbody").replaceChildren(...nodes.map((node) => el("tr", {},
    el("td", { className: "mono", textContent: node.id }),
    el("td", { textContent: node.version }),
    el("td", { textContent: String(node.connections) }),
    el("td", { textContent: String(node.active_calls) }),
    el("td", { textContent: new Date(node.started_at * 1000).toLocaleString() }),
    el("td", { textContent: time(node.last_heartbeat) }))));
}

async function loadReports() {
  const { reports } = await api("GET", "/v1/operator/reports");
  $("#reports tbody").replaceChildren(...reports.map((report) => {
    let decision;
    if (report.status === "decided") {
      decision = el("span", { textContent: `${report.decision}: ${report.statement}` });
    } else {
      const select = el("select", {}, ...["dismiss", "warn", "suspend", "ban_handle"].map(
        (d) => el("option", { value: d, textContent: d })));
      const statement = el("input", { placeholder: "statement of reasons (10+ chars)" });
      const go = el("button", { type: "button", textContent: "Decide" });
      go.onclick = async () => {
        try {
          await api("POST", `/v1/operator/reports/${report.id}/decide`,
            { decision: select.value, statement: statement.value });
          await Promise.all([loadReports(), loadAudit()]);
        } catch (error) { alert(error.message); }
      };
      decision = el("span", {}, select, statement, go);
    }
    const row = el("tr", {},
      el("td", { textContent: new Date(report.at * 1000).toLocaleString() }),
      el("td", { textContent: report.category }),
      el("td", { textContent: report.text }),
      el("td", { textContent: report.status }),
      el("td", { className: "mono", textContent: report.reported || "–" }),
      el("td", {}, decision));
    row.dataset.reportId = report.id;
    return row;
  }));
}

async function loadAudit() {
  const { entries } = await api("GET", "/v1/operator/audit?count=500");
  $("#audit tbody").replaceChildren(...entries.reverse().map((entry) => el("tr", {},
    el("td", { textContent: new Date(entry.at * 1000).toLocaleString() }),
    el("td", { textContent: entry.operator }),
    el("td", { textContent: entry.action }),
    el("td", { className: "mono", textContent: entry.target }),
    el("td", { textContent: entry.reason }))));
}

// Reads the text/event-stream body and hands each event's data to onEvent.
async function follow(onEvent) {
  const controller = new AbortController();
  stream = controller;
  const response = await fetch("/v1/operator/events", {
    headers: { Authorization: `Bearer ${token()}` }, signal: controller.signal,
  });
  if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

async function live() {
  let delay = 500;
  while (token()) {
    try {
      $("#status").textContent = "live";
      await follow((snapshot) => {
        renderCalls(snapshot.calls);
        renderNodes(snapshot.nodes);
        delay = 500;
      });
    } catch (error) {
      if (error.name === "AbortError") return;
    }
    $("#status").textContent = "reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

function showDashboard() {
  $("#signin").hidden = true;
  $("#dashboard").hidden = false;
  $("#signout").hidden = false;
  live();
  loadReports().catch(() => {});
  loadAudit().catch(() => {});
}

function showSignin(message = "") {
  if (stream) stream.abort();
  $("#dashboard").hidden = true;
  $("#signout").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = message;
  $("#status").textContent = "signed out";
}

$("#signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  try {
    await api("GET", "/v1/operator/nodes");
    showDashboard();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin(error.message);
  }
});
$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignin();
});
$("#reload-reports").addEventListener("click", () => loadReports());
$("#reload-audit").addEventListener("click", () => loadAudit());
setInterval(() => { if (token() && !$("#dashboard").hidden) loadAudit().catch(() => {}); }, 5000);

if (token()) showDashboard(); else showSignin();
