// pgqueue dashboard: live updates without a build step or anything from another host.
// Every few seconds the page is fetched again and its main region swapped in, unless the reader
// is busy with it: selecting text, typing in or focused on a form field, a ticked box, an open
// traceback, or the updates paused with the footer's button. Forms marked data-confirm ask first.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var status = document.getElementById("live-status");
  var toggle = document.getElementById("live-toggle");
  if (!main) return;
  var seconds = Number(main.getAttribute("data-refresh")) || 0;
  var stopped = false;
  var pointerDown = false;
  var inFlight = false;

  function busy() {
    var selection = window.getSelection && window.getSelection();
    if (selection && !selection.isCollapsed && selection.toString().trim() !== "") return true;
    var active = document.activeElement;
    if (active && active !== document.body && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return true;
    if (main.querySelector("input[type=checkbox]:checked, details[open]")) return true;
    return pointerDown || document.hidden;
  }

  function say(text) {
    if (status) status.textContent = text;
  }

  function refresh() {
    if (stopped || inFlight) return;
    if (busy()) { say("live: paused while you work on the page"); return; }
    inFlight = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "X-Pgqueue-Live": "1" } })
      .then(function (response) { return response.text().then(function (html) { return [response, html]; }); })
      .then(function (pair) {
        var fresh = new DOMParser().parseFromString(pair[1], "text/html").getElementById("live");
        if (!fresh) throw new Error("no main region");
        if (busy()) return;
        main.innerHTML = fresh.innerHTML;
        say((pair[0].ok ? "live: updated " : "live: error " + pair[0].status + " at ") + new Date().toLocaleTimeString());
      })
      .catch(function () { say("live: cannot reach the dashboard, retrying"); })
      .then(function () { inFlight = false; });
  }

  document.addEventListener("mousedown", function () { pointerDown = true; });
  document.addEventListener("mouseup", function () { pointerDown = false; });

  // Confirmation for forms and buttons that say so (no inline script: the CSP forbids it).
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = (button && button.getAttribute("data-confirm")) || event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  // "all on this page" ticks every box of its name.
  document.addEventListener("change", function (event) {
    var name = event.target.getAttribute && event.target.getAttribute("data-select-all");
    if (!name) return;
    var boxes = main.querySelectorAll("input[type=checkbox][name='" + name + "']");
    for (var i = 0; i < boxes.length; i++) boxes[i].checked = event.target.checked;
  });

  if (!seconds) return;
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      stopped = !stopped;
      toggle.textContent = stopped ? "resume updates" : "pause updates";
      say(stopped ? "live: paused" : "live: every " + seconds + " s");
    });
  }
  window.setInterval(refresh, seconds * 1000);
})();
