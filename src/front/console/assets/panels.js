// Rendering of each panel. Every value from the gateway goes into the page
// as text (textContent), never as markup: a tool description or an audit
// message cannot inject anything.

import { lineChart } from "./charts.js";

const $ = (id) => document.getElementById(id);
const MAX_AUDIT = 200;
const MAX_BUS = 200;
const PRIORITIES = { 10: "low", 20: "normal", 30: "high", 40: "urgent", 50: "critical" };

let audit = { filters: {}, entries: [] };
let bus = [];

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0));
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

export function clear() {
  for (const id of ["backend-rows", "session-rows", "job-rows", "audit-rows", "bus-list", "tool-list"]) {
    $(id).replaceChildren();
  }
  audit = { filters: {}, entries: [] };
  bus = [];
  $("try-form").hidden = true;
  $("reload-result").hidden = true;
  $("last-reload").textContent = "";
}

export function setFeatures(f) {
  $("jobs-off").hidden = f.jobs;
  $("job-form").hidden = !f.jobs;
  $("audit-off").hidden = f.audit;
  $("audit-filter").hidden = !f.audit;
  $("bus-off").hidden = f.bus;
}

export function renderState(state) {
  const s = state.status;
  $("ready").textContent = s.ready ? "ready" : "starting";
  renderBackends(s.backends, state.history);
  renderSessions(s);
  if (state.jobs !== null) renderJobs(state.jobs);
  renderLastReload(s.last_reload);
}

// Admins see the last reload, whoever triggered it (file watcher, SIGHUP, button).
function renderLastReload(r) {
  const out = $("last-reload");
  if (!r) {
    out.textContent = "";
    return;
  }
  const when = `last reload ${clock(r.at)} (${r.trigger})`;
  if (!r.ok) {
    out.textContent = `${when}: refused, ${r.errors.length} error(s)`;
    return;
  }
  const parts = ["added", "removed", "changed"]
    .filter((k) => r.report[k].length)
    .map((k) => `${k} ${r.report[k].join(", ")}`);
  out.textContent = `${when}: ${parts.length ? parts.join("; ") : "no backend changed"}`;
}

function renderBackends(backends, history) {
  const rows = Object.entries(backends).map(([name, b]) => {
    const calls = el("canvas", { class: "chart", width: "160", height: "36" });
    const latency = el("canvas", { class: "chart", width: "160", height: "36" });
    const h = history[name];
    if (h) {
      lineChart(calls, [{ values: h.calls_per_s, color: "#4aa3df" }], { unit: "/s" });
      lineChart(latency, [
        { values: h.p50_ms, color: "#5cb85c" },
        { values: h.p99_ms, color: "#e0a030" },
      ], { unit: " ms" });
    }
    const lastError = b.last_error ? `${b.last_error} (${clock(b.last_error_at)})` : "";
    return el("tr", { data: { backend: name, state: b.state } },
      el("td", { class: "name" }, name),
      el("td", {}, el("span", { class: `state ${b.state}`, title: b.reason || "" }, b.state)),
      el("td", {}, b.transport),
      el("td", { class: "num" }, b.pid ?? "–"),
      el("td", { class: "num" }, `${b.tools} / ${b.prompts} / ${b.resources}`),
      el("td", { class: "num restarts" }, String(b.restarts ?? 0)),
      el("td", { class: "error-text" }, lastError),
      el("td", { class: "num" }, ms(b.p50_ms)),
      el("td", { class: "num" }, ms(b.p99_ms)),
      el("td", { class: "num" }, (b.calls_per_s ?? 0).toFixed(1)),
      el("td", {}, calls),
      el("td", {}, latency),
    );
  });
  $("backend-rows").replaceChildren(...rows);
}

function renderSessions(s) {
  $("session-count").textContent = `${s.session_count}${s.sessions_truncated ? " (first 100 shown)" : ""}`;
  const rows = s.sessions.map((x) =>
    el("tr", {},
      el("td", { class: "id" }, String(x.id)),
      el("td", {}, x.client),
      el("td", {}, x.protocol_version || "…"),
      el("td", { title: x.since }, clock(x.since)),
      el("td", { class: "num" }, String(x.in_flight)),
    ));
  $("session-rows").replaceChildren(...rows);
}

function renderJobs(jobs) {
  if (!Array.isArray(jobs)) {
    $("job-error").textContent = jobs && jobs.error ? jobs.error : "";
    return;
  }
  const rows = jobs.map((j) => {
    const p = j.progress;
    const fraction = p && p.total ? Math.min(1, p.progress / p.total) : j.state === "completed" ? 1 : 0;
    const bar = el("div", { class: "bar" }, el("div", { class: "fill" }));
    bar.firstChild.style.width = `${(fraction * 100).toFixed(1)}%`;
    const label = p ? `${p.progress}${p.total ? ` / ${p.total}` : ""}${p.message ? ` ${p.message}` : ""}` : "";
    const live = ["pending", "queued", "running"].includes(j.state);
    return el("tr", { data: { job: j.id, state: j.state } },
      el("td", { class: "name" }, j.id),
      el("td", {}, j.tool),
      el("td", {}, el("span", { class: `state ${j.state}`, title: j.error || "" }, j.state)),
      el("td", { class: "progress" }, bar, el("span", { class: "muted" }, label)),
      el("td", {}, live ? el("button", { type: "button", class: "small", data: { stop: j.id } }, "Stop") : ""),
    );
  });
  $("job-rows").replaceChildren(...rows);
}

// --- tools
export function renderTools(tools, search) {
  const q = (search || "").toLowerCase();
  const shown = tools.filter((t) => !q || t.name.toLowerCase().includes(q) || (t.description || "").toLowerCase().includes(q));
  $("tool-count").textContent = q ? `${shown.length} of ${tools.length}` : String(tools.length);
  $("tool-list").replaceChildren(...shown.map((t) =>
    el("li", { data: { tool: t.name }, tabindex: "0" },
      el("code", {}, t.name), " ", el("span", { class: "muted" }, t.description || ""))));
  $("tool-names").replaceChildren(...tools.map((t) => el("option", { value: t.name })));
}

export function showResult(r) {
  const out = $("try-result");
  out.hidden = false;
  const body = r.body || {};
  if (r.ok && Array.isArray(body.content)) {
    const text = body.content.map((c) => (c.type === "text" ? c.text : JSON.stringify(c))).join("\n");
    out.className = body.isError ? "result error" : "result ok";
    out.textContent = `${body.isError ? "tool error" : "ok"}\n${text}`;
  } else {
    out.className = "result error";
    out.textContent = body.error ? `${body.error.kind || "error"}: ${body.error.message}` : JSON.stringify(body, null, 2);
  }
}

// --- audit
function matches(filters, e) {
  const x = e.extra_data || {};
  if (filters.tool && e.tool_name !== filters.tool) return false;
  if (filters.client && x.client_id !== filters.client) return false;
  if (filters.backend && x.backend !== filters.backend) return false;
  if (filters.status && e.status !== filters.status) return false;
  if (filters.text) {
    const t = filters.text.toLowerCase();
    const hay = [e.message, e.output_summary, e.error_message].filter(Boolean).join("\n").toLowerCase();
    if (!hay.includes(t)) return false;
  }
  return true;
}

export function setAudit(filters, entries, error) {
  audit = { filters, entries: entries.slice(0, MAX_AUDIT) };
  $("audit-off").hidden = !error;
  if (error) $("audit-off").textContent = error;
  renderAudit();
}

export function addAudit(entry) {
  if (!matches(audit.filters, entry)) return;
  audit.entries.unshift(entry);
  audit.entries.length = Math.min(audit.entries.length, MAX_AUDIT);
  renderAudit();
}

function renderAudit() {
  $("audit-rows").replaceChildren(...audit.entries.map((e) => {
    const x = e.extra_data || {};
    return el("tr", { class: `level-${e.level}`, data: { correlation: e.correlation_id } },
      el("td", { title: e.timestamp }, clock(e.timestamp)),
      el("td", {}, e.level),
      el("td", {}, el("span", { class: `status ${e.status || ""}` }, e.status || "")),
      el("td", {}, x.client_id || ""),
      el("td", { class: "what", title: e.error_message || e.output_summary || "" }, e.message),
      el("td", { class: "num" }, e.duration_ms === null || e.duration_ms === undefined ? "" : e.duration_ms.toFixed(1)),
    );
  }));
}

// --- bus
export function addBus(m) {
  bus.unshift(m);
  bus.length = Math.min(bus.length, MAX_BUS);
  renderBus();
}

export function renderBus() {
  const min = Number($("bus-min").value);
  const counts = {};
  for (const m of bus) counts[m.priority] = (counts[m.priority] || 0) + 1;
  $("bus-counts").replaceChildren(...Object.values(PRIORITIES).map((p) =>
    el("span", { class: `prio ${p}` }, `${p} ${counts[p] || 0}`)));
  $("bus-list").replaceChildren(...bus.filter((m) => m.level >= min).map((m) => {
    const who = m.sender && m.sender.kind === "client" ? `client ${m.sender.client_id}` : "gateway";
    return el("li", { class: `prio-${m.priority}`, data: { id: String(m.id) } },
      el("span", { class: `prio ${m.priority}` }, m.priority),
      " ", el("span", { class: "muted" }, `${clock(m.sent_at)} from ${who}`),
      " ", m.message);
  }));
}

// --- reload
export function showReload(status, body) {
  const box = $("reload-body");
  $("reload-result").hidden = false;
  if (status === 200 && body.ok) {
    const r = body.report;
    const line = (label, names, cls) =>
      el("li", { class: cls }, `${label}: `, names.length ? names.join(", ") : "none");
    box.replaceChildren(el("p", { class: "ok" }, "Applied."), el("ul", { class: "diff" },
      line("added", r.added, "added"),
      line("removed", r.removed, "removed"),
      line("changed", r.changed, "changed"),
      el("li", { class: "muted" }, `unchanged: ${r.unchanged.length}`),
      ...(r.refused.length ? [line("refused (needs a restart)", r.refused, "error-text")] : []),
    ));
  } else {
    const errors = body.errors || [body.error ? body.error.message || String(body.error) : `HTTP ${status}`];
    box.replaceChildren(el("p", { class: "error" }, "Refused; the running config is unchanged."),
      el("ul", { class: "errors" }, ...errors.map((e) => el("li", {}, el("code", {}, e)))));
  }
}
