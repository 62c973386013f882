// Browser tests of the snippet in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser download). They start the callpool binary that `cargo test` built
// (target/debug/callpool, or $CALLPOOL_BIN) with a short timeline, and a small static server for
// the page whose callpool is down.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const BIN = process.env.CALLPOOL_BIN || join(root, 'target', 'debug', 'callpool');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitFor(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting until ${what} (last: ${last})`);
}

let server, dir, port, browser, pages, pagePort, pbx, pbxPort;
// Pages of the site's other origin by path (pageWithSnippet); any other path is the consent page.
const sitePages = new Map();
// What the fake PBX received: the callback triggers, each checked strictly.
const triggers = [];
const violations = [];
const TRIGGER_SECRET = 'browser-trigger-secret-0123';
const PBX_SECRET = 'browser-pbx-secret-0123456';
const REPORT_TOKEN = 'browser-report-token-0123456789';
const ADMIN_TOKEN = 'browser-admin-token-0123456789';
// Screenshots of the report pages, kept as artefacts of the run.
const ARTEFACTS = process.env.CALLPOOL_ARTEFACTS || join(root, 'target', 'browser-artefacts');

before(async () => {
  port = await freePort();
  // A site on another origin that embeds the snippet from callpool, as real sites do.
  pagePort = await freePort();
  pages = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(sitePages.get(req.url) || `<!doctype html><meta charset="utf-8"><p id="phone">+7 495 123 45 67</p>
<script async src="http://127.0.0.1:${port}/snippet.js" data-site="shop-public-key" data-consent="required"></script>`);
  });
  await new Promise((r) => pages.listen(pagePort, '127.0.0.1', r));
  // The PBX callpool asks to place callbacks: checks the signature and the body, answers 200.
  pbxPort = await freePort();
  pbx = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const sig = req.headers['callpool-signature'] || '';
      const t = (sig.match(/t=(\d+)/) || [])[1];
      const v1 = (sig.match(/v1=([0-9a-f]+)/) || [])[1];
      const want = createHmac('sha256', TRIGGER_SECRET).update(`${t}.${body}`).digest('hex');
      let json = {};
      try { json = JSON.parse(body); } catch (e) { violations.push('body is not JSON'); }
      if (req.method !== 'POST' || req.url !== '/trigger') violations.push(`${req.method} ${req.url}`);
      if (!t || v1 !== want) violations.push('bad signature');
      if (req.headers['idempotency-key'] !== json.callback_id) violations.push('Idempotency-Key');
      triggers.push(json);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((r) => pbx.listen(pbxPort, '127.0.0.1', r));
  dir = mkdtempSync(join(tmpdir(), 'callpool-browser-'));
  const config = `
[server]
listen = "127.0.0.1:${port}"
demo_site = "shop"
admin_token = "${ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = "${join(dir, 'data')}"

[pool]
reaper_interval = "100ms"

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["http://127.0.0.1:${port}", "http://127.0.0.1:${pagePort}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001", "+74951230002"]
delay_to_show = "1500ms"
reclaim_after_idle = "4s"
release_grace = "1s"
report_token = "${REPORT_TOKEN}"

[site.callback]
language = "en"
operator = "+74951230099"
min_time_on_site = "0s"
trigger = { kind = "generic", url = "http://127.0.0.1:${pbxPort}/trigger", secret = "${TRIGGER_SECRET}" }

[[pbx]]
id = "office"
secrets = ["${PBX_SECRET}"]
`;
  writeFileSync(join(dir, 'callpool.toml'), config);
  server = spawn(BIN, ['--config', join(dir, 'callpool.toml'), 'serve'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (d) => { log += d; });
  await waitFor('callpool is serving', async () => {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    return r.ok;
  }).catch((e) => { throw new Error(`${e.message}\n${log}`); });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  pages?.close();
  pbx?.close();
  rmSync(dir, { recursive: true, force: true });
});

function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

test('two tabs of the demo page show the tracking number in the page\'s own format, then default_after', async () => {
  const context = await browser.newContext();
  const first = await context.newPage();
  const errors = watchErrors(first);
  await first.goto(`http://127.0.0.1:${port}/`);
  assert.equal(await first.textContent('#phone'), '+7 (495) 123-45-67');
  await new Promise((r) => setTimeout(r, 500));
  const second = await context.newPage();
  watchErrors(second).forEach((e) => errors.push(e));
  await second.goto(`http://127.0.0.1:${port}/`);

  // Both tabs swap together, 1.5 s after the first view (not the second tab's).
  const tracking = await waitFor('the first tab shows a tracking number', async () => {
    const t = await first.textContent('#phone');
    return t !== '+7 (495) 123-45-67' && t;
  });
  assert.match(tracking, /^\+7 \(495\) 123-00-0[12]$/, 'the new digits keep the +7 (495) ddd-dd-dd shape');
  const last = tracking.slice(-2);
  assert.equal(await first.getAttribute('#phone', 'href'), `tel:+749512300${last}`);
  assert.equal(await first.textContent('#plain'), `8 495 123 00 ${last}`, 'the 8 ... spelling keeps its shape');
  assert.equal(await first.textContent('#ignored'), '+7 495 123-45-67', 'data-callpool-ignore is left alone');
  await waitFor('the second tab shows the same number', async () => (await second.textContent('#phone')) === tracking);
  assert.equal(await first.evaluate(() => window.callpool.kind()), 'tracking');

  // A number added to the page later (a single-page app) is swapped too.
  await first.evaluate(() => {
    const p = document.createElement('p');
    p.id = 'late';
    p.textContent = 'Call +74951234567 now';
    document.body.appendChild(p);
  });
  await waitFor('late content is swapped', async () => (await first.textContent('#late')) === `Call +749512300${last} now`);

  // No activity: after the idle timeout both tabs show the site's "after" number.
  for (const page of [first, second]) {
    await waitFor('default_after', async () => (await page.textContent('#phone')) === '+7 (495) 123-45-68');
  }
  assert.equal(await second.evaluate(() => window.callpool.kind()), 'default_after');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a page whose callpool is down keeps its number and throws nothing', async () => {
  // The snippet loads, but its websocket has nobody to talk to.
  const snippet = readFileSync(join(root, 'snippet', 'snippet.js'));
  const page = `<!doctype html><meta charset="utf-8"><p>Call <a id="phone" href="tel:+74951234567">+7 (495) 123-45-67</a></p>
<script async src="/snippet.js" data-site="shop-public-key"></script>`;
  const plain = createServer((req, res) => {
    if (req.url.startsWith('/snippet.js')) {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(snippet);
    }
    if (req.url.startsWith('/v1/ws')) {
      res.writeHead(503);
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  });
  await new Promise((r) => plain.listen(0, '127.0.0.1', r));
  const context = await browser.newContext();
  const tab = await context.newPage();
  const errors = watchErrors(tab);
  await tab.goto(`http://127.0.0.1:${plain.address().port}/`);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(await tab.textContent('#phone'), '+7 (495) 123-45-67');
  assert.equal(await tab.getAttribute('#phone', 'href'), 'tel:+74951234567');
  assert.equal(await tab.evaluate(() => typeof window.callpool.rescan), 'function');
  assert.deepEqual(errors, []);
  await context.close();
  plain.close();
});

test('consent mode connects only after callpool.consent()', async () => {
  const context = await browser.newContext();
  const tab = await context.newPage();
  const errors = watchErrors(tab);
  await tab.goto(`http://127.0.0.1:${pagePort}/consent`);
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(await tab.textContent('#phone'), '+7 495 123 45 67', 'no swap without consent');
  assert.equal(await tab.evaluate(() => window.callpool.number()), null);
  await tab.evaluate(() => window.callpool.consent());
  await waitFor('the swap after consent', async () => /^\+7 495 123 00 0[12]$/.test(await tab.textContent('#phone')));
  assert.deepEqual(errors, []);
  await context.close();
});

test('the callback form opens from the keyboard, refuses a bad number, and shows the status live in every tab', async () => {
  const context = await browser.newContext();
  const first = await context.newPage();
  const errors = watchErrors(first);
  await first.goto(`http://127.0.0.1:${port}/`);
  const button = first.locator('.callpool-callback >> button.b');
  await button.waitFor();
  assert.equal(await button.textContent(), 'Call me back');
  assert.equal(await button.getAttribute('aria-expanded'), 'false');
  const second = await context.newPage();
  watchErrors(second).forEach((e) => errors.push(e));
  await second.goto(`http://127.0.0.1:${port}/`);
  await second.locator('.callpool-callback >> button.b').waitFor();

  // Keyboard: the button opens the dialog and the number field takes the focus; Escape closes it.
  await button.focus();
  await first.keyboard.press('Enter');
  const dialog = first.locator('.callpool-callback >> [role=dialog]');
  await dialog.waitFor({ state: 'visible' });
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  assert.equal(await first.evaluate(() => document.querySelector('.callpool-callback').shadowRoot.activeElement.id), 'callpool-cb-number');
  assert.equal(await dialog.getAttribute('aria-labelledby'), 'callpool-cb-title');
  await first.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  await button.click();
  const input = first.locator('.callpool-callback >> #callpool-cb-number');
  assert.equal(await input.getAttribute('type'), 'tel');
  assert.equal(await first.locator('.callpool-callback >> label[for=callpool-cb-number]').textContent(), 'Your phone number');

  // An invalid number: a message for the form, the field marked, nothing sent to the PBX.
  await input.fill('12');
  await first.locator('.callpool-callback >> button.s').click();
  const status = first.locator('.callpool-callback >> #callpool-cb-status');
  await waitFor('the refusal', async () => (await status.getAttribute('data-status')) === 'refused');
  assert.equal(await status.textContent(), 'Please enter a phone number we can call, with its area code.');
  assert.equal(await status.getAttribute('role'), 'alert');
  assert.equal(await input.getAttribute('aria-invalid'), 'true');

  // A valid one: accepted, then "calling" once the PBX took the request, in both tabs.
  await input.fill('8 (916) 123-45-67');
  await first.keyboard.press('Enter');
  await waitFor('calling in the first tab', async () => (await status.getAttribute('data-status')) === 'calling');
  assert.equal(await status.textContent(), 'Calling our operator…');
  assert.equal(await input.getAttribute('aria-invalid'), 'false');
  const other = second.locator('.callpool-callback >> #callpool-cb-status');
  await waitFor('calling in the second tab', async () => (await other.getAttribute('data-status')) === 'calling');
  assert.equal(await second.locator('.callpool-callback >> [role=dialog]').isVisible(), true, 'the other tab shows it too');
  assert.equal(triggers.length, 1);
  assert.equal(triggers[0].number, '+79161234567');
  assert.equal(triggers[0].operator, '+74951230099');
  assert.deepEqual(violations, []);
  assert.deepEqual(errors, []);
  await context.close();
});

// A page at `path` on the site's other origin, with `body` and the snippet callpool serves.
async function pageWithSnippet(context, path, body) {
  sitePages.set(path, `<!doctype html><meta charset="utf-8">${body}
<script async src="http://127.0.0.1:${port}/snippet.js" data-site="shop-public-key" data-callback="off"></script>`);
  const tab = await context.newPage();
  const errors = watchErrors(tab);
  await tab.goto(`http://127.0.0.1:${pagePort}${path}`);
  return { tab, errors };
}

// What a link shows and what it dials.
const link = (tab, id) => tab.evaluate((id) => {
  const a = document.getElementById(id);
  return [a.textContent, a.getAttribute('href')];
}, id);

test('a tel: link whose number is split across elements shows the number it dials: both swap, and back', async () => {
  const context = await browser.newContext();
  const { tab, errors } = await pageWithSnippet(context, '/split', `
<p>Call <a id="split" href="tel:+74951234567"><span>+7 (495)</span> <span>123-45-67</span></a></p>
<p><a id="half" href="tel:+74951234567"><span data-callpool-ignore>+7 (495)</span> 123-45-67</a></p>
<p><a id="words" href="tel:+74951234567"><b>Call us</b></a></p>
<p><a id="other" href="tel:+74950000000">+7 (495) 123-45-67</a></p>
<p data-callpool-number id="marked"><span>8 495</span> 123 45 67</p>`);
  const tracking = await waitFor('the split link shows a tracking number', async () => {
    const [text] = await link(tab, 'split');
    return text !== '+7 (495) 123-45-67' && text;
  });
  assert.match(tracking, /^\+7 \(495\) 123-00-0[12]$/, 'the split number keeps its shape');
  const last = tracking.slice(-2);
  assert.deepEqual(await link(tab, 'split'), [tracking, `tel:+749512300${last}`], 'text and target name one number');
  assert.deepEqual(await tab.evaluate(() => [...document.querySelectorAll('#split span')].map((s) => s.textContent)),
    ['+7 (495)', `123-00-${last}`], 'each part stays in its element');
  assert.deepEqual(await link(tab, 'half'), ['+7 (495) 123-45-67', 'tel:+74951234567'],
    'a text that cannot be swapped (part of it is ignored) keeps its target too');
  assert.deepEqual(await link(tab, 'words'), ['Call us', `tel:+749512300${last}`], 'a text without a number: the target swaps');
  assert.deepEqual(await link(tab, 'other'), ['+7 (495) 123-45-67', 'tel:+74950000000'],
    'a link dialling another number keeps its text');
  assert.equal(await tab.textContent('#marked'), `8 495 123 00 ${last}`, 'a data-callpool-number element, split');

  // Split links added later (a single-page app), and a page that re-renders part of a swapped one.
  await tab.evaluate(() => {
    const p = document.createElement('p');
    p.innerHTML = '<a id="late" href="tel:84951234567">8 495 <b>123 45 67</b></a>';
    document.body.appendChild(p);
    const a = document.createElement('a');
    a.id = 'grown';
    a.href = 'tel:+74951234567';
    a.textContent = '+7 (495) ';
    document.body.appendChild(a);
  });
  await waitFor('the late link swaps', async () => (await link(tab, 'late'))[0] === `8 495 123 00 ${last}`);
  assert.deepEqual(await link(tab, 'late'), [`8 495 123 00 ${last}`, `tel:849512300${last}`]);
  await tab.evaluate(() => {
    const b = document.createElement('b');
    b.textContent = '123-45-67';
    document.getElementById('grown').appendChild(b);
  });
  await waitFor('a link whose number is completed later swaps', async () =>
    (await link(tab, 'grown')).join(' ') === `+7 (495) 123-00-${last} tel:+749512300${last}`);
  await tab.evaluate(() => { document.querySelector('#split span:last-child').textContent = '123-45-67'; });
  await waitFor('a re-rendered part swaps again', async () => (await link(tab, 'split'))[0] === tracking);
  assert.deepEqual(await link(tab, 'split'), [tracking, `tel:+749512300${last}`]);

  // The number taken back (idle): text and target go to default_after together.
  await waitFor('default_after', async () => (await link(tab, 'split'))[0] === '+7 (495) 123-45-68');
  assert.deepEqual(await link(tab, 'split'), ['+7 (495) 123-45-68', 'tel:+74951234568']);
  assert.deepEqual(await link(tab, 'late'), ['8 495 123 45 68', 'tel:84951234568']);
  assert.deepEqual(await link(tab, 'grown'), ['+7 (495) 123-45-68', 'tel:+74951234568']);
  assert.deepEqual(await link(tab, 'half'), ['+7 (495) 123-45-67', 'tel:+74951234567']);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a rewritten tel: target keeps the shape of the original', async () => {
  const context = await browser.newContext();
  const targets = ['tel:+74951234567', 'tel:84951234567', 'tel:+7-495-123-45-67', 'tel:+7 (495) 123-45-67',
    'tel:%2B7%20495%20123-45-67', 'tel:+74951234567;ext=12', 'TEL:+74951234567'];
  const { tab, errors } = await pageWithSnippet(context, '/shapes',
    targets.map((t, i) => `<p><a id="t${i}" href="${t}">Call us</a></p>`).join('\n'));
  const first = await waitFor('the first target swaps', async () => {
    const [, href] = await link(tab, 't0');
    return href !== targets[0] && href;
  });
  const last = first.slice(-2);
  assert.match(first, /^tel:\+749512300(01|02)$/);
  const got = [];
  for (let i = 0; i < targets.length; i++) got.push((await link(tab, `t${i}`))[1]);
  assert.deepEqual(got, [`tel:+749512300${last}`, `tel:849512300${last}`, `tel:+7-495-123-00-${last}`,
    `tel:+7 (495) 123-00-${last}`, `tel:%2B7%20495%20123-00-${last}`, `tel:+749512300${last};ext=12`, `TEL:+749512300${last}`]);
  assert.deepEqual(errors, []);
  await context.close();
});

// The PBX reports a call, signed as callpool's webhook is.
async function reportCall(call) {
  const body = JSON.stringify(call);
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', PBX_SECRET).update(`${t}.${body}`).digest('hex');
  const r = await fetch(`http://127.0.0.1:${port}/v1/pbx/calls?pbx=office`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'callpool-signature': `t=${t},v1=${v1}` }, body,
  });
  assert.equal(r.status, 200, await r.text());
}

test('the sources page shows what the JSON says, in the browser\'s language, from the keyboard and at a phone\'s width', async () => {
  // A visitor from Google Ads, whose campaign carries markup, gets a tracking number and calls.
  const visit = await browser.newContext();
  const { tab, errors: siteErrors } = await pageWithSnippet(visit,
    '/landing?utm_source=google&utm_medium=cpc&utm_campaign=%3Cb%3Ewinter%3C%2Fb%3E', '<p id="phone">+7 495 123 45 67</p>');
  const number = await waitFor('a tracking number', async () =>
    (await tab.evaluate(() => window.callpool && window.callpool.kind())) === 'tracking' && tab.evaluate(() => window.callpool.number()));
  await reportCall({ call_id: 'browser-sources-1', called: number, caller: '+79161230077',
    started_at: new Date().toISOString(), status: 'completed', duration: 30 });
  assert.deepEqual(siteErrors, []);
  await visit.close(); // the visit ends: recorded as its last tab closes

  const auth = { authorization: `Bearer ${REPORT_TOKEN}` };
  const json = await waitFor('the report counts the visit and the call', async () => {
    const r = await (await fetch(`http://127.0.0.1:${port}/v1/reports/shop/sources`, { headers: auth })).json();
    const google = r.rows.find((row) => row.key === 'google');
    return google && google.calls >= 1 && google.visits >= 1 && r;
  });
  const google = json.rows.find((row) => row.key === 'google');

  // The owner reads it in Russian (the browser's language).
  const owner = await browser.newContext({ locale: 'ru-RU', extraHTTPHeaders: auth });
  const page = await owner.newPage();
  const errors = watchErrors(page);
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${port}/v1/reports/shop/sources?format=html`);
  assert.equal(await page.getAttribute('html', 'lang'), 'ru');
  assert.match(await page.textContent('h1'), /Откуда пришли звонки/);
  const cells = await page.$$eval('#sources tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  const row = cells.find((c) => c[0] === 'google');
  assert.ok(row, JSON.stringify(cells));
  assert.equal(row[1], String(google.visits));
  assert.equal(row[2], String(google.calls));
  assert.equal(row[5], String(google.answered));
  mkdirSync(ARTEFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTEFACTS, 'sources.png'), fullPage: true });

  // A row's link lists its calls: the figures of the JSON, the filter form kept.
  await Promise.all([page.waitForURL(/calls\?format=html/), page.click('#sources tbody tr:has(td:text-is("google")) a')]);
  const callsJson = await (await fetch(`http://127.0.0.1:${port}/v1/reports/shop/calls?source=google`, { headers: auth })).json();
  const callRows = await page.$$eval('#calls tbody tr', (trs) => trs.length);
  assert.equal(callRows, callsJson.calls.length);
  assert.equal(await page.inputValue('input[name=source]'), 'google');
  assert.match(await page.textContent('#calls tbody'), /google \/ cpc \/ <b>winter<\/b>/);
  await page.screenshot({ path: join(ARTEFACTS, 'calls.png'), fullPage: true });
  // The form from the keyboard: "how matched" = visitor on the site, Tab to the button, Enter.
  await page.focus('select[name=match]');
  await page.selectOption('select[name=match]', 'active');
  for (let i = 0; i < 5 && !(await page.evaluate(() => document.activeElement.type === 'submit')); i += 1) {
    await page.keyboard.press('Tab');
  }
  await Promise.all([page.waitForURL(/match=active/), page.keyboard.press('Enter')]);
  assert.equal(await page.$$eval('#calls tbody tr', (trs) => trs.length), callsJson.calls.filter((c) => c.match === 'active').length);
  await page.goBack();
  await page.goBack();

  // From the keyboard: Tab to the "visits" header and sort by it.
  let reached = false;
  for (let i = 0; i < 40 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => (document.activeElement.textContent || '').startsWith('визиты'));
  }
  assert.ok(reached, 'the visits header is reachable with Tab');
  await Promise.all([page.waitForURL(/sort=visits/), page.keyboard.press('Enter')]);

  // By campaign: the markup is text, not an element.
  await page.goto(`http://127.0.0.1:${port}/v1/reports/shop/sources?format=html&by=campaign&lang=en`);
  assert.match(await page.textContent('h1'), /Where the calls came from/);
  assert.ok((await page.textContent('#sources')).includes('<b>winter</b>'));
  assert.equal(await page.$('#sources tbody b'), null);

  // The site's own page, in Russian too, with the call in its latest calls.
  await page.goto(`http://127.0.0.1:${port}/v1/reports/shop`);
  assert.match(await page.textContent('h1'), /Звонки сайта shop/);
  assert.match(await page.textContent('body'), /посетитель на сайте/);
  await page.screenshot({ path: join(ARTEFACTS, 'site.png'), fullPage: true });
  await page.goto(`http://127.0.0.1:${port}/v1/reports/shop/sources?format=html&by=campaign&lang=en`);

  // At a phone's width the page does not scroll sideways (the table scrolls in its box).
  await page.setViewportSize({ width: 375, height: 740 });
  const wide = await page.evaluate(() => [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > 376 && !e.closest('.wrap')).map((e) => e.tagName + ' ' + e.getBoundingClientRect().right));
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 375 + 1), JSON.stringify(wide));
  await page.screenshot({ path: join(ARTEFACTS, 'sources-phone.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await owner.close();

  // The operator's overview of every site, in English; its site links to the site's own page.
  const operator = await browser.newContext({ locale: 'en-GB', extraHTTPHeaders: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const overview = await operator.newPage();
  const overviewErrors = watchErrors(overview);
  await overview.goto(`http://127.0.0.1:${port}/v1/reports?format=html`);
  assert.match(await overview.textContent('h1'), /Every site/);
  const o = await (await fetch(`http://127.0.0.1:${port}/v1/reports`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  const shopCells = await overview.$$eval('#sites tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  assert.equal(shopCells[0][0], 'shop');
  assert.equal(shopCells[0][1], String(o.sites[0].calls));
  await overview.screenshot({ path: join(ARTEFACTS, 'overview.png'), fullPage: true });
  const [response] = await Promise.all([overview.waitForNavigation(), overview.click('#sites a')]);
  assert.equal(response.status(), 200);
  assert.match(await overview.textContent('h1'), /Calls of shop/);
  assert.deepEqual(overviewErrors, []);
  await operator.close();
});
