/*
 * Herald in-app feed widget: a bell with an unread badge and a panel listing the feed.
 * No dependencies. On the tenant's own page:
 *
 *   <script src="https://<tenant domain>/static/herald/feed-widget.js"></script>
 *   <div id="bell"></div>
 *   <script>
 *     var feed = HeraldFeed.mount(document.getElementById("bell"), {
 *       token: "<from POST /api/v1/recipients/<external_id>/token, minted by your backend>",
 *       baseUrl: "https://<tenant domain>",      // "" when the page is served by Herald itself
 *       onAuthError: function () { ... },        // optional: the token expired; mint a new one
 *     });
 *     // feed.destroy(), feed.refresh(); the element fires "herald-feed:item" for each new item,
 *     // and [data-herald-feed] carries data-state="connecting|live|offline|expired".
 *   </script>
 *
 * It reads and marks the feed over REST (/u/feed/, Authorization: Recipient <token>) and listens
 * on the WebSocket /ws/feed/ for new items; when the socket drops it reconnects with backoff and
 * asks for what it missed (?after=<newest item id>). Its markup lives in a shadow root, so the
 * page's CSS and the widget's do not touch each other. Item text is always set as text, never
 * as HTML, and only http(s) links and paths on the page's own site are followed.
 */
(function (global) {
  "use strict";

  var MAX_BACKOFF_MS = 30000;
  var STOP_CODES = { 4400: true, 4401: true, 4403: true, 4404: true };

  var STYLE = [
    ":host { all: initial; position: relative; display: inline-block; font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1f2328; }",
    ".bell { position: relative; border: 0; background: transparent; cursor: pointer; padding: 6px; border-radius: 6px; color: inherit; }",
    ".bell:hover, .bell:focus-visible { background: rgba(0,0,0,.06); outline: none; }",
    ".bell svg { width: 22px; height: 22px; display: block; }",
    ".badge { position: absolute; top: 0; right: 0; min-width: 18px; height: 18px; padding: 0 5px; box-sizing: border-box; border-radius: 9px; background: #cf222e; color: #fff; font-size: 11px; font-weight: 600; line-height: 18px; text-align: center; }",
    ".badge[hidden] { display: none; }",
    ".panel { position: absolute; right: 0; top: calc(100% + 6px); width: 360px; max-width: calc(100vw - 16px); max-height: 480px; display: flex; flex-direction: column; background: #fff; border: 1px solid #d0d7de; border-radius: 8px; box-shadow: 0 8px 24px rgba(140,149,159,.3); z-index: 2147483000; }",
    ".panel[hidden] { display: none; }",
    ".head { display: flex; align-items: center; justify-content: space-between; padding: 10px 12px; border-bottom: 1px solid #d8dee4; }",
    ".head strong { font-size: 14px; }",
    ".mark-all { border: 0; background: none; color: #0969da; cursor: pointer; font: inherit; font-size: 12px; padding: 2px 4px; }",
    ".mark-all:disabled { color: #8c959f; cursor: default; }",
    ".items { list-style: none; margin: 0; padding: 0; overflow-y: auto; flex: 1; }",
    ".item { padding: 10px 12px 10px 24px; border-bottom: 1px solid #eaeef2; cursor: pointer; position: relative; }",
    ".item:hover { background: #f6f8fa; }",
    ".item.unread::before { content: ''; position: absolute; left: 10px; top: 16px; width: 7px; height: 7px; border-radius: 50%; background: #0969da; }",
    ".item.unread .title { font-weight: 600; }",
    ".title { display: block; }",
    ".body { display: block; color: #57606a; margin-top: 2px; white-space: pre-line; word-wrap: break-word; }",
    ".meta { display: flex; gap: 8px; margin-top: 4px; font-size: 12px; color: #8c959f; }",
    ".meta a { color: #0969da; text-decoration: none; }",
    ".meta a:hover { text-decoration: underline; }",
    ".empty, .status { padding: 16px 12px; color: #57606a; text-align: center; }",
    ".status { font-size: 12px; padding: 8px 12px; }",
    ".status[hidden], .more[hidden] { display: none; }",
    ".more { border: 0; border-top: 1px solid #eaeef2; background: #fff; color: #0969da; cursor: pointer; padding: 8px; font: inherit; font-size: 12px; }"
  ].join("\n");

  var BELL_SVG =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" ' +
    'stroke-linejoin="round" aria-hidden="true"><path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/>' +
    '<path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>';

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function safeLink(url) {
    if (!url || typeof url !== "string") return null;
    if (url.charAt(0) === "/" && url.charAt(1) !== "/" && url.indexOf("\\") < 0) return url;
    return /^https?:\/\//i.test(url) ? url : null;
  }

  function timeAgo(iso) {
    var then = new Date(iso).getTime();
    if (isNaN(then)) return "";
    var seconds = Math.round((then - Date.now()) / 1000);
    var units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
    var rtf = global.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(seconds) >= units[i][1]) {
        var n = Math.round(seconds / units[i][1]);
        return rtf ? rtf.format(n, units[i][0]) : Math.abs(n) + " " + units[i][0] + "(s) ago";
      }
    }
    return rtf ? rtf.format(0, "second") : "just now";
  }

  function Feed(element, options) {
    if (!element) throw new Error("HeraldFeed.mount: no element to mount on");
    if (!options || !options.token) throw new Error("HeraldFeed.mount: options.token is required");
    this.element = element;
    this.token = options.token;
    this.baseUrl = String(options.baseUrl || "").replace(/\/+$/, "");
    this.onAuthError = options.onAuthError || null;
    this.items = [];
    this.byId = {};
    this.unread = 0;
    this.next = null;
    this.socket = null;
    this.attempt = 0;
    this.connectedOnce = false;
    this.stopped = false;
    this.timer = null;
    this._build();
    this.refresh().catch(function () {}); // the panel says so
    this._connect();
  }

  Feed.prototype._build = function () {
    var self = this;
    this.host = el("span");
    this.host.setAttribute("data-herald-feed", "");
    this.host.setAttribute("data-state", "connecting"); // connecting | live | offline | expired
    this.element.appendChild(this.host);
    var root = this.host.attachShadow ? this.host.attachShadow({ mode: "open" }) : this.host;
    this.root = root;
    var style = el("style");
    style.textContent = STYLE;
    root.appendChild(style);

    this.bell = el("button", "bell");
    this.bell.type = "button";
    this.bell.setAttribute("aria-haspopup", "true");
    this.bell.setAttribute("aria-expanded", "false");
    this.bell.innerHTML = BELL_SVG; // a constant, no data
    this.badge = el("span", "badge");
    this.badge.hidden = true;
    this.bell.appendChild(this.badge);
    root.appendChild(this.bell);

    this.panel = el("div", "panel");
    this.panel.hidden = true;
    this.panel.setAttribute("role", "dialog");
    this.panel.setAttribute("aria-label", "Notifications");
    var head = el("div", "head");
    head.appendChild(el("strong", null, "Notifications"));
    this.markAllButton = el("button", "mark-all", "Mark all read");
    this.markAllButton.type = "button";
    head.appendChild(this.markAllButton);
    this.panel.appendChild(head);
    this.status = el("div", "status");
    this.status.hidden = true;
    this.panel.appendChild(this.status);
    this.list = el("ul", "items");
    this.panel.appendChild(this.list);
    this.moreButton = el("button", "more", "Show older");
    this.moreButton.type = "button";
    this.moreButton.hidden = true;
    this.panel.appendChild(this.moreButton);
    root.appendChild(this.panel);

    this.bell.addEventListener("click", function () { self.toggle(); });
    this.markAllButton.addEventListener("click", function () {
      self.markAllRead().catch(function () { if (!self.stopped) self._setStatus("Could not mark all read."); });
    });
    this.moreButton.addEventListener("click", function () {
      self.loadMore().catch(function () { if (!self.stopped) self._setStatus("Could not load older notifications."); });
    });
    this._onDocClick = function (event) {
      if (!self.panel.hidden && event.composedPath().indexOf(self.host) < 0) self.toggle(false);
    };
    this._onKey = function (event) {
      if (event.key === "Escape" && !self.panel.hidden) { self.toggle(false); self.bell.focus(); }
    };
    document.addEventListener("click", this._onDocClick);
    document.addEventListener("keydown", this._onKey);
    this._render();
  };

  // --- REST ----------------------------------------------------------------------------------

  Feed.prototype._api = function (method, path, body) {
    var self = this;
    var init = { method: method, headers: { Authorization: "Recipient " + this.token }, credentials: "omit" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(this.baseUrl + path, init).then(function (response) {
      if (response.status === 401) self._authFailed();
      if (!response.ok) throw new Error("Herald feed: " + method + " " + path + " answered " + response.status);
      return response.json();
    });
  };

  Feed.prototype.refresh = function () {
    var self = this;
    return this._api("GET", "/u/feed/?limit=20").then(function (page) {
      // Items that arrived live while the page was loading may be missing from it: keep them.
      var live = self.items.filter(function (item) { return item._live; });
      self.items = [];
      self.byId = {};
      page.results.forEach(function (item) { self._add(item, false); });
      self.next = page.next;
      self.unread = page.counts.unread;
      live.forEach(function (item) {
        if (self.byId[item.id]) return;
        self._add(item, true);
        if (item.status === "unread") self.unread += 1;
      });
      self._setStatus("");
      self._render();
    }, function (error) {
      if (!self.stopped) self._setStatus("Could not load notifications.");
      throw error;
    });
  };

  Feed.prototype.loadMore = function () {
    var self = this;
    if (!this.next) return Promise.resolve();
    // The server's link may name another scheme or host (behind a proxy): keep only its path.
    var next = new URL(this.next, global.location.href);
    return this._api("GET", next.pathname + next.search).then(function (page) {
      page.results.forEach(function (item) { self._add(item, false); });
      self.next = page.next;
      self._render();
    });
  };

  Feed.prototype.markRead = function (id) {
    var self = this;
    var item = this.byId[id];
    if (!item || item.status !== "unread") return Promise.resolve();
    item.status = "read";
    this.unread = Math.max(0, this.unread - 1);
    this._render();
    return this._api("PATCH", "/u/feed/" + encodeURIComponent(id), { status: "read" }).catch(function () {
      item.status = "unread";
      self.unread += 1;
      self._render();
    });
  };

  Feed.prototype.markAllRead = function () {
    var self = this;
    return this._api("POST", "/u/feed/mark-all-read").then(function (answer) {
      self.items.forEach(function (item) { if (item.status === "unread") item.status = "read"; });
      self.unread = answer.counts.unread;
      self._render();
    });
  };

  // --- the live socket -----------------------------------------------------------------------

  Feed.prototype._socketUrl = function () {
    var base = this.baseUrl || global.location.protocol + "//" + global.location.host;
    var url = base.replace(/^http/, "ws") + "/ws/feed/?token=" + encodeURIComponent(this.token);
    if (this.connectedOnce && this.items.length) url += "&after=" + encodeURIComponent(this.items[0].id);
    return url;
  };

  Feed.prototype._connect = function () {
    var self = this;
    if (this.stopped || !global.WebSocket) return;
    var reconnecting = this.connectedOnce;
    var socket = new WebSocket(this._socketUrl());
    this.host.setAttribute("data-state", "connecting");
    this.socket = socket;
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      self._onMessage(message, reconnecting);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return;
      self.socket = null;
      if (STOP_CODES[event.code]) { self._authFailed(); return; }
      self.host.setAttribute("data-state", "offline");
      self._scheduleReconnect();
    };
  };

  Feed.prototype._onMessage = function (message, reconnecting) {
    if (message.type === "feed.item") {
      var isNew = !this.byId[message.item.id];
      this._add(message.item, true);
      if (typeof message.unread === "number") this.unread = message.unread;
      this._render();
      if (isNew) {
        this.element.dispatchEvent(new CustomEvent("herald-feed:item", { detail: message.item }));
      }
    } else if (message.type === "feed.counts") {
      this.unread = message.unread;
      this._render();
    } else if (message.type === "feed.ready") {
      this.attempt = 0;
      this.connectedOnce = true;
      this.host.setAttribute("data-state", "live");
      this.unread = message.unread;
      this._setStatus("");
      // Missed more than the socket sends, or had nothing to anchor on: reload the list.
      if (message.more || (reconnecting && !this.items.length)) this.refresh().catch(function () {});
      else this._render();
    }
  };

  Feed.prototype._scheduleReconnect = function () {
    var self = this;
    if (this.stopped) return;
    var delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, this.attempt));
    delay = delay / 2 + Math.random() * delay / 2; // jitter, so many tabs don't return at once
    this.attempt += 1;
    if (this.attempt > 2) this._setStatus("Reconnecting…");
    this.timer = setTimeout(function () { self.timer = null; self._connect(); }, delay);
  };

  Feed.prototype._authFailed = function () {
    if (this.stopped) return;
    this._setStatus("This session has expired. Reload the page.");
    this.host.setAttribute("data-state", "expired");
    this._stopSocket();
    if (this.onAuthError) this.onAuthError();
  };

  Feed.prototype._stopSocket = function () {
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.socket) { var s = this.socket; this.socket = null; s.close(1000); }
  };

  Feed.prototype.destroy = function () {
    this._stopSocket();
    document.removeEventListener("click", this._onDocClick);
    document.removeEventListener("keydown", this._onKey);
    if (this.host.parentNode) this.host.parentNode.removeChild(this.host);
  };

  // --- state and rendering -------------------------------------------------------------------

  Feed.prototype._add = function (item, live) {
    if (!item || !item.id || item.status === "archived") return;
    if (this.byId[item.id]) { this.byId[item.id].status = item.status; return; }
    this.byId[item.id] = item;
    if (live) {
      item._live = true;
      this.items.unshift(item);
      this.items.sort(function (a, b) { return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0; });
    } else {
      this.items.push(item);
    }
  };

  Feed.prototype.toggle = function (open) {
    var show = open === undefined ? this.panel.hidden : open;
    this.panel.hidden = !show;
    this.bell.setAttribute("aria-expanded", show ? "true" : "false");
  };

  Feed.prototype._setStatus = function (text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  };

  Feed.prototype._render = function () {
    var self = this;
    this.badge.hidden = this.unread <= 0;
    this.badge.textContent = this.unread > 99 ? "99+" : String(this.unread);
    this.bell.setAttribute("aria-label", this.unread ? "Notifications, " + this.unread + " unread" : "Notifications");
    this.markAllButton.disabled = this.unread <= 0;
    this.moreButton.hidden = !this.next;
    this.list.textContent = "";
    if (!this.items.length) {
      this.list.appendChild(el("li", "empty", "No notifications yet."));
      return;
    }
    this.items.forEach(function (item) { self.list.appendChild(self._renderItem(item)); });
  };

  Feed.prototype._renderItem = function (item) {
    var self = this;
    var li = el("li", "item" + (item.status === "unread" ? " unread" : ""));
    li.setAttribute("data-id", item.id);
    if (item.title) li.appendChild(el("span", "title", item.title));
    if (item.body) li.appendChild(el("span", "body", item.body));
    var meta = el("span", "meta");
    var time = el("time", null, timeAgo(item.created_at));
    time.setAttribute("datetime", item.created_at);
    time.title = new Date(item.created_at).toLocaleString();
    meta.appendChild(time);
    var href = safeLink(item.url);
    if (href) {
      var link = el("a", null, "Open");
      link.href = href;
      link.rel = "noopener noreferrer";
      link.addEventListener("click", function (event) {
        event.stopPropagation();
        if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) {
          self.markRead(item.id); // opens elsewhere: this page stays, the request completes
          return;
        }
        event.preventDefault(); // mark read before leaving the page, then follow the link
        self.markRead(item.id).then(function () { global.location.assign(href); });
      });
      meta.appendChild(link);
    }
    li.appendChild(meta);
    li.addEventListener("click", function () { self.markRead(item.id); });
    return li;
  };

  global.HeraldFeed = {
    version: "1",
    mount: function (element, options) { return new Feed(element, options); }
  };
})(window);
