// labctl dashboard: live updates over server-sent events, simple SVG line charts.
// No inline scripts (the page's CSP forbids them); data is inserted as text, never as HTML.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const prefix = body.dataset.prefix || "/dashboard";
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function ago(ts) {
    if (!ts) return "never";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3).replace(/\.?0+$/, "");
  }

  function duration(s) {
    if (s >= 86400) return (s / 86400).toFixed(2) + " d";
    if (s >= 3600) return (s / 3600).toFixed(1) + " h";
    return Math.round(s) + " s";
  }

  function refreshAges() {
    for (const td of document.querySelectorAll("td.ts")) td.textContent = ago(Number(td.dataset.ts));
  }

  // -- rig page ---------------------------------------------------------------------------
  function renderDevices(devices) {
    const tbody = document.querySelector("#devices tbody");
    tbody.replaceChildren();
    for (const d of devices) {
      const tr = el("tr", { "data-key": d.key, "data-state": d.state });
      const name = el("td");
      const a = el("a", { href: prefix + "/devices/" + encodeURIComponent(d.vendor) + "/" + encodeURIComponent(d.device) }, d.device);
      name.append(a);
      const state = el("td");
      state.append(el("span", { class: "state " + d.state }, d.state));
      tr.append(name, el("td", {}, d.vendor), el("td", {}, d.model), el("td", {}, d.role), state,
        el("td", { class: "ts", "data-ts": d.last_seen }), el("td", {}, d.reserved_by || ""),
        el("td", {}, d.rejected), el("td", {}, d.quarantined || ""));
      tbody.append(tr);
    }
    refreshAges();
  }

  // -- trial page -------------------------------------------------------------------------
  const charts = {};   // channel -> {width, series: {device: Map(ts -> value)}}
  let roles = {};

  function mergePoints(points, full) {
    if (!points || !points.series) return;
    Object.assign(roles, points.roles || {});
    for (const [channel, byDevice] of Object.entries(points.series)) {
      const c = charts[channel] || (charts[channel] = { series: {} });
      for (const [device, pts] of Object.entries(byDevice)) {
        let m = c.series[device];
        if (!m || full) m = c.series[device] = new Map();
        for (const [t, v] of pts) m.set(t, v);
      }
    }
  }

  function drawChart(channel, c) {
    let box = document.getElementById("chart-" + channel);
    if (!box) {
      box = el("div", { class: "chart", id: "chart-" + channel });
      box.append(el("h3", {}, channel), el("div", { class: "legend" }));
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 1000 220");
      svg.setAttribute("preserveAspectRatio", "none");
      box.append(svg);
      document.getElementById("charts").append(box);
    }
    const svg = box.querySelector("svg");
    const legend = box.querySelector(".legend");
    const devices = Object.keys(c.series).sort((a, b) =>
      (roles[a] === "reference" ? -1 : 0) - (roles[b] === "reference" ? -1 : 0) || a.localeCompare(b));
    let t0 = Infinity, t1 = -Infinity, lo = Infinity, hi = -Infinity;
    for (const d of devices) for (const [t, v] of c.series[d]) {
      t0 = Math.min(t0, t); t1 = Math.max(t1, t); lo = Math.min(lo, v); hi = Math.max(hi, v);
    }
    svg.replaceChildren();
    legend.replaceChildren();
    if (!isFinite(t0)) return;
    if (hi === lo) { hi += 1; lo -= 1; }
    const x = (t) => 40 + (t1 > t0 ? (t - t0) / (t1 - t0) : 0) * 950;
    const y = (v) => 205 - (v - lo) / (hi - lo) * 195;
    for (const v of [lo, (lo + hi) / 2, hi]) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", "0"); label.setAttribute("y", String(y(v) + 4));
      label.setAttribute("font-size", "12"); label.textContent = fmt(v);
      svg.append(label);
    }
    let colour = 0;
    for (const d of devices) {
      const ref = roles[d] === "reference";
      const stroke = ref ? "#000" : PALETTE[colour++ % PALETTE.length];
      const pts = [...c.series[d].entries()].sort((a, b) => a[0] - b[0]);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", stroke);
      line.setAttribute("stroke-width", ref ? "2.5" : "1.5");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      line.setAttribute("points", pts.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" "));
      line.dataset.device = d;
      line.dataset.points = String(pts.length);
      svg.append(line);
      const item = el("span", {}, d + (ref ? " (reference)" : ""));
      const swatch = el("i"); swatch.style.background = stroke;
      item.prepend(swatch);
      legend.append(item);
    }
  }

  function renderRun(run, points, full) {
    document.getElementById("phase").textContent = run.phase;
    const status = document.getElementById("status");
    status.textContent = run.status;
    status.className = "status " + run.status;
    const p = document.getElementById("progress");
    const frac = run.device_total_s ? Math.min(1, run.device_elapsed_s / run.device_total_s) : 0;
    p.value = run.done ? 1 : frac;
    document.getElementById("progress-text").textContent =
      duration(run.device_elapsed_s) + " of " + duration(run.device_total_s) + " device time";
    document.getElementById("readings").textContent = run.readings;
    document.getElementById("rate").textContent = run.readings_per_s;
    document.getElementById("message").textContent = run.message;
    document.getElementById("report").hidden = !run.done;
    document.getElementById("criteria-note").textContent =
      run.final ? "(final verdict)" : "(running values on the data so far)";
    const tbody = document.querySelector("#criteria tbody");
    tbody.replaceChildren();
    for (const c of run.criteria) {
      const tr = el("tr", { "data-subject": c.subject, "data-metric": c.metric });
      const ok = el("td");
      ok.append(el("span", { class: "status " + (c.passed ? "pass" : "fail") }, c.passed ? "pass" : "fail"));
      tr.append(el("td", {}, c.subject), el("td", {}, c.metric), el("td", {}, fmt(c.value)),
        el("td", {}, c.target), ok);
      tbody.append(tr);
    }
    const dev = document.querySelector("#run-devices tbody");
    dev.replaceChildren();
    for (const d of run.devices) {
      const st = el("td"); st.append(el("span", { class: "state " + d.state }, d.state));
      const tr = el("tr"); tr.append(el("td", {}, d.key), el("td", {}, d.role), st, el("td", {}, d.rejected));
      dev.append(tr);
    }
    const rej = Object.entries(run.rejected || {}).map(([k, v]) => k + ": " + v).join(", ");
    document.getElementById("rejected").textContent =
      rej ? "Rejected messages on the rig since the controller started — " + rej : "";
    mergePoints(points, full);
    for (const [channel, c] of Object.entries(charts)) drawChart(channel, c);
  }

  // -- live connection --------------------------------------------------------------------
  function connect() {
    let url = prefix + "/events?page=" + encodeURIComponent(page);
    if (page === "trial") url += "&run=" + encodeURIComponent(body.dataset.run);
    const live = document.getElementById("live");
    const es = new EventSource(url);
    es.onopen = () => live && live.classList.add("on");
    es.onerror = () => live && live.classList.remove("on");
    es.addEventListener("update", (ev) => {
      const data = JSON.parse(ev.data);
      if (data.devices) renderDevices(data.devices);
      if (data.run) renderRun(data.run, data.points, data.full);
      if (data.runs && data.runs.length) window.location.assign(prefix + "/trial/" + encodeURIComponent(data.runs[0]));
      body.dataset.seq = String(data.seq);
    });
  }

  if (page === "rig" || page === "trial" || page === "trials") {
    refreshAges();
    setInterval(refreshAges, 1000);
    connect();
  }
})();
