// Ticket pages: SLA timers that turn yellow and red while the page is open, the escalation dialog,
// bulk selection, and keyboard shortcuts. The pages work without it; it only makes them livelier.
(function () {
  "use strict";

  // ---------------------------------------------------------------- SLA timers
  // The server renders each running timer with the instants it turns yellow and red, and its own "now"
  // on <body>: the offset to the browser's clock keeps the timers true to the server's.
  var serverNow = Date.parse(document.body.getAttribute("data-server-now") || "");
  var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function words(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60); m = m % 60;
    if (h < 24) return m ? h + " h " + m + " min" : h + " h";
    var d = Math.floor(h / 24); h = h % 24;
    return h ? d + " d " + h + " h" : d + " d";
  }

  var RANK = { normal: 0, yellow: 1, red: 2 };

  function tick() {
    var now = Date.now() + skew;
    var next = now + 15000; // the countdowns move on at least every 15 s, colours exactly on time
    document.querySelectorAll("[data-sla-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-sla-due"));
      var yellowAt = Date.parse(el.getAttribute("data-sla-approaching"));
      if (yellowAt > now) next = Math.min(next, yellowAt);
      else if (due >= now) next = Math.min(next, due + 1);
      var colour = now > due ? "red" : now >= yellowAt ? "yellow" : "normal";
      var before = el.getAttribute("data-sla-colour");
      if (RANK[colour] < (RANK[before] || 0)) colour = before; // only ever worse: the server decided the rest
      el.setAttribute("data-sla-colour", colour);
      el.className = el.className.replace(/\bsla-(normal|yellow|red)\b/, "sla-" + colour);
      var label = el.querySelector(".sla-label");
      if (label) label.textContent = now > due ? "overdue by " + words(now - due) : "due in " + words(due - now);
      var row = el.closest("[data-sla-row]");
      if (row && RANK[colour] > 0) {
        var current = (row.className.match(/\bsla-row-(\w+)\b/) || [])[1];
        if ((RANK[current] || 0) < RANK[colour]) {
          row.className = row.className.replace(/\bsla-row-\w+\b/, "") + " sla-row-" + colour;
        }
      }
    });
    clearTimeout(ticking);
    ticking = setTimeout(tick, Math.max(next - now, 250));
  }
  var ticking = null;
  tick();

  // ---------------------------------------------------------------- the escalation dialog
  document.querySelectorAll("[data-open-dialog]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      var dialog = document.getElementById(link.getAttribute("data-open-dialog"));
      if (!dialog || typeof dialog.showModal !== "function") return; // the link opens it server-side
      event.preventDefault();
      if (!dialog.open) dialog.showModal();
      var first = dialog.querySelector("input, textarea, select");
      if (first) first.focus();
    });
  });
  var opened = document.querySelector("dialog[open]");
  if (opened && typeof opened.showModal === "function") { // re-shown after a refused escalation
    opened.close();
    opened.showModal();
  }

  // ---------------------------------------------------------------- bulk selection
  var boxes = [];
  var all = document.querySelector("[data-select-all]");
  var count = document.querySelector("[data-bulk-count]");
  function counted() {
    var n = boxes.filter(function (b) { return b.checked; }).length;
    if (count) count.textContent = n ? n + " selected" : "";
    if (all) all.checked = n > 0 && n === boxes.length;
  }
  if (all) {
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      counted();
    });
  }
  function rebind() {
    boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=ticket_id][form=bulk]"));
    boxes.forEach(function (b) { b.addEventListener("change", counted); });
    rows = Array.prototype.slice.call(document.querySelectorAll("tr.ticket-row"));
    cursor = -1;
    counted();
  }

  // ---------------------------------------------------------------- the queue refreshes itself
  // Every minute, while the tab is visible and the agent is not selecting or typing, the counts and the
  // table are fetched again (the same URL, so the same filters) and swapped in place.
  var table = document.querySelector(".tickets-table tbody");
  function busy() {
    var active = document.activeElement;
    return document.visibilityState !== "visible" || boxes.some(function (b) { return b.checked; }) ||
      (active && active !== document.body && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
  }
  function refresh() {
    if (busy()) return;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html || busy()) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        [".queue-counts", ".tickets-table tbody", "#tickets-caption"].forEach(function (selector) {
          var now = document.querySelector(selector), next = fresh.querySelector(selector);
          if (now && next) now.replaceWith(document.importNode(next, true));
        });
        var stamp = Date.parse(fresh.body.getAttribute("data-server-now") || "");
        if (!isNaN(stamp)) skew = stamp - Date.now();
        rebind();
        tick();
      })
      .catch(function () { /* offline for a moment: the next round tries again */ });
  }
  if (table) setInterval(refresh, 60000);

  // ---------------------------------------------------------------- keyboard
  var rows = [];
  var cursor = -1;
  rebind();
  function move(step) {
    if (!rows.length) return;
    if (cursor >= 0) rows[cursor].classList.remove("cursor");
    cursor = Math.max(0, Math.min(rows.length - 1, cursor + step));
    rows[cursor].classList.add("cursor");
    var link = rows[cursor].querySelector("a.ticket-link");
    if (link) link.focus();
  }
  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && target.tagName === "TEXTAREA" && target.form) {
      event.preventDefault();
      target.form.requestSubmit ? target.form.requestSubmit() : target.form.submit();
      return;
    }
    if (typing(target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") { move(1); event.preventDefault(); }
    else if (event.key === "k") { move(-1); event.preventDefault(); }
    else if (event.key === "x" && cursor >= 0) {
      var box = rows[cursor].querySelector("input[name=ticket_id]");
      if (box) { box.checked = !box.checked; counted(); }
      event.preventDefault();
    } else if (event.key === "/") {
      var search = document.querySelector("input[type=search]");
      if (search) { search.focus(); event.preventDefault(); }
    } else {
      var field = document.querySelector("textarea[data-shortcut='" + event.key + "']");
      if (field) { field.focus(); event.preventDefault(); }
    }
  });
})();
