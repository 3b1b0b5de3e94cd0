(function () {
  "use strict";
  // Live updates: the server sends the page's fingerprint over
  // Server-Sent Events whenever what it shows changed; the page fetches
  // itself again and swaps its <main>. Without EventSource, or once the
  // stream is closed for good, it refreshes every 15 s instead.
  var cur = document.body.getAttribute("data-fp"), busy = false, timer = 0;
  var badge = document.getElementById("live");
  function swap() {
    if (busy) { return; }
    busy = true;
    fetch(location.href, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (t) {
      if (t === null) { return; }
      var doc = new DOMParser().parseFromString(t, "text/html");
      var fresh = doc.getElementById("main"), old = document.getElementById("main");
      if (!fresh || !old) { return; }
      var open = {};
      old.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
      fresh.querySelectorAll("details[id]").forEach(function (d) {
        if (d.id in open) { d.open = open[d.id]; }
      });
      old.replaceWith(document.adoptNode(fresh));
      cur = doc.body.getAttribute("data-fp");
    }).catch(function () {}).then(function () { busy = false; });
  }
  function poll() {
    if (!timer) { timer = setInterval(swap, 15000); }
  }
  if (!window.EventSource) { poll(); return; }
  var scope = document.body.getAttribute("data-scope") || "host";
  var es = new EventSource("/events?scope=" + encodeURIComponent(scope));
  es.addEventListener("fp", function (e) {
    if (badge) { badge.hidden = false; }
    if (e.data !== cur) { swap(); }
  });
  es.onerror = function () {
    if (badge) { badge.hidden = true; }
    if (es.readyState === EventSource.CLOSED) { poll(); }
  };
})();
