// callgate operator page: plain JavaScript, no build step, no dependencies.
// The admin key is kept in sessionStorage (this tab only) and sent as an
// Authorization header, never in a URL. Live updates come from GET
// /v1/admin/stream (Server-Sent Events read with fetch, as EventSource cannot send
// a header): each "change" event reloads what the page shows.
"use strict";

const API = new URL("../v1/admin/", location.href).pathname;
const STORED = "callgate.adminKey";
let key = sessionStorage.getItem(STORED) || "";
const $ = (sel) => document.querySelector(sel);

// -- DOM and formatting helpers ----------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const badge = (status) => h("span", { class: `badge ${status || "none"}` }, status || "–");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const ms = (v) => (v == null ? "–" : `${Math.round(v)} ms`);
const json = (v) => h("pre", { class: "json" }, JSON.stringify(v, null, 2));
// A call is opened by its record key (a later call under a reused id has its own); shown as the runtime's id.
const callLink = (key, label) => h("a", { href: `#/call/${encodeURIComponent(key)}` }, label || key);

function span(a, b) {
  const s = Math.max(0, Math.round(((b ? new Date(b) : new Date()) - new Date(a)) / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}

function table(cls, head, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { class: cls }, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows));
}

function section(title, ...body) {
  return h("section", {}, h("h2", {}, title), body);
}

// -- the API ---------------------------------------------------------------------------

class AuthError extends Error {}

function headers(extra) {
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, method = "GET") {
  const r = await fetch(API + path, { method, headers: headers({ Accept: "application/json" }), cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  const message = (body.error && body.error.message) || `HTTP ${r.status}`;
  if (r.status === 401 || r.status === 403) throw new AuthError(message);
  if (!r.ok) throw new Error(message);
  return body;
}

function showError(message) {
  $("#error").textContent = message;
  $("#error").hidden = !message;
}

function failed(e) {
  if (e instanceof AuthError) showLogin(`The key was refused: ${e.message}`);
  else showError(e.message);
}

async function act(button, path) {
  button.disabled = true;
  try {
    await api(path, "POST");
    refresh();
  } catch (e) {
    button.disabled = false;
    failed(e);
  }
}

const retryButton = (path, label = "Retry") => h("button", { type: "button", class: "retry", onclick: (ev) => act(ev.target, path) }, label);

// -- live updates: SSE over fetch ---------------------------------------------------

let live = null;

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf = (buf + value).replace(/\r\n?/g, "\n");
    for (let i; (i = buf.indexOf("\n\n")) >= 0; buf = buf.slice(i + 2)) {
      let type = "message";
      const data = [];
      for (const line of buf.slice(0, i).split("\n")) {
        const m = /^([^:]+): ?(.*)$/.exec(line);
        if (m && m[1] === "event") type = m[2];
        else if (m && m[1] === "data") data.push(m[2]);
      }
      if (data.length) onEvent(type, data.join("\n"));
    }
  }
}

function setLive(on) {
  $("#live").textContent = on ? "live" : "reconnecting";
  $("#live").className = `live ${on ? "on" : "off"}`;
}

function startLive() {
  if (live) live.abort();
  const ctl = (live = new AbortController());
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch(API + "stream", { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal, cache: "no-store" });
        if (r.status === 401 || r.status === 403) return showLogin("The key was refused");
        if (r.ok) {
          setLive(true);
          await readEvents(r.body, (type) => type === "change" && refresh());
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      setLive(false);
      await new Promise((done) => setTimeout(done, 2000));
    }
  })();
}

// -- views: each has a fixed head, load() for its data and render(data) for its body ---

let view = null;
let loading = false;
let again = false;
let shown = "";

async function refresh() {
  if (loading) return void (again = true);
  loading = true;
  try {
    do {
      again = false;
      const v = view;
      const data = await v.load();
      if (v !== view) {
        again = true;
        continue;
      }
      const text = JSON.stringify(data);
      if (text !== shown) $("#body").replaceChildren(v.render(data));
      shown = text;
    } while (again);
    showError("");
  } catch (e) {
    failed(e);
  } finally {
    loading = false;
  }
}

const filters = { status: "", end_reason: "", tag: "", since: "" };
const seen = { end_reason: new Set(), tag: new Set() };

function callsView() {
  const input = (name, label) =>
    h("label", {}, label, h("input", { name, value: filters[name], list: `${name}-list`, placeholder: "any", oninput: debounce((ev) => setFilter(name, ev.target.value), 300) }), h("datalist", { id: `${name}-list` }));
  const select = (name, label, options) =>
    h("label", {}, label, h("select", { name, onchange: (ev) => setFilter(name, ev.target.value) }, options.map(([v, t]) => h("option", { value: v, selected: v === filters[name] }, t))));
  const head = h("form", { class: "filters", onsubmit: (ev) => ev.preventDefault() },
    select("status", "Status", [["", "any"], ["active", "active"], ["ended", "ended"]]),
    input("end_reason", "End reason"),
    input("tag", "Outcome tag"),
    select("since", "Started", [["", "any time"], ["15m", "last 15 min"], ["1h", "last hour"], ["24h", "last 24 h"], ["7d", "last 7 days"]]));
  const load = async () => {
    const [list, health] = await Promise.all([api(`calls?${new URLSearchParams(Object.entries(filters).filter(([, v]) => v))}`), upstreamHealth()]);
    return { ...list, upstreams: health };
  };
  return { title: "Calls", head, load, render: renderCalls };
}

// GET /healthz (no key): each upstream of the pool, ok or cooling with the seconds left.
async function upstreamHealth() {
  try {
    const r = await fetch(new URL("../healthz", location.href).pathname, { cache: "no-store" });
    return (await r.json()).upstreams || {};
  } catch (e) {
    return {};
  }
}

function renderUpstreams(upstreams) {
  const items = Object.entries(upstreams || {}).map(([name, u]) =>
    h("span", { class: `upstream ${u.state}`, "data-upstream": name }, h("strong", {}, name), " ", badge(u.state),
      u.state === "cooling" ? ` ${Math.ceil(u.cooling_s)} s left` : "", u.in_flight ? ` · ${u.in_flight} in flight` : ""));
  return items.length ? h("p", { class: "upstreams" }, "Upstreams: ", items) : null;
}

function setFilter(name, value) {
  filters[name] = value.trim();
  refresh();
}

function debounce(fn, wait) {
  let t;
  return (...args) => (clearTimeout(t), (t = setTimeout(() => fn(...args), wait)));
}

function renderCalls({ calls, upstreams }) {
  for (const c of calls) {
    if (c.end_reason) seen.end_reason.add(c.end_reason);
    c.outcome_tags.forEach((t) => seen.tag.add(t));
  }
  for (const name of ["end_reason", "tag"]) {
    const list = document.getElementById(`${name}-list`);
    if (list) list.replaceChildren(...[...seen[name]].sort().map((v) => h("option", { value: v })));
  }
  const rows = calls.map((c) =>
    h("tr", { class: `call ${c.status}`, "data-call": c.key },
      h("td", {}, callLink(c.key, c.generation > 1 ? `${c.id} (#${c.generation})` : c.id)),
      h("td", {}, badge(c.status)),
      h("td", {}, when(c.started_at)),
      h("td", {}, c.status === "active" ? `${span(c.started_at)} so far` : span(c.started_at, c.ended_at)),
      h("td", { class: "num turns" }, c.turns),
      h("td", {}, c.end_reason || "–"),
      h("td", {}, c.outcome_tags.map((t) => h("span", { class: "tag" }, t))),
      h("td", {}, c.end_function ? badge(c.end_function) : "–"),
      h("td", {}, c.caller_number || "–")));
  const head = ["Call", "Status", "Started", "Duration", "Turns", "End reason", "Outcome", "End function", "Caller"];
  return h("div", {}, renderUpstreams(upstreams), table("calls", head, rows, "No calls match."));
}

function callView(id) {
  return { title: `Call ${id}`, head: null, load: () => api(`calls/${encodeURIComponent(id)}`), render: renderCall };
}

function highlighted(text, commands) {
  const out = [];
  let rest = text || "";
  for (const cmd of commands) {
    const at = cmd.raw ? rest.indexOf(cmd.raw) : -1;
    if (at < 0) continue;
    out.push(rest.slice(0, at), h("mark", { class: `cmd ${cmd.accepted ? "" : "rejected"}`, title: cmd.accepted ? cmd.function : cmd.reason }, cmd.raw));
    rest = rest.slice(at + cmd.raw.length);
  }
  out.push(rest);
  const unseen = commands.filter((c) => !c.raw || !(text || "").includes(c.raw));
  return [h("div", { class: "text" }, out), unseen.map((c) => h("div", { class: "toolcmd" }, h("mark", { class: "cmd" }, `${c.function}(${JSON.stringify(c.args)})`)))];
}

function renderTurn(t, i) {
  return h("tr", { class: `turn ${t.status}`, "data-turn": i + 1 },
    h("td", { class: "num" }, i + 1),
    h("td", { class: "said" }, t.user_text || "–"),
    h("td", { class: "wrote" }, highlighted(t.raw_text, t.commands)),
    h("td", { class: "spoken" }, t.spoken_text),
    h("td", { class: "num" }, ms(t.ttft_ms)),
    h("td", { class: "num" }, ms(t.duration_ms)),
    h("td", { class: "attempts small" }, (t.attempts || []).map((a) => h("div", { class: `attempt ${a.outcome}` }, `${a.upstream} ${a.outcome}`, a.first_token_ms != null ? ` ${ms(a.first_token_ms)}` : ""))),
    h("td", {}, badge(t.status), t.error ? h("div", { class: "error small" }, t.error) : null));
}

function eventDetail(e) {
  if (e.type === "hangup") return [h("span", { class: "label" }, "closing words "), h("q", { class: "closing" }, e.closing_text)];
  if (e.type === "transfer") return [`to ${e.callee} `, e.closing_text ? h("q", { class: "closing" }, e.closing_text) : null];
  return e.reason || "";
}

function renderEvent(e, deliveries) {
  const d = deliveries[e.id];
  return h("tr", { class: `event ${e.type.replace(".", "-")}`, "data-type": e.type },
    h("td", { class: "num" }, e.seq),
    h("td", {}, h("strong", {}, e.type)),
    h("td", {}, e.source),
    h("td", {}, eventDetail(e)),
    h("td", {}, d ? [badge(d.status), ` ${d.attempts} ${d.attempts === 1 ? "try" : "tries"} `, d.last_error ? h("div", { class: "error small" }, d.last_error) : null] : "–"),
    h("td", {}, d && d.status === "failed" ? retryButton(`deliveries/${encodeURIComponent(d.event_id)}/retry`) : null));
}

function renderStep(j) {
  const retriable = ["failed", "blocked"].includes(j.status);
  return h("tr", { class: `step ${j.status}`, "data-step": j.step },
    h("td", {}, h("strong", {}, j.step)),
    h("td", {}, j.kind),
    h("td", { class: "status" }, badge(j.status)),
    h("td", { class: "num" }, j.attempts),
    h("td", { class: "num" }, j.response_code || "–"),
    h("td", { class: "error small" }, j.last_error || ""),
    h("td", {}, j.output == null ? "–" : h("details", {}, h("summary", {}, "output"), json(j.output))),
    h("td", {}, retriable ? retryButton(`jobs/${j.id}/retry`) : null));
}

function renderCall(c) {
  const deliveries = Object.fromEntries((c.control_deliveries || []).map((d) => [d.event_id, d]));
  const ef = c.end_function;
  return h("div", { class: "call-page" },
    h("h1", {}, `Call ${c.id}${c.generation > 1 ? ` (#${c.generation})` : ""} `, badge(c.status)),
    h("dl", { class: "facts" },
      h("dt", {}, "Started"), h("dd", {}, when(c.started_at)),
      h("dt", {}, "Ended"), h("dd", {}, when(c.ended_at)),
      h("dt", {}, "End reason"), h("dd", { class: "end-reason" }, c.end_reason ? `${c.end_reason} (${c.end_source})` : "–"),
      h("dt", {}, "Outcome"), h("dd", {}, c.outcome_tags.length ? c.outcome_tags.map((t) => h("span", { class: "tag" }, t)) : "–"),
      h("dt", {}, "Profile"), h("dd", {}, c.profile || "–"),
      h("dt", {}, "Tokens"), h("dd", { class: "usage" }, c.usage ? `${c.usage.prompt_tokens} in (${c.usage.cached_tokens} cached), ${c.usage.completion_tokens} out` : "–"),
      h("dt", {}, "Cost"), h("dd", { class: "cost" }, c.cost_usd == null ? "–" : `$${c.cost_usd.toFixed(6)}`)),
    h("p", {}, h("a", { class: "button", href: `#/sandbox/${encodeURIComponent(c.key)}` }, "Try the end function in the sandbox")),
    section("Timeline", table("timeline", ["#", "Caller said", "Model wrote", "Spoken", "TTFT", "Duration", "Upstreams", "Status"], c.turns.map(renderTurn), "No turns yet.")),
    section("Control events", table("events", ["Seq", "Type", "Source", "Detail", "Delivery", ""], c.events.map((e) => renderEvent(e, deliveries)), "No control events.")),
    section(["End function ", ef ? badge(ef.status) : null],
      ef ? table("steps", ["Step", "Kind", "Status", "Tries", "HTTP", "Last error", "Output", ""], ef.steps.map(renderStep), "No steps configured.") : h("p", { class: "empty" }, "Runs when the call ends.")),
    h("div", { class: "pair" }, section("State", json(c.state)), section("Metadata", json(c.metadata))));
}

function deadView() {
  const head = h("p", { class: "actions" }, retryButton("jobs/retry", "Retry every failed step"), " ", retryButton("deliveries/retry", "Retry every failed delivery"));
  return { title: "Dead letters", head, load: () => api("dead-letters"), render: renderDead };
}

function renderDead({ jobs, deliveries }) {
  const jobRows = jobs.map((j) =>
    h("tr", { class: `step ${j.status}`, "data-step": j.step },
      h("td", {}, callLink(j.call_key)), h("td", {}, j.step), h("td", {}, j.kind), h("td", {}, badge(j.status)),
      h("td", { class: "num" }, j.attempts), h("td", { class: "error small" }, j.last_error || ""),
      h("td", {}, retryButton(`jobs/${j.id}/retry`))));
  const deliveryRows = deliveries.map((d) =>
    h("tr", { class: "delivery" },
      h("td", {}, callLink(d.call_key)), h("td", { class: "num" }, d.seq), h("td", {}, d.type), h("td", { class: "num" }, d.attempts),
      h("td", { class: "error small" }, d.last_error || ""), h("td", {}, retryButton(`deliveries/${encodeURIComponent(d.event_id)}/retry`))));
  return h("div", {},
    section("Failed steps", table("dead-jobs", ["Call", "Step", "Kind", "Status", "Tries", "Last error", ""], jobRows, "No failed steps.")),
    section("Failed control-event deliveries", table("dead-deliveries", ["Call", "Seq", "Event", "Tries", "Last error", ""], deliveryRows, "No failed deliveries.")));
}

const sandbox = { id: "", report: null, running: false, error: "" };

function sandboxView(id) {
  if (id && id !== sandbox.id) Object.assign(sandbox, { id, report: null, error: "" });
  const pick = h("select", { name: "call", onchange: (ev) => (sandbox.id = ev.target.value) }, h("option", { value: sandbox.id }, sandbox.id || "pick a call"));
  api("calls?limit=50").then(({ calls }) => {
    pick.replaceChildren(...calls.map((c) => h("option", { value: c.key, selected: c.key === sandbox.id }, `${c.key} (${c.status}, ${when(c.started_at)})`)));
    if (!sandbox.id && calls.length) sandbox.id = calls[0].key;
  }, failed);
  const head = h("form", { class: "filters", onsubmit: (ev) => (ev.preventDefault(), runSandbox()) },
    h("label", {}, "Recorded call", pick), h("button", { type: "submit" }, "Run the end function"),
    h("span", { class: "note" }, "Every step runs once; webhooks, SMS and LLM calls are recorded, not sent."));
  return { title: "Sandbox", head, load: async () => ({ ...sandbox }), render: renderSandbox };
}

async function runSandbox() {
  if (!sandbox.id || sandbox.running) return;
  Object.assign(sandbox, { running: true, report: null, error: "" });
  refresh();
  try {
    sandbox.report = await api(`calls/${encodeURIComponent(sandbox.id)}/sandbox`, "POST");
  } catch (e) {
    sandbox.error = e.message;
  }
  sandbox.running = false;
  refresh();
}

function renderEffect(e) {
  if (e.effect === "POST") return h("div", { class: "effect" }, h("strong", {}, `would POST ${e.url}`), json({ headers: e.headers, body: e.body }));
  if (e.effect === "append") return h("div", { class: "effect" }, h("strong", {}, `would append to ${e.path}`), json(e.record));
  return h("div", { class: "effect" }, `${e.effect}: ${e.model || ""} ${e.base_url || ""}`);
}

function renderSandbox(s) {
  if (s.running) return h("p", { class: "empty" }, `Running the steps for ${s.id}…`);
  if (s.error) return h("p", { class: "error" }, s.error);
  if (!s.report) return h("p", { class: "empty" }, "Pick a recorded call and run its end function. Nothing is sent.");
  return h("div", { class: "report" }, h("h2", {}, `End function for ${s.report.call_id} (nothing was sent)`),
    s.report.steps.map((st) => h("section", { class: `sandbox-step ${st.status}` },
      h("h3", {}, `${st.step} (${st.kind}) `, badge(st.status)), st.error ? h("p", { class: "error small" }, st.error) : null,
      st.effects.map(renderEffect), st.output == null ? null : [h("div", {}, "output"), json(st.output)])));
}

// -- routing and login --------------------------------------------------------------------

function route() {
  const [, name = "calls", arg] = (location.hash || "#/calls").match(/^#\/([^/]*)\/?(.*)$/) || [];
  const id = arg ? decodeURIComponent(arg) : "";
  view = name === "call" && id ? callView(id) : name === "dead" ? deadView() : name === "sandbox" ? sandboxView(id) : callsView();
  document.title = `${view.title} · callgate`;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.dataset.view === name));
  shown = "";
  $("#main").replaceChildren(...[view.head, h("div", { id: "body" })].filter(Boolean));
  refresh();
}

function showLogin(message) {
  if (live) live.abort();
  live = null;
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#key").focus();
}

function start() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  startLive();
  route();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  key = $("#key").value.trim();
  $("#key").value = "";
  try {
    await api("calls?limit=1");
  } catch (e) {
    key = "";
    return showLogin(e instanceof AuthError ? `That key was refused: ${e.message}` : e.message);
  }
  sessionStorage.setItem(STORED, key);
  start();
});

$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(STORED);
  key = "";
  showLogin("Logged out.");
});

window.addEventListener("hashchange", () => !$("#app").hidden && route());

// With no keys configured callgate is open: the page starts without asking.
api("calls?limit=1").then(start, (e) => showLogin(e instanceof AuthError ? (key ? "The stored key was refused." : "") : e.message));
