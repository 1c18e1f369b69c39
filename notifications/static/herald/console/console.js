/* Herald console: what every page shares. The live indicator in the header, work batched per
   animation frame, the notification summary rule, and small DOM helpers. Pages register their
   handlers through HeraldConsole.onLive, which is a no-op when the live stream is unavailable
   (the page then still works, and its own fallback polling keeps it current). */
(function () {
  "use strict";

  function setState(state) {
    var el = document.getElementById("live-state");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = state === "offline" ? "Offline" : state;
  }

  var Console = {
    state: window.HeraldLive ? "connecting" : "offline",

    onLive: function (type, handler) {
      if (!window.HeraldLive) return false;
      window.HeraldLive.on(type, handler);
      return true;
    },

    /* A function that runs `fn` at most once per animation frame, however often it is called. */
    perFrame: function (fn) {
      var scheduled = false;
      return function () {
        if (scheduled) return;
        scheduled = true;
        requestAnimationFrame(function () { scheduled = false; fn(); });
      };
    },

    /* notifications.models.Notification.summarize, in the browser. */
    summarize: function (statuses) {
      if (!statuses.length) return "queued";
      if (statuses.indexOf("sending") >= 0) return "sending";
      if (statuses.indexOf("queued") >= 0) return "queued";
      if (statuses.every(function (s) { return s === "suppressed"; })) return "suppressed";
      var failed = statuses.filter(function (s) { return s === "failed" || s === "bounced"; }).length;
      if (failed === statuses.length) return "failed";
      if (failed) return "partially_failed";
      if (statuses.every(function (s) { return s === "delivered"; })) return "delivered";
      return "sent";
    },

    label: function (status) { return status.replace(/_/g, " "); },

    setStatus: function (el, status) {
      if (!el || el.dataset.status === status) return;
      el.dataset.status = status;
      el.textContent = Console.label(status);
    },

    getText: function (url) {
      return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { if (!r.ok && r.status !== 204) throw new Error(r.status); return r.status === 204 ? "" : r.text(); });
    },

    getJSON: function (url) {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
    },

    fragment: function (html) {
      var t = document.createElement("template");
      t.innerHTML = html.trim();
      return t.content;
    },
  };

  // live.js keeps the indicator itself; without it the page says it is offline.
  if (!window.HeraldLive) setState("offline");
  Console.onLive("state", function (msg) { Console.state = msg.state; });
  window.HeraldConsole = Console;
})();
