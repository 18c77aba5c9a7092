// The console's core: login, the authenticated fetch, the push stream, and
// the actions (try a tool, start and stop jobs, reload). Rendering is in
// panels.js, charts in charts.js. No dependencies, no build step.
//
// The token lives in `token` below and nowhere else: not in a URL, not in a
// cookie, not in storage. Reloading the page forgets it.

import * as panels from "./panels.js";

let token = null;
let session = null; // GET /ui/api/session
let streamAbort = null; // aborts the open push stream
let tools = [];

const $ = (id) => document.getElementById(id);

function headers(extra = {}) {
  const h = { ...extra };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

// fetch() with the token; a 401 means the token stopped working: log out.
async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers(options.headers), cache: "no-store" });
  if (res.status === 401 && session) logout("The gateway no longer accepts this token.");
  return res;
}

async function json(res) {
  try {
    return await res.json();
  } catch {
    return { error: { message: `HTTP ${res.status}` } };
  }
}

async function login(candidate) {
  token = candidate;
  const res = await fetch("/ui/api/session", { headers: headers(), cache: "no-store" });
  if (res.status === 401) {
    token = null;
    return false;
  }
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  session = await res.json();
  start();
  return true;
}

function logout(message = "") {
  token = null;
  session = null;
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  panels.clear();
  $("app").hidden = true;
  $("logout").hidden = true;
  $("reload").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  setLive(false, "offline");
  $("token").focus();
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("version").textContent = `v${session.version}`;
  $("who").hidden = !session.auth;
  $("who").textContent = session.client ? `${session.client}${session.admin ? " (admin)" : ""}` : "";
  $("logout").hidden = !session.auth;
  $("reload").hidden = false;
  $("reload").disabled = !session.features.reload;
  $("reload").title = session.features.reload ? "POST /admin/reload" : "needs an admin token and a config file";
  panels.setFeatures(session.features);
  loadTools();
  if (session.features.audit) loadAudit();
  openStream();
}

function setLive(on, label) {
  const el = $("live");
  el.textContent = label;
  el.className = on ? "live on" : "live off";
}

// --- the push stream: SSE framing over fetch(), so the token goes in a header
async function openStream() {
  let delay = 500;
  const controller = new AbortController();
  streamAbort = controller;
  while (!controller.signal.aborted) {
    try {
      const res = await api("/ui/api/events", { signal: controller.signal });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setLive(true, "live");
      delay = 500;
      await readEvents(res.body, controller.signal);
    } catch (e) {
      if (controller.signal.aborted) return;
      console.debug("console stream:", e);
    }
    if (controller.signal.aborted) return;
    setLive(false, "reconnecting");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) dispatch(name, JSON.parse(data.join("\n")));
    }
  }
}

let lastGeneration = null;
function dispatch(name, data) {
  switch (name) {
    case "state":
      panels.renderState(data);
      // A reload changed what is mounted: the tool list changed with it.
      if (lastGeneration !== null && data.status.generation !== lastGeneration) loadTools();
      lastGeneration = data.status.generation;
      break;
    case "audit":
      panels.addAudit(data);
      break;
    case "bus":
      panels.addBus(data);
      break;
    case "lagged":
      console.warn(`console: the ${data.feed} feed skipped ${data.missed} item(s)`);
      break;
    default:
      break;
  }
}

// --- tools and try-it
async function loadTools() {
  const res = await api("/ui/api/tools");
  if (!res.ok) return;
  tools = (await res.json()).tools;
  panels.renderTools(tools, $("tool-search").value);
}

function skeleton(schema) {
  const out = {};
  const props = (schema && schema.properties) || {};
  for (const name of (schema && schema.required) || []) {
    const type = props[name] && props[name].type;
    out[name] = { string: "", number: 0, integer: 0, boolean: false, array: [], object: {} }[type] ?? null;
  }
  return out;
}

function chooseTool(name) {
  const tool = tools.find((t) => t.name === name);
  if (!tool) return;
  $("try-form").hidden = false;
  $("try-name").textContent = tool.name;
  $("try-description").textContent = tool.description || "";
  $("try-args").value = JSON.stringify(skeleton(tool.input_schema), null, 2);
  $("try-result").hidden = true;
}

async function execute(command, params) {
  const res = await api("/api/v1/execute", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ command, params }),
  });
  return { ok: res.ok, status: res.status, body: await json(res) };
}

function parseArgs(text) {
  try {
    const v = JSON.parse(text || "{}");
    if (v === null || typeof v !== "object" || Array.isArray(v)) return { error: "arguments must be a JSON object" };
    return { value: v };
  } catch (e) {
    return { error: `arguments are not valid JSON: ${e.message}` };
  }
}

async function runTool(event) {
  event.preventDefault();
  const name = $("try-name").textContent;
  const args = parseArgs($("try-args").value);
  if (args.error) return panels.showResult({ ok: false, body: { error: { message: args.error } } });
  $("try-run").disabled = true;
  try {
    panels.showResult(await execute(name, args.value));
  } finally {
    $("try-run").disabled = false;
  }
}

// --- jobs
async function startJob(event) {
  event.preventDefault();
  const args = parseArgs($("job-args").value);
  if (args.error) return ($("job-error").textContent = args.error);
  const r = await execute("queue", {
    action: "add_job",
    job_id: $("job-id").value.trim(),
    params: { tool: $("job-tool").value.trim(), arguments: args.value, start: true },
  });
  $("job-error").textContent = r.ok ? "" : (r.body.error && r.body.error.message) || `HTTP ${r.status}`;
  if (r.ok) $("job-id").value = `job-${Date.now().toString(36)}`;
}

async function stopJob(id) {
  const r = await execute("queue", { action: "stop_job", job_id: id });
  $("job-error").textContent = r.ok ? "" : (r.body.error && r.body.error.message) || `HTTP ${r.status}`;
}

// --- audit: the query for the filters, then live entries that match them
function auditFilters() {
  const f = {};
  for (const k of ["tool", "client", "backend", "status", "text"]) {
    const v = $(`audit-${k}`).value.trim();
    if (v) f[k] = v;
  }
  return f;
}

let auditQuery = 0;
async function loadAudit() {
  const filters = auditFilters();
  const mine = ++auditQuery;
  const q = new URLSearchParams({ ...filters, limit: "100" });
  const res = await api(`/api/v1/logs?${q}`);
  if (mine !== auditQuery) return; // a newer filter won
  const body = await json(res);
  panels.setAudit(filters, res.ok ? body.entries : [], res.ok ? "" : body.error);
}

// --- reload
async function reload() {
  $("reload").disabled = true;
  try {
    const res = await api("/admin/reload", { method: "POST" });
    panels.showReload(res.status, await json(res));
  } finally {
    $("reload").disabled = !(session && session.features.reload);
  }
}

function debounce(fn, ms) {
  let t;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

async function boot() {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("token");
    const candidate = input.value.trim();
    input.value = "";
    $("login-error").textContent = "";
    try {
      if (!(await login(candidate))) $("login-error").textContent = "Token refused: the gateway does not know it.";
    } catch (err) {
      $("login-error").textContent = `Cannot reach the gateway: ${err.message}`;
    }
  });
  $("logout").addEventListener("click", () => logout());
  $("reload").addEventListener("click", reload);
  $("reload-close").addEventListener("click", () => ($("reload-result").hidden = true));
  $("tool-search").addEventListener("input", () => panels.renderTools(tools, $("tool-search").value));
  $("tool-list").addEventListener("click", (e) => {
    const item = e.target.closest("[data-tool]");
    if (item) chooseTool(item.dataset.tool);
  });
  $("try-form").addEventListener("submit", runTool);
  $("job-form").addEventListener("submit", startJob);
  $("job-id").value = `job-${Date.now().toString(36)}`;
  $("job-rows").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-stop]");
    if (b) stopJob(b.dataset.stop);
  });
  $("audit-filter").addEventListener("input", debounce(loadAudit, 250));
  $("audit-filter").addEventListener("submit", (e) => e.preventDefault());
  $("bus-min").addEventListener("change", () => panels.renderBus());
  // Without [auth] the gateway answers without a token: no login needed.
  try {
    if (!(await login(null))) logout();
  } catch (err) {
    logout(`Cannot reach the gateway: ${err.message}`);
  }
}

boot();
