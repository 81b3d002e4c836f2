/* The helpline's web chat widget.
 *
 * Embed: <script src="https://HELPLINE/chat/widget.js" data-clinic="solace-hills" async></script>
 * Optional: data-lang="es" (else the browser's language).
 *
 * Every word it shows comes from the server (replies/chat.<lang>.toml, via GET /chat/api/strings),
 * so the clinic's name and number and the emergency lines live once, checked by check-content; the
 * widget draws nothing until it has them.
 *
 * Vanilla JS, no dependencies. Everything lives in a Shadow DOM so the page's CSS cannot reach
 * the widget and the widget's CSS cannot reach the page; styles are a constructed stylesheet
 * (allowed under a strict style-src CSP), with a <style> element as the fallback. Every text
 * from the server is set with textContent, never parsed as HTML. The conversation's bearer
 * token is kept in sessionStorage (gone when the tab closes); no cookies are used.
 */
(function () {
  "use strict";
  var script = document.currentScript ||
    document.querySelector('script[src*="/chat/widget.js"]');
  if (!script || window.__solaceHillsChat) return;
  window.__solaceHillsChat = true;

  var BASE = new URL(script.src, location.href).href.replace(/\/chat\/widget\.js(?:[?#].*)?$/, "");
  var CLINIC = script.getAttribute("data-clinic") || "clinic";
  var LANG = ((script.getAttribute("data-lang") || navigator.language || "en").slice(0, 2).toLowerCase() === "es")
    ? "es" : "en";
  var KEY = "solace-chat:" + CLINIC;

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box}",
    ".w{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1b2a2f}",
    ".bubble{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;",
    "border:0;margin:0;padding:0;background:#1d5f6e;color:#fff;cursor:pointer;display:flex;align-items:center;",
    "justify-content:center;box-shadow:0 4px 14px rgba(0,0,0,.3);font:inherit}",
    ".bubble:hover{background:#174c58}",
    ".bubble svg{width:30px;height:30px;fill:currentColor}",
    ".dot{position:absolute;top:4px;right:4px;width:14px;height:14px;border-radius:50%;background:#e0662d;",
    "border:2px solid #fff}",
    "button:focus-visible,textarea:focus-visible,input:focus-visible{outline:3px solid #f0b54a;outline-offset:2px}",
    ".panel{position:fixed;right:20px;bottom:92px;z-index:2147483001;width:370px;max-width:calc(100vw - 40px);",
    "height:min(580px,calc(100vh - 112px));display:flex;flex-direction:column;background:#fff;border-radius:14px;",
    "box-shadow:0 10px 40px rgba(0,0,0,.28);overflow:hidden}",
    ".panel[hidden],[hidden]{display:none!important}",
    ".head{display:flex;align-items:flex-start;gap:8px;padding:12px 12px 10px 16px;background:#1d5f6e;color:#fff}",
    ".head div{flex:1;min-width:0}",
    ".head h2{margin:0;font-size:16px;font-weight:700;line-height:1.3}",
    ".status{margin:2px 0 0;font-size:13px}",
    ".status.joined::before{content:'';display:inline-block;width:8px;height:8px;border-radius:50%;",
    "background:#7ee2a8;margin-right:6px}",
    ".x{flex:none;width:36px;height:36px;border:0;border-radius:8px;background:transparent;color:#fff;",
    "font:26px/1 system-ui,sans-serif;cursor:pointer;padding:0;margin:0}",
    ".x:hover{background:rgba(255,255,255,.15)}",
    ".notice{margin:0;padding:8px 14px;font-size:12.5px;line-height:1.4;background:#fdf6e8;color:#4a3a18;",
    "border-bottom:1px solid #efe2c4}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f5f7f8}",
    ".m{max-width:85%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;",
    "background:#fff;border:1px solid #dde4e6}",
    ".m .who{display:block;font-size:11.5px;font-weight:700;color:#4b5f65;margin-bottom:2px}",
    ".m p{margin:0}",
    ".m-visitor{align-self:flex-end;background:#1d5f6e;border-color:#1d5f6e;color:#fff}",
    ".m-visitor .who{color:#d6eef2}",
    ".m-staff{border-left:4px solid #b07a3b;background:#fffaf2}",
    ".m-staff .who{color:#7a4f1d}",
    ".sys{align-self:center;text-align:center;font-size:12.5px;color:#4b5f65;max-width:95%}",
    ".sys-warn{color:#8a2a0c;font-weight:600}",
    ".cb{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-end;padding:8px 12px;border-top:1px solid #dde4e6;",
    "background:#fdf6e8}",
    ".cb label{flex:1 1 100%;font-size:12.5px;color:#4a3a18}",
    ".cb input{flex:1;min-width:0;font:inherit;padding:7px 9px;border:1px solid #b9c6ca;border-radius:8px}",
    ".form{display:flex;gap:8px;align-items:flex-end;padding:10px 12px;border-top:1px solid #dde4e6;background:#fff}",
    ".form textarea{flex:1;min-width:0;resize:none;font:inherit;padding:8px 10px;border:1px solid #b9c6ca;",
    "border-radius:10px;height:42px;max-height:120px;color:#1b2a2f;background:#fff}",
    ".btn{flex:none;font:600 14px/1 system-ui,sans-serif;padding:0 14px;height:42px;border:0;border-radius:10px;",
    "background:#1d5f6e;color:#fff;cursor:pointer;margin:0}",
    ".btn:hover{background:#174c58}",
    ".cb .btn{height:36px;background:#7a4f1d}",
    ".sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);border:0}",
    "@media (max-width:480px){.panel{inset:0;right:0;bottom:0;width:100%;max-width:none;height:100%;",
    "border-radius:0}.open .bubble{display:none}}",
    "@media (prefers-reduced-motion:no-preference){.panel{animation:rise .16s ease-out}}",
    "@keyframes rise{from{transform:translateY(12px);opacity:0}to{transform:none;opacity:1}}"
  ].join("");

  // --- building blocks -----------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
      }
    }
    if (text) node.textContent = text;
    return node;
  }

  function icon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z" +
      "M7 9h10v2H7zm0-3h10v2H7zm0 6h7v2H7z");
    svg.appendChild(path);
    return svg;
  }

  function store(value) {
    try {
      if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
      else sessionStorage.removeItem(KEY);
    } catch (e) { /* storage blocked: the chat lasts as long as the page */ }
  }

  function stored() {
    try { return JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { return null; }
  }

  // --- the words, then the widget ---------------------------------------------------------
  fetch(BASE + "/chat/api/strings?lang=" + LANG, {
    headers: { "Accept": "application/json" }, mode: "cors", credentials: "omit"
  }).then(function (resp) {
    if (!resp.ok) throw new Error("chat strings: HTTP " + resp.status);
    return resp.json();
  }).then(function (data) {
    build(data.strings);
  }).catch(function () { /* the helpline is unreachable: no widget rather than one without words */ });

  function build(T) {
    // --- the DOM -------------------------------------------------------------------------
    var host = el("div", { id: "solace-hills-chat" });
    var root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function" &&
        "replaceSync" in CSSStyleSheet.prototype) {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.appendChild(el("style", null, CSS));
    }

    var wrap = el("div", { "class": "w", lang: LANG });
    var bubble = el("button", { type: "button", "class": "bubble", "aria-label": T.open, "aria-expanded": "false",
      "aria-controls": "panel", "aria-haspopup": "dialog" });
    bubble.appendChild(icon());
    var dot = el("span", { "class": "dot", hidden: "" });
    bubble.appendChild(dot);

    var panel = el("div", { id: "panel", "class": "panel", role: "dialog", "aria-modal": "false",
      "aria-labelledby": "title", "aria-describedby": "status", hidden: "" });
    var head = el("div", { "class": "head" });
    var headText = el("div");
    headText.appendChild(el("h2", { id: "title" }, T.title));
    var status = el("p", { id: "status", "class": "status" }, T.auto);
    headText.appendChild(status);
    var closeBtn = el("button", { type: "button", "class": "x", "aria-label": T.close }, "×");
    head.appendChild(headText);
    head.appendChild(closeBtn);

    var notice = el("p", { "class": "notice" }, T.notice);
    var log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-label": T.log, tabindex: "0" });

    var cb = el("form", { "class": "cb", hidden: "", novalidate: "" });
    cb.appendChild(el("label", { "for": "cb-phone" }, T.callback_label));
    var cbInput = el("input", { id: "cb-phone", type: "tel", autocomplete: "tel", inputmode: "tel", maxlength: "40" });
    cb.appendChild(cbInput);
    cb.appendChild(el("button", { type: "submit", "class": "btn" }, T.callback_send));

    var form = el("form", { "class": "form" });
    form.appendChild(el("label", { "for": "msg", "class": "sr" }, T.label));
    var input = el("textarea", { id: "msg", rows: "1", maxlength: "1600", placeholder: T.placeholder,
      autocomplete: "off", enterkeyhint: "send" });
    form.appendChild(input);
    form.appendChild(el("button", { type: "submit", "class": "btn" }, T.send));

    panel.appendChild(head);
    panel.appendChild(notice);
    panel.appendChild(log);
    panel.appendChild(cb);
    panel.appendChild(form);
    wrap.appendChild(panel);
    wrap.appendChild(bubble);
    root.appendChild(wrap);

    // --- state ---------------------------------------------------------------------------
    var session = stored();   // {token, expires_at}
    var lastId = 0;
    var seen = {};
    var staffJoined = false;
    var escalated = false;
    var callbackDone = false;
    var pollTimer = null;
    var pollMs = 2500;
    var failures = 0;
    var starting = null;
    var typing = null;
    var offlineShown = false;

    function isOpen() { return !panel.hidden; }

    function scroll() { log.scrollTop = log.scrollHeight; }

    function system(text, warn) {
      log.appendChild(el("p", { "class": warn ? "sys sys-warn" : "sys" }, text));
      scroll();
    }

    function showMessage(m) {
      if (m.id !== null && m.id !== undefined) {
        if (seen[m.id]) return;
        seen[m.id] = true;
        if (m.id > lastId) lastId = m.id;
      }
      var kind = m.kind || "bot";
      var who = { visitor: T.you, staff: T.staff_who, followup: T.followup }[kind] || T.bot;
      if (kind === "staff") joined();
      var div = el("div", { "class": "m m-" + kind });
      div.appendChild(el("span", { "class": "who" }, who));
      div.appendChild(el("p", null, m.text));
      log.appendChild(div);
      scroll();
      if (!isOpen() && kind !== "visitor") {
        dot.hidden = false;
        bubble.setAttribute("aria-label", T.open_new);
      }
    }

    function joined() {
      if (staffJoined) return;
      staffJoined = true;
      status.textContent = T.staff;
      status.className = "status joined";
      system(T.staff);
    }

    function applyState(data) {
      if (data.staff_joined) joined();
      if (data.escalated && !escalated) {
        escalated = true;
        if (!staffJoined) system(T.alerted);
        if (!callbackDone) cb.hidden = false;
      } else if (data.escalated === false) {
        escalated = false;
        cb.hidden = true;
      }
      if (data.poll_ms) pollMs = Math.max(1000, data.poll_ms);
    }

    function setTyping(on) {
      if (on && !typing) {
        typing = el("p", { "class": "sys", "aria-hidden": "true" }, T.typing);
        log.appendChild(typing);
        scroll();
      } else if (!on && typing) {
        typing.remove();
        typing = null;
      }
    }

    // --- network -------------------------------------------------------------------------
    function api(method, path, body) {
      var headers = { "Accept": "application/json" };
      if (body) headers["Content-Type"] = "application/json";
      if (session && session.token) headers["Authorization"] = "Bearer " + session.token;
      return fetch(BASE + path, {
        method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
        mode: "cors", credentials: "omit", cache: "no-store"
      }).then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          return { status: resp.status, data: data || {} };
        });
      });
    }

    function online() {
      failures = 0;
      offlineShown = false;
    }

    function offline() {
      failures += 1;
      if (!offlineShown && failures >= 2) {
        offlineShown = true;
        system(T.offline, true);
      }
    }

    function start() {
      if (starting) return starting;
      starting = api("POST", "/chat/api/start", { lang: LANG, clinic: CLINIC }).then(function (r) {
        starting = null;
        if (r.status !== 201 || !r.data.token) {
          system(r.data.message || T.offline, true);
          throw { shown: true };
        }
        online();
        session = { token: r.data.token, expires_at: r.data.expires_at };
        store(session);
        lastId = 0;
        seen = {};
        applyState(r.data);
        (r.data.messages || []).forEach(showMessage);
        schedulePoll();
        return session;
      }, function (err) {
        starting = null;
        if (err && err.shown) throw err;
        offline();
        if (!offlineShown) system(T.offline, true);
        throw { shown: true };
      });
      return starting;
    }

    function ended() {
      session = null;
      store(null);
      stopPoll();
      escalated = false;
      cb.hidden = true;
    }

    function poll(history) {
      if (!session) return Promise.resolve();
      return api("GET", "/chat/api/messages?after=" + (history ? 0 : lastId) + (history ? "&history=1" : ""))
        .then(function (r) {
          if (r.status === 401) { ended(); return; }
          if (r.status !== 200) { offline(); return; }
          online();
          (r.data.messages || []).forEach(function (m) {
            // The visitor's own messages are drawn when sent; only a restored history shows them again.
            if (history || m.kind !== "visitor") showMessage(m);
          });
          applyState(r.data);
        }, offline);
    }

    function schedulePoll() {
      stopPoll();
      if (!session) return;
      // Live while the panel is open or staff are involved; a closed, quiet chat checks less often.
      var wait = (isOpen() || escalated) ? pollMs : pollMs * (document.hidden ? 12 : 4);
      if (failures) wait = Math.min(30000, wait * Math.pow(2, failures));
      pollTimer = setTimeout(function () {
        poll(false).then(schedulePoll, schedulePoll);
      }, wait);
    }

    function stopPoll() {
      if (pollTimer) clearTimeout(pollTimer);
      pollTimer = null;
    }

    function send(text, retried) {
      var ready = session ? Promise.resolve(session) : start();
      return ready.then(function () {
        setTyping(true);
        return api("POST", "/chat/api/messages", { text: text, after: lastId });
      }).then(function (r) {
        setTyping(false);
        if (r.status === 401 && !retried) {
          // The token expired: a new conversation, and the message goes again (never silently lost).
          ended();
          system(T.restarted);
          return send(text, true);
        }
        if (r.status !== 200) {
          system(r.data.message || (r.status === 413 ? T.too_long : T.offline), true);
          return;
        }
        online();
        (r.data.messages || []).forEach(showMessage);
        if (r.data.notice) system(r.data.notice, true);
        applyState(r.data);
      }, function (err) {
        setTyping(false);
        if (!(err && err.shown)) system(T.offline, true);
      });
    }

    // --- behaviour ---------------------------------------------------------------------------
    function open() {
      panel.hidden = false;
      if (session) { stopPoll(); poll(false).then(schedulePoll, schedulePoll); }
      wrap.className = "w open";
      bubble.setAttribute("aria-expanded", "true");
      bubble.setAttribute("aria-label", T.open);
      dot.hidden = true;
      input.focus();
      if (!session) start().catch(function () {});
      scroll();
    }

    function close() {
      panel.hidden = true;
      wrap.className = "w";
      bubble.setAttribute("aria-expanded", "false");
      bubble.focus();
    }

    bubble.addEventListener("click", function () {
      if (isOpen()) close(); else open();
    });
    closeBtn.addEventListener("click", close);
    panel.addEventListener("keydown", function (e) {
      if (e.key === "Escape" || e.key === "Esc") {
        e.preventDefault();
        e.stopPropagation();
        close();
      }
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit();
      }
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      submit();
    });

    function submit() {
      var text = input.value.trim();
      if (!text) return;
      if (text.length > 1600) {
        system(T.too_long, true);
        return;
      }
      input.value = "";
      showMessage({ id: null, kind: "visitor", text: text });
      send(text);
      input.focus();
    }

    cb.addEventListener("submit", function (e) {
      e.preventDefault();
      var phone = cbInput.value.trim();
      if (!phone || !session) return;
      api("POST", "/chat/api/callback", { phone: phone }).then(function (r) {
        system(r.data.message || T.offline, r.status !== 200);
        if (r.status === 200 || r.status === 409) {
          callbackDone = r.status === 200;
          cb.hidden = true;
          cbInput.value = "";
          input.focus();
        }
      }, function () { system(T.offline, true); });
    });

    function mount() {
      document.body.appendChild(host);
      if (session && session.token) {
        poll(true).then(schedulePoll, schedulePoll);
      }
    }

    if (document.body) mount();
    else document.addEventListener("DOMContentLoaded", mount);
  }
})();
