/* Staff dashboard: the live queue, alerts (banner, sound per severity, desktop notification, title),
 * live transcripts, saved replies, focus after actions and keyboard shortcuts.
 *
 * No framework. Every fragment inserted here was rendered (and escaped) by the server's Jinja
 * templates; texter words are never handled as HTML in this file. The page's CSP allows only
 * this file and timer.js, so nothing inline can run.
 *
 * Polls every HELPLINE_DASHBOARD_POLL_SECONDS (2.5 s by default). The queue poll names the
 * version it has (If-None-Match) and the cards it shows (have=id.version):
 * when nothing changed the answer is an empty 304 and the page is not touched; otherwise only the
 * cards that changed are replaced, moved or removed, and keyboard focus and scroll stay put.
 */
(function () {
  "use strict";

  var MAX_BACKOFF_MS = 15000;
  var SEEN_KEY = "helpline.seenEscalations";
  var SOUND_KEY = "helpline.sound";
  var NOTIFY_KEY = "helpline.notify";
  var SHORTCUTS_KEY = "helpline.shortcuts";
  var ACKED_KEY = "helpline.ackedTransfers";
  var SECTIONS = ["unclaimed", "claimed", "training"];
  var body = document.body;
  // How often to ask for changes: HELPLINE_DASHBOARD_POLL_SECONDS, rendered on <body>.
  var POLL_MS = Number(body.getAttribute("data-poll-ms")) || 2500;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var baseTitle = document.title;

  // --- small helpers ---------------------------------------------------------------------------

  function request(url, etag) {
    var headers = {"X-Requested-With": "fetch", "X-CSRFToken": csrf, "Accept": "application/json"};
    if (etag) { headers["If-None-Match"] = etag; }
    return fetch(url, {credentials: "same-origin", cache: "no-store", headers: headers}).then(function (resp) {
      if (resp.status === 401) {
        var err = new Error("logged out");
        err.loggedOut = true;
        throw err;
      }
      if (resp.status === 304) { return null; }
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
      var tag = resp.headers.get("ETag");
      return resp.json().then(function (data) { data.__etag = tag; return data; });
    });
  }

  function show(el, on) { if (el) { el.hidden = !on; } }
  function bump(attr) { body.setAttribute(attr, String((parseInt(body.getAttribute(attr), 10) || 0) + 1)); }
  function store(kind) { try { return window[kind]; } catch (e) { return null; } }
  function getItem(kind, key) { var s = store(kind); try { return s ? s.getItem(key) : null; } catch (e) { return null; } }
  function setItem(kind, key, value) { var s = store(kind); try { if (s) { s.setItem(key, value); } } catch (e) { /* private mode */ } }

  function ageText(ms) {
    var secs = Math.max(0, Math.floor(ms / 1000));
    if (secs < 60) { return secs + " s"; }
    var mins = Math.floor(secs / 60);
    if (mins < 60) { return mins + " min"; }
    var hours = Math.floor(mins / 60);
    mins = mins % 60;
    if (hours < 24) { return hours + " h" + (mins ? " " + mins + " min" : ""); }
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  function localTimes(root) {
    var nodes = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(d.getTime())) { continue; }
      nodes[i].title = d.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
      if (!nodes[i].hasAttribute("data-age")) {
        nodes[i].textContent = nodes[i].title;
      }
    }
    ages(root);
  }

  function ages(root) {
    var nodes = (root || document).querySelectorAll("time[data-age]");
    var now = Date.now();
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      var text = isNaN(d.getTime()) ? null : ageText(now - d.getTime()) + " ago";
      if (text && nodes[i].textContent !== text) { nodes[i].textContent = text; }
    }
  }

  function withParam(url, key, value) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + encodeURIComponent(key) + "=" + encodeURIComponent(value);
  }

  function htmlToNode(html) {
    var t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  var announcer = document.getElementById("announcer");
  function announce(text) {
    if (!announcer) { return; }
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function upper(s) { return String(s || "").toUpperCase(); }
  function kindText(k) { return k ? String(k).replace("_", "-") : ""; }

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
  var stopped = false;
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
        if (window.console && err && !err.loggedOut) { window.console.warn("poll failed", err.message); }
      }).then(function () { busy = false; });
    };
  }

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

  // --- sound: one pattern per severity -------------------------------------------------------------
  // Browsers let a page make sound only after a click on it, or on a page reached from one by a
  // same-site link (Chrome carries the "sticky" activation over). The wish is remembered across
  // pages; if the browser still holds audio back, the first key or click on the page turns it on.

  var SOUNDS = {
    // [frequency Hz, start s, length s, wave]
    emergency: {repeatMs: 30000, notes: [[988, 0, 0.14, "square"], [784, 0.18, 0.14, "square"], [988, 0.36, 0.14, "square"],
                                         [784, 0.54, 0.14, "square"], [988, 0.72, 0.14, "square"], [784, 0.9, 0.3, "square"]]},
    mine: {repeatMs: 20000, notes: [[660, 0, 0.12, "square"], [880, 0.15, 0.12, "square"], [1175, 0.3, 0.25, "square"],
                                    [660, 0.7, 0.12, "square"], [880, 0.85, 0.12, "square"], [1175, 1.0, 0.25, "square"]]},
    urgent: {repeatMs: 60000, notes: [[660, 0, 0.28, "sawtooth"], [523, 0.38, 0.4, "sawtooth"]]},
    review: {repeatMs: 0, notes: [[523, 0, 0.25, "sine"], [784, 0.22, 0.45, "sine"]]},
    training: {repeatMs: 0, notes: [[330, 0, 0.18, "triangle"]]},
    test: {repeatMs: 0, notes: [[784, 0, 0.12, "sine"]]}
  };

  var audio = null;
  var soundWanted = getItem("localStorage", SOUND_KEY) === "on";
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
    var text = !soundWanted ? "Turn sound on" : (running ? "Sound on" : "Press any key to turn sound on");
    soundButton.textContent = text;
    soundButton.setAttribute("aria-pressed", soundWanted ? "true" : "false");
    soundButton.classList.toggle("is-on", !!(soundWanted && running));
    soundButton.classList.toggle("is-armed", !!(soundWanted && !running));
  }

  function play(name) {
    body.setAttribute("data-last-sound", name);
    bump("data-sounds");
    if (!soundWanted) { return; }
    var ctx = audioContext();
    var pattern = SOUNDS[name];
    if (!ctx || ctx.state !== "running" || !pattern) { return; }
    var t = ctx.currentTime + 0.02;
    pattern.notes.forEach(function (n) {
      var osc = ctx.createOscillator(), gain = ctx.createGain(), at = t + n[1];
      osc.type = n[3];
      osc.frequency.value = n[0];
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.22, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + n[2]);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(at);
      osc.stop(at + n[2] + 0.02);
    });
  }

  if (soundButton) {
    soundButton.addEventListener("click", function (ev) {
      ev.stopPropagation();
      soundWanted = !soundWanted;
      setItem("localStorage", SOUND_KEY, soundWanted ? "on" : "off");
      if (soundWanted) {
        var ctx = audioContext();
        if (ctx) { ctx.resume().then(function () { play("test"); soundLabel(); }); }
      }
      soundLabel();
    });
    var arm = function () { if (soundWanted) { audioContext(); } };
    document.addEventListener("click", arm);
    document.addEventListener("keydown", arm);
    if (soundWanted) { audioContext(); }
    soundLabel();
  }

  // --- desktop notifications (asked for once, only when staff click the button) -----------------

  var notifyButton = document.getElementById("notify-toggle");
  var canNotify = "Notification" in window;

  function notifyLabel() {
    if (!notifyButton || !canNotify) { return; }
    var perm = window.Notification.permission;
    var off = getItem("localStorage", NOTIFY_KEY) === "off";
    notifyButton.textContent = perm === "granted" ? (off ? "Desktop alerts off" : "Desktop alerts on")
      : perm === "denied" ? "Desktop alerts blocked" : "Turn desktop alerts on";
    notifyButton.setAttribute("aria-pressed", perm === "granted" && !off ? "true" : "false");
    notifyButton.title = perm === "denied" ? "Allow notifications for this site in the browser's settings" : "";
    notifyButton.classList.toggle("is-on", perm === "granted" && !off);
  }

  if (notifyButton && canNotify) {
    show(notifyButton, true);
    notifyButton.addEventListener("click", function () {
      var perm = window.Notification.permission;
      if (perm === "default" && getItem("localStorage", NOTIFY_KEY) !== "asked") {
        setItem("localStorage", NOTIFY_KEY, "asked");   // asked once; the browser remembers the answer
        window.Notification.requestPermission().then(notifyLabel, notifyLabel);
      } else if (perm === "granted") {
        setItem("localStorage", NOTIFY_KEY, getItem("localStorage", NOTIFY_KEY) === "off" ? "on" : "off");
      }
      notifyLabel();
    });
    notifyLabel();
  }

  function notify(title, text, url, tag, loud) {
    if (!canNotify || window.Notification.permission !== "granted" || getItem("localStorage", NOTIFY_KEY) === "off") {
      return;
    }
    try {
      // No texter words and no number beyond the masked one: notifications show on lock screens.
      var n = new window.Notification(title, {body: text, tag: tag, requireInteraction: !!loud});
      n.onclick = function () { window.focus(); window.location.href = url; n.close(); };
      bump("data-notified");
    } catch (e) { /* some platforms only allow notifications from a service worker */ }
  }

  // --- alerts: the banner, the title, new arrivals, the owner's own conversations ----------------

  var banner = document.getElementById("alert-banner");
  var mineBox = document.getElementById("mine-alert");
  var countBadge = document.getElementById("queue-count");
  var titleTimer = null;
  var lastBanner = null;
  var lastMine = [];
  // When each repeating alarm last sounded, kept across pages so moving around does not re-trigger it.
  var lastSoundAt = (function () {
    try { return JSON.parse(getItem("sessionStorage", "helpline.lastSoundAt")) || {}; } catch (e) { return {}; }
  }());
  var unclaimedCount = 0;

  function seenIds() {
    try {
      var v = JSON.parse(getItem("sessionStorage", SEEN_KEY));
      return Array.isArray(v) ? v : null;
    } catch (e) { return null; }
  }
  var seen = seenIds();
  var acked = (function () {
    try { var v = JSON.parse(getItem("sessionStorage", ACKED_KEY)); return Array.isArray(v) ? v : []; } catch (e) { return []; }
  }());

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

  function stopTitle() {
    if (titleTimer) { window.clearInterval(titleTimer); titleTimer = null; }
    restTitle();
  }

  function describe(o) {
    return (o.training ? "training " : "") + o.severity + " escalation #" + o.id +
      (o.kind ? ", " + kindText(o.kind) : "") + (o.channel ? ", " + (o.channel === "web" ? "web chat" : o.channel) : "");
  }

  function soundFor(o) { return o.training ? "training" : (SOUNDS[o.severity] ? o.severity : "review"); }

  function renderBanner(data) {
    if (!banner) { return; }
    var b = data.banner;
    lastBanner = b;
    show(banner, !!b);
    body.classList.toggle("has-unclaimed", !!b);
    if (!b) { return; }
    banner.className = "alert-banner sev-" + b.severity + (b.training ? " is-training" : "");
    var since = Date.now() - new Date(b.since).getTime();
    banner.querySelector(".alert-banner-text").textContent = (b.training ? "TRAINING · " : "") + "UNCLAIMED " +
      upper(b.severity) + " #" + b.id + (b.kind ? " · " + kindText(b.kind) : "") + " · waiting " + ageText(since);
    var others = data.unclaimed - 1;
    banner.querySelector(".alert-banner-count").textContent = data.unclaimed + " unclaimed" +
      (data.unclaimed_training ? " (" + data.unclaimed_training + " training)" : "") +
      (others > 0 ? ": this is the most urgent" : "");
    var link = banner.querySelector(".alert-banner-link");
    link.setAttribute("href", b.url);
    link.textContent = "Open #" + b.id;
    banner.setAttribute("data-banner-id", String(b.id));
  }

  function renderMine(mine) {
    lastMine = mine || [];
    if (!mineBox) { return; }
    var crisis = lastMine.filter(function (m) { return m.alert === "crisis"; })[0];
    var given = lastMine.filter(function (m) { return m.alert === "transferred" && acked.indexOf(m.id) < 0; })[0];
    var item = crisis || given;
    show(mineBox, !!item);
    body.classList.toggle("has-mine", !!crisis);
    if (!item) { return; }
    mineBox.className = "mine-alert" + (crisis ? " is-crisis" : " is-given");
    var text = crisis ? "CRISIS TEXT in your conversation #" + crisis.id + " (" + upper(crisis.severity) + "): the bot is silent, reply now"
      : "#" + given.id + " (" + upper(given.severity) + ") was transferred to you by " + given.by;
    mineBox.querySelector(".mine-alert-text").textContent = text;
    mineBox.querySelector(".mine-alert-clock").textContent = crisis ? clockText(crisis) : "";
    var link = mineBox.querySelector(".mine-alert-link");
    link.setAttribute("href", item.url + (crisis ? "#reply-body" : ""));
    link.textContent = "Open #" + item.id;
  }

  function clockText(m) {
    var left = m.window_s * 1000 - (Date.now() - new Date(m.since).getTime());
    if (left <= 0) { return "No staff reply yet: the bot sends its crisis reply and pages you again."; }
    var s = Math.ceil(left / 1000);
    return "Reply within " + Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2) +
      ", or the bot sends its crisis reply and pages you again.";
  }

  function due(name) {
    var p = SOUNDS[name];
    return p && p.repeatMs && Date.now() - (lastSoundAt[name] || 0) >= p.repeatMs;
  }
  function sound(name) {
    lastSoundAt[name] = Date.now();
    setItem("sessionStorage", "helpline.lastSoundAt", JSON.stringify(lastSoundAt));
    play(name);
  }

  // Keep alerting while something waits: the owner's crisis text first, then the banner's tier.
  function keepAlerting() {
    var crisis = lastMine.filter(function (m) { return m.alert === "crisis"; })[0];
    if (crisis) { if (due("mine")) { sound("mine"); } return; }
    if (lastBanner && !lastBanner.training && due(lastBanner.severity)) { sound(lastBanner.severity); }
  }

  function alertNew(fresh, mineFresh) {
    mineFresh.forEach(function (m) {
      var text = m.alert === "crisis" ? "New crisis text in your conversation " + m.id + ". The bot is silent: reply now."
        : "Escalation " + m.id + " was transferred to you by " + m.by + ".";
      announce(text);
      notify(m.alert === "crisis" ? "CRISIS TEXT in your #" + m.id : "#" + m.id + " is now yours", text, m.url, "mine-" + m.id, true);
      sound(m.alert === "crisis" ? "mine" : upper(m.severity) === "REVIEW" ? "review" : "urgent");
      bump("data-mine-alerts");
    });
    if (!fresh.length) { return; }
    fresh.sort(function (a, b) {
      return (a.training - b.training) || (rankOf(b.severity) - rankOf(a.severity));
    });
    var first = fresh[0];
    announce("New " + describe(first) + ", unclaimed" + (fresh.length > 1 ? ", and " + (fresh.length - 1) + " more" : "") + ".");
    fresh.forEach(function (o) {
      if (!o.training) {
        notify(upper(o.severity) + " #" + o.id + (o.kind ? " · " + kindText(o.kind) : ""), "Unclaimed · " +
               (o.channel === "web" ? "web chat" : upper(o.channel)) + ". Open the dashboard to claim it.", o.url,
               "esc-" + o.id, o.severity === "emergency");
      }
    });
    sound(soundFor(first));
    bump("data-alerts");
    flashTitle("\u26A0 NEW " + upper(first.severity) + " #" + first.id);
    if (navigator.vibrate && !first.training) { try { navigator.vibrate([300, 150, 300]); } catch (e) { /* ignore */ } }
  }

  function rankOf(sev) { return {emergency: 3, urgent: 2, review: 1}[sev] || 0; }

  // --- the live queue (queue page) ----------------------------------------------------------------

  var queueBox = document.getElementById("queue");
  var versions = {};
  if (queueBox) {
    try { versions = JSON.parse(queueBox.getAttribute("data-versions") || "{}"); } catch (e) { versions = {}; }
  }

  function haveParam() {
    return Object.keys(versions).map(function (id) { return id + "." + versions[id]; }).join(",");
  }

  function cardNodes() {
    var out = {};
    var nodes = queueBox.querySelectorAll("li[data-escalation-id]");
    for (var i = 0; i < nodes.length; i++) { out[nodes[i].getAttribute("data-escalation-id")] = nodes[i]; }
    return out;
  }

  function applyCards(data) {
    var active = document.activeElement;
    var activeCard = active && active.closest ? active.closest("li[data-escalation-id]") : null;
    var activeId = activeCard ? activeCard.getAttribute("data-escalation-id") : null;
    var activeKey = active && active.getAttribute ? active.getAttribute("data-focus") : null;
    var nodes = cardNodes();
    var keep = {};
    var changed = 0;
    SECTIONS.forEach(function (name) {
      var ol = queueBox.querySelector('ol[data-section="' + name + '"]');
      var ids = data.sections[name] || [];
      ids.forEach(function (id, idx) {
        var key = String(id);
        var info = data.cards[key] || {};
        var node = nodes[key];
        if (typeof info.html === "string" && (!node || versions[key] !== info.v)) {
          var fresh = htmlToNode(info.html);
          localTimes(fresh);
          if (node) { node.parentNode.replaceChild(fresh, node); }
          node = fresh;
          nodes[key] = fresh;
          changed += 1;
        }
        versions[key] = info.v || versions[key];
        keep[key] = true;
        if (ol.children[idx] !== node) { ol.insertBefore(node, ol.children[idx] || null); changed += 1; }
      });
      var empty = queueBox.querySelector('[data-empty="' + name + '"]');
      show(empty, ids.length === 0);
      var pill = queueBox.querySelector('[data-section-count="' + name + '"]');
      if (pill && data.counts) { pill.textContent = String(data.counts[name]); }
    });
    Object.keys(nodes).forEach(function (key) {
      if (!keep[key]) { nodes[key].parentNode.removeChild(nodes[key]); delete versions[key]; changed += 1; }
    });
    var all = queueBox.querySelector('[data-count="all"]');
    if (all) { all.textContent = String(data.ids.length); }
    var unc = queueBox.querySelector('[data-count="unclaimed"]');
    if (unc) { unc.textContent = String(data.unclaimed); }
    if (changed) { bump("data-redraws"); }
    // Keep keyboard focus where it was: the same element, or its twin on a card that was redrawn.
    if (active && active !== body && document.activeElement !== active) {
      if (document.contains(active)) {
        active.focus({preventScroll: true});
      } else if (activeId) {
        var card = queueBox.querySelector('li[data-escalation-id="' + activeId + '"]');
        var target = card && (card.querySelector('[data-focus="' + activeKey + '"]') || card.querySelector("[data-focus]"));
        if (!target) {
          var h = queueBox.querySelector("h2");
          if (h) { h.setAttribute("tabindex", "-1"); target = h; }
        }
        if (target) { target.focus({preventScroll: true}); }
      }
    }
  }

  // --- the queue poll (every dashboard page) -------------------------------------------------------

  var problemsBox = document.getElementById("problems");
  var lastProblemsHtml = problemsBox ? problemsBox.innerHTML : null;
  var etag = null;

  function applyQueue(data) {
    bump("data-polls");
    if (data === null) {       // 304: nothing changed anywhere
      ages(queueBox || document);
      if (lastBanner) { renderBanner({banner: lastBanner, unclaimed: unclaimedCount, unclaimed_training: lastTraining}); }
      renderMine(lastMine);
      keepAlerting();
      return;
    }
    etag = data.__etag || null;
    if (queueBox && data.sections) { applyCards(data); }
    if (problemsBox && typeof data.problems_html === "string" && data.problems_html !== lastProblemsHtml) {
      problemsBox.innerHTML = data.problems_html;
      lastProblemsHtml = data.problems_html;
    }
    unclaimedCount = data.unclaimed || 0;
    lastTraining = data.unclaimed_training || 0;
    if (countBadge) {
      countBadge.textContent = String(unclaimedCount);
      show(countBadge, unclaimedCount > 0);
    }
    renderBanner(data);
    var fresh = [], mineFresh = [];
    if (seen === null) {
      seen = data.ids.slice();       // first look in this tab: what is there now is not "new"
      seen.push.apply(seen, (data.mine || []).map(function (m) { return m.alert + ":" + m.id + ":" + (m.since || ""); }));
    } else {
      fresh = data.open.filter(function (o) { return seen.indexOf(o.id) < 0; });
      mineFresh = (data.mine || []).filter(function (m) {
        return seen.indexOf(m.alert + ":" + m.id + ":" + (m.since || "")) < 0 &&
          (m.alert !== "transferred" || acked.indexOf(m.id) < 0);
      });
      data.ids.forEach(function (id) { if (seen.indexOf(id) < 0) { seen.push(id); } });
      mineFresh.forEach(function (m) { seen.push(m.alert + ":" + m.id + ":" + (m.since || "")); });
    }
    setItem("sessionStorage", SEEN_KEY, JSON.stringify(seen.slice(-500)));
    renderMine(data.mine);
    alertNew(fresh, mineFresh);
    keepAlerting();
    if (!unclaimedCount && !(data.mine || []).length) { stopTitle(); }
    if (!titleTimer) { restTitle(); }
    body.setAttribute("data-live", "ready");  // the first poll is in: from now on new ids alert
  }
  var lastTraining = 0;

  var queueUrl = body.getAttribute("data-queue-poll");
  if (queueUrl) {
    onTick(poller(function () {
      var url = queueBox ? withParam(withParam(queueUrl, "fragment", "1"), "have", haveParam()) : queueUrl;
      return request(url, etag).then(applyQueue);
    }));
  }

  // An escalation page the owner opens acknowledges a transfer alert for it.
  var onEscalation = window.location.pathname.match(/\/escalations\/(\d+)/);
  if (onEscalation) {
    var escId = parseInt(onEscalation[1], 10);
    if (acked.indexOf(escId) < 0) { acked.push(escId); setItem("sessionStorage", ACKED_KEY, JSON.stringify(acked.slice(-200))); }
  }

  // --- live transcript (escalation, contact and test-texter pages) ----------------------------

  var transcript = document.getElementById("transcript");
  if (transcript && transcript.getAttribute("data-poll-url")) {
    var lastId = parseInt(transcript.getAttribute("data-last-id"), 10) || 0;
    var startState = transcript.getAttribute("data-state") || "";
    var statusPanel = document.getElementById("status-panel");
    var notesList = document.getElementById("notes");
    var stale = document.getElementById("stale-notice");
    var tUrl = transcript.getAttribute("data-poll-url");
    var lastStatus = null, lastNotes = null;
    onTick(poller(function () {
      return request(withParam(tUrl, "after", lastId)).then(function (data) {
        if (!data) { return; }
        if (data.html && data.html.trim()) {
          var nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 200;
          var before = transcript.children.length;
          transcript.insertAdjacentHTML("beforeend", data.html);
          for (var i = before; i < transcript.children.length; i++) { transcript.children[i].classList.add("is-new"); }
          localTimes(transcript);
          if (nearBottom) { transcript.lastElementChild.scrollIntoView({block: "end"}); }
          if (data.new_inbound) {
            announce(data.new_inbound === 1 ? "New text from the texter." : data.new_inbound + " new texts from the texter.");
            if (!titleTimer) { flashTitle("New text from the texter"); }
          }
        }
        lastId = data.last_id || lastId;
        // Delivery of texts already shown: "SMS waiting to send" becomes "SMS delivered" in place.
        Object.keys(data.delivery || {}).forEach(function (mid) {
          var el = transcript.querySelector('[data-delivery-for="' + mid + '"]');
          var d = data.delivery[mid];
          if (el && el.textContent !== d.text) {
            el.textContent = d.text;
            el.className = "msg-delivery delivery-" + d.status;
          }
        });
        if (statusPanel && data.status_html && data.status_html !== lastStatus) {
          lastStatus = data.status_html;
          statusPanel.innerHTML = data.status_html;
          localTimes(statusPanel);
        }
        if (notesList && data.notes_html && data.notes_html !== lastNotes) {
          if (lastNotes !== null) { notesList.innerHTML = data.notes_html; localTimes(notesList); }
          lastNotes = data.notes_html;
        }
        if (stale && startState && data.state && data.state !== startState) { show(stale, true); }
      });
    }));
    window.addEventListener("focus", function () {
      if (titleTimer && !unclaimedCount) { stopTitle(); }
    });
  }

  // --- forms -----------------------------------------------------------------------------------

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); return; }
    if (form.getAttribute("data-submitted")) { ev.preventDefault(); return; }  // no double sends
    if ((form.getAttribute("method") || "").toLowerCase() === "post") {
      // Live queue cards carry no token of their own: they use this page's.
      if (!form.querySelector('input[name="csrf_token"]')) {
        var token = document.createElement("input");
        token.type = "hidden";
        token.name = "csrf_token";
        token.value = csrf;
        form.appendChild(token);
      }
      form.setAttribute("data-submitted", "1");
    }
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
    var update = function () { if (out) { out.textContent = area.value.length + " / " + max + " characters"; } };
    area.addEventListener("input", update);
    update();
  });

  // Saved replies: inserted at the cursor in the reply box, to be edited before sending.
  var cannedForm = document.getElementById("canned-form");
  var replyBox = document.getElementById("reply-body");
  if (cannedForm && replyBox) {
    cannedForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var select = cannedForm.querySelector("select");
      var option = select.options[select.selectedIndex];
      var text = option && option.getAttribute("data-text");
      if (!text) { select.focus(); return; }
      var start = replyBox.selectionStart || 0, end = replyBox.selectionEnd || 0;
      var before = replyBox.value.slice(0, start), after = replyBox.value.slice(end);
      var sep = before && !/\s$/.test(before) ? " " : "";
      replyBox.value = before + sep + text + after;
      var caret = (before + sep + text).length;
      replyBox.focus();
      replyBox.setSelectionRange(caret, caret);
      replyBox.dispatchEvent(new Event("input"));
      announce("Saved reply inserted in the reply box. Edit it, then send.");
    });
  }

  // --- focus: after an action, on what it produced ------------------------------------------------

  function focusTarget() {
    var id = window.location.hash ? decodeURIComponent(window.location.hash.slice(1)) : "";
    var target = id ? document.getElementById(id) : null;
    var flashes = document.getElementById("flashes");
    if (!target && flashes) { target = flashes; }
    if (target) {
      if (!target.matches("a, button, input, select, textarea, [tabindex]")) { target.setAttribute("tabindex", "-1"); }
      target.focus();
    }
    if (flashes) { announce(flashes.textContent.replace(/\s+/g, " ").trim()); }
  }

  // --- keyboard shortcuts (single keys, off while typing, can be switched off) -------------------

  var shortcutsBox = document.getElementById("shortcuts");
  var shortcutsOn = document.getElementById("shortcuts-on");
  if (shortcutsOn) {
    shortcutsOn.checked = getItem("localStorage", SHORTCUTS_KEY) !== "off";
    shortcutsOn.addEventListener("change", function () {
      setItem("localStorage", SHORTCUTS_KEY, shortcutsOn.checked ? "on" : "off");
    });
  }

  function focusCard(step) {
    var cards = Array.prototype.slice.call(document.querySelectorAll("#queue li[data-escalation-id] .card-title"));
    if (!cards.length) { return; }
    var current = document.activeElement && document.activeElement.closest ?
      document.activeElement.closest("li[data-escalation-id]") : null;
    var idx = -1;
    cards.forEach(function (c, i) { if (current && current.contains(c)) { idx = i; } });
    var next = cards[Math.max(0, Math.min(cards.length - 1, idx + step))];
    next.focus();
  }

  function go(href) { if (href) { window.location.href = href; } }

  document.addEventListener("keydown", function (ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) { return; }
    if (shortcutsOn && !shortcutsOn.checked && ev.key !== "?") { return; }
    var el;
    switch (ev.key) {
      case "?":
        if (shortcutsBox) { shortcutsBox.open = !shortcutsBox.open; shortcutsBox.querySelector("summary").focus(); }
        break;
      case "q": go(body.getAttribute("data-queue-url")); break;
      case "a":
        el = banner && !banner.hidden ? banner.querySelector("a") : null;
        if (el) { go(el.getAttribute("href")); } else { return; }
        break;
      case "j": focusCard(1); break;
      case "k": focusCard(-1); break;
      case "c":
        el = document.getElementById("claim-button");
        if (!el && t && t.closest) { var card = t.closest("li[data-escalation-id]"); el = card && card.querySelector(".btn-claim"); }
        if (el) { el.click(); } else { return; }
        break;
      case "r": el = document.getElementById("reply-body"); if (el) { el.focus(); } else { return; } break;
      case "s": el = document.getElementById("canned"); if (el) { el.focus(); } else { return; } break;
      case "n": el = document.getElementById("note-body"); if (el) { el.focus(); } else { return; } break;
      case "/":
        el = document.querySelector('.nav a[href$="/search"]');
        if (el) { go(el.getAttribute("href")); } else { return; }
        break;
      default: return;
    }
    ev.preventDefault();
  });

  localTimes(document);
  focusTarget();
  if (tickers.length) {
    startClock();
    for (var k = 0; k < tickers.length; k++) { tickers[k](); }
  }
}());
