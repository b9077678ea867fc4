// The Switchboard console: plain JavaScript, no build step, no network beyond this server.
"use strict";

const REFRESH_MS = 5000;
const state = { tab: "overview", searchNext: null, lastQuery: null, timelineId: null };

// The token comes from the address (#token=...) once, then from this tab's session storage.
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
})();

function token() { return sessionStorage.getItem("token") || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + token() };
  const operator = sessionStorage.getItem("operator");
  if (operator) headers["X-Operator"] = operator;
  if (options.body) headers["Content-Type"] = "application/json";
  const res = await fetch("/admin/api/" + path, { ...options, headers });
  if (res.status === 401) { showLogin("The token was refused."); throw new Error("unauthorized"); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

// Build an element: el("td", {class: "x"}, "text", child...). Text is never parsed as HTML.
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const $ = (id) => document.getElementById(id);
function fill(tbody, rows) { tbody.replaceChildren(...rows); }

function when(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }
function age(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " days";
}
function num(n) { return n === undefined || n === null ? "–" : Number(n).toLocaleString(); }

function showLogin(message) {
  $("login").hidden = false;
  document.querySelector("main").hidden = true;
  $("login-error").textContent = message || "";
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("token", $("token-input").value);
  if ($("operator-input").value) sessionStorage.setItem("operator", $("operator-input").value);
  $("login").hidden = true;
  document.querySelector("main").hidden = false;
  refresh();
});

for (const b of document.querySelectorAll(".tab")) {
  b.addEventListener("click", () => showTab(b.dataset.tab));
}

function showTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "tab-" + name;
  refresh();
}

// ---- Overview ----

const SERIES = [["received", "#2b6cb0"], ["dispatched", "#805ad5"], ["delivered", "#1f8a4c"], ["retried", "#b7791f"], ["dead", "#c53030"]];

function drawChart(rates) {
  const svg = $("rates-chart");
  const W = 600, H = 160, ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const hourAgo = Date.now() - 3600 * 1000;
  const points = rates.filter((r) => r.at > hourAgo);
  const max = Math.max(1, ...points.flatMap((r) => SERIES.map(([k]) => r[k])));
  // A server up for less than the hour: the chart spans its uptime (at least a minute).
  const end = points.length ? points[points.length - 1].at : Date.now();
  const start = Math.min(end - 60 * 1000, Math.max(hourAgo, points.length ? points[0].from : hourAgo));
  const x = (at) => ((Math.max(at, start) - start) / (end - start)) * W;
  const y = (v) => H - 4 - (v / max) * (H - 20);
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 4); label.setAttribute("y", 12); label.setAttribute("font-size", 10); label.setAttribute("fill", "#6b7385");
  label.textContent = "since " + new Date(start).toLocaleTimeString() + " · max " + max.toFixed(1) + "/min";
  svg.append(label);
  for (const [key, color] of SERIES) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("data-series", key);
    // Each interval is a step: its rate held from its start to its end.
    const steps = points.flatMap((r) => [[Math.max(r.from, hourAgo), r[key]], [r.at, r[key]]]);
    line.setAttribute("points", steps.map(([at, v]) => x(at).toFixed(1) + "," + y(v).toFixed(1)).join(" "));
    svg.append(line);
  }
  $("rates-legend").replaceChildren(...SERIES.map(([k, c]) => el("span", {}, el("i", { style: "background:" + c }), k)));
}

function statusCell(status) { return el("td", { class: "status " + status }, status); }

async function loadOverview() {
  const o = await api("overview");
  const t = o.totals;
  $("figure-received").textContent = num(t.webhooks_received);
  $("figure-accepted").textContent = num(t.notifications_accepted);
  $("figure-duplicate").textContent = num(t.notifications_duplicate);
  $("figure-dispatched").textContent = num(t.notifications_dispatched);
  $("figure-delivered").textContent = num(t.deliveries_ok);
  $("figure-dead").textContent = num(o.backlog.dead_letters);
  $("backlog-inbox").textContent = num(o.backlog.inbox);
  $("backlog-inbox-age").textContent = age(o.backlog.inbox_oldest_age_ms);
  $("backlog-dead").textContent = num(o.backlog.dead_letters);
  $("history-since").textContent = o.history_since
    ? "History since " + when(o.history_since) + " (kept " + age(o.retention_ms) + ")"
    : "No history yet (kept " + age(o.retention_ms) + ")";
  drawChart(o.rates);
  fill($("destinations").tBodies[0], o.destinations.map((d) => el("tr", { "data-destination": d.destination },
    el("td", {}, d.destination),
    el("td", {}, d.success_rate === null ? "–" : (d.success_rate * 100).toFixed(1) + " %"),
    el("td", {}, num(d.delivered)), el("td", {}, num(d.dead)), el("td", {}, num(d.pending)),
    el("td", {}, num(d.retrying)), el("td", {}, age(d.oldest_pending_age_ms)))));
  fill($("plugin-health").tBodies[0], o.plugins.loaded.map((p) => el("tr", { "data-plugin": p.name },
    el("td", {}, p.name), statusCell(p.status), el("td", {}, num(p.stats.calls)), el("td", {}, num(p.stats.failures)))));
}

// ---- Search and timeline ----

function searchParams() {
  const params = new URLSearchParams();
  for (const input of $("search-form").querySelectorAll("input, select")) {
    if (!input.value) continue;
    if (input.type === "datetime-local") params.set(input.name, String(new Date(input.value).getTime()));
    else params.set(input.name, input.value.trim());
  }
  return params;
}

async function search(more) {
  const params = more ? new URLSearchParams(state.lastQuery) : searchParams();
  if (more && state.searchNext) params.set("before", state.searchNext);
  state.lastQuery = more ? state.lastQuery : params.toString();
  $("search-status").textContent = "Searching…";
  const page = await api("notifications?" + params.toString());
  const rows = page.items.map((n) => el("tr", { class: "clickable", "data-inbox-id": n.inbox_id, onclick: () => loadTimeline(n.inbox_id) },
    el("td", {}, when(n.received_at)), el("td", {}, n.kind + (n.message_type ? " / " + n.message_type : "") + (n.status ? " / " + n.status : "")),
    el("td", {}, n.wa_id || "–"), el("td", {}, n.text || n.id)));
  const tbody = $("results").tBodies[0];
  if (more) tbody.append(...rows); else fill(tbody, rows);
  state.searchNext = page.next;
  $("search-more").hidden = !page.next;
  $("search-status").textContent = tbody.rows.length + " found" + (page.next ? "; older ones may match" : "");
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search(false).catch(showError("search-status")); });
$("search-more").addEventListener("click", () => search(true).catch(showError("search-status")));

function showError(id) { return (e) => { $(id).textContent = "Failed: " + e.message; }; }

function event(kind, at, ...children) {
  return el("div", { class: "event " + kind }, el("div", { class: "when" }, when(at)), ...children);
}

// The WhatsApp message a send became, and the last status WhatsApp reported for it.
function sentMessage(m) {
  return el("div", { class: "sent-message" }, "WhatsApp message ", el("code", {}, m.message_id), ": ",
    m.status ? el("span", { class: "sent-status status-" + m.status }, m.status) : "no status yet",
    m.status_at ? " at " + when(m.status_at) : "", m.error ? " — " + m.error : "");
}

async function loadTimeline(inboxId) {
  state.timelineId = inboxId;
  for (const r of $("results").tBodies[0].rows) r.classList.toggle("selected", r.dataset.inboxId === String(inboxId));
  const t = await api("notifications/" + inboxId);
  const n = t.notification;
  const box = $("timeline");
  const events = [event("received", t.received.at,
    el("strong", {}, "Received "), n.kind + " " + n.id + " on endpoint ", el("code", {}, t.received.endpoint),
    n.wa_id ? " from " + n.wa_id : "", t.dispatched ? "" : " — waiting for dispatch")];
  for (const e of t.plugin_errors) {
    events.push(event("plugin-error", e.at, el("strong", {}, "Plugin " + e.plugin + " failed: "), e.error));
  }
  for (const d of t.deliveries) {
    const attempts = el("table", { class: "attempts" },
      el("thead", {}, el("tr", {}, el("th", {}, "Attempt"), el("th", {}, "When"), el("th", {}, "Status"), el("th", {}, "Took"), el("th", {}, "Outcome"), el("th", {}, "Error"))),
      el("tbody", {}, ...d.attempts.map((a, i) => el("tr", { class: "attempt" },
        el("td", {}, i + 1), el("td", {}, when(a.at)), el("td", {}, a.status ?? "–"), el("td", {}, a.duration_ms + " ms"),
        el("td", { class: "state-" + (a.outcome === "retry" ? "pending" : a.outcome) }, a.outcome), el("td", {}, a.error || "")))));
    events.push(event("plugin-action", d.created_at,
      el("div", {}, el("strong", {}, "Plugin " + (d.plugin || "?") + ": " + d.kind), " to ", el("code", {}, d.destination),
        " — ", el("span", { class: "delivery-state state-" + d.state }, d.state), d.attempts.length ? "" : " (no attempt yet)"),
      attempts, ...(d.sent ? [sentMessage(d.sent)] : [])));
  }
  if (!t.deliveries.length && t.dispatched) events.push(el("p", { class: "muted" }, "No plugin asked for a delivery."));
  box.replaceChildren(el("h2", {}, "Timeline of " + n.kind + " " + n.id), ...events,
    el("details", {}, el("summary", {}, "Item as received"), el("pre", {}, JSON.stringify(t.item, null, 2))));
}

// ---- Dead letters ----

function deadFilter() {
  const f = {};
  for (const k of ["destination", "kind", "error"]) {
    const v = $("dead-" + k).value.trim();
    if (v) f[k] = v;
  }
  return f;
}

async function loadDead() {
  const f = deadFilter();
  const params = new URLSearchParams();
  if (f.destination) params.set("destination", f.destination);
  if (f.kind) params.set("kind", f.kind);
  const page = await api("dead-letters?" + params.toString());
  fill($("dead-list").tBodies[0], page.items.map((d) => {
    const last = d.attempts[d.attempts.length - 1];
    return el("tr", { "data-delivery-id": d.id },
      el("td", {}, d.id), el("td", {}, when(d.finished_at)), el("td", {}, d.destination), el("td", {}, d.kind),
      el("td", {}, d.plugin || "–"), el("td", {}, d.attempts.length),
      el("td", {}, (last && last.status ? last.status + " " : "") + (d.last_error || "")));
  }));
  const audit = await api("audit");
  fill($("audit").tBodies[0], audit.map((a) => el("tr", {},
    el("td", {}, when(a.at)), el("td", {}, a.who), el("td", {}, a.action), el("td", {}, el("code", {}, a.detail)), el("td", {}, a.count))));
}

async function retryDead(dryRun) {
  const r = await api("dead-letters/retry", { method: "POST", body: JSON.stringify({ filter: deadFilter(), dry_run: dryRun }) });
  if (dryRun) {
    $("dead-result").textContent = r.matched + " dead letters match" + (r.matched > r.limit ? " (one retry puts back " + r.limit + ")" : "");
    $("dead-retry").disabled = r.matched === 0;
  } else {
    $("dead-result").textContent = "Retried " + r.retried + " of " + r.matched + " matching";
    $("dead-retry").disabled = true;
  }
  await loadDead();
}

$("dead-form").addEventListener("submit", (ev) => { ev.preventDefault(); retryDead(true).catch(showError("dead-result")); });
$("dead-form").addEventListener("input", () => { $("dead-retry").disabled = true; });
$("dead-retry").addEventListener("click", () => retryDead(false).catch(showError("dead-result")));

// ---- Plugins ----

async function loadPlugins() {
  const p = await api("plugins");
  fill($("plugins-table").tBodies[0], p.loaded.map((x, i) => el("tr", { "data-plugin": x.name },
    el("td", {}, i + 1), el("td", {}, x.name), statusCell(x.status), el("td", {}, el("code", {}, x.version)),
    el("td", {}, x.api_version || "–"), el("td", {}, (x.subscribe || []).join(", ")),
    el("td", {}, num(x.stats.calls)), el("td", {}, num(x.stats.failures)), el("td", {}, num(x.stats.skipped)),
    el("td", {}, x.recent_errors.length ? x.recent_errors[0].error : (x.health && x.health.last_error) || ""))));
  fill($("load-errors").tBodies[0], Object.entries(p.errors).map(([name, e]) => el("tr", {}, el("td", {}, name), el("td", {}, e))));
}

// ---- Refresh ----

async function refresh() {
  if (!token()) { showLogin(); return; }
  try {
    if (state.tab === "overview") await loadOverview();
    else if (state.tab === "dead") await loadDead();
    else if (state.tab === "plugins") await loadPlugins();
    else if (state.tab === "search" && state.timelineId !== null) await loadTimeline(state.timelineId);
    if (state.tab !== "overview") {
      // The header's history line stays current on every tab.
      const o = await api("overview");
      $("history-since").textContent = o.history_since ? "History since " + when(o.history_since) + " (kept " + age(o.retention_ms) + ")" : "No history yet";
    }
    $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.message !== "unauthorized") $("refreshed").textContent = "refresh failed: " + e.message;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
