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
  // A tel: link or a marked element is a box: a number split over its elements (<span>+7 (495)</span> 123-45-67) is
  // swapped too, each part in its own text node. A link's text and target always name the same number.
  var TEL = 'a[href^="tel:" i]', BOX = TEL + ',[' + MARK + ']';

  var known = [];        // numbers of the site: [{e164, national}]
  var current = null;    // {number, kind}
  var groups = new Map(); // box (or a Text node outside boxes) -> {nodes: its Text nodes, orig: the page's texts, shown: ours}
  var links = new Map(); // <a> -> {orig: the page's href, shown: ours}
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
  // Whether `s` spells one of the site's numbers (other than `except`); fn(run, match, offset) for each.
  function names(s, except, fn) {
    var r = false;
    s.replace(RUN, function (run, at) {
      var m = matchNumber(digits(run));
      if (m && m.n.e164 !== except) r = true;
      if (m && fn) fn(run, m, at);
      return run;
    });
    return r;
  }
  // `parts` with the site's numbers spelled as the current one; each character stays in its part.
  function spell(parts) {
    var owner = [], out = [], all = parts.join(''), i = 0;
    parts.forEach(function (p, n) {
      out.push('');
      for (var k = 0; k < p.length; k++) owner.push(n);
    });
    names(all, 0, function (run, m, at) {
      var s = respell(run, m, current.number);
      for (; i < at; i++) out[owner[i]] += all[i];
      if (s.length === run.length) for (var k = 0; k < s.length; k++) out[owner[at + k]] += s[k];
      else out[owner[at]] += s;
      i = at + run.length;
    });
    for (; i < all.length; i++) out[owner[i]] += all[i];
    return out;
  }
  // An href's characters, raw and read (a %-escape as the character it stands for: tel:%2B7%20495...).
  function chars(href) {
    var raw = href.match(/%[\da-f]{2}|[\s\S]/gi) || [];
    return [raw, raw.map(function (c) {
      try { return c[1] ? decodeURIComponent(c) : c; } catch (e) { return c; }
    })];
  }
  function dialsOurs(a) {
    return links.has(a) || names(chars(a.getAttribute('href'))[1].join(''));
  }
  function ignored(node) {
    for (var el = node.nodeType === 1 ? node : node.parentElement; el; el = el.parentElement) {
      if (el.hasAttribute && el.hasAttribute(IGNORE)) return true;
      if (el.tagName === 'SCRIPT' || el.tagName === 'STYLE' || el.tagName === 'TEXTAREA' || el.tagName === 'INPUT') return true;
      // A tel: link that dials another number keeps its text (text and target agree).
      if (el.matches(TEL) && !dialsOurs(el)) return true;
    }
    return false;
  }
  function box(node) {
    var el = node.nodeType === 1 ? node : node.parentElement;
    return (el && el.closest(BOX)) || (node.nodeType === 3 ? node : null);
  }
  function value(n) {
    return n.nodeValue;
  }
  // (Re)reads a box's texts: the page changed them, or its nodes, since we wrote ours.
  function form(b) {
    var g = groups.get(b), nodes = [], w = document.createTreeWalker(b, NodeFilter.SHOW_TEXT), n;
    for (n = b.nodeType === 3 ? b : w.nextNode(); n; n = w.nextNode()) nodes.push(n);
    if (!g && !names(nodes.map(value).join(''))) return;
    nodes = nodes.filter(function (n) { return box(n) === b && !ignored(n); });
    if (g && g.nodes.length === nodes.length &&
        nodes.every(function (n, i) { return n === g.nodes[i] && n.nodeValue === g.shown[i]; })) return;
    drop(b);
    var orig = nodes.map(value);
    if (names(orig.join(''))) groups.set(b, { nodes: nodes, orig: orig, shown: orig });
  }
  function drop(b) {
    var g = groups.get(b);
    groups.delete(b);
    if (g) g.nodes.forEach(function (n, i) { if (n.nodeValue === g.shown[i] && n.nodeValue !== g.orig[i]) n.nodeValue = g.orig[i]; });
  }
  function link(a) {
    var l = links.get(a), href = a.getAttribute('href') || '';
    if (l && a.isConnected && href === l.shown) return;
    links.delete(a);
    if (l && href === l.shown) {
      if (href !== l.orig) a.setAttribute('href', l.orig); // out of the page: its own target back
    } else if (a.isConnected && a.matches(TEL) && dialsOurs(a) && !ignored(a)) links.set(a, { orig: href, shown: href });
  }
  function scan(root) {
    if (!known.length || !root || !root.isConnected || ignored(root)) return;
    var anchors = [].slice.call(root.querySelectorAll ? root.querySelectorAll(TEL) : []), last = box(root), n, b;
    if (root.matches && root.matches(TEL)) anchors.push(root);
    anchors.forEach(link);
    if (last) form(last);
    for (var w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT); (n = w.nextNode());) {
      if ((b = box(n)) !== last) form(last = b);
    }
  }
  function apply() {
    if (!current) return;
    var boxes = [];
    links.forEach(function (l, a) { link(a); });
    groups.forEach(function (g, b) { boxes.push(b); });
    boxes.forEach(function (b) {
      if (b.isConnected) form(b);
      else drop(b);
      var g = groups.get(b);
      if (!g) return;
      g.shown = spell(g.orig);
      g.nodes.forEach(function (n, i) { if (n.nodeValue !== g.shown[i]) n.nodeValue = g.shown[i]; });
    });
    links.forEach(function (l, a) {
      // While its text still shows another of the site's numbers (in an ignored part, say), the target stays.
      var c = chars(l.orig), out = spell(c[1]);
      l.shown = names(a.textContent, current.number) ? l.orig
        : out.map(function (s, i) { return s === c[1][i] ? c[0][i] : s; }).join('');
      if (a.getAttribute('href') !== l.shown) a.setAttribute('href', l.shown);
    });
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
        apply();
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
        s.src = base + '/callback.js?v=__CALLPOOL_WIDGET_VERSION__';
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
  // What the page adds or rewrites (a text, a link's target) is its new original; removals are seen by apply().
  var observer = new MutationObserver(function (records) {
    records.forEach(function (r) {
      for (var i = 0; i < r.addedNodes.length; i++) scan(r.addedNodes[i]);
      if (r.type !== 'childList') {
        drop(r.target);
        scan(r.target);
      }
    });
    apply();
  });
  observer.observe(document.documentElement, {
    childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ['href']
  });

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
