/* Notifications list and notification page, live.
   List: a Map from delivery id to its chip; an event only records the delivery's newest status,
   and once per animation frame the changed chips and their rows' summary badges are updated.
   Notifications not on the page are fetched as rendered rows (events carry only ids), at most
   one request in flight, and only rows that match the page's filters come back.
   Page: events of this notification update the badges at once and re-read the deliveries'
   timeline (events and provider attempts), one request at a time. */
(function () {
  "use strict";
  var C = window.HeraldConsole;
  if (!C) return;

  // --- the list ----------------------------------------------------------------------------
  var table = document.getElementById("notifications-table");
  if (table) {
    var tbody = document.getElementById("notification-rows");
    var pageSize = parseInt(table.dataset.pageSize, 10) || 50;
    var liveNew = table.dataset.liveNew === "true";
    var chips = new Map();     // delivery id -> chip element
    var rows = new Map();      // notification id -> row element
    var pending = new Map();   // delivery id -> newest status not yet shown
    var unseen = new Set();    // notifications not on the page, to ask the server about
    var asked = new Set();     // ... already asked about (never asked twice)
    var fetching = false;
    // A new notification's deliveries start in one of these states; sending, sent and later
    // are about notifications accepted before the page was rendered, never new rows.
    var FIRST_STATES = { queued: true, failed: true, suppressed: true };

    var index = function (row) {
      rows.set(row.dataset.notificationId, row);
      row.querySelectorAll("[data-delivery-id]").forEach(function (chip) { chips.set(chip.dataset.deliveryId, chip); });
    };
    var forget = function (row) {
      rows.delete(row.dataset.notificationId);
      row.querySelectorAll("[data-delivery-id]").forEach(function (chip) { chips.delete(chip.dataset.deliveryId); });
    };
    Array.prototype.forEach.call(tbody.rows, index);

    var flush = C.perFrame(function () {
      var dirty = new Set();
      pending.forEach(function (status, deliveryId) {
        var chip = chips.get(deliveryId);
        if (!chip || chip.dataset.status === status) return;
        chip.dataset.status = status;
        chip.title = chip.dataset.channel + ": " + status;
        dirty.add(chip.closest("tr"));
      });
      pending.clear();
      dirty.forEach(summarizeRow);
      fetchNew();
    });

    var summarizeRow = function (row) {
      var statuses = [];
      row.querySelectorAll("[data-delivery-id]").forEach(function (chip) { statuses.push(chip.dataset.status); });
      C.setStatus(row.querySelector(".status"), C.summarize(statuses));
    };

    // New rows are asked for at most twice a second: under a flood the page stays one request
    // behind, not one request per frame.
    var lastFetch = 0, FETCH_EVERY = 500, retryTimer = null;
    var fetchNew = function () {
      if (fetching || !unseen.size) return;
      var wait = lastFetch + FETCH_EVERY - Date.now();
      if (wait > 0) {
        if (!retryTimer) retryTimer = setTimeout(function () { retryTimer = null; fetchNew(); }, wait);
        return;
      }
      lastFetch = Date.now();
      var ids = Array.from(unseen).slice(-50); // the newest, if a flood arrived
      unseen.clear();
      ids.forEach(function (id) { asked.add(id); });
      if (asked.size > 20000) asked.clear();
      fetching = true;
      var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
      var filters = table.dataset.filterQuery;
      C.getText(table.dataset.rowsUrl + "?" + query + (filters ? "&" + filters : "")).then(function (html) {
        if (html) insertRows(html);
      }).catch(function () {}).then(function () { fetching = false; if (unseen.size) flush(); });
    };

    /* Rows go where their creation time puts them (newest first). An event can be about an old
       notification too (a late report, a retry): on a full page, one older than the last row
       shown belongs to a later page and is left out. (data-created is ISO 8601 in UTC, so
       strings compare in time order.) */
    var insertRows = function (html) {
      var fragment = C.fragment(html);
      var full = tbody.rows.length >= pageSize;
      var oldest = full ? tbody.rows[tbody.rows.length - 1].dataset.created : "";
      var fresh = Array.prototype.filter.call(fragment.querySelectorAll("tr[data-notification-id]"), function (row) {
        return !rows.has(row.dataset.notificationId) && (!full || row.dataset.created > oldest);
      });
      if (!fresh.length) return;
      fresh.forEach(function (row) {
        row.classList.add("fresh");
        index(row);
        var before = null;
        for (var i = 0; i < tbody.rows.length; i++) {
          if (tbody.rows[i].dataset.created < row.dataset.created) { before = tbody.rows[i]; break; }
        }
        tbody.insertBefore(row, before);
      });
      while (tbody.rows.length > pageSize) { var last = tbody.rows[tbody.rows.length - 1]; forget(last); last.remove(); }
      document.getElementById("notifications-card").hidden = false;
      var empty = document.getElementById("notifications-empty");
      if (empty) empty.hidden = true;
    };

    // More was missed than the stream replays: re-read the rows on the page (and look for new ones).
    var reread = function () {
      var ids = Array.from(rows.keys()).slice(0, 50);
      if (!ids.length) return;
      var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
      C.getText(table.dataset.rowsUrl + "?" + query).then(function (html) {
        var fragment = C.fragment(html || "");
        fragment.querySelectorAll("tr[data-notification-id]").forEach(function (fresh) {
          var old = rows.get(fresh.dataset.notificationId);
          if (!old) return;
          forget(old);
          old.replaceWith(fresh);
          index(fresh);
        });
      }).catch(function () {});
    };
    C.onLive("resync", reread);

    C.onLive("events", function (msg) {
      var events = msg.events;
      for (var i = 0; i < events.length; i++) {
        var e = events[i];
        if (chips.has(e.delivery)) pending.set(e.delivery, e.status);
        else if (liveNew && FIRST_STATES[e.status] && !rows.has(e.notification) && !asked.has(e.notification)) unseen.add(e.notification);
      }
      if (pending.size || unseen.size) flush();
    });
  }

  // --- one notification ---------------------------------------------------------------------
  var card = document.getElementById("notification");
  if (card) {
    var notificationId = card.dataset.notificationId;
    var container = document.getElementById("deliveries");
    var loading = false, again = false;

    var refresh = function () {
      if (loading) { again = true; return; }
      loading = true;
      C.getText(card.dataset.deliveriesUrl).then(function (html) {
        container.innerHTML = html;
        summarize();
      }).catch(function () {}).then(function () {
        loading = false;
        if (again) { again = false; setTimeout(refresh, 250); }
      });
    };
    var summarize = function () {
      var statuses = [];
      container.querySelectorAll("section.delivery").forEach(function (s) { statuses.push(s.dataset.status); });
      C.setStatus(document.getElementById("notification-status"), C.summarize(statuses));
    };
    var schedule = C.perFrame(refresh);

    C.onLive("events", function (msg) {
      var mine = false;
      for (var i = 0; i < msg.events.length; i++) {
        var e = msg.events[i];
        if (e.notification !== notificationId) continue;
        mine = true;
        var section = document.getElementById("delivery-" + e.delivery);
        if (section) { section.dataset.status = e.status; C.setStatus(section.querySelector("h2 .status"), e.status); }
      }
      if (mine) { summarize(); schedule(); }
    });
    C.onLive("resync", refresh);
  }
})();
