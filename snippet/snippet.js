/* callpool snippet: swaps the site's phone number for the visitor's tracking number, live.
 * <script async src="https://callpool.example/snippet.js" data-site="SITE_KEY"></script>
 * Options on the tag: data-consent="required" (wait for callpool.consent()).
 * Opt-out: data-callpool-ignore on an element (and everything inside it).
 * Explicit places: data-callpool-number on an element whose text is a phone number.
 * Callback form (when the site enables it): a button and a small dialog in a shadow root, themed
 * by CSS variables on the page (--callpool-accent, --callpool-accent-text, --callpool-bg,
 * --callpool-text, --callpool-radius, --callpool-font, --callpool-offset); data-callback="off"
 * hides it (the site's own form can use callpool.callback(number) and callpool.onCallback(fn)).
 * API: window.callpool = { number(), kind(), rescan(), onChange(fn), consent(), callback(n), onCallback(fn) }.
 * Protocol: docs/PROTOCOL.md. No dependencies; never throws into the page. */
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script || window.callpool) return;
  var siteKey = script.getAttribute('data-site');
  var base = script.src.replace(/\/snippet\.js(\?.*)?$/, '');
  var wsUrl = base.replace(/^http/, 'ws') + '/v1/ws?site=' + encodeURIComponent(siteKey || '');
  var IGNORE = 'data-callpool-ignore';
  var MARK = 'data-callpool-number';
  var RUN = /\+?\d[\d\s\u00a0().\-]{5,}\d/g;

  var known = [];        // numbers of the site: [{e164, national}]
  var current = null;    // {number, kind}
  var texts = new Map(); // Text node -> {orig: the page's text, shown: what we wrote}
  var links = new Map(); // <a> -> original href
  var listeners = [];
  var ws = null, attempt = 0, consented = script.getAttribute('data-consent') !== 'required';
  var lastActivity = 0;
  var widget = null, cbListeners = [], showWidget = script.getAttribute('data-callback') !== 'off';

  function cookie(name) {
    var m = document.cookie.match(new RegExp('(?:^|; )' + name.replace(/[.$?*|{}()[\]\\/+^]/g, '\\$&') + '=([^;]*)'));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function rand() {
    return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  }
  function gaClientId() {
    var p = (cookie('_ga') || '').split('.');
    return p.length >= 4 ? p[2] + '.' + p[3] : null;
  }
  function gaSessionId() {
    var all = document.cookie.split('; ');
    for (var i = 0; i < all.length; i++) {
      var kv = all[i].split('=');
      if (kv[0].indexOf('_ga_') !== 0 || !kv[1]) continue;
      var v = decodeURIComponent(kv[1]);
      if (v.indexOf('GS2.') === 0) {
        var m = v.match(/[.$]s(\d+)/);
        if (m) return m[1];
      } else if (v.indexOf('GS1.') === 0) {
        return v.split('.')[2] || null;
      }
    }
    return null;
  }
  function visitorId() {
    var ga = gaClientId();
    if (ga) return ga;
    try {
      var id = localStorage.getItem('callpool_vid');
      if (!id) localStorage.setItem('callpool_vid', (id = 'cp' + rand()));
      return id;
    } catch (e) {
      return 'cp' + rand();
    }
  }
  var tab = rand();

  function digits(s) {
    return s.replace(/\D/g, '');
  }
  // Which of the site's numbers `text` spells (any formatting), and with which prefix.
  function matchNumber(d) {
    for (var i = 0; i < known.length; i++) {
      var n = known[i], full = digits(n.e164), nat = n.national;
      if (d === full || d === nat) return { n: n, prefix: d === full ? 'cc' : '' };
      if (d.length === nat.length + 1 && d.slice(1) === nat && (d[0] === '8' || d[0] === '0')) {
        return { n: n, prefix: d[0] };
      }
    }
    return null;
  }
  // `original` spelled number `from`; spell `to` in the same shape (the digits poured into the mask).
  function respell(original, match, to) {
    var t = known.filter(function (k) { return k.e164 === to; })[0];
    var nat = t ? t.national : digits(to).slice(digits(to).length - match.n.national.length);
    var want = match.prefix === 'cc' ? digits(to) : match.prefix + nat;
    if (want.length !== digits(original).length) return original.replace(/[\d\s\u00a0().\-+]+/, to);
    var i = 0;
    return original.replace(/\d/g, function () { return want[i++]; });
  }
  function ignored(node) {
    for (var el = node.nodeType === 1 ? node : node.parentElement; el; el = el.parentElement) {
      if (el.hasAttribute && el.hasAttribute(IGNORE)) return true;
      if (el.tagName === 'SCRIPT' || el.tagName === 'STYLE' || el.tagName === 'TEXTAREA' || el.tagName === 'INPUT') return true;
    }
    return false;
  }
  function renderText(node) {
    var t = texts.get(node);
    t.shown = t.orig.replace(RUN, function (run) {
      var m = matchNumber(digits(run));
      return m ? respell(run, m, current.number) : run;
    });
    if (node.nodeValue !== t.shown) node.nodeValue = t.shown;
  }
  function scan(root) {
    if (!known.length || !root || ignored(root)) return;
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var node = root.nodeType === 3 ? root : walker.nextNode();
    for (; node; node = walker.nextNode()) {
      if (texts.has(node) || ignored(node)) continue;
      var value = node.nodeValue, found = false;
      value.replace(RUN, function (run) {
        if (matchNumber(digits(run))) found = true;
        return run;
      });
      if (!found && !(node.parentElement && node.parentElement.hasAttribute(MARK))) continue;
      texts.set(node, { orig: value, shown: value });
      if (current) renderText(node);
    }
    var anchors = root.querySelectorAll ? root.querySelectorAll('a[href^="tel:"]') : [];
    for (var i = 0; i < anchors.length; i++) {
      var a = anchors[i];
      if (links.has(a) || ignored(a)) continue;
      if (matchNumber(digits(a.getAttribute('href')))) {
        links.set(a, a.getAttribute('href'));
        if (current) renderLink(a);
      }
    }
  }
  function renderLink(a) {
    var href = 'tel:' + current.number;
    if (a.getAttribute('href') !== href) a.setAttribute('href', href);
  }
  function apply() {
    texts.forEach(function (_, node) { if (node.isConnected) renderText(node); else texts.delete(node); });
    links.forEach(function (_, a) { if (a.isConnected) renderLink(a); else links.delete(a); });
    observer.takeRecords(); // our own changes are not the page's
  }
  function show(number, kind) {
    var changed = !current || current.number !== number || current.kind !== kind;
    current = { number: number, kind: kind };
    apply();
    if (changed) {
      listeners.forEach(function (fn) {
        try { fn(number, kind); } catch (e) { /* a listener's error stays its own */ }
      });
    }
  }

  function send(msg) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg));
  }
  function connect() {
    if (!consented || !siteKey || ws) return;
    try {
      ws = new WebSocket(wsUrl);
    } catch (e) {
      return retry();
    }
    ws.onopen = function () {
      attempt = 0;
      send({
        type: 'hello', v: 1, visitor: visitorId(), tab: tab, ga_client_id: gaClientId(),
        ga_session_id: gaSessionId(), ym_uid: cookie('_ym_uid'), page: location.href, referrer: document.referrer
      });
    };
    ws.onmessage = function (ev) {
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === 'site') {
        known = msg.numbers || [];
        scan(document.body);
      } else if (msg.type === 'number') {
        show(msg.number, msg.kind);
      } else if (msg.type === 'callback_form') {
        if (showWidget) buildWidget(msg);
      } else if (msg.type === 'callback' || msg.type === 'callback_refused') {
        callbackStatus(msg);
      }
    };
    ws.onclose = function (ev) {
      ws = null;
      // 4400-4499: the server refused this page for good (unknown site, bad origin, ...).
      if (ev.code >= 4400 && ev.code < 4500 && ev.code !== 4408) return;
      retry();
    };
    ws.onerror = function () { /* onclose follows */ };
  }

  // ---- The callback widget -------------------------------------------------------------------
  var CSS = ':host{all:initial;font-family:var(--callpool-font,system-ui,sans-serif);color:var(--callpool-text,#1a1a1a)}' +
    '.b{position:fixed;right:var(--callpool-offset,20px);bottom:var(--callpool-offset,20px);z-index:2147483000;' +
    'background:var(--callpool-accent,#0b6bcb);color:var(--callpool-accent-text,#fff);border:0;' +
    'border-radius:var(--callpool-radius,24px);padding:12px 18px;font:inherit;font-size:16px;cursor:pointer;' +
    'box-shadow:0 2px 10px rgba(0,0,0,.25)}' +
    '.b:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}' +
    '.p{position:fixed;right:var(--callpool-offset,20px);bottom:calc(var(--callpool-offset,20px) + 60px);' +
    'z-index:2147483000;width:min(320px,calc(100vw - 2 * var(--callpool-offset,20px)));box-sizing:border-box;' +
    'background:var(--callpool-bg,#fff);color:var(--callpool-text,#1a1a1a);border-radius:12px;padding:16px;' +
    'box-shadow:0 4px 24px rgba(0,0,0,.3);font-size:15px;line-height:1.4}' +
    '.p[hidden]{display:none}h2{font-size:18px;margin:0 24px 8px 0}p{margin:0 0 10px}' +
    'label{display:block;font-weight:600;margin-bottom:4px}' +
    'input{box-sizing:border-box;width:100%;font:inherit;font-size:16px;padding:10px;border:1px solid #767676;' +
    'border-radius:8px;margin-bottom:10px}input[aria-invalid=true]{border-color:#b00020}' +
    '.s{width:100%;background:var(--callpool-accent,#0b6bcb);color:var(--callpool-accent-text,#fff);border:0;' +
    'border-radius:8px;padding:10px;font:inherit;font-size:16px;cursor:pointer}.s[disabled]{opacity:.6;cursor:default}' +
    '.x{position:absolute;top:8px;right:8px;background:none;border:0;font-size:20px;cursor:pointer;color:inherit}' +
    '.st{margin:10px 0 0;min-height:1.4em}.st[data-kind=error]{color:#b00020}';

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text) e.textContent = text;
    return e;
  }
  function buildWidget(msg) {
    var t = msg.texts || {};
    if (widget) {
      widget.notice.textContent = msg.open ? t.prompt : (msg.notice || t.prompt);
      return;
    }
    var host = el('div', { 'data-callpool-ignore': '', 'class': 'callpool-callback' });
    var root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;
    root.appendChild(el('style', {}, CSS));
    var button = el('button', { 'class': 'b', type: 'button', 'aria-haspopup': 'dialog', 'aria-expanded': 'false',
      'aria-controls': 'callpool-cb-panel' }, t.button);
    var panel = el('div', { 'class': 'p', id: 'callpool-cb-panel', role: 'dialog', 'aria-labelledby': 'callpool-cb-title',
      hidden: '' });
    var close = el('button', { 'class': 'x', type: 'button', 'aria-label': t.close }, '\u00d7');
    var title = el('h2', { id: 'callpool-cb-title' }, t.title);
    var notice = el('p', { id: 'callpool-cb-notice' }, msg.open ? t.prompt : (msg.notice || t.prompt));
    var form = el('form', { novalidate: '' });
    var label = el('label', { 'for': 'callpool-cb-number' }, t.label);
    var input = el('input', { id: 'callpool-cb-number', type: 'tel', name: 'tel', autocomplete: 'tel', inputmode: 'tel',
      required: '', 'aria-describedby': 'callpool-cb-notice callpool-cb-status' });
    var submit = el('button', { 'class': 's', type: 'submit' }, t.submit);
    var status = el('p', { 'class': 'st', id: 'callpool-cb-status', role: 'status', 'aria-live': 'polite' });
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(submit);
    [close, title, notice, form, status].forEach(function (n) { panel.appendChild(n); });
    root.appendChild(button);
    root.appendChild(panel);
    function open(focus) {
      panel.hidden = false;
      button.setAttribute('aria-expanded', 'true');
      if (focus) input.focus();
    }
    function shut() {
      panel.hidden = true;
      button.setAttribute('aria-expanded', 'false');
      button.focus();
    }
    button.addEventListener('click', function () { if (panel.hidden) open(true); else shut(); });
    close.addEventListener('click', shut);
    panel.addEventListener('keydown', function (e) { if (e.key === 'Escape') shut(); });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var n = input.value.trim();
      if (!n) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      requestCallback(n);
    });
    widget = { host: host, panel: panel, input: input, submit: submit, status: status, notice: notice, open: open,
      failed: t.failed };
    document.body.appendChild(host);
  }
  function requestCallback(number) {
    if (!ws || ws.readyState !== 1) {
      callbackStatus({ type: 'callback_refused', reason: 'offline', message: widget ? widget.failed : '' });
      return false;
    }
    if (widget) widget.submit.disabled = true;
    send({ type: 'callback_request', number: String(number) });
    return true;
  }
  var FINAL = { completed: 1, missed: 1, failed: 1 };
  function callbackStatus(msg) {
    if (widget) {
      var refused = msg.type === 'callback_refused';
      widget.open(false);
      widget.status.textContent = msg.message || '';
      widget.status.setAttribute('data-kind', refused ? 'error' : 'info');
      widget.status.setAttribute('data-status', refused ? 'refused' : msg.status);
      widget.status.setAttribute('role', refused ? 'alert' : 'status');
      widget.input.setAttribute('aria-invalid', refused && msg.reason !== 'offline' ? 'true' : 'false');
      widget.submit.disabled = !refused && !FINAL[msg.status];
      if (refused) widget.input.focus();
    }
    cbListeners.forEach(function (fn) {
      try { fn(msg); } catch (e) { /* a listener's error stays its own */ }
    });
  }

  function retry() {
    var delay = Math.min(60000, 1000 * Math.pow(2, attempt++));
    setTimeout(connect, delay / 2 + Math.random() * delay / 2);
  }
  function activity() {
    var now = Date.now();
    if (now - lastActivity < 15000) return;
    lastActivity = now;
    send({ type: 'activity' });
  }

  ['mousemove', 'keydown', 'scroll', 'touchstart', 'click'].forEach(function (e) {
    addEventListener(e, activity, { passive: true, capture: true });
  });
  document.addEventListener('visibilitychange', function () {
    send({ type: 'visibility', visible: document.visibilityState === 'visible' });
  });
  var observer = new MutationObserver(function (records) {
    records.forEach(function (r) {
      for (var i = 0; i < r.addedNodes.length; i++) scan(r.addedNodes[i]);
      var t = r.type === 'characterData' && texts.get(r.target);
      // The page rewrote a text we had swapped: that is its new original.
      if (t && r.target.nodeValue !== t.shown) {
        texts.delete(r.target);
        scan(r.target);
      }
    });
  });
  observer.observe(document.documentElement, { childList: true, subtree: true, characterData: true });

  window.callpool = {
    number: function () { return current && current.number; },
    kind: function () { return current && current.kind; },
    rescan: function () { scan(document.body); apply(); },
    onChange: function (fn) { listeners.push(fn); },
    consent: function () { consented = true; connect(); },
    callback: requestCallback,
    onCallback: function (fn) { cbListeners.push(fn); }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', connect);
  else connect();
})();
