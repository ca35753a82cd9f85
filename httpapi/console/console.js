// The varwatch console: plain JavaScript over the server's HTTP door.
// It lists sessions (POST /v1/ListSessions), shows a session's variables
// (ListVariables) and follows them live (GET /v1/watch, Server-Sent Events
// read with fetch so that it can send the token and Last-Event-ID), and
// sets values (SetVariable). The server judges every value: the page only
// turns the input into the JSON of its type and shows the server's error.
"use strict";

const TOKEN_KEY = "varwatch.token"; // sessionStorage only: gone with the tab
const HISTORY_REVISIONS = 500;      // how far back the charts start
const POINTS = 60;                   // points per chart
const HEARTBEAT = "5s";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "for") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const kid of kids) e.append(kid);
  return e;
};

// ---- calls ----------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function withToken(h) {
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

// apiError is a google.rpc.Status body as an Error with code, reason and
// meta (the ErrorInfo's).
function apiError(st, httpStatus) {
  const info = (st.details || []).find((d) => String(d["@type"] || "").endsWith("google.rpc.ErrorInfo")) || {};
  const e = new Error(st.message || ("HTTP " + httpStatus));
  e.code = st.code || 0;
  e.reason = info.reason || "";
  e.meta = info.metadata || {};
  return e;
}

const NOT_FOUND = 5;
const UNAUTHENTICATED = 16;

async function call(method, body) {
  const resp = await fetch("/v1/" + method, {
    method: "POST",
    headers: withToken({ "Content-Type": "application/json" }),
    body: JSON.stringify(body || {}),
  });
  const data = await resp.json().catch(() => ({ code: 2, message: "unreadable answer, HTTP " + resp.status }));
  if (!resp.ok) {
    const e = apiError(data, resp.status);
    if (e.code === UNAUTHENTICATED) askToken(e.message);
    throw e;
  }
  return data;
}

// ---- token ------------------------------------------------------------------

function askToken(why) {
  const d = $("token-dialog");
  $("token-error").textContent = token() ? "The server refused the token: " + why : "";
  if (!d.open) d.showModal();
  $("token-input").focus();
}

$("token-form").addEventListener("submit", () => {
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-input").value = "";
  $("forget-token").hidden = false;
  route();
});

$("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  $("forget-token").hidden = true;
  route();
});
$("forget-token").hidden = !token();

// ---- formatting ---------------------------------------------------------------

const typeName = (t) => String(t || "").replace("VARIABLE_TYPE_", "").toLowerCase();

function fmtValue(v) {
  if (!v) return "";
  if ("float_value" in v) return String(v.float_value);
  if ("integer_value" in v) return String(v.integer_value);
  if ("string_value" in v) return JSON.stringify(v.string_value);
  if ("boolean_value" in v) return String(v.boolean_value);
  if ("choice_value" in v) return v.choice_value;
  if ("module_value" in v) return v.module_value;
  if ("embedding_value" in v) {
    const xs = v.embedding_value.values || [];
    return "[" + xs.slice(0, 6).join(", ") + (xs.length > 6 ? ", … (" + xs.length + ")" : "") + "]";
  }
  if ("tensor_value" in v) return "tensor " + (v.tensor_value.dtype || "") + " [" + (v.tensor_value.shape || []).join("×") + "]";
  return JSON.stringify(v);
}

// numeric is the value as a number for the chart, or null.
function numeric(v) {
  if (!v) return null;
  if ("float_value" in v) return Number(v.float_value);
  if ("integer_value" in v) return Number(v.integer_value);
  if ("boolean_value" in v) return v.boolean_value ? 1 : 0;
  return null;
}

// fmtTime is a timestamp's time of day, with the date when not today.
const fmtTime = (ts) => {
  if (!ts) return "";
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
};

function fmtConstraints(c) {
  if (!c) return "";
  const parts = [];
  const range = (lo, hi) => (lo !== undefined || hi !== undefined) && parts.push((lo ?? "−∞") + " … " + (hi ?? "∞"));
  range(c.min, c.max);
  range(c.min_integer, c.max_integer);
  if (c.min_length !== undefined || c.max_length !== undefined) parts.push("length " + (c.min_length ?? 0) + " … " + (c.max_length ?? "∞"));
  if (c.pattern) parts.push("pattern " + c.pattern);
  if (c.choices && c.choices.length) parts.push("one of " + c.choices.join(", "));
  if (c.allowed_modules && c.allowed_modules.length) parts.push("modules " + c.allowed_modules.join(", "));
  if (c.dimensions) parts.push(c.dimensions + " dimensions");
  return parts.join("; ");
}

function spark(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", "120");
  svg.setAttribute("height", "28");
  if (points.length === 0) return svg;
  const lo = Math.min(...points), hi = Math.max(...points);
  const span = hi - lo || 1;
  const step = points.length > 1 ? 118 / (points.length - 1) : 0;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((p, i) => (1 + i * step).toFixed(1) + "," + (26 - ((p - lo) / span) * 24).toFixed(1)).join(" "));
  svg.append(line);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", points.length + " recent values, " + lo + " to " + hi);
  return svg;
}

// ---- setting a value ------------------------------------------------------------

// valueInput is the input for a variable's type and a function reading it
// as a Value (or throwing what is wrong with the text).
function valueInput(v) {
  const t = typeName(v.type);
  const c = v.constraints || {};
  const label = "New value of " + v.name;
  if (t === "boolean") {
    const s = el("select", { "aria-label": label }, el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
    s.value = v.value && v.value.boolean_value ? "true" : "false";
    return [s, () => ({ boolean_value: s.value === "true" })];
  }
  if (t === "choice" && c.choices && c.choices.length) {
    const s = el("select", { "aria-label": label }, ...c.choices.map((x) => el("option", { value: x, text: x })));
    if (v.value && v.value.choice_value) s.value = v.value.choice_value;
    return [s, () => ({ choice_value: s.value })];
  }
  const i = el("input", { "aria-label": label, autocomplete: "off" });
  if (t === "float" || t === "integer") {
    i.type = "number";
    i.step = t === "integer" ? "1" : "any";
    i.inputMode = t === "integer" ? "numeric" : "decimal";
  }
  const read = {
    float: () => {
      if (i.value.trim() === "" || isNaN(Number(i.value))) throw new Error("enter a number");
      return { float_value: Number(i.value) };
    },
    integer: () => {
      if (!/^-?\d+$/.test(i.value.trim())) throw new Error("enter a whole number");
      return { integer_value: i.value.trim() }; // int64 travels as a string in JSON
    },
    string: () => ({ string_value: i.value }),
    choice: () => ({ choice_value: i.value }),
    module: () => ({ module_value: i.value }),
    embedding: () => ({ embedding_value: { values: i.value.split(",").map((x) => Number(x.trim())) } }),
  }[t];
  if (!read) return [null, null];
  if (t === "embedding") i.placeholder = "0.1, 0.2, …";
  return [i, read];
}

function setForm(sessionId, v) {
  const [input, read] = valueInput(v);
  if (!input) return el("span", { class: "muted", text: "not settable here" });
  const err = el("span", { class: "error", role: "alert" });
  const form = el("form", { class: "set", "data-var": v.name, noValidate: true }, input,
    el("button", { type: "submit", text: "Set" }));
  const hint = fmtConstraints(v.constraints);
  if (hint) form.append(el("span", { class: "hint", text: hint }));
  form.append(err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    input.removeAttribute("aria-invalid");
    try {
      await call("SetVariable", { session_id: sessionId, variable_identifier: v.name, value: read(), source: "console" });
    } catch (e) {
      err.textContent = e.message;
      input.setAttribute("aria-invalid", "true");
    }
  });
  return form;
}

// ---- views ---------------------------------------------------------------------

let view = null; // the current view: { stop() }

function route() {
  if (view) view.stop();
  $("token-dialog").open && $("token-dialog").close();
  const m = location.hash.match(/^#\/s\/(.+)$/);
  $("sessions-view").hidden = !!m;
  $("session-view").hidden = !m;
  view = m ? sessionView(decodeURIComponent(m[1])) : sessionsView();
  serverPanel(); // the token may have changed
}

function sessionsView() {
  let timer = 0, stopped = false;
  $("live").textContent = "";
  const load = async () => {
    try {
      const resp = await call("ListSessions", {});
      if (stopped) return;
      $("sessions-error").textContent = "";
      const body = $("sessions").tBodies[0];
      const rows = (resp.sessions || []).map((s) => el("tr", { "data-session": s.id },
        el("td", {}, el("a", { href: "#/s/" + encodeURIComponent(s.id), text: s.id })),
        el("td", { text: s.variable_count || "0" }),
        el("td", { text: s.revision || "0" }),
        el("td", { text: fmtTime(s.expires_at) }),
        el("td", { class: "muted", text: Object.entries(s.metadata || {}).map(([k, v]) => k + "=" + v).join(" ") })));
      body.replaceChildren(...rows);
      $("sessions-empty").hidden = rows.length > 0;
    } catch (e) {
      if (!stopped) $("sessions-error").textContent = e.message;
    }
    if (!stopped) timer = setTimeout(load, 3000);
  };
  load();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// sessionView shows one session: the variables as ListVariables read them
// at revision base, then a watch resumed from before base, whose changes up
// to base only feed the charts (the table has them already) and whose
// later changes update the table in place.
function sessionView(id) {
  const st = { stopped: false, ctrl: null, lastID: "", base: 0, rows: new Map(), retry: 0, timer: 0 };
  $("session-title").textContent = id;
  $("session-error").textContent = "";
  $("session-info").textContent = "";
  $("variables").tBodies[0].replaceChildren();
  $("live").textContent = "connecting…";
  $("live").className = "badge";

  const addRow = (v) => {
    const tr = el("tr", { "data-var": v.name });
    const row = { tr, v, points: [], cells: {} };
    for (const k of ["name", "type", "value", "chart", "version", "source", "updated", "set"]) {
      row.cells[k] = el("td", { class: k });
      tr.append(row.cells[k]);
    }
    row.cells.name.textContent = v.name;
    row.cells.type.textContent = typeName(v.type);
    row.cells.set.append(setForm(id, v));
    st.rows.set(v.name, row);
    const body = $("variables").tBodies[0];
    const after = [...body.rows].find((r) => r.dataset.var > v.name);
    body.insertBefore(tr, after || null);
    fillRow(row, v, false);
    return row;
  };

  const fillRow = (row, v, flash) => {
    row.v = v;
    row.cells.value.textContent = fmtValue(v.value);
    row.cells.version.textContent = v.version || "";
    row.cells.source.textContent = v.last_update_source || "";
    row.cells.updated.textContent = fmtTime(v.last_updated_at);
    drawChart(row);
    if (flash) {
      row.tr.classList.remove("flash");
      void row.tr.offsetWidth; // restart the animation
      row.tr.classList.add("flash");
    }
  };

  const drawChart = (row) => {
    const n = numeric(row.v.value);
    row.cells.chart.replaceChildren(n === null ? "" : spark(row.points.length ? row.points : [n]));
  };

  const point = (row, value) => {
    const n = numeric(value);
    if (n === null) return;
    row.points.push(n);
    if (row.points.length > POINTS) row.points.shift();
  };

  const apply = (u, rev) => {
    const v = u.variable || {};
    const row = st.rows.get(v.name);
    if (rev <= st.base) { // history: the table has it, the chart not yet
      if (row && (u.update_type === "value_change" || u.update_type === "variable_registered")) {
        point(row, v.value);
        drawChart(row);
      }
      return;
    }
    switch (u.update_type) {
      case "value_change":
        if (row) { point(row, v.value); fillRow(row, v, true); }
        break;
      case "variable_registered":
        point(row || addRow(v), v.value);
        fillRow(st.rows.get(v.name), v, true);
        break;
      case "variable_deleted":
        if (row) { row.tr.remove(); st.rows.delete(v.name); }
        break;
      case "session_closed":
        $("session-error").textContent = "The session was closed.";
        break;
    }
  };

  const load = async () => {
    $("session-error").textContent = "";
    try {
      const s = (await call("GetSession", { session_id: id })).session;
      const list = await call("ListVariables", { session_id: id });
      if (st.stopped) return;
      st.base = Number(list.revision || 0);
      st.rows.clear();
      $("variables").tBodies[0].replaceChildren();
      for (const v of list.variables || []) addRow(v);
      $("session-info").textContent = "incarnation " + s.incarnation + " · expires " + fmtTime(s.expires_at);
      st.lastID = "";
      follow({ start_revision: String(Math.max(0, st.base - HISTORY_REVISIONS)), incarnation: s.incarnation });
    } catch (e) {
      if (st.stopped) return;
      $("session-error").textContent = e.message;
      if (e.code === NOT_FOUND) { // deleted, expired, or not created yet: follow it if it comes
        $("session-error").textContent += " (the page shows it once it exists)";
        $("live").textContent = "waiting for the session";
        $("live").className = "badge";
        st.timer = setTimeout(load, 2000);
      }
    }
  };

  // follow reads the watch until it ends, then resumes it from the last
  // event's id unless the end says not to.
  const follow = async (params) => {
    const ctrl = new AbortController();
    st.ctrl = ctrl;
    const q = new URLSearchParams({ session_id: id, heartbeat_interval: HEARTBEAT, ...params });
    const h = withToken({ Accept: "text/event-stream" });
    if (st.lastID) h["Last-Event-ID"] = st.lastID;
    let next = "resume";
    try {
      const resp = await fetch("/v1/watch?" + q, { headers: h, signal: ctrl.signal });
      if (!resp.ok) {
        const e = apiError(await resp.json().catch(() => ({})), resp.status);
        if (e.code === UNAUTHENTICATED) askToken(e.message);
        throw e;
      }
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      read: for (;;) {
        const r = await reader.read();
        if (r.done) break;
        buf += dec.decode(r.value, { stream: true });
        for (let i; (i = buf.indexOf("\n\n")) >= 0;) {
          const ev = parseEvent(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (!ev) continue;
          next = handle(ev, params);
          if (next !== "more") break read;
        }
      }
      if (next === "more") next = "resume";
    } catch (e) {
      if (st.stopped) return;
      if (e.code) { $("session-error").textContent = e.message; next = "stop"; }
    }
    ctrl.abort();
    if (st.stopped) return;
    if (next === "resume" || typeof next === "object") {
      $("live").textContent = "reconnecting…";
      $("live").className = "badge";
      const delay = Math.min(10000, 500 * 2 ** st.retry++);
      // Last-Event-ID, when there is one, overrides params' start.
      st.timer = setTimeout(() => follow(next === "resume" ? params : next), delay);
    } else if (next === "reload") {
      st.timer = setTimeout(load, 500);
    } else {
      $("live").textContent = "not live";
      $("live").className = "badge bad";
    }
  };

  const liveAt = (rev) => {
    $("live").textContent = "live · revision " + rev;
    $("live").className = "badge ok";
  };

  // handle takes one event: "more" to read on, "resume" to reconnect from
  // the last id, "reload" to start over, "stop", or the params of a new
  // watch.
  const handle = (ev, params) => {
    const data = JSON.parse(ev.data || "{}");
    if (ev.id) st.lastID = ev.id;
    switch (ev.event) {
      case "created":
        serverPanel(); // it counts this stream now
        return "more";
      case "update":
      case "snapshot":
        st.retry = 0;
        for (const u of data.updates || []) apply(u, Number(data.revision));
        if (Number(data.revision) >= st.base) liveAt(Number(data.revision));
        return "more";
      case "heartbeat": {
        st.retry = 0;
        const rev = Number(data.revision || 0);
        if (rev >= st.base) liveAt(rev);
        else { $("live").textContent = "loading history…"; $("live").className = "badge"; }
        return "more";
      }
      case "end": {
        const e = apiError(data, 200);
        if (!e.code) { // the session closed: it may be created again
          $("live").textContent = "session closed";
          return "reload";
        }
        if (e.reason === "SLOW_CONSUMER" || e.reason === "SHUTTING_DOWN") return "resume";
        if (e.reason === "REVISION_COMPACTED" && e.meta.compacted_revision) {
          st.lastID = ""; // the oldest history there is: charts start there
          return { ...params, start_revision: e.meta.compacted_revision };
        }
        if (e.reason === "SESSION_INCARNATION_CHANGED") {
          $("session-error").textContent = "The session was deleted and created again; reloading.";
          return "reload";
        }
        $("session-error").textContent = e.message;
        return "stop";
      }
    }
    return "more";
  };

  load();
  return {
    stop() {
      st.stopped = true;
      clearTimeout(st.timer);
      if (st.ctrl) st.ctrl.abort();
    },
  };
}

function parseEvent(block) {
  const ev = { event: "message", id: "", data: "" };
  let any = false;
  for (const line of block.split("\n")) {
    const i = line.indexOf(":");
    if (i <= 0) continue; // comments and blank fields
    const k = line.slice(0, i), v = line.slice(i + 1).replace(/^ /, "");
    if (k === "event") ev.event = v;
    else if (k === "id") ev.id = v;
    else if (k === "data") ev.data += v;
    else continue;
    any = true;
  }
  return any && ev.event !== "message" ? ev : null;
}

// ---- server panel ------------------------------------------------------------------

async function serverPanel() {
  try {
    const h = await (await fetch("/v1/health")).json();
    $("health").textContent = "health: " + h.status;
    $("health").className = "badge " + (h.status === "SERVING" ? "ok" : "bad");
  } catch (e) {
    $("health").textContent = "health: unreachable";
    $("health").className = "badge bad";
  }
  try {
    const resp = await fetch("/v1/server", { headers: withToken({}) });
    const data = await resp.json();
    if (!resp.ok) throw apiError(data, resp.status);
    $("server-error").textContent = data.version ? "varwatch " + data.version : "";
    const w = data.watch || {};
    const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
    const stats = [
      ["Watch streams", w.streams],
      ["Lagging streams", w.lagging_streams],
      ["Filter chain feeds", w.chain_feeds],
      ["Updates delivered", sum(w.delivered)],
      ["Coalesced", w.coalesced],
      ["Streams ended", Object.entries(w.stream_ends || {}).filter(([, n]) => n).map(([k, n]) => k + " " + n).join(", ") || "none"],
    ];
    $("server-stats").replaceChildren(...stats.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v ?? 0) })]));
    const ws = w.watches || [];
    $("watches").hidden = ws.length === 0;
    $("watches").tBodies[0].replaceChildren(...ws.map((x) => el("tr", {},
      ...[x.session, x.rpc, x.pending, x.lagging ? "yes" : "no"].map((v) => el("td", { text: String(v) })))));
    const fs = data.filters || [];
    $("filters").hidden = fs.length === 0;
    $("filters").tBodies[0].replaceChildren(...fs.map((f) => el("tr", {},
      ...[f.name, f.in, f.passed, f.dropped, f.replaced, f.restarts, sum(f.errors)].map((x) => el("td", { text: String(x) })))));
    if (fs.length === 0) $("server-error").textContent += (data.version ? " · " : "") + "no filter plugins loaded";
  } catch (e) {
    $("server-stats").replaceChildren();
    $("filters").hidden = true;
    $("watches").hidden = true;
    $("server-error").textContent = e.code === 7 ? "Server counters need an admin token." : "Server counters: " + e.message;
  }
}

window.addEventListener("hashchange", route);
route();
setInterval(serverPanel, 5000);
