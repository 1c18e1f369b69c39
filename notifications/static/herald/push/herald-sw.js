/*
 * Herald's web push service worker.
 *
 * On `push` it shows the message Herald sent: {"title", "body", "url", "data", "delivery_id"}.
 * On `notificationclick` it focuses a window already showing the message's url, or opens one.
 *
 * Served at /u/push/herald-sw.js on your Herald domain. A service worker must come from the
 * origin of the page that registers it, so on your own site add a one-line worker file,
 *     importScripts("https://<your-herald-domain>/u/push/herald-sw.js");
 * and pass its path to HeraldPush.subscribe({serviceWorker: "/herald-sw.js", ...}).
 */
"use strict";

self.addEventListener("install", function () {
  // A new version takes over at once: the handlers below keep no state between versions.
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

function readPayload(event) {
  if (!event.data) {
    return {};
  }
  try {
    var parsed = event.data.json();
    return parsed && typeof parsed === "object" ? parsed : { body: String(parsed) };
  } catch (e) {
    return { body: event.data.text() };
  }
}

// Only web pages may be opened from a notification (never javascript: or data: URLs).
function safeUrl(url) {
  if (!url) {
    return "";
  }
  try {
    var resolved = new URL(url, self.location.origin);
    return resolved.protocol === "https:" || resolved.protocol === "http:" ? resolved.href : "";
  } catch (e) {
    return "";
  }
}

self.addEventListener("push", function (event) {
  var payload = readPayload(event);
  var extra = payload.data && typeof payload.data === "object" ? payload.data : {};
  var data = Object.assign({}, extra, {
    url: safeUrl(payload.url || extra.url),
    delivery_id: payload.delivery_id || "",
  });
  var options = { body: payload.body || "", data: data };
  if (payload.delivery_id) {
    // A delivery pushed twice (a retry after a lost answer) replaces itself instead of doubling.
    options.tag = "herald-" + payload.delivery_id;
  }
  event.waitUntil(self.registration.showNotification(payload.title || "New notification", options));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = safeUrl(event.notification.data && event.notification.data.url);
  if (!url) {
    return;
  }
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
      for (var i = 0; i < windows.length; i++) {
        if (windows[i].url === url && "focus" in windows[i]) {
          return windows[i].focus();
        }
      }
      return self.clients.openWindow(url);
    })
  );
});
