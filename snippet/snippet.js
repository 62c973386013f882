/* callpool snippet: swaps the site's phone number for the visitor's tracking number, live.
 * <script async src="https://callpool.example/snippet.js" data-site="SITE_KEY"></script>
 * Options on the tag: data-consent="required" (wait for callpool.consent()).
 * Opt-out: data-callpool-ignore on an element (and everything inside it).
 * Explicit places: data-callpool-number on an element whose text is a phone number.
 * Callback form: for a site that has one, callback.js (loaded from the same place) shows it;
 * data-callback="off" leaves it out (a site's own form can use the API's callback functions).
 * API: window.callpool = { number(), kind(), rescan(), onChange(fn), consent(),
 *   callback(number), callbackForm(), onCallback(fn) }.
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
  var cbForm = null, cbListeners = [], widgetLoaded = false, showWidget = script.getAttribute('data-callback') !== 'off';

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
      } else if (msg.type.indexOf('callback') === 0) {
        callbackEvent(msg);
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

  // The callback form's state and messages go to listeners; the site's widget (callback.js, loaded
  // only for a site with a form) is one of them.
  function callbackEvent(msg) {
    if (msg.type === 'callback_form') {
      cbForm = msg;
      if (showWidget && !widgetLoaded) {
        widgetLoaded = true;
        var s = document.createElement('script');
        s.async = true;
        s.src = base + '/callback.js';
        (document.head || document.documentElement).appendChild(s);
      }
    }
    cbListeners.forEach(function (fn) {
      try { fn(msg); } catch (e) { /* a listener's error stays its own */ }
    });
  }
  function requestCallback(number) {
    if (!ws || ws.readyState !== 1) {
      callbackEvent({ type: 'callback_refused', reason: 'offline', message: cbForm ? cbForm.texts.failed : '' });
      return false;
    }
    send({ type: 'callback_request', number: String(number) });
    return true;
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
    callbackForm: function () { return cbForm; },
    onCallback: function (fn) { cbListeners.push(fn); }
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', connect);
  else connect();
})();
