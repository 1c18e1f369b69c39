/*
 * Herald console: the live stream of delivery events (one WebSocket per page).
 *
 *   HeraldLive.on("events", fn)     fn({type: "events", events: [...]}) -- new state changes,
 *                                   each event once, never older than what a delivery already showed
 *   HeraldLive.on("broadcast", fn)  fn({type: "broadcast", broadcast: {...progress}})
 *   HeraldLive.on("state", fn)      fn({type: "state", state: "connecting" | "live" | "offline" | "denied"})
 *   HeraldLive.on("resync", fn)     more was missed than the server replays: reload the data
 *
 * The page says where to connect and from which event on: <body data-live-url="/ws/console/"
 * data-live-after="<last event id when the page was rendered>">. After a lost connection it
 * reconnects with backoff and asks for everything after the last event it saw, so nothing
 * between the render and now is missed. The server also replays a small overlap before that
 * point (an event can commit after one with a larger id, see notifications/realtime/console.py):
 * what was already seen, or was already in the rendered page (ids up to data-live-after), is
 * dropped here by id, so counters never count an event twice.
 */
(function () {
  "use strict";

  var SEEN_MAX = 50000;
  var PING_EVERY_MS = 25000;

  var handlers = {};
  var seen = new Set();
  var seenOrder = [];
  var latestByDelivery = new Map();
  var last = null;
  var floor = null; // the page's data already holds every event up to this id
  var socket = null;
  var state = "offline";
  var attempts = 0;
  var paused = false;
  var reconnectTimer = null;
  var pingTimer = null;
  var stats = { messages: 0, events: 0, since: Date.now() };

  function on(type, fn) {
    (handlers[type] = handlers[type] || []).push(fn);
  }

  function emit(type, message) {
    (handlers[type] || []).forEach(function (fn) {
      try {
        fn(message);
      } catch (err) {
        console.error("HeraldLive handler for " + type + " failed", err);
      }
    });
  }

  function setState(next) {
    state = next;
    var el = document.getElementById("live-state");
    if (el) {
      el.dataset.state = next;
      el.textContent = { connecting: "Connecting…", live: "Live", offline: "Offline", denied: "Signed out" }[next] || next;
    }
    emit("state", { type: "state", state: next });
  }

  function remember(id) {
    seen.add(id);
    seenOrder.push(id);
    if (seenOrder.length > SEEN_MAX) {
      seen.delete(seenOrder.shift());
    }
  }

  function takeEvents(events) {
    var fresh = [];
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      if (seen.has(e.id) || (floor !== null && e.id <= floor)) continue;
      remember(e.id);
      if (last === null || e.id > last) last = e.id;
      var newest = latestByDelivery.get(e.delivery);
      if (newest !== undefined && newest > e.id) continue; // an older state that committed late
      latestByDelivery.set(e.delivery, e.id);
      fresh.push(e);
    }
    if (latestByDelivery.size > SEEN_MAX) latestByDelivery.clear();
    stats.events += fresh.length;
    if (fresh.length) emit("events", { type: "events", events: fresh });
  }

  function onMessage(raw) {
    var message;
    try {
      message = JSON.parse(raw.data);
    } catch (err) {
      return;
    }
    stats.messages += 1;
    if (message.type === "events") {
      takeEvents(message.events || []);
    } else if (message.type === "broadcast") {
      emit("broadcast", message);
    } else if (message.type === "ready") {
      if (message.last !== null && message.last !== undefined && (last === null || message.last > last)) {
        last = message.last;
      }
      attempts = 0;
      setState("live");
      emit("ready", message);
      if (message.more) emit("resync", message);
    }
  }

  function socketUrl() {
    var url = new URL(document.body.dataset.liveUrl || "/ws/console/", window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    if (last !== null) url.searchParams.set("after", String(last));
    return url.toString();
  }

  function connect() {
    if (paused || socket) return;
    setState("connecting");
    var ws = new WebSocket(socketUrl());
    socket = ws;
    ws.onmessage = onMessage;
    ws.onclose = function (event) {
      if (socket === ws) socket = null;
      clearInterval(pingTimer);
      if (event.code === 1008) {
        setState("denied"); // signed out or no longer allowed: reconnecting would not help
        return;
      }
      setState("offline");
      scheduleReconnect();
    };
    pingTimer = setInterval(function () {
      if (ws.readyState === WebSocket.OPEN) ws.send('{"type": "ping"}');
    }, PING_EVERY_MS);
  }

  function scheduleReconnect() {
    if (paused || reconnectTimer) return;
    var delay = Math.min(15000, 500 * Math.pow(2, attempts)) * (0.5 + Math.random() / 2);
    attempts += 1;
    reconnectTimer = setTimeout(function () {
      reconnectTimer = null;
      connect();
    }, delay);
  }

  function start() {
    var after = parseInt(document.body.dataset.liveAfter || "", 10);
    if (last === null && !isNaN(after)) {
      last = after;
      floor = after;
    }
    paused = false;
    connect();
  }

  /* Drop the connection and stay away until resume() (the tests use it to miss events). */
  function pause() {
    paused = true;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (socket) socket.close(4000, "paused");
  }

  function resume() {
    paused = false;
    attempts = 0;
    connect();
  }

  window.HeraldLive = {
    on: on,
    start: start,
    pause: pause,
    resume: resume,
    get last() {
      return last;
    },
    get state() {
      return state;
    },
    get stats() {
      return stats;
    },
  };

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.liveUrl) start();
  });
})();
