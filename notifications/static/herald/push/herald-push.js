/*
 * Herald web push snippet. Include it from your Herald domain:
 *
 *   <script src="https://<your-herald-domain>/u/push/herald-push.js"></script>
 *   <script>
 *     button.onclick = function () {
 *       HeraldPush.subscribe({ token: recipientToken })   // a recipient token from Herald's API
 *         .then(function (subscription) { ... }, function (error) { ... });
 *     };
 *   </script>
 *
 * subscribe() asks for permission (call it from a click), registers the service worker, subscribes
 * with your VAPID key and sends the subscription to Herald for that recipient. On a page of your
 * own origin, pass serviceWorker: the path of a worker file on your origin that contains
 *   importScripts("https://<your-herald-domain>/u/push/herald-sw.js");
 * unsubscribe({token}) removes the browser's subscription here and at Herald.
 */
(function (global) {
  "use strict";

  var script = document.currentScript;
  // Where Herald's /u/push/ endpoints are: beside this script.
  var base = new URL(".", script && script.src ? script.src : new URL("/u/push/", global.location.href));

  function supported() {
    return "serviceWorker" in navigator && "PushManager" in global && "Notification" in global;
  }

  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = global.atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes;
  }

  function sameKey(buffer, bytes) {
    if (!buffer) {
      return true; // the browser does not say: assume it is ours
    }
    var have = new Uint8Array(buffer);
    if (have.length !== bytes.length) {
      return false;
    }
    for (var i = 0; i < have.length; i++) {
      if (have[i] !== bytes[i]) {
        return false;
      }
    }
    return true;
  }

  function call(path, options) {
    return fetch(new URL(path, base).href, options).then(function (response) {
      if (response.status === 204) {
        return null;
      }
      return response.json().then(function (body) {
        if (!response.ok) {
          var message = body && body.error ? body.error.message : "HTTP " + response.status;
          var error = new Error("Herald: " + message);
          error.status = response.status;
          error.body = body;
          throw error;
        }
        return body;
      });
    });
  }

  function withToken(token, method, body) {
    return {
      method: method,
      headers: { Authorization: "Recipient " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    };
  }

  // The registration once its worker is active (pushManager.subscribe needs an active worker).
  function activated(registration) {
    if (registration.active) {
      return Promise.resolve(registration);
    }
    var worker = registration.installing || registration.waiting;
    return new Promise(function (resolve, reject) {
      worker.addEventListener("statechange", function () {
        if (worker.state === "activated") {
          resolve(registration);
        } else if (worker.state === "redundant") {
          reject(new Error("Herald: the service worker failed to install"));
        }
      });
    });
  }

  function register(options) {
    options = options || {};
    if (!supported()) {
      return Promise.reject(new Error("Herald: this browser does not support web push"));
    }
    var url = options.serviceWorker || new URL("herald-sw.js", base).href;
    var settings = options.scope ? { scope: options.scope } : undefined;
    return navigator.serviceWorker.register(url, settings).then(activated);
  }

  function publicKey() {
    return call("vapid-public-key", { method: "GET" }).then(function (body) {
      return body.public_key;
    });
  }

  function subscribe(options) {
    options = options || {};
    if (!options.token) {
      return Promise.reject(new Error("Herald: subscribe() needs {token: <recipient token>}"));
    }
    return Notification.requestPermission()
      .then(function (permission) {
        if (permission !== "granted") {
          throw new Error("Herald: notifications are " + permission + " for this site");
        }
        return Promise.all([register(options), publicKey()]);
      })
      .then(function (results) {
        var registration = results[0];
        var key = keyBytes(results[1]);
        return registration.pushManager.getSubscription().then(function (existing) {
          if (existing && sameKey(existing.options && existing.options.applicationServerKey, key)) {
            return existing;
          }
          // Subscribed with another key (the tenant's keys changed): start again with ours.
          var dropped = existing ? existing.unsubscribe() : Promise.resolve(true);
          return dropped.then(function () {
            return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
          });
        });
      })
      .then(function (subscription) {
        return call("subscriptions", withToken(options.token, "POST", subscription.toJSON()));
      });
  }

  function unsubscribe(options) {
    options = options || {};
    if (!supported()) {
      return Promise.resolve(false);
    }
    var url = options.serviceWorker || new URL("herald-sw.js", base).href;
    return navigator.serviceWorker
      .getRegistration(options.scope || url)
      .then(function (registration) {
        return registration ? registration.pushManager.getSubscription() : null;
      })
      .then(function (subscription) {
        if (!subscription) {
          return false;
        }
        var forget = options.token
          ? call("subscriptions", withToken(options.token, "DELETE", { endpoint: subscription.endpoint })).catch(
              function (error) {
                if (error.status !== 404) {
                  throw error; // 404: Herald had already forgotten it
                }
              }
            )
          : Promise.resolve(null);
        return forget.then(function () {
          return subscription.unsubscribe();
        });
      });
  }

  global.HeraldPush = {
    supported: supported,
    register: register,
    publicKey: publicKey,
    subscribe: subscribe,
    unsubscribe: unsubscribe,
    baseUrl: base.href,
  };
})(window);
