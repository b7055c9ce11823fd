// Drives renga's dashboard in headless Chromium (Debian's, through
// puppeteer-core from npm), as a user would: logs in, scales, sets a config
// var, sees the new release, a log line and the graphs, rolls back, and
// keeps a screenshot. tests/dashboard.rs runs it against a real server and
// checks through the CLI that every change really happened.
'use strict';

const http = require('node:http');
const puppeteer = require(process.env.PUPPETEER);

const API = process.env.RENGA_API;
const TOKEN = process.env.RENGA_TOKEN;
const APP = process.env.APP;
const HTTP_PORT = Number(process.env.HTTP_PORT);
const WAIT = { timeout: 60000 };

function step(text) {
  console.log(`-----> ${text}`);
}

function request(path) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: HTTP_PORT, path, headers: { Host: `${APP}.localhost` } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function textIn(page, selector, text) {
  await page.waitForFunction(
    (sel, want) => {
      const node = document.querySelector(sel);
      return node !== null && node.textContent.includes(want);
    },
    WAIT,
    selector,
    text,
  );
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
    userDataDir: process.env.PROFILE,
  });
  const problems = [];
  let page = null;
  try {
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/401|Unauthorized/.test(message.text())) {
        problems.push(`console: ${message.text()}`);
      }
    });

    step('a wrong token is refused');
    await page.goto(`${API}/dashboard`, { waitUntil: 'load' });
    await page.waitForSelector('#token', WAIT);
    await page.type('#token', 'not-a-token');
    await page.click('#login');
    await textIn(page, '#login-error', 'That token was refused.');

    step('logging in lists the app with its dynos');
    await page.$eval('#token', (input) => { input.value = ''; });
    await page.type('#token', TOKEN);
    await page.click('#login');
    await page.waitForSelector(`#apps tr[data-app="${APP}"]`, WAIT);
    await page.waitForFunction(
      (app) => {
        const cell = document.querySelector(`#apps tr[data-app="${app}"] .app-state`);
        return cell && /\d+ (up|idle)/.test(cell.textContent);
      },
      WAIT,
      APP,
    );

    step('the app page shows formation, releases, add-ons and graphs');
    await page.click(`#apps tr[data-app="${APP}"] a`);
    await page.waitForSelector('#formation-table', WAIT);
    await page.waitForSelector('#releases-table', WAIT);
    await textIn(page, '#addons', 'renga-kv');
    await page.waitForSelector('#chart-requests svg path', WAIT);

    step('scaling web to 2');
    await page.$eval('input[data-type="web"]', (input) => { input.value = ''; });
    await page.type('input[data-type="web"]', '2');
    await page.click('tr[data-type="web"] button');
    await textIn(page, '#notice', 'Scaled web to 2.');
    await page.waitForSelector('#dynos tr[data-dyno="web.2"]', WAIT);

    step('setting a config var makes a release');
    const before = await page.$eval('#releases-table tr', (row) => Number(row.dataset.version));
    await page.click('#reveal-config');
    await page.waitForSelector('#new-key', WAIT);
    await page.type('#new-key', 'GREETING');
    await page.type('#new-value', 'hello from the dashboard');
    await page.click('#add-config');
    await page.waitForSelector('#config-table tr[data-key="GREETING"]', WAIT);
    const value = await page.$eval('#config-table tr[data-key="GREETING"] input', (input) => input.value);
    if (value !== 'hello from the dashboard') throw new Error(`GREETING shows ${JSON.stringify(value)}`);
    await textIn(page, '#releases-table tr:first-child', `v${before + 1}`);
    await textIn(page, '#releases-table tr:first-child', 'Set GREETING config vars');

    step('a request shows in the live log');
    for (let i = 0; i < 3; i++) await request('/from-the-dashboard-test');
    await textIn(page, '#log', 'path="/from-the-dashboard-test"');

    step('the graphs show the requests made before the test began');
    await page.waitForFunction(
      () => Number(document.querySelector('#chart-requests')?.dataset.max) > 0,
      { timeout: 90000 },
    );
    await page.waitForFunction(
      () => Number(document.querySelector('#chart-latency')?.dataset.max) > 0,
      WAIT,
    );

    step('a screenshot');
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

    step(`rolling back to v${before}`);
    const rollback = `#releases-table tr[data-version="${before}"] button[data-rollback]`;
    await page.click(rollback);
    await textIn(page, rollback, 'Confirm');
    await page.click(rollback);
    await textIn(page, '#notice', `Rolled back to v${before}.`);
    await textIn(page, '#releases-table tr:first-child', `Rollback to v${before}`);

    step('logging out forgets the token');
    await page.click('#logout');
    await page.waitForSelector('#token', WAIT);
    const kept = await page.evaluate(() => sessionStorage.length);
    if (kept !== 0) throw new Error('the token outlived the log-out');

    if (problems.length) throw new Error(problems.join('\n'));
    console.log(JSON.stringify({ rolled_back_to: before, released: before + 1 }));
  } catch (error) {
    // What the page showed, and what went wrong in it, with the failure.
    const shown = page ? await page.evaluate(() => document.body.innerText).catch(() => '') : '';
    throw new Error(`${error.message}\n--- the page showed:\n${shown}\n--- problems:\n${problems.join('\n')}`);
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
