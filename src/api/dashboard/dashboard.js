// rfidgw dashboard: plain JavaScript, no framework, no build step. Every call sends the
// token as a bearer header; the live stream is read with fetch() for the same reason
// (EventSource cannot set headers, and a token in a URL would reach logs and history).
// Text from the API is always set with textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "rfidgw.token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: null,
  lastId: null,
  stream: null,
  alarms: new Map(),
  refreshTimer: null,
  view: "live",
};

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A time as RFC 3339 in the browser's local time with its offset (2026-12-02T07:15:03+01:00). */
function localTime(value) {
  if (value === null || value === undefined || value === "") return "–";
  const d = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const pad = (n, w = 2) => String(Math.abs(n)).padStart(w, "0");
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:` +
    `${pad(d.getMinutes())}:${pad(d.getSeconds())}${sign}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
}

/** The browser's UTC offset as `+01:00` (for the statistics' local days). */
function utcOffset() {
  const off = -new Date().getTimezoneOffset();
  const pad = (n) => String(Math.abs(n)).padStart(2, "0");
  return `${off >= 0 ? "+" : "-"}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
}

/** An AFI (or any byte) in hex as the config writes it (`07`, `C2`). */
function hexByte(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return value.toString(16).toUpperCase().padStart(2, "0");
  return String(value).replace(/^0x/i, "").toUpperCase();
}

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401) signOut("The token was not accepted; enter it again.");
  if (!response.ok) throw new ApiFailure(response.status, body);
  return body;
}

const canOperate = () => state.role === "operate" || state.role === "admin";

// ---------------------------------------------------------------- sign-in and views

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.role = null;
  if (state.stream) state.stream.abort();
  state.stream = null;
  $("signin-error").textContent = message || "";
  $("whoami").textContent = "";
  $("signout").hidden = true;
  $("health").textContent = "Not signed in";
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("signin").hidden = false;
  $("token").value = "";
  $("token").focus();
}

async function signIn(token) {
  state.token = token;
  try {
    const me = await api("/api/v1/auth/whoami");
    state.role = me.role;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("whoami").textContent = `${me.name} (${me.role})`;
    $("signout").hidden = false;
    $("signin").hidden = true;
    $("signin-error").textContent = "";
    showView(location.hash.slice(1) || "live", false);
    startStream();
  } catch (e) {
    if (e.status !== 401) signOut(`Could not reach the API: ${e.message}`);
  }
}

function showView(name, focus = true) {
  if (!["live", "stats", "together"].includes(name)) name = "live";
  state.view = name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!state.token) return;
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${name}`;
  if (focus) $("main").focus();
  if (name === "live") refreshLive();
  if (name === "stats") loadStats();
  if (name === "together") loadRecentItems();
}

// ---------------------------------------------------------------- live view

function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

function stateBadge(s) {
  const text = String(s && typeof s === "object" ? (s.state || JSON.stringify(s)) : s);
  const kind = /^(running|online|connected)/.test(text) ? "ok" : /fail|offline|stop|error/.test(text) ? "bad" : "warn";
  return badge(text, kind);
}

/** Names each cell after its column, for the stacked layout of narrow screens (CSS). */
function label(table, tr) {
  const names = [...table.tHead.rows[0].cells].map((c) => c.textContent);
  [...tr.cells].forEach((cell, i) => { if (cell.colSpan === 1 && names[i]) cell.dataset.label = names[i]; });
  return tr;
}

/**
 * Replaces a table's rows. A live refresh (every new event) must not take the keyboard
 * focus away from someone tabbing to a button: the focused button is found again in the
 * new rows by its data-alarm or data-gate and focused.
 */
function fill(tbody, rows) {
  const active = tbody.contains(document.activeElement) ? document.activeElement : null;
  const key = active && ["alarm", "gate"]
    .filter((k) => active.dataset[k] !== undefined)
    .map((k) => `[data-${k}="${CSS.escape(active.dataset[k])}"]`)[0];
  tbody.replaceChildren(...rows.map((tr) => label(tbody.parentElement, tr)));
  if (key) tbody.querySelector(key)?.focus();
}

function renderStatus(status) {
  const ils = (status.peers || []).map((p) => `${p.name}: ${p.state}`).join(", ");
  $("health").textContent = `${ils || "no library system"} · journal ${status.journal_events} events · up ${Math.round(status.uptime_s / 60)} min`;
  const st = status.stations || {};
  const rows = [];
  for (const [id, g] of Object.entries(st.gates || {})) {
    const silenced = g.silenced_until && Date.parse(g.silenced_until) > Date.now();
    const parts = [`${g.present} tag(s) in the gate`, `${g.alarms} alarm(s)`];
    if (g.people) parts.push(`${g.people.entered_total} in / ${g.people.left_total} out`);
    const cell = h("td", {}, silenced ? badge(`silenced until ${localTime(g.silenced_until)}`, "warn") : badge("armed", "ok"), " ", parts.join(" · "));
    if (canOperate()) {
      cell.append(h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "data-gate": id, onclick: () => silence(id, !silenced) },
          silenced ? `End silence of ${id}` : `Silence ${id}`)));
    }
    rows.push(h("tr", {}, h("th", { scope: "row" }, id), h("td", {}, "gate"), cell));
  }
  for (const [id, r] of Object.entries(st.returns || {})) {
    const parts = [`${r.returned} returned`];
    if (r.plan) parts.push(`plan ${r.plan}`);
    if (r.bins_full && r.bins_full.length) parts.push(`bins full: ${r.bins_full.join(", ")}`);
    if (r.jam) parts.push("sorter jammed");
    rows.push(h("tr", {}, h("th", { scope: "row" }, id), h("td", {}, "return"),
      h("td", {}, r.intake_open ? badge("intake open", "ok") : badge(`intake stopped: ${r.intake_stopped || ""}`, "bad"), " ", parts.join(" · "))));
  }
  for (const [id, s] of Object.entries(st.selfchecks || {})) {
    const text = s.session ? `session ${s.session}: ${s.borrowed} lent, ${s.failed} not` : "idle";
    rows.push(h("tr", {}, h("th", { scope: "row" }, id), h("td", {}, "self-check"),
      h("td", {}, s.session ? badge(s.offline ? "offline session" : "in session", s.offline ? "warn" : "ok") : badge("waiting", "ok"), " ", text, ` · ${s.sessions} session(s)`)));
  }
  fill($("stations").tBodies[0], rows);
  fill($("devices").tBodies[0], (status.devices || []).map((d) =>
    h("tr", {}, h("th", { scope: "row" }, d.id, h("div", { class: "muted" }, `${d.driver}${d.station ? " · " + d.station : ""}`)),
      h("td", {}, stateBadge(d.state), d.last_error ? h("div", { class: "muted" }, d.last_error) : null),
      h("td", { class: "time" }, localTime(d.last_frame ?? d.last_event)))));
  const c = status.circulation || {};
  $("n-queue").textContent = c.offline_queue ?? "–";
  $("n-work").textContent = c.worklist_open ?? "–";
  $("n-owed").textContent = c.owed_writes ?? "–";
}

function alarmRow(a, fresh) {
  const state = a.acknowledged
    ? h("td", {}, badge(`acknowledged by ${a.acknowledged_by}`, "ok"))
    : h("td", {}, badge("open", "bad"));
  if (!a.acknowledged && canOperate()) {
    state.append(h("div", { class: "actions" },
      h("button", { type: "button", "data-alarm": a.alarm_id, onclick: (ev) => acknowledge(a.alarm_id, ev.currentTarget) },
        `Acknowledge alarm ${a.item || a.uid || ""}`.trim())));
  }
  return h("tr", { class: fresh ? "new" : null, "data-alarm-row": a.alarm_id },
    h("td", { class: "time" }, localTime(a.time)),
    h("td", {}, a.station || ""), h("td", {}, a.item || h("span", { class: "muted" }, a.uid || "unreadable")),
    h("td", {}, a.title || h("span", { class: "muted", title: a.live ? "waiting for the library system" : "no title known" }, a.live ? "…" : "–")), h("td", {}, a.reason || ""), state);
}

function renderAlarms(fresh) {
  const list = [...state.alarms.values()].sort((x, y) => y.id - x.id).slice(0, 50);
  fill($("alarms").tBodies[0], list.map((a) => alarmRow(a, fresh && fresh.has(a.alarm_id))));
  $("alarms-empty").hidden = list.length > 0;
  const open = list.filter((a) => !a.acknowledged).length;
  $("alarms-open").textContent = open ? `(${open} open)` : "";
}

async function acknowledge(id, button) {
  button.disabled = true;
  try {
    await api(`/api/v1/alarms/${encodeURIComponent(id)}/ack`, { method: "POST" });
    const a = state.alarms.get(id);
    if (a) { a.acknowledged = true; a.acknowledged_by = $("whoami").textContent.split(" ")[0]; }
    renderAlarms();
    $("alarms-h").focus?.();
  } catch (e) {
    button.disabled = false;
    $("health").textContent = `Could not acknowledge: ${e.message}`;
  }
}

async function silence(gate, on) {
  try {
    await api(`/api/v1/stations/${encodeURIComponent(gate)}/silence`, { method: on ? "POST" : "DELETE" });
  } catch (e) {
    $("health").textContent = `Could not change the silence: ${e.message}`;
  }
  refreshLive();
}

async function refreshLive() {
  if (!state.token || state.view !== "live") return;
  try {
    const [status, alarms, queue, work, owed] = await Promise.all([
      api("/api/v1/status"), api("/api/v1/alarms?limit=50"), api("/api/v1/offline-queue?limit=10"),
      api("/api/v1/worklist?limit=10"), api("/api/v1/owed-writes?limit=10"),
    ]);
    renderStatus(status);
    const fresh = new Set();
    for (const a of alarms) {
      if (!state.alarms.has(a.alarm_id)) fresh.add(a.alarm_id);
      state.alarms.set(a.alarm_id, a);
    }
    renderAlarms(state.alarmsLoaded ? fresh : null);
    state.alarmsLoaded = true;
    const rows = [
      ...queue.map((q) => ["offline queue", q.item_id, `${q.kind} ${q.state}`, q.time]),
      ...work.map((w) => ["worklist", w.item_id || w.uid, `${w.kind}: ${w.reason}`, w.created]),
      ...owed.map((o) => ["owed write", o.item_id || o.uid, `${o.secure ? "secure" : "unsecure"}: ${o.reason}`, o.created]),
    ];
    fill($("work").tBodies[0], rows.length ? rows.map(([l, item, why, at]) =>
      h("tr", {}, h("td", {}, l), h("td", {}, item || ""), h("td", {}, why), h("td", { class: "time" }, localTime(at))))
      : [h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing left to do."))]);
  } catch (e) {
    if (e.status !== 401) $("health").textContent = `API: ${e.message}`;
  }
}

/** Refreshes the live view soon, at most every 2 s however fast events come. */
function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refreshLive(); }, 1500);
}

function afiOf(data) {
  if (!data) return null;
  return data.afi ?? data.tag?.afi ?? data.decoded?.afi ?? null;
}

/** Kinds that come many times a second; shown only when asked for. */
const CHATTY = new Set(["tag_arrived", "tag_departed", "inputs_changed"]);

function addEvent(ev) {
  const tbody = $("events").tBodies[0];
  if (!CHATTY.has(ev.kind) || $("chatty").checked) tbody.prepend(label($("events"), h("tr", { class: "new" },
    h("td", { class: "time" }, localTime(ev.time)), h("td", {}, ev.kind), h("td", {}, ev.station || ""),
    h("td", {}, ev.item || ""), h("td", {}, ev.uid || ""), h("td", {}, hexByte(afiOf(ev.data))),
    h("td", {}, ev.outcome || ev.reason || ""))));
  while (tbody.rows.length > 25) tbody.deleteRow(-1);
  if (ev.kind === "gate_alarm") {
    const a = { id: ev.id, alarm_id: ev.data.alarm_id, time: ev.time, station: ev.station, item: ev.item,
      uid: ev.uid, reason: ev.reason, title: null, acknowledged: false, live: true };
    if (a.alarm_id && !state.alarms.has(a.alarm_id)) {
      state.alarms.set(a.alarm_id, a);
      if (state.view === "live") renderAlarms(new Set([a.alarm_id]));
    }
  }
  if (state.view === "live") scheduleRefresh();
}

/** The live stream: Server-Sent Events read with fetch(), resumed with Last-Event-ID. */
async function startStream() {
  if (state.stream) state.stream.abort();
  const control = new AbortController();
  state.stream = control;
  if (state.lastId === null) {
    try {
      const page = await api("/api/v1/events?limit=25");
      for (const ev of page.events) addEvent(ev);
      state.lastId = page.next;
    } catch (e) { /* the stream below reports */ }
  }
  while (!control.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.lastId !== null) headers["Last-Event-ID"] = String(state.lastId);
      const response = await fetch("/api/v1/events/stream", { headers, signal: control.signal });
      if (response.status === 401) { signOut("The token was not accepted; enter it again."); return; }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      $("stream-state").textContent = "(live)";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let id = null; const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) id = line.slice(3).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (!data.length) continue; // a keep-alive comment
          if (id !== null) state.lastId = Number(id);
          try { addEvent(JSON.parse(data.join("\n"))); } catch (e) { /* not an event */ }
        }
      }
    } catch (e) {
      if (control.signal.aborted) return;
    }
    $("stream-state").textContent = "(reconnecting…)";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------------------------------------------------------------- charts (SVG)

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A round upper bound for an axis. */
function niceMax(max) {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= max);
}

/**
 * A chart of `series` ({name, values, type: "bar"|"line"}) over `labels`: grouped bars and
 * lines on one axis, a legend, and the figures as a table for screen readers.
 */
function chart(figure, labels, series, unit) {
  const W = 480, H = 220, L = 40, R = 6, T = 10, B = 30;
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values.filter((v) => v !== null))));
  const x0 = (i) => L + (i * (W - L - R)) / Math.max(1, labels.length);
  const bw = (W - L - R) / Math.max(1, labels.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${figure.querySelector("figcaption").textContent}: ${series.map((x) => `${x.name} ${x.values.reduce((a, b) => a + (b || 0), 0)}`).join(", ")}` });
  for (const t of [0, 0.5, 1]) {
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: y(max * t), y2: y(max * t) }));
    svg.append(s("text", { x: L - 4, y: y(max * t) + 4, "text-anchor": "end" }, Math.round(max * t * 100) / 100));
  }
  const step = Math.max(1, Math.ceil(labels.length / 6));
  labels.forEach((label, i) => {
    if (i % step === 0) svg.append(s("text", { x: x0(i) + bw / 2, y: H - B + 18, "text-anchor": "middle" }, label));
  });
  const bars = series.filter((x) => x.type !== "line");
  series.forEach((x, k) => {
    const cls = `s${k}`;
    if (x.type === "line") {
      const pts = x.values.map((v, i) => (v === null ? null : `${x0(i) + bw / 2},${y(v)}`));
      let d = "", pen = "M";
      for (const p of pts) { if (p === null) { pen = "M"; continue; } d += `${pen}${p} `; pen = "L"; }
      if (d) svg.append(s("path", { class: `line ${cls}`, d }));
      x.values.forEach((v, i) => {
        if (v !== null) svg.append(s("circle", { class: cls, cx: x0(i) + bw / 2, cy: y(v), r: 3 }, s("title", {}, `${labels[i]}: ${v} ${x.name}`)));
      });
    } else {
      const j = bars.indexOf(x), gw = (bw * 0.8) / bars.length;
      x.values.forEach((v, i) => {
        if (!v) return;
        svg.append(s("rect", { class: cls, x: x0(i) + bw * 0.1 + j * gw, y: y(v), width: Math.max(1, gw - 1), height: y(0) - y(v) },
          s("title", {}, `${labels[i]}: ${v} ${x.name}`)));
      });
    }
  });
  const legend = h("ul", { class: "legend" }, series.map((x, k) => h("li", {}, h("span", { class: `s${k}` }), x.name)));
  const table = h("details", {}, h("summary", {}, "Figures"), h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "From"), series.map((x) => h("th", { scope: "col" }, x.name)))),
    h("tbody", {}, labels.map((label, i) => h("tr", {}, h("th", { scope: "row" }, label),
      series.map((x) => h("td", { class: "num" }, x.values[i] === null ? "–" : `${x.values[i]}${unit || ""}`))))))));
  figure.querySelector(".chart").replaceChildren(svg, legend, table);
}

function binChart(figure, bins) {
  const box = figure.querySelector(".chart");
  if (!bins.length) { box.replaceChildren(h("p", { class: "muted" }, "No item was sorted in this range.")); return; }
  const W = 480, row = 28, L = 190, H = bins.length * row + 10;
  const max = niceMax(Math.max(...bins.map((b) => b.items)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Sort-bin fill: ${bins.map((b) => `${b.bin} ${b.items}`).join(", ")}` });
  bins.forEach((b, i) => {
    const w = ((W - L - 40) * b.items) / max;
    svg.append(s("text", { x: L - 6, y: i * row + 20, "text-anchor": "end" }, `${b.station} · ${b.bin}`));
    svg.append(s("rect", { class: "s0", x: L, y: i * row + 6, width: Math.max(1, w), height: row - 8 }, s("title", {}, `${b.bin}: ${b.items}`)));
    svg.append(s("text", { x: L + w + 4, y: i * row + 20 }, b.items));
  });
  box.replaceChildren(svg);
}

async function loadStats() {
  const choice = $("range").value;
  const span = { "24h": [24, "hour"], "7d": [168, "hour"], "30d": [720, "day"], "365d": [8760, "day"] }[choice];
  const to = new Date();
  const from = new Date(to.getTime() - span[0] * 3600e3 + 1);
  const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), bucket: span[1], utc_offset: utcOffset() });
  try {
    const st = await api(`/api/v1/stats?${q}`);
    $("stats-range").textContent = `${localTime(st.from)} to ${localTime(st.to)}`;
    const labels = st.buckets.map((b) => (st.bucket === "hour" ? b.start.slice(11, 16) : b.start.slice(5, 10)));
    const col = (k) => st.buckets.map((b) => b[k]);
    const sum = (k) => col(k).reduce((a, b) => a + (b || 0), 0);
    const calls = sum("ils_calls");
    const meanMs = calls ? st.buckets.reduce((a, b) => a + (b.ils_mean_ms || 0) * b.ils_calls, 0) / calls : null;
    $("stats-totals").textContent = `In this range: ${sum("loans")} loans · ${sum("returns")} returns · ` +
      `${sum("alarms")} alarms · ${sum("people_in")} people in, ${sum("people_out")} out · ` +
      `${calls} library system calls${meanMs === null ? "" : `, ${meanMs.toFixed(1)} ms on average`} · ${sum("ils_errors")} errors`;
    chart($("chart-circulation"), labels, [
      { name: "loans", values: col("loans") }, { name: "returns", values: col("returns") },
      { name: "alarms", values: col("alarms") }]);
    chart($("chart-people"), labels, [{ name: "in", values: col("people_in") }, { name: "out", values: col("people_out") }]);
    chart($("chart-ils"), labels, [
      { name: "mean ms", values: col("ils_mean_ms"), type: "line" }, { name: "max ms", values: col("ils_max_ms"), type: "line" },
      { name: "errors", values: col("ils_errors") }]);
    binChart($("chart-bins"), st.bins);
  } catch (e) {
    $("stats-range").textContent = `Could not load the statistics: ${e.message}`;
  }
}

// ---------------------------------------------------------------- borrowed together

async function loadRecentItems() {
  try {
    const page = await api("/api/v1/events?kind=item_loan&limit=100");
    const items = [...new Set(page.events.map((e) => e.item).filter(Boolean))];
    $("recent-items").replaceChildren(...items.map((i) => h("option", { value: i })));
    if (!$("together-item").value && items.length) $("together-item").value = items[items.length - 1];
  } catch (e) { /* the list is a convenience */ }
}

async function loadTogether(item) {
  try {
    const t = await api(`/api/v1/items/${encodeURIComponent(item)}/borrowed-together?limit=20`);
    $("together-summary").textContent = t.sessions
      ? `${t.item} was borrowed in ${t.sessions} self-check session(s); ${t.together.length} other item(s) went with it.`
      : `${t.item} was not borrowed at a self-check station yet.`;
    fill($("together").tBodies[0], t.together.map((o) => h("tr", {}, h("th", { scope: "row" }, o.item),
      h("td", {}, o.title || ""), h("td", { class: "num" }, o.sessions),
      h("td", { class: "num" }, `${Math.round((100 * o.sessions) / t.sessions)} %`))));
    $("together-card").hidden = t.together.length === 0;
  } catch (e) {
    $("together-summary").textContent = `Could not look it up: ${e.message}`;
  }
}

// ---------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value.trim()); });
  $("signout").addEventListener("click", () => signOut(""));
  $("stats-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadStats(); });
  $("range").addEventListener("change", loadStats);
  $("together-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadTogether($("together-item").value.trim()); });
  window.addEventListener("hashchange", () => showView(location.hash.slice(1)));
  setInterval(() => { if (state.view === "live") refreshLive(); }, 10000);
  if (state.token) signIn(state.token); else signOut("");
});
