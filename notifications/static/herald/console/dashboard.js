/* Dashboard: counters and the chart of sends per channel and state, kept current from the live
   event stream. Events only add to per-bucket counts (O(1) each); the counters, the chart and the
   breakdown are redrawn at most once per animation frame. The page re-reads the authoritative
   figures every 30 s (and at once when the stream comes back) to correct any drift. */
(function () {
  "use strict";
  var C = window.HeraldConsole;
  var dataEl = document.getElementById("dashboard-data");
  if (!C || !dataEl) return;

  var STATUSES = ["queued", "sent", "delivered", "failed", "bounced", "suppressed"];
  var COLORS = { queued: "#9aa3b2", sent: "#3576e8", delivered: "#1f9d55", failed: "#d6453d", bounced: "#a8326b", suppressed: "#c9ced8" };
  var COUNTED = { sent: ["sent"], delivered: ["delivered"], failed: ["failed", "bounced"], suppressed: ["suppressed"] };
  var CHANNELS = ["email", "sms", "push", "in_app"];
  var config = JSON.parse(document.getElementById("dashboard-config").textContent);

  var model = { windows: {}, midnight: 0, gauges: {} };
  var view = { window: "hour", channel: "" };

  function load(data) {
    model.last = data.last_event || 0; // events up to this id are already in these figures
    model.midnight = data.midnight;
    model.gauges = data.gauges;
    ["hour", "day"].forEach(function (name) {
      var w = data[name];
      var buckets = new Map();
      w.rows.forEach(function (r) {
        add(buckets, w.start + r[0] * w.step, r[1], r[2], r[3]);
      });
      model.windows[name] = { step: w.step, count: w.count, buckets: buckets };
    });
  }

  function add(buckets, key, channel, status, n) {
    var b = buckets.get(key);
    if (!b) { b = {}; buckets.set(key, b); }
    var c = b[channel] || (b[channel] = {});
    c[status] = (c[status] || 0) + n;
  }

  function windowStart(w, now) { return Math.floor(now / w.step) * w.step - w.step * (w.count - 1); }

  function prune(now) {
    Object.keys(model.windows).forEach(function (name) {
      var w = model.windows[name], start = windowStart(w, now);
      w.buckets.forEach(function (_, key) { if (key < start) w.buckets.delete(key); });
    });
    var day = 86400000;
    while (now >= model.midnight + day) model.midnight += day;
  }

  function sum(w, statuses, since, channel) {
    var total = 0;
    w.buckets.forEach(function (b, key) {
      if (key < since) return;
      Object.keys(b).forEach(function (ch) {
        if (channel && ch !== channel) return;
        statuses.forEach(function (s) { total += b[ch][s] || 0; });
      });
    });
    return total;
  }

  // --- applying events -------------------------------------------------------------------------
  // Redrawn at most four times a second: under a flood of events the numbers still move
  // smoothly, and the chart's few hundred shapes are not rebuilt on every frame.
  var drawnAt = 0, drawTimer = null, drawFrame = C.perFrame(function () { drawnAt = Date.now(); render(); });
  function redraw() {
    if (drawTimer) return;
    var wait = Math.max(0, drawnAt + 250 - Date.now());
    drawTimer = setTimeout(function () { drawTimer = null; drawFrame(); }, wait);
  }
  var refreshFailures = debounce(loadFailures, 800);

  C.onLive("events", function (msg) {
    var hour = model.windows.hour, day = model.windows.day, failed = false;
    for (var i = 0; i < msg.events.length; i++) {
      var e = msg.events[i], t = Date.parse(e.at);
      if (isNaN(t) || e.id <= model.last) continue;
      add(hour.buckets, Math.floor(t / hour.step) * hour.step, e.channel, e.status, 1);
      add(day.buckets, Math.floor(t / day.step) * day.step, e.channel, e.status, 1);
      // In-flight gauges: close enough between the periodic re-reads that set them exactly.
      if (e.status === "queued") model.gauges.queued++;
      else if (e.status === "sending") { model.gauges.queued--; model.gauges.sending++; }
      else if (e.status === "sent" || e.status === "failed") { model.gauges.sending--; }
      if (e.status === "failed" || e.status === "bounced") failed = true;
    }
    model.gauges.queued = Math.max(0, model.gauges.queued);
    model.gauges.sending = Math.max(0, model.gauges.sending);
    if (failed) refreshFailures();
    redraw();
  });
  // The stream replays what a reconnect missed; when it missed more than it can replay, re-read.
  C.onLive("resync", function () { resync(); loadFailures(); });

  function resync() {
    C.getJSON(config.dataUrl).then(function (data) { load(data); redraw(); }).catch(function () {});
  }
  setInterval(resync, 30000);
  setInterval(redraw, 15000); // the windows slide even when nothing happens

  function debounce(fn, ms) {
    var timer = null;
    return function () { if (!timer) timer = setTimeout(function () { timer = null; fn(); }, ms); };
  }

  var failuresBusy = false;
  function loadFailures() {
    var table = document.getElementById("recent-failures");
    if (!table || failuresBusy) return;
    failuresBusy = true;
    C.getText(table.dataset.url).then(function (html) {
      table.tBodies[0].innerHTML = html;
      table.hidden = !table.tBodies[0].rows.length;
      var none = document.getElementById("no-failures");
      if (none) none.hidden = !table.hidden;
    }).catch(function () {}).then(function () { failuresBusy = false; });
  }

  // --- drawing ---------------------------------------------------------------------------------
  function setNumber(el, n) {
    if (!el) return;
    var text = n.toLocaleString();
    if (el.dataset.value !== String(n)) el.dataset.value = String(n);
    if (el.textContent !== text) el.textContent = text;
  }

  function render() {
    var now = Date.now();
    prune(now);
    var hour = model.windows.hour, day = model.windows.day;
    Object.keys(COUNTED).forEach(function (key) {
      var el = document.getElementById("counter-" + key);
      if (!el) return;
      var today = sum(day, COUNTED[key], model.midnight, ""), last = sum(hour, COUNTED[key], 0, "");
      el.dataset.today = today; el.dataset.hour = last;
      setNumber(el.querySelector(".value"), today);
      setNumber(el.querySelector(".hour"), last);
    });
    ["queued", "sending"].forEach(function (key) {
      var el = document.getElementById("counter-" + key);
      if (!el) return;
      el.dataset.value = model.gauges[key];
      setNumber(el.querySelector(".value"), model.gauges[key]);
    });
    if (model.gauges.notifications_today !== undefined) setNumber(document.getElementById("counter-notifications-today"), model.gauges.notifications_today);
    drawChart(now);
    drawBreakdown();
    var empty = document.getElementById("dashboard-empty");
    if (empty && day.buckets.size) empty.hidden = true;
  }

  var chartEl = document.getElementById("sends-chart");
  var svg = chartEl.querySelector("svg"), tip = chartEl.querySelector(".tip");
  var bars = []; // what each drawn column holds, for the tooltip

  /* The top of the y axis: four gridline steps of 1, 2 or 5 x 10^k, so every label is whole. */
  function niceMax(n) {
    var raw = Math.max(n, 4) / 4, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p * 4;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ms) { var d = new Date(ms); return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()); }

  function columnTotals(w, start) {
    var totals = [];
    for (var i = 0; i < w.count; i++) {
      var b = w.buckets.get(start + i * w.step) || {}, total = 0;
      Object.keys(b).forEach(function (ch) {
        if (view.channel && ch !== view.channel) return;
        STATUSES.forEach(function (s) { total += b[ch][s] || 0; });
      });
      totals.push(total);
    }
    return totals;
  }

  function drawChart(now) {
    var w = model.windows[view.window];
    var start = windowStart(w, now);
    var width = Math.max(320, chartEl.clientWidth || 600), height = 240;
    var right = 8, top = 10, bottom = 24;
    var left = 14 + 6.5 * niceMax(Math.max.apply(null, [0].concat(columnTotals(w, start)))).toLocaleString().length;
    var plotW = width - left - right, plotH = height - top - bottom;
    var slot = plotW / w.count, barW = Math.max(1, slot * 0.72);
    bars = [];
    var max = 0;
    for (var i = 0; i < w.count; i++) {
      var key = start + i * w.step, b = w.buckets.get(key) || {}, counts = {}, total = 0;
      STATUSES.forEach(function (s) {
        var n = 0;
        Object.keys(b).forEach(function (ch) { if (!view.channel || ch === view.channel) n += b[ch][s] || 0; });
        counts[s] = n; total += n;
      });
      bars.push({ key: key, counts: counts, total: total });
      if (total > max) max = total;
    }
    var top_ = niceMax(max), parts = [];
    for (var g = 0; g <= 4; g++) {
      var gy = top + plotH - (plotH * g) / 4;
      parts.push('<line x1="' + left + '" x2="' + (width - right) + '" y1="' + gy + '" y2="' + gy + '" stroke="#eef0f3"/>');
      parts.push('<text x="' + (left - 6) + '" y="' + (gy + 4) + '" text-anchor="end" font-size="10" fill="#8a93a4">' + ((top_ * g) / 4).toLocaleString() + "</text>");
    }
    var every = view.window === "hour" ? 10 : 4;
    bars.forEach(function (bar, i) {
      var x = left + i * slot + (slot - barW) / 2, y = top + plotH;
      STATUSES.forEach(function (s) {
        var n = bar.counts[s];
        if (!n) return;
        var h = (n / top_) * plotH;
        y -= h;
        parts.push('<rect x="' + x.toFixed(1) + '" y="' + y.toFixed(1) + '" width="' + barW.toFixed(1) + '" height="' + Math.max(h, 0.5).toFixed(1) + '" fill="' + COLORS[s] + '" data-status="' + s + '"/>');
      });
      var d = new Date(bar.key);
      var mark = view.window === "hour" ? d.getUTCMinutes() % every === 0 : d.getUTCHours() % every === 0;
      if (mark) parts.push('<text x="' + (left + i * slot + slot / 2).toFixed(1) + '" y="' + (height - 6) + '" text-anchor="middle" font-size="10" fill="#8a93a4">' + clock(bar.key) + "</text>");
    });
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("aria-label", "Sends per " + (view.window === "hour" ? "minute over the last hour" : "hour over the last day"));
    svg.dataset.total = bars.reduce(function (a, b) { return a + b.total; }, 0);
    svg.innerHTML = parts.join("");
    chartEl.dataset.window = view.window;
    chartEl.dataset.channel = view.channel;
    chartEl.dataset.total = svg.dataset.total;
    geometry = { left: left, slot: slot, width: width };
  }
  var geometry = { left: 40, slot: 10, width: 600 };

  chartEl.addEventListener("mousemove", function (ev) {
    var rect = svg.getBoundingClientRect();
    var x = ((ev.clientX - rect.left) / rect.width) * geometry.width;
    var i = Math.floor((x - geometry.left) / geometry.slot);
    var bar = bars[i];
    if (!bar) { tip.style.display = "none"; return; }
    var lines = [clock(bar.key) + (view.window === "hour" ? "" : " - " + clock(bar.key + 3600000)) + " UTC" + (view.channel ? " · " + view.channel : "")];
    STATUSES.forEach(function (s) { if (bar.counts[s]) lines.push(s + ": " + bar.counts[s].toLocaleString()); });
    if (lines.length === 1) lines.push("nothing");
    tip.innerHTML = lines.map(function (l) { return "<div>" + l + "</div>"; }).join("");
    tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX - rect.left + 12, rect.width - 150) + "px";
    tip.style.top = "8px";
  });
  chartEl.addEventListener("mouseleave", function () { tip.style.display = "none"; });

  function drawBreakdown() {
    var w = model.windows[view.window], start = windowStart(w, Date.now());
    var tbody = document.querySelector("#channel-breakdown tbody");
    var cols = ["queued", "sent", "delivered", "failed", "bounced", "suppressed"];
    var html = CHANNELS.map(function (ch) {
      return '<tr data-channel="' + ch + '"><td>' + ch + "</td>" + cols.map(function (s) {
        return '<td class="num" data-status="' + s + '">' + sum(w, [s], start, ch).toLocaleString() + "</td>";
      }).join("") + "</tr>";
    }).join("");
    if (tbody.innerHTML !== html) tbody.innerHTML = html;
  }

  function legend() {
    document.getElementById("chart-legend").innerHTML = STATUSES.map(function (s) {
      return '<span><i style="background:' + COLORS[s] + '"></i>' + s + "</span>";
    }).join("");
  }

  function toggle(groupId, attr, key) {
    var group = document.getElementById(groupId);
    group.addEventListener("click", function (ev) {
      var btn = ev.target.closest("button");
      if (!btn) return;
      view[key] = btn.dataset[attr];
      group.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-pressed", String(b === btn)); });
      render();
    });
  }
  toggle("window-toggle", "window", "window");
  toggle("channel-filter", "channel", "channel");
  window.addEventListener("resize", redraw);

  load(JSON.parse(dataEl.textContent));
  legend();
  render();
})();
