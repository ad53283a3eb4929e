// status_page.js — drives the erp-consumer status page in headless Chromium
// (Debian's /usr/bin/chromium through playwright-core) for
// test_status_page.py. Not a test on its own: the Python test builds the
// state (a stale tier with a failed posting, a healthy site), runs this
// script, and checks the consumer and the ERP afterwards.
//
//   node status_page.js CONFIG.json
//
// CONFIG: {playwright, chromium, base, token, html|null, site, tier,
//          other_site, other_tier, posting_id, out_dir}
// html: serve this file at GET <base>/ (route interception) because the
// consumer does not serve the page itself yet; every other request goes to
// the real consumer, so the page talks to it same-origin as in production.
//
// Prints one JSON object with what it saw on stdout; exits 1 with the reason
// on stderr (and <out_dir>/status_page_failure.png) when a step fails. Each
// wait has a deadline; none is a fixed sleep.
'use strict';

const fs = require('fs');
const path = require('path');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(cfg.playwright);
const STEP_MS = 30000;

const seen = { steps: [] };
function step(name) {
  seen.steps.push(name);
  process.stderr.write('[status_page.js] ' + name + '\n');
}

const cell = (site, tier) => `#grid td.cell[data-site="${site}"][data-tier="${tier}"]`;

async function whoWhy(page, by, reason) {
  const dlg = page.locator('#whowhy');
  await dlg.waitFor({ state: 'visible', timeout: STEP_MS });
  // Both fields are required: confirming without them must not act.
  await page.fill('#whowhy-by', '');
  await page.fill('#whowhy-reason', '');
  await page.click('#whowhy-ok');
  if (!(await page.evaluate(() => document.getElementById('whowhy').open)))
    throw new Error('the who/why dialog closed without who and why');
  await page.fill('#whowhy-by', by);
  await page.fill('#whowhy-reason', reason);
  await page.click('#whowhy-ok');
  await dlg.waitFor({ state: 'hidden', timeout: STEP_MS });
}

(async () => {
  const origin = new URL(cfg.base).origin;
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1500, height: 1100 } });
    page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    seen.foreign_requests = [];
    seen.console_errors = [];
    page.on('request', (req) => {
      const u = req.url();
      if (!u.startsWith('data:') && new URL(u).origin !== origin) seen.foreign_requests.push(u);
    });
    page.on('console', (m) => { if (m.type() === 'error') seen.console_errors.push(m.text()); });
    page.on('pageerror', (e) => seen.console_errors.push(String(e)));
    if (cfg.html) {
      const html = fs.readFileSync(cfg.html);
      await page.route((u) => u.origin === origin && u.pathname === '/',
        (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html }));
    }

    step('load the page');
    await page.goto(cfg.base + '/?refresh=1');
    await page.waitForSelector('body[data-loaded="1"]');

    step('the grid shows the stale tier with its failed posting');
    const stale = page.locator(cell(cfg.site, cfg.tier) + '[data-state="stale"]');
    await stale.waitFor();
    seen.stale_cell = {
      text: (await stale.innerText()).replace(/\s+/g, ' ').trim(),
      failed: Number(await stale.getAttribute('data-failed')),
      has_failed_class: await stale.evaluate((td) => td.classList.contains('has-failed')),
      background: await stale.evaluate((td) => getComputedStyle(td).backgroundColor),
    };
    const other = page.locator(cell(cfg.other_site, cfg.other_tier));
    await other.waitFor();
    seen.other_cell_state = await other.getAttribute('data-state');
    seen.summary = (await page.locator('#summary').innerText()).replace(/\s+/g, ' ').trim();

    step('admin actions are disabled without a token');
    seen.pause_disabled_without_token = await page.isDisabled('#control-form button[data-action="pause"]');
    seen.failed_hint_without_token = (await page.locator('#failed').innerText()).trim();

    step('enter the admin token');
    await page.fill('#token', cfg.token);
    await page.click('#token-save');
    const row = page.locator(`#failed tr[data-posting-id="${cfg.posting_id}"]`);
    await row.waitFor();
    seen.failed_rows_before = await page.locator('#failed tr[data-posting-id]').count();
    seen.failed_row_text = (await row.innerText()).replace(/\s+/g, ' ').trim();
    seen.token_in_session_storage =
      (await page.evaluate(() => sessionStorage.getItem('invsync.adminToken'))) === cfg.token;
    seen.token_in_local_storage = await page.evaluate(() => localStorage.length > 0);
    fs.mkdirSync(cfg.out_dir, { recursive: true });
    await page.screenshot({ path: path.join(cfg.out_dir, 'status_page_stale_failed.png'), fullPage: true });

    step('retry the failed posting (asks who and why)');
    await row.locator('button[data-action="retry"]').click();
    await whoWhy(page, 'status-page-test', 'stock seeded in the ERP; retry');
    await row.waitFor({ state: 'detached' });
    await page.waitForSelector('#failed [data-empty="1"]');
    seen.messages_after_retry = (await page.locator('#messages').innerText()).trim();

    step('the tier is no longer stale once the posting went through');
    await page.waitForSelector(cell(cfg.site, cfg.tier) + ':not([data-state="stale"])');
    seen.cell_state_after_retry = await page.getAttribute(cell(cfg.site, cfg.tier), 'data-state');

    step('pause a tier from the grid, then resume it from the paused list');
    await page.click(cell(cfg.other_site, cfg.other_tier));
    seen.selected = [await page.inputValue('#ctl-site'), await page.inputValue('#ctl-tier')];
    await page.click('#control-form button[data-action="pause"]');
    await whoWhy(page, 'status-page-test', 'ERP maintenance window');
    const pausedRow = page.locator(`#paused tr[data-site="${cfg.other_site}"][data-tier="${cfg.other_tier}"]`);
    await pausedRow.waitFor();
    await page.waitForSelector(cell(cfg.other_site, cfg.other_tier) + '[data-state="paused"]');
    seen.paused_row_text = (await pausedRow.innerText()).replace(/\s+/g, ' ').trim();
    await page.screenshot({ path: path.join(cfg.out_dir, 'status_page_paused.png'), fullPage: true });
    await pausedRow.locator('button').click();
    await whoWhy(page, 'status-page-test', 'maintenance over');
    await pausedRow.waitFor({ state: 'detached' });
    await page.waitForSelector(cell(cfg.other_site, cfg.other_tier) + ':not([data-state="paused"])');

    step('flush the selected tier');
    await page.click('#control-form button[data-action="flush"]');
    await whoWhy(page, 'status-page-test', 'post the window before the MRP run');
    await page.waitForSelector('#messages li.ok:has-text("Flush ' + cfg.other_site + ' / ' + cfg.other_tier + ': done")');
    seen.messages = (await page.locator('#messages').innerText()).trim().split('\n');
    await page.screenshot({ path: path.join(cfg.out_dir, 'status_page_after.png'), fullPage: true });

    step('done');
    process.stdout.write(JSON.stringify(seen) + '\n');
    await browser.close();
  } catch (e) {
    process.stderr.write('[status_page.js] FAILED at step "' + seen.steps[seen.steps.length - 1] +
      '": ' + (e && e.stack || e) + '\n');
    process.stderr.write('[status_page.js] seen so far: ' + JSON.stringify(seen) + '\n');
    if (page) {
      try {
        fs.mkdirSync(cfg.out_dir, { recursive: true });
        await page.screenshot({ path: path.join(cfg.out_dir, 'status_page_failure.png'), fullPage: true });
        process.stderr.write('[status_page.js] page text: ' +
          (await page.locator('body').innerText()).slice(0, 3000) + '\n');
      } catch (e2) { /* the failure above is what matters */ }
    }
    await browser.close();
    process.exit(1);
  }
})();
