/* A dedicated worker that only ticks: its timer is not throttled like a hidden tab's timers. */
"use strict";
var started = false;
self.onmessage = function (ev) {
  if (started) { return; }
  started = true;
  var ms = Number(ev.data) || 2500;
  setInterval(function () { self.postMessage("tick"); }, ms);
};
