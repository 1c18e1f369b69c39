/* Broadcasts list and page: progress bars that fill as deliveries settle.
   "broadcast" messages carry fanout.progress() (with delivery counts) or fan_out_progress()
   (chunks only); the newest per broadcast is kept and applied once per animation frame.
   Without the live stream (or as a slow safety net) incomplete broadcasts are polled. */
(function () {
  "use strict";
  var C = window.HeraldConsole;
  if (!C) return;
  var latest = new Map();

  function holders(id) {
    return document.querySelectorAll('[data-broadcast-id="' + id + '"]:not(.progress)');
  }

  function text(root, selector, value) {
    var el = root.querySelector(selector);
    if (el && el.textContent !== String(value)) el.textContent = value;
  }

  function apply(body) {
    holders(body.id).forEach(function (root) {
      var bar = root.querySelector(".progress");
      var complete = false;
      if (body.deliveries) {
        var expected = body.deliveries.expected, counts = body.deliveries.by_status || {}, settled = 0;
        Object.keys(counts).forEach(function (s) { if (s !== "queued" && s !== "sending") settled += counts[s]; });
        var percent = Math.min(100, expected ? Math.round((1000 * settled) / expected) / 10 : 0);
        complete = body.status === "fanned_out" && settled >= expected;
        if (bar) {
          bar.dataset.percent = percent.toFixed(1);
          bar.dataset.settled = settled;
          bar.dataset.expected = expected;
          bar.dataset.complete = String(complete);
          bar.setAttribute("aria-valuenow", percent.toFixed(1));
          bar.querySelector(".bar").style.width = percent.toFixed(1) + "%";
        }
        text(root, ".percent", percent.toFixed(1));
        text(root, ".settled", settled);
        text(root, ".expected", expected);
        root.querySelectorAll(".counter[data-status]").forEach(function (counter) {
          var n = counts[counter.dataset.status] || 0, value = counter.querySelector(".value");
          if (value.dataset.value !== String(n)) { value.dataset.value = n; value.textContent = n.toLocaleString(); }
        });
      } else if (bar) {
        complete = bar.dataset.complete === "true" && body.status === "fanned_out";
      }
      var badge = root.querySelector(".broadcast-status") || document.getElementById("broadcast-status");
      var shown = complete ? "complete" : body.status;
      if (badge && badge.dataset.status !== shown) { badge.dataset.status = shown; badge.textContent = shown.replace(/_/g, " "); }
      if (body.chunks) text(root, "#broadcast-chunks", body.chunks.done + "/" + body.chunks.total);
      if (body.recipients !== undefined) { text(root, ".recipients", body.recipients); text(root, "#broadcast-recipients", body.recipients); }
      if (body.fanned_out_at) text(root, "#broadcast-fanned-out", body.fanned_out_at.replace("T", " ").slice(0, 19) + " UTC");
    });
  }

  var flush = C.perFrame(function () {
    latest.forEach(apply);
    latest.clear();
  });

  function receive(body) {
    if (!body || !body.id) return;
    var prior = latest.get(body.id);
    // A chunks-only update must not hide the counts of a full one waiting in the same frame.
    if (prior && prior.deliveries && !body.deliveries) body = Object.assign({}, prior, body, { deliveries: prior.deliveries });
    latest.set(body.id, body);
    flush();
  }

  C.onLive("broadcast", function (msg) { receive(msg.broadcast); });
  C.onLive("resync", function () { poll(); });

  function poll() {
    var bars = document.querySelectorAll('.progress[data-broadcast-id][data-complete="false"]');
    Array.prototype.slice.call(bars, 0, 10).forEach(function (bar) {
      var root = bar.closest("[data-progress-url]");
      if (root) C.getJSON(root.dataset.progressUrl).then(receive).catch(function () {});
    });
  }
  var last = 0;
  setInterval(function () {
    var now = Date.now(), every = C.state === "live" ? 30000 : 4000;
    if (now - last >= every) { last = now; poll(); }
  }, 1000);
})();
