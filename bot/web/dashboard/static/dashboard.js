/* Staff dashboard: live queue, new-escalation alerts (sound + banner + title), live transcripts.
 *
 * No framework. Every fragment inserted here was rendered (and escaped) by the server's Jinja
 * templates; texter words are never handled as HTML in this file. The page's CSP allows only
 * this file and timer.js, so nothing inline can run.
 */
(function () {
  "use strict";

  var POLL_MS = 2500;
  var MAX_BACKOFF_MS = 15000;
  var SEEN_KEY = "helpline.seenEscalations";
  var SOUND_KEY = "helpline.sound";
  var body = document.body;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var baseTitle = document.title;

  // --- small helpers ---------------------------------------------------------------------------

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin",
      cache: "no-store",
      headers: {"X-Requested-With": "fetch", "X-CSRFToken": csrf, "Accept": "application/json"}
    }).then(function (resp) {
      if (resp.status === 401) {
        var err = new Error("logged out");
        err.loggedOut = true;
        throw err;
      }
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
      return resp.json();
    });
  }

  function show(el, on) { if (el) { el.hidden = !on; } }

  function localTimes(root) {
    var nodes = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        nodes[i].textContent = d.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
        nodes[i].title = d.toISOString();
      }
    }
  }

  function withParam(url, key, value) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + encodeURIComponent(key) + "=" + encodeURIComponent(value);
  }

  // --- a timer that keeps ticking in background tabs --------------------------------------------
  // Chrome throttles timers of hidden tabs to once a minute; a dedicated worker's timer is not
  // throttled that way, so the worker only ticks and the page does the work.

  var tickers = [];
  function onTick(fn) { tickers.push(fn); }
  function startClock() {
    var fire = function () { for (var i = 0; i < tickers.length; i++) { tickers[i](); } };
    var url = body.getAttribute("data-timer-url");
    if (url && window.Worker) {
      try {
        var worker = new Worker(url);
        worker.onmessage = fire;
        worker.postMessage(POLL_MS);
        return;
      } catch (e) { /* fall back to a page timer */ }
    }
    window.setInterval(fire, POLL_MS);
  }

  // A poller runs one request at a time and backs off after failures.
  function poller(run) {
    var busy = false, failures = 0, waitUntil = 0;
    return function () {
      if (busy || Date.now() < waitUntil || stopped) { return; }
      busy = true;
      run().then(function () {
        failures = 0;
        connection(true);
      }, function (err) {
        if (err && err.loggedOut) { stopAll(); return; }
        failures += 1;
        waitUntil = Date.now() + Math.min(POLL_MS * Math.pow(2, failures - 1), MAX_BACKOFF_MS);
        if (failures >= 2) { connection(false); }
      }).then(function () { busy = false; });
    };
  }

  var stopped = false;
  function stopAll() {
    stopped = true;
    show(document.getElementById("logged-out"), true);
    show(document.getElementById("conn-lost"), false);
    document.title = "LOGGED OUT · " + baseTitle;
  }
  function connection(ok) {
    show(document.getElementById("conn-lost"), !ok);
    body.classList.toggle("is-offline", !ok);
  }

  // --- sound -------------------------------------------------------------------------------
  // Browsers only let a page make sound after a click on that page, so the button both records
  // the wish (remembered across pages) and unlocks audio; later pages unlock on the first click.

  var audio = null;
  var soundWanted = false;
  try { soundWanted = window.localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { soundWanted = false; }
  var soundButton = document.getElementById("sound-toggle");

  function audioContext() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { return null; }
    if (!audio) { audio = new Ctx(); audio.onstatechange = soundLabel; }
    if (audio.state === "suspended") { audio.resume().then(soundLabel, soundLabel); }
    return audio;
  }

  function soundLabel() {
    if (!soundButton) { return; }
    var running = audio && audio.state === "running";
    var text = !soundWanted ? "Enable sound" : (running ? "Sound on" : "Click page to arm sound");
    soundButton.textContent = text;
    soundButton.setAttribute("aria-pressed", soundWanted && running ? "true" : "false");
    soundButton.classList.toggle("is-on", !!(soundWanted && running));
    soundButton.classList.toggle("is-armed", !!(soundWanted && !running));
  }

  function beep(times) {
    if (!soundWanted) { return; }
    var ctx = audioContext();
    if (!ctx || ctx.state !== "running") { return; }
    var t = ctx.currentTime + 0.02;
    for (var i = 0; i < (times || 3); i++) {
      var osc = ctx.createOscillator(), gain = ctx.createGain(), at = t + i * 0.28;
      osc.type = "square";
      osc.frequency.value = i % 2 ? 660 : 880;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.22);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(at);
      osc.stop(at + 0.24);
    }
  }

  function setSoundWanted(on) {
    soundWanted = on;
    try { window.localStorage.setItem(SOUND_KEY, on ? "on" : "off"); } catch (e) { /* private mode */ }
  }

  if (soundButton) {
    soundButton.addEventListener("click", function (ev) {
      ev.stopPropagation();
      var running = audio && audio.state === "running";
      if (soundWanted && running) {
        setSoundWanted(false);
      } else {
        setSoundWanted(true);
        var ctx = audioContext();
        if (ctx) { ctx.resume().then(function () { beep(1); soundLabel(); }); }
      }
      soundLabel();
    });
    var arm = function () { if (soundWanted) { audioContext(); } };
    document.addEventListener("click", arm);
    document.addEventListener("keydown", arm);
    soundLabel();
  }

  // --- new-escalation alert ------------------------------------------------------------------

  var alertBox = document.getElementById("new-alert");
  var alerted = [];           // open escalation ids alerted and not yet dismissed
  var titleTimer = null;
  var unclaimedCount = 0;

  function loadSeen() {
    try {
      var v = JSON.parse(window.sessionStorage.getItem(SEEN_KEY));
      return Array.isArray(v) ? v : null;
    } catch (e) { return null; }
  }
  function saveSeen(ids) {
    try { window.sessionStorage.setItem(SEEN_KEY, JSON.stringify(ids.slice(-500))); } catch (e) { /* ignore */ }
  }
  var seen = loadSeen();

  function restTitle() {
    document.title = (unclaimedCount ? "(" + unclaimedCount + ") " : "") + baseTitle;
  }

  function flashTitle(text) {
    if (titleTimer) { window.clearInterval(titleTimer); }
    var on = false;
    titleTimer = window.setInterval(function () {
      on = !on;
      document.title = on ? text : baseTitle;
    }, 1000);
    document.title = text;
  }

  function dismissAlert() {
    alerted = [];
    show(alertBox, false);
    body.classList.remove("has-new");
    if (titleTimer) { window.clearInterval(titleTimer); titleTimer = null; }
    restTitle();
    markNewCards();
  }

  function raiseAlert(items) {
    for (var i = 0; i < items.length; i++) {
      if (alerted.indexOf(items[i].id) < 0) { alerted.push(items[i].id); }
    }
    var first = items[0];
    var label = (first.training ? "NEW TRAINING ESCALATION" : "NEW ESCALATION") + " #" + first.id + " · " +
      String(first.severity).toUpperCase() + (items.length > 1 ? " (+" + (items.length - 1) + " more)" : "");
    if (alertBox) {
      alertBox.querySelector(".new-alert-text").textContent = label;
      var link = alertBox.querySelector(".new-alert-link");
      link.setAttribute("href", first.url);
      link.textContent = "Open #" + first.id;
      show(alertBox, true);
    }
    body.classList.add("has-new");
    body.setAttribute("data-alerts", String((parseInt(body.getAttribute("data-alerts"), 10) || 0) + 1));
    flashTitle("\u26A0 " + label);
    beep(3);
    if (navigator.vibrate) { try { navigator.vibrate([300, 150, 300]); } catch (e) { /* ignore */ } }
  }

  if (alertBox) {
    alertBox.querySelector(".new-alert-dismiss").addEventListener("click", dismissAlert);
  }

  function markNewCards() {
    var cards = document.querySelectorAll("[data-escalation-id]");
    for (var i = 0; i < cards.length; i++) {
      var id = parseInt(cards[i].getAttribute("data-escalation-id"), 10);
      cards[i].classList.toggle("is-new", alerted.indexOf(id) >= 0);
    }
  }

  // --- the queue poll (every dashboard page) ---------------------------------------------------

  var queueBox = document.getElementById("queue");
  var problemsBox = document.getElementById("problems");
  var countBadge = document.getElementById("queue-count");
  var lastQueueHtml = null;
  var lastProblemsHtml = problemsBox ? problemsBox.innerHTML : null;

  function applyQueue(data) {
    if (queueBox && typeof data.html === "string" && data.html !== lastQueueHtml) {
      // Swap only when something changed, so a click on a Claim button is not lost mid-swap.
      queueBox.innerHTML = data.html;
      lastQueueHtml = data.html;
      localTimes(queueBox);
    }
    if (problemsBox && typeof data.problems_html === "string" && data.problems_html !== lastProblemsHtml) {
      problemsBox.innerHTML = data.problems_html;
      lastProblemsHtml = data.problems_html;
    }
    unclaimedCount = data.unclaimed || 0;
    if (countBadge) {
      countBadge.textContent = String(unclaimedCount);
      show(countBadge, unclaimedCount > 0);
    }
    var openIds = data.open.map(function (o) { return o.id; });
    if (seen === null) {
      seen = data.ids.slice();       // first look in this tab: what is there now is not "new"
    } else {
      var fresh = data.open.filter(function (o) { return seen.indexOf(o.id) < 0; });
      for (var i = 0; i < data.ids.length; i++) {
        if (seen.indexOf(data.ids[i]) < 0) { seen.push(data.ids[i]); }
      }
      if (fresh.length) { raiseAlert(fresh); }
    }
    saveSeen(seen);
    // Someone claimed what we were alerting about: stop shouting.
    alerted = alerted.filter(function (id) { return openIds.indexOf(id) >= 0; });
    if (!alerted.length && (titleTimer || (alertBox && !alertBox.hidden))) { dismissAlert(); }
    markNewCards();
    if (!titleTimer) { restTitle(); }
    body.setAttribute("data-live", "ready");  // the first poll is in: from now on new ids alert
  }

  var queueUrl = body.getAttribute("data-queue-poll");
  if (queueUrl) {
    var url = queueBox ? withParam(queueUrl, "fragment", "1") : queueUrl;
    if (queueBox) { lastQueueHtml = null; }
    onTick(poller(function () { return getJSON(url).then(applyQueue); }));
  }

  // --- live transcript (escalation, contact and test-texter pages) ----------------------------

  var transcript = document.getElementById("transcript");
  if (transcript && transcript.getAttribute("data-poll-url")) {
    var lastId = parseInt(transcript.getAttribute("data-last-id"), 10) || 0;
    var startState = transcript.getAttribute("data-state") || "";
    var statusPanel = document.getElementById("status-panel");
    var stale = document.getElementById("stale-notice");
    var tUrl = transcript.getAttribute("data-poll-url");
    onTick(poller(function () {
      return getJSON(withParam(tUrl, "after", lastId)).then(function (data) {
        if (data.html && data.html.trim()) {
          var nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 200;
          var before = transcript.children.length;
          transcript.insertAdjacentHTML("beforeend", data.html);
          for (var i = before; i < transcript.children.length; i++) { transcript.children[i].classList.add("is-new"); }
          localTimes(transcript);
          if (nearBottom) { transcript.lastElementChild.scrollIntoView({block: "end"}); }
          if (data.new_inbound && !titleTimer) { flashTitle("New text from the texter"); }
        }
        lastId = data.last_id || lastId;
        if (statusPanel && data.status_html) { statusPanel.innerHTML = data.status_html; localTimes(statusPanel); }
        if (stale && startState && data.state && data.state !== startState) { show(stale, true); }
      });
    }));
    window.addEventListener("focus", function () {
      if (titleTimer && !alerted.length) { window.clearInterval(titleTimer); titleTimer = null; restTitle(); }
    });
  }

  // --- forms -----------------------------------------------------------------------------------

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); return; }
    if (form.getAttribute("data-submitted")) { ev.preventDefault(); return; }  // no double sends
    if ((form.getAttribute("method") || "").toLowerCase() === "post") { form.setAttribute("data-submitted", "1"); }
  });

  window.addEventListener("pageshow", function (ev) {
    if (!ev.persisted) { return; }
    var marked = document.querySelectorAll("form[data-submitted]");
    for (var i = 0; i < marked.length; i++) { marked[i].removeAttribute("data-submitted"); }
  });

  var counters = document.querySelectorAll("textarea[data-counter]");
  Array.prototype.forEach.call(counters, function (area) {
    var out = document.getElementById(area.getAttribute("data-counter"));
    var max = area.getAttribute("maxlength");
    var update = function () { if (out) { out.textContent = area.value.length + " / " + max; } };
    area.addEventListener("input", update);
    update();
  });

  localTimes(document);
  if (tickers.length) {
    startClock();
    for (var k = 0; k < tickers.length; k++) { tickers[k](); }
  }
}());
