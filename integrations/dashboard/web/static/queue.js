// Live queue: a server-sent event says which alerts changed; the first page's rows are then fetched again (the
// server orders, filters and groups them, so the page never disagrees with a reload). On later pages the change is
// only announced. No inline script: served from /static (Content-Security-Policy script-src 'self').
(function () {
  "use strict";
  var live = document.getElementById("live");
  var table = document.getElementById("queue");
  if (!live || !table || !window.EventSource) { return; }
  var firstPage = live.dataset.firstPage === "yes";
  var seq = parseInt(live.dataset.seq || "0", 10);
  var pending = 0;
  var refreshing = false;
  var again = false;

  function say(text) { live.textContent = text; }

  function refresh(changedIds) {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(live.dataset.rowsUrl, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var tmp = document.createElement("table");
        tmp.innerHTML = html;  // our own server's escaped template output
        Array.prototype.forEach.call(table.querySelectorAll("tbody"), function (b) { b.remove(); });
        Array.prototype.forEach.call(tmp.querySelectorAll("tbody"), function (b) { table.appendChild(b); });
        (changedIds || []).forEach(function (id) {
          var row = table.querySelector('tr[data-id="' + id + '"]');
          if (row) { row.classList.add("fresh"); }
        });
        say("Live updates: on (updated " + new Date().toLocaleTimeString() + ")");
      })
      .catch(function () { say("Live updates: refresh failed; reload the page"); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh([]); }
      });
  }

  function connect() {
    var source = new EventSource("/events?since=" + seq);
    source.addEventListener("hello", function () { say("Live updates: on"); });
    source.addEventListener("change", function (e) {
      var data = JSON.parse(e.data);
      seq = Math.max(seq, data.seq);
      var ids = data.changes.map(function (c) { return c.id; });
      if (firstPage) { refresh(ids); } else {
        pending += ids.length;
        say(pending + " alert change(s) since this page loaded; go to the first page to see them");
      }
    });
    source.addEventListener("ended", function () {
      source.close();
      window.location.assign("/login?next=%2F");
    });
    source.onerror = function () { say("Live updates: reconnecting..."); };
  }
  connect();
})();
