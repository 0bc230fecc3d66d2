// godwit console: live updates. The pages work without it; with it, a
// page that names an event stream (main[data-stream]) follows it: a job's
// figures change as its progress events come, timelines and the events
// page get their new lines, and the live region is fetched again from the
// server (at most every 300 ms). EventSource reconnects by itself and
// sends the last event id, so nothing is missed.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.stream || !window.EventSource) return;
  var state = document.getElementById("live-state");
  var live = document.getElementById("live");
  var list = document.getElementById("timeline") || document.getElementById("events");
  var timer = null;

  function say(text) { if (state) state.textContent = "live updates: " + text; }

  function refresh() {
    if (!live || timer) return;
    timer = setTimeout(function () {
      timer = null;
      var u = new URL(window.location.href);
      u.searchParams.set("partial", "1");
      u.searchParams.delete("done");
      fetch(u, { credentials: "same-origin", redirect: "manual" }).then(function (r) {
        if (r.type === "opaqueredirect" || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html === null || html === undefined) return;
        // Keep the focus where it was when the region comes again.
        var id = document.activeElement && live.contains(document.activeElement) ? document.activeElement.id : "";
        live.innerHTML = html;
        if (id && document.getElementById(id)) document.getElementById(id).focus();
      }).catch(function () {});
    }, 300);
  }

  function fill(fields) {
    Object.keys(fields).forEach(function (k) {
      document.querySelectorAll('[data-field="' + k + '"]').forEach(function (el) { el.textContent = fields[k]; });
    });
    var bar = document.querySelector("[data-progress=percent]");
    if (bar && fields.percent) bar.value = parseFloat(fields.percent);
  }

  function append(m) {
    if (!list || !m.line) return;
    if (list.id === "timeline" && m.type === "io.godwit.progress.v1" && !m.milestone) return;
    var li = document.createElement("li");
    var t = document.createElement("time");
    t.dateTime = m.time;
    t.textContent = m.when;
    li.appendChild(t);
    if (list.id === "events") {
      var c = document.createElement("code");
      c.textContent = m.subject;
      li.appendChild(document.createTextNode(" "));
      li.appendChild(c);
    }
    li.appendChild(document.createTextNode(" " + m.line));
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 500) list.removeChild(list.lastChild);
  }

  var es = new EventSource(main.dataset.stream);
  es.onopen = function () { say("on"); };
  es.onerror = function () { say("reconnecting"); };
  es.onmessage = function (e) {
    var m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    if (!m.type) return;
    if (m.fields) fill(m.fields);
    append(m);
    if (!(m.fields && live && live.dataset.fields === "on")) refresh();
  };
})();
