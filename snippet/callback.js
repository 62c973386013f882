/* callpool callback widget: the "call me back" button and form, loaded by snippet.js for a site with
 * [site.callback]. Built only on the snippet's public API (callpool.callbackForm(), callback(number),
 * onCallback(fn)); the texts and every status message come from the server, in the site's language.
 * A button and a small dialog in an open shadow root (the page's CSS cannot break it), keyboard and
 * screen-reader friendly (dialog role, labelled field, live status region, Escape closes, focus
 * returns to the button), themed by CSS variables on the page: --callpool-accent,
 * --callpool-accent-text, --callpool-bg, --callpool-text, --callpool-radius, --callpool-font,
 * --callpool-offset. Protocol: docs/PROTOCOL.md. Never throws into the page. */
(function () {
  'use strict';
  var cp = window.callpool;
  if (!cp || cp._widget) return;
  cp._widget = true;
  var widget = null;
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
      submit.disabled = true;
      cp.callback(n);
    });
    widget = { host: host, panel: panel, input: input, submit: submit, status: status, notice: notice, open: open };
    document.body.appendChild(host);
  }
  var FINAL = { completed: 1, missed: 1, failed: 1 };
  function callbackStatus(msg) {
    if (msg.type === 'callback_form') return buildWidget(msg);
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
  }

  cp.onCallback(callbackStatus);
  if (cp.callbackForm()) buildWidget(cp.callbackForm());
})();
