// The Deposits page follows its running rescans: every few seconds it reads their progress
// (/admin/deposits/rescans.json, the figures the page was drawn with) and moves each bar and its
// sentence on, until none is running.
(function () {
  "use strict";
  var EVERY_MS = 3000;
  function running() {
    return document.querySelectorAll("td.rescan[data-running]");
  }
  function update(rescans) {
    rescans.forEach(function (rescan) {
      var cell = document.querySelector('td.rescan[data-chain="' + rescan.chain + '"]');
      if (!cell) return;
      var bar = cell.querySelector("progress");
      var text = cell.querySelector(".rescan-text");
      if (bar) {
        bar.max = rescan.blocks;
        bar.value = rescan.blocks_scanned;
        bar.textContent = rescan.percent + " %";
      }
      if (text) text.textContent = rescan.text;
      if (rescan.done) cell.removeAttribute("data-running");
    });
  }
  function poll() {
    if (!running().length) return;
    fetch("/admin/deposits/rescans.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
      .then(update)
      .catch(function () { /* signed out or offline: try again at the next tick */ })
      .then(function () { window.setTimeout(poll, EVERY_MS); });
  }
  window.setTimeout(poll, EVERY_MS);
})();
