// The headrace dashboard: polls /models and /dashboard/history every second, follows
// /drift/alerts/stream (server-sent events), and, once the server accepted the admin
// token the operator typed, lists snapshots and offers snapshot, restore and rollback.
// With API keys on the server, the history and the alerts need that token too: every
// read sends it, so the live alerts are read with fetch (EventSource sends no headers).
//
// Everything shown is put in the page as text (textContent, never innerHTML): alert
// messages and names come from the stream and are not trusted.
"use strict";

(() => {
  const POLL_MS = 1000;
  const MAX_POINTS = 20000;
  const MAX_ALERTS_LISTED = 50;
  const TOKEN_KEY = "headrace.adminToken";
  const RECONNECT_MS = 2000;
  const COLORS = {
    rolling: "#2463eb",
    cumulative: "#9aa4b8",
    rate: "#2e7d32",
    lag: "#ef6c00",
  };
  const DETECTOR_COLORS = {
    rollback: "#6a1b9a",
    psi: "#ef6c00",
    kswin: "#00838f",
    adwin: "#c62828",
    page_hinkley: "#ad1457",
    auc_drop: "#283593",
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "onclick") node.addEventListener("click", value);
      // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
      else if (key === "style") Object.assign(node.style, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function fetchJSON(url, options = {}) {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
      throw new HttpError(response.status, message);
    }
    return body;
  }

  // -- state ------------------------------------------------------------------

  const state = {
    model: null,
    lastId: null,
    xs: [],
    columns: {},
    variants: [],
    variantCharts: {},
    alerts: [],
    admin: false,
    token: sessionStorage.getItem(TOKEN_KEY),
    polling: false,
  };

  const rateChart = new HeadraceCharts.TimeChart($("chart-rate"), [
    { key: "learned_per_s", label: "learned / s", color: COLORS.rate },
  ], { min: 0 });
  const lagChart = new HeadraceCharts.TimeChart($("chart-lag"), [
    { key: "lag", label: "lag", color: COLORS.lag },
  ], { min: 0 });

  function resetSeries() {
    state.lastId = null;
    state.xs = [];
    state.columns = {};
    state.variants = [];
    state.variantCharts = {};
    $("variants").replaceChildren();
  }

  function column(key) {
    if (!state.columns[key]) state.columns[key] = new Array(state.xs.length).fill(null);
    return state.columns[key];
  }

  function addPoints(points) {
    for (const p of points) {
      const values = {
        learned_per_s: p.learned_per_s,
        events_per_s: p.events_per_s,
        lag: p.lag,
      };
      for (const [name, v] of Object.entries(p.variants || {})) {
        if (!state.variants.includes(name)) addVariant(name);
        values[`${name}.log_loss`] = v.log_loss;
        values[`${name}.rolling_log_loss`] = v.rolling_log_loss;
        // null while undefined (one class so far): a gap in the line, not a 0.
        values[`${name}.roc_auc`] = v.roc_auc ?? null;
        values[`${name}.rolling_roc_auc`] = v.rolling_roc_auc ?? null;
      }
      for (const key of Object.keys(values)) column(key);
      state.xs.push(p.ts);
      for (const [key, col] of Object.entries(state.columns)) {
        const v = values[key];
        col.push(v === undefined ? null : v);
      }
      state.lastId = p.id;
    }
    const extra = state.xs.length - MAX_POINTS;
    if (extra > 0) {
      state.xs.splice(0, extra);
      for (const col of Object.values(state.columns)) col.splice(0, extra);
    }
  }

  function addVariant(name) {
    state.variants.push(name);
    const lossCanvas = el("canvas", { class: "chart", "data-points": "0", "data-variant": name, "data-metric": "log_loss" });
    const aucCanvas = el("canvas", { class: "chart", "data-points": "0", "data-variant": name, "data-metric": "roc_auc" });
    const reliabilityCanvas = el("canvas", { class: "chart", "data-points": "0", "data-variant": name, "data-metric": "reliability" });
    const legend = () => el("div", { class: "legend" },
      el("span", {}, el("i", { style: { background: COLORS.rolling } }), "rolling window"),
      el("span", {}, el("i", { style: { background: COLORS.cumulative } }), "since the start"));
    const facts = el("span", { class: "muted", "data-role": "facts" });
    const card = el("section", { class: "panel variant", "data-variant": name },
      el("h2", {}, `variant ${name} `, facts),
      el("div", { class: "charts" },
        el("figure", {}, el("figcaption", {}, "progressive log loss"), lossCanvas, legend()),
        el("figure", {}, el("figcaption", {}, "progressive ROC AUC"), aucCanvas, legend()),
        el("figure", {},
          el("figcaption", {}, "reliability: observed rate against mean prediction, per bin " +
            "of 20 examples or more (dashed: calibrated)"),
          reliabilityCanvas, legend())));
    $("variants").append(card);
    state.variantCharts[name] = {
      facts,
      loss: new HeadraceCharts.TimeChart(lossCanvas, [
        { key: `${name}.log_loss`, label: "since the start", color: COLORS.cumulative },
        { key: `${name}.rolling_log_loss`, label: "rolling", color: COLORS.rolling },
      ], { min: 0, robust: true }),
      auc: new HeadraceCharts.TimeChart(aucCanvas, [
        { key: `${name}.roc_auc`, label: "since the start", color: COLORS.cumulative },
        { key: `${name}.rolling_roc_auc`, label: "rolling", color: COLORS.rolling },
      ], { min: 0, max: 1 }),
      reliability: new HeadraceCharts.ReliabilityChart(reliabilityCanvas, [
        { prefix: "", key: "cumulative", color: COLORS.cumulative },
        { prefix: "rolling_", key: "rolling", color: COLORS.rolling },
      ]),
    };
  }

  // -- drawing ----------------------------------------------------------------

  function alertTime(alert) {
    // The stream id is the publish time in ms: the charts' clock (event time may differ).
    const ms = Number(String(alert.stream_id || "").split("-")[0]);
    return Number.isFinite(ms) && ms > 0 ? ms / 1000 : alert.ts;
  }

  function drawCharts() {
    const xs = state.xs;
    const x0 = xs.length ? xs[0] : Date.now() / 1000 - 60;
    const x1 = Math.max(xs.length ? xs[xs.length - 1] : 0, Date.now() / 1000 - 1);
    for (const [name, charts] of Object.entries(state.variantCharts)) {
      const markers = startedAlerts().filter((a) => a.variant === name).map(alertTime);
      for (const chart of [charts.loss, charts.auc]) {
        chart.setData(xs, state.columns);
        chart.setMarkers(markers);
        chart.draw();
      }
      charts.reliability.draw();
    }
    for (const chart of [rateChart, lagChart]) {
      chart.setData(xs, state.columns);
      chart.draw();
    }
    const events = startedAlerts().map((a) => ({ x: alertTime(a), detector: a.detector }));
    const first = events.length ? Math.min(x0, events[0].x) : x0;
    HeadraceCharts.drawTimeline($("alert-timeline"), events, first, x1,
      (e) => DETECTOR_COLORS[e.detector] || "#c62828");
  }

  function formatAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function formatNumber(v, digits = 0) {
    return v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits);
  }

  function showServed(entry) {
    if (!entry || entry.status !== "loaded") {
      $("version").textContent = "no model loaded yet";
      $("version").dataset.version = "";
      return;
    }
    $("version").textContent = String(entry.version);
    $("version").dataset.version = String(entry.version);
    // A restore or a takeover starts a new epoch, whose versions may number lower.
    $("version").dataset.epoch = String(entry.epoch ?? 0);
    $("version").title = `epoch ${entry.epoch ?? 0}`;
    $("age").textContent = formatAge(entry.age_s);
    const lag = Object.values(entry.lag || {}).reduce((a, b) => a + b, 0);
    $("lag").textContent = Object.keys(entry.lag || {}).length ? String(lag) : "–";
    // A learner that just (re)loaded its state has no rate yet: show the last one known.
    $("learned-rate").textContent = formatNumber(lastValue("learned_per_s"), 1);
    $("events-rate").textContent = formatNumber(lastValue("events_per_s"), 1);
    $("lineage").replaceChildren(...lineageText(entry.lineage || {}));
    for (const v of entry.variants || []) {
      const charts = state.variantCharts[v.name];
      if (!charts) continue;
      const m = v.metrics || {};
      charts.facts.textContent = `(${v.kind}) · ${v.n_learned} learned · rolling: log loss ` +
        `${formatNumber(m.rolling_log_loss, 4)} · AUC ${formatNumber(m.rolling_roc_auc, 3)}` +
        // Its standard error: a gap of twice this to another AUC can be the window's draw.
        ` ± ${formatNumber(m.rolling_roc_auc_se, 3)}` +
        ` · PR AUC ${formatNumber(m.rolling_pr_auc, 3)}` +
        ` · calibration ${formatNumber(m.rolling_calibration, 2)}` +
        ` · since the start: AUC ${formatNumber(m.roc_auc, 3)}` +
        ` ± ${formatNumber(m.roc_auc_error, 4)}` +
        ` · traffic ${formatNumber((v.traffic_share || 0) * 100, 0)} %` +
        (v.shadow ? " · shadow" : "");
      charts.reliability.setData(v.reliability || []);
    }
    showQuarantine(entry.quarantined || {});
  }

  function lastValue(key) {
    const col = state.columns[key] || [];
    for (let i = col.length - 1; i >= 0; i--) if (col[i] !== null) return col[i];
    return null;
  }

  function lineageText(lineage) {
    const parts = [];
    if (lineage.restored_from) {
      parts.push(`restored from ${lineage.restored_from}` +
        (lineage.replay === false ? " (no replay)" : lineage.replay ? " (replayed)" : ""));
    }
    if (lineage.rolled_back_from !== undefined) {
      parts.push(`rolled back from version ${lineage.rolled_back_from}` +
        (lineage.rolled_back_variant ? ` (${lineage.rolled_back_variant})` : ""));
    }
    if (lineage.reason) parts.push(`why: ${lineage.reason}`);
    if (lineage.parent_version !== undefined) parts.push(`parent ${lineage.parent_version}`);
    return parts.length ? parts.map((p) => el("div", {}, p)) : ["–"];
  }

  function showQuarantine(counts) {
    const rules = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    const box = $("quarantine");
    if (!rules.length) {
      box.replaceChildren(el("p", { class: "muted" }, "none"));
      return;
    }
    const top = rules[0][1] || 1;
    box.replaceChildren(...rules.flatMap(([rule, n]) => [
      el("span", { "data-rule": rule }, rule),
      el("div", { class: "bar", style: { width: `${Math.max(0.5, (100 * n) / top)}%` } }),
      el("span", {}, String(n)),
    ]));
  }

  // A record with `ends` closes the alert of that id: the alert is listed once, with when
  // it started and when it stopped (event time), or "ongoing".
  function startedAlerts() {
    return state.alerts.filter((a) => !a.ends);
  }

  function endsById() {
    return new Map(state.alerts.filter((a) => a.ends).map((a) => [a.ends, a]));
  }

  function showAlerts() {
    const ends = endsById();
    $("alerts").replaceChildren(...startedAlerts().slice(-MAX_ALERTS_LISTED).reverse().map((a) => {
      const end = ends.get(a.id);
      const test = a.test_statistic === null || a.test_statistic === undefined ? "" :
        ` · test ${formatNumber(a.test_statistic, 4)} (threshold ${formatNumber(a.test_threshold, 4)})`;
      const span = end
        ? `started ${HeadraceCharts.formatTime(a.ts)}, stopped ${HeadraceCharts.formatTime(end.ts)}` +
          ` (${formatAge(end.ts - a.ts)})`
        : `started ${HeadraceCharts.formatTime(a.ts)}, ongoing`;
      return el("li", {
        "data-detector": a.detector, "data-variant": a.variant, "data-ts": String(a.ts),
        "data-ended": end ? String(end.ts) : "",
      },
      `${HeadraceCharts.formatTime(alertTime(a))} `,
      el("span", { class: "detector" }, a.detector),
      ` on ${a.signal} · ${a.model}/${a.variant} · value ${formatNumber(a.value, 4)}` +
        ` (threshold ${formatNumber(a.threshold, 4)})${test} · `,
      el("span", { class: "span" }, span),
      ` · ${a.message}`);
    }));
  }

  // -- data -------------------------------------------------------------------

  async function loadModels() {
    const body = await fetchJSON("/models");
    const select = $("model");
    const names = body.models.map((m) => m.model);
    if (select.options.length !== names.length) {
      select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
      if (state.model) select.value = state.model;
    }
    if (!state.model) state.model = names[0];
    return body.models.find((m) => m.model === state.model);
  }

  async function loadHistory() {
    const params = new URLSearchParams({ model: state.model });
    if (state.lastId) params.set("after", state.lastId);
    const body = await fetchJSON(`/dashboard/history?${params}`, { headers: readHeaders() });
    addPoints(body.points);
  }

  async function loadAlerts() {
    const url = `/drift/alerts?limit=1000&model=${encodeURIComponent(state.model)}`;
    const body = await fetchJSON(url, { headers: readHeaders() });
    mergeAlerts(body.alerts);
  }

  function mergeAlerts(alerts) {
    const known = new Set(state.alerts.map((a) => a.id));
    const fresh = alerts.filter((a) => a.model === state.model && !known.has(a.id));
    if (!fresh.length) return;
    state.alerts = state.alerts.concat(fresh).sort((a, b) => alertTime(a) - alertTime(b));
    if (state.alerts.length > 1000) state.alerts.splice(0, state.alerts.length - 1000);
    showAlerts();
  }

  // Server-sent events, read as EventSource would: reconnect after a drop or a refusal
  // (a full server, a missing key), resuming after the last alert received.
  async function followAlerts() {
    let lastId = null;
    for (;;) {
      try {
        const headers = readHeaders();
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch("/drift/alerts/stream", { headers });
        if (response.ok && response.body) {
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) {
              const message = parseEvent(buffer.slice(0, end));
              buffer = buffer.slice(end + 2);
              if (message.id) lastId = message.id;
              if (message.event === "alert" && message.data) {
                const alert = JSON.parse(message.data);
                alert.stream_id = message.id;
                mergeAlerts([alert]);
              }
            }
          }
        }
      } catch (_) {
        // The API went away or the connection dropped: connect again below.
      }
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  function parseEvent(block) {
    const message = { id: null, event: "message", data: "" };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") message.id = value;
      else if (field === "event") message.event = value;
      else if (field === "data") message.data += (message.data ? "\n" : "") + value;
    }
    return message;
  }

  async function tick() {
    if (state.polling) return;
    state.polling = true;
    try {
      const entry = await loadModels();
      await loadHistory();
      showServed(entry);
      drawCharts();
      $("status").textContent = `updated ${new Date().toTimeString().slice(0, 8)}`;
      $("status").className = "muted";
    } catch (err) {
      $("status").textContent = err.status === 401
        ? "this API has keys: type the admin token to read its history and alerts"
        : `cannot reach the API: ${err.message}`;
      $("status").className = "error";
    } finally {
      state.polling = false;
    }
  }

  // -- admin ------------------------------------------------------------------

  function authHeaders() {
    return { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" };
  }

  function readHeaders() {
    return state.token ? { Authorization: `Bearer ${state.token}` } : {};
  }

  async function admin(path, method = "GET", body = undefined) {
    return fetchJSON(path, {
      method,
      headers: authHeaders(),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function setAdmin(on) {
    state.admin = on;
    $("admin").hidden = !on;
    $("admin-locked").hidden = on;
    $("token-forget").hidden = !on;
    $("token").hidden = on;
    $("token-submit").hidden = on;
    if (!on) $("snapshots").tBodies[0].replaceChildren();
  }

  async function verifyToken() {
    if (!state.token) return setAdmin(false);
    try {
      await admin("/admin/verify");
      sessionStorage.setItem(TOKEN_KEY, state.token);
      $("token-status").textContent = "admin";
      $("token-status").className = "ok";
      setAdmin(true);
      await loadSnapshots();
      // The alerts listed so far may have been refused without the token.
      if (state.model) await loadAlerts().catch(() => {});
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      $("token-status").textContent = err.status === 404
        ? "admin routes are off on this server" : `refused: ${err.message}`;
      $("token-status").className = "error";
      setAdmin(false);
    }
  }

  function say(text, ok) {
    const status = $("admin-status");
    status.textContent = text;
    status.className = ok ? "ok" : "error";
  }

  async function loadSnapshots() {
    if (!state.admin) return;
    let body;
    try {
      body = await admin("/admin/snapshots");
    } catch (err) {
      if (err.status === 401 || err.status === 403) return setAdmin(false);
      say(err.message, false);
      return;
    }
    const rows = body.snapshots
      .filter((s) => s.model === state.model)
      .reverse()
      .map((s) => el("tr", { "data-snapshot": s.snapshot_id },
        el("td", {}, s.snapshot_id),
        el("td", {}, String(s.version)),
        el("td", {}, new Date(s.created_at).toLocaleString()),
        el("td", {}, snapshotLoss(s)),
        el("td", { class: s.last_known_good ? "lkg" : "" }, s.last_known_good ? "✓ last known good" : ""),
        el("td", {}, el("button", {
          type: "button", class: "restore", "data-id": s.snapshot_id,
          onclick: () => askRestore(s.snapshot_id),
        }, "restore…"))));
    $("snapshots").tBodies[0].replaceChildren(...rows);
  }

  function snapshotLoss(snapshot) {
    return Object.entries(snapshot.metrics || {})
      .map(([variant, m]) => `${variant} ${formatNumber(m.log_loss ?? m.rolling_log_loss, 4)}`)
      .join(" · ");
  }

  async function act(what, call) {
    say(`${what}…`, true);
    try {
      const result = await call();
      say(`${what}: done${result.version ? `, version ${result.version}` : ""}` +
        (result.snapshot_id ? ` (${result.snapshot_id})` : ""), true);
      await loadSnapshots();
      await tick();
    } catch (err) {
      say(`${what} failed: ${err.message}`, false);
      if (err.status === 401 || err.status === 403) setAdmin(false);
    }
  }

  function askRestore(snapshotId) {
    const dialog = $("restore-dialog");
    $("restore-name").textContent = snapshotId;
    dialog.returnValue = "";
    dialog.onclose = () => {
      const choice = dialog.returnValue;
      if (choice !== "replay" && choice !== "skip") return;
      act(`restore ${snapshotId}`, () => admin("/admin/restore", "POST", {
        snapshot: snapshotId, replay: choice === "replay", model: state.model,
      }));
    };
    dialog.showModal();
  }

  function askRollback() {
    const dialog = $("rollback-dialog");
    $("rollback-name").textContent = state.model;
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue !== "confirm") return;
      act("roll back", () => admin("/admin/rollback", "POST", {
        model: state.model, reason: "operator rollback from the dashboard",
      }));
    };
    dialog.showModal();
  }

  // -- start ------------------------------------------------------------------

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    state.token = token;
    verifyToken();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    $("token-status").textContent = "";
    setAdmin(false);
  });
  $("take-snapshot").addEventListener("click", () =>
    act("snapshot", () => admin("/admin/snapshots", "POST", { model: state.model })));
  $("rollback").addEventListener("click", askRollback);
  $("model").addEventListener("change", async () => {
    state.model = $("model").value;
    resetSeries();
    state.alerts = [];
    await loadAlerts();
    await tick();
    await loadSnapshots();
  });
  window.addEventListener("resize", drawCharts);

  (async () => {
    setAdmin(false);
    followAlerts();
    await tick();
    if (state.model) await loadAlerts().catch(() => {});
    await verifyToken();
    setInterval(tick, POLL_MS);
    setInterval(() => loadSnapshots(), 10 * POLL_MS);
  })();
})();
