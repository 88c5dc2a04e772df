// End-to-end test of the console's web page (docs/WEB.md) in Debian's
// Chromium, headless, driven by playwright-core, against a lab of real
// processes: `tandem lab up --console --managed 2`.
//
//   node test/web/run.mjs <build dir>
//
// Exit status: 0 passed, 1 failed, 77 skipped (no /usr/bin/chromium).
// Screenshots of every step: <build dir>/web-screenshots/NN-step.png.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const here = path.dirname(fileURLToPath(import.meta.url));
const SKIP = 77;

const buildDir = path.resolve(process.argv[2] ?? process.env.TANDEM_BUILD_DIR ?? '');
if (!process.argv[2] && !process.env.TANDEM_BUILD_DIR) {
  console.error('usage: node test/web/run.mjs <build dir>');
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.log(`SKIP: ${CHROMIUM} is not installed (scripts/install-deps.sh installs it)`);
  process.exit(SKIP);
}
const tandem = path.join(buildDir, 'bin', 'tandem');
const tandemd = path.join(buildDir, 'bin', 'tandemd');
const ha = path.join(buildDir, 'bin', 'ha');
for (const f of [tandem, tandemd, ha]) {
  if (!fs.existsSync(f)) {
    console.error(`FAIL: ${f} is missing (build the tandem and tandemd targets)`);
    process.exit(1);
  }
}
const { chromium } = await import(path.join(here, 'node_modules', 'playwright-core', 'index.mjs'));
const axePath = path.join(here, 'node_modules', 'axe-core', 'axe.min.js');

const shots = path.join(buildDir, 'web-screenshots');
fs.rmSync(shots, { recursive: true, force: true });
fs.mkdirSync(shots, { recursive: true });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-web-'));
const labDir = path.join(tmp, 'lab');

let step = 0;
// Every line also goes to <build>/web-screenshots/run.log, next to the
// screenshots (scripts/test.sh prints it, so CI keeps the run's log).
const runLog = path.join(shots, 'run.log');
const log = (...a) => {
  const line = `[${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}`;
  console.log(line);
  fs.appendFileSync(runLog, `${line}\n`);
};
const failures = [];
function check(ok, what) {
  if (!ok) { failures.push(what); log(`FAIL: ${what}`); } else log(`ok: ${what}`);
  return ok;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Waits (bounded) until fn() is truthy; throws with `what` on timeout.
async function waitFor(what, fn, timeoutMs = 120000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e.message; }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

function run(cmd, args, timeoutMs = 180000) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) {
    throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// ------------------------------------------------------------- the API

let lab = null;
let ca = null;
let token = null;
function call(method, p, body) {
  const u = new URL(lab.api.url);
  const data = body === undefined ? null : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: u.hostname, port: u.port, path: `/api/v1${p}`, method, ca, timeout: 60000,
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}),
                 ...(data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { json = text; }
        resolve({ status: res.statusCode, headers: res.headers, body: json });
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

const pairingString = (host) => fs.readFileSync(host.pairing_file, 'utf8').trim();
async function pair(host, name) {
  const body = { address: host.agent.address, pairing_token: pairingString(host) };
  if (name) body.name = name;
  const r = await call('POST', '/hosts', body);
  if (r.status !== 201) throw new Error(`pairing ${host.name}: ${r.status} ${JSON.stringify(r.body)}`);
}

// --------------------------------------------------------------- checks

async function shot(page, name) {
  step += 1;
  const file = path.join(shots, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${path.relative(buildDir, file)}`);
}

// axe-core in the page; fails on violations of serious or critical impact.
// The page's CSP forbids inline scripts, so page.addScriptTag cannot inject
// it: the source is evaluated through the DevTools protocol instead.
const axeSource = fs.readFileSync(axePath, 'utf8');
async function accessibility(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    await page.evaluate(axeSource);
  }
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of result) log(`  axe ${v.impact}: ${v.id} (${v.help}) at ${v.nodes.join(', ')}`);
  check(bad.length === 0, `accessibility of ${what}: no serious or critical violations`);
}

const statusOf = (page, host) =>
  page.locator(`tr[data-host="${host}"] .badge`).first().textContent({ timeout: 2000 }).catch(() => null);

async function waitStatus(page, want, timeoutMs = 120000) {
  await waitFor(`statuses ${JSON.stringify(want)} on the page`, async () => {
    for (const [h, s] of Object.entries(want)) if ((await statusOf(page, h)) !== s) return false;
    return true;
  }, timeoutMs);
  check(true, `the page shows ${Object.entries(want).map(([h, s]) => `${h} ${s}`).join(', ')}`);
}

async function selectHost(page, name) {
  await page.getByLabel(`Select ${name}`, { exact: true }).check();
}

async function menuAction(page, label) {
  await page.getByRole('button', { name: /High Availability/ }).click();
  await page.getByRole('button', { name: label, exact: true }).click();
}

// Runs a host action from the menu; answers true once the notice shows the
// result (false: the console has no actions endpoint).
async function hostAction(page, host, label, confirm) {
  await selectHost(page, host);
  await menuAction(page, label);
  if (confirm) {
    const dialog = page.locator('#confirm');
    await dialog.waitFor({ state: 'visible', timeout: 10000 });
    check((await dialog.textContent()).includes('VIP') || label !== 'Giveback', `${label}: the confirmation names the VIP`);
    await shot(page, `confirm-${label.toLowerCase().replaceAll(' ', '-')}`);
    await dialog.getByRole('button', { name: /Set offline|Give back|Take over/ }).click();
  }
  // This action's own result (not the notice an earlier action left).
  const text = await waitFor(`the result of ${label}`, async () => {
    const t = await page.locator('#notice').textContent();
    return t && t.startsWith(label) && !t.endsWith('…') ? t : false;
  }, 60000);
  log(`  notice: ${text}`);
  if (/not_found|method_not_allowed/.test(text)) return false;
  check(!/refused/.test(text), `${label} on ${host} accepted (${text})`);
  return true;
}

// Deploy Changes with its confirmation; checks the notice.
async function deployChanges(page) {
  await page.getByRole('button', { name: 'Deploy Changes' }).click();
  const dialog = page.locator('#confirm');
  await dialog.waitFor({ state: 'visible', timeout: 10000 });
  await dialog.getByRole('button', { name: 'Deploy', exact: true }).click();
  const deployed = await waitFor('the result of Deploy Changes', async () => {
    const t = await page.locator('#notice').textContent();
    return t && t.startsWith('Deploy') && !t.endsWith('…') ? t : false;
  }, 120000);
  check(/^Deployed revision \d+/.test(deployed), `deployed: ${deployed}`);
}

// ---------------------------------------------------------------- main

let browser = null;
let status = 1;
try {
  log(`lab up in ${labDir}`);
  lab = JSON.parse(run(tandem, ['lab', 'up', '--console', '--replication', '--managed', '2', '--dir', labDir]));
  ca = fs.readFileSync(lab.api.tls_cert);
  const password = fs.readFileSync(lab.api.password_file, 'utf8').trim();
  const login = await call('POST', '/sessions', { user: lab.api.user, password });
  if (login.status !== 201) throw new Error(`login: ${JSON.stringify(login.body)}`);
  token = login.body.token;

  // The page itself: served without a session, with strict headers.
  const root = await new Promise((resolve, reject) => {
    const u = new URL(lab.api.url);
    https.get({ host: u.hostname, port: u.port, path: '/', ca }, (res) => { res.resume(); resolve(res); }).on('error', reject);
  });
  check(root.statusCode === 200 && root.headers['content-type'].startsWith('text/html'), 'GET / is the page');
  check(/default-src 'self'/.test(root.headers['content-security-policy'] ?? ''), 'the page has a strict CSP');
  check(root.headers['x-content-type-options'] === 'nosniff', 'the page is not sniffed');

  // The lab's HA pair and the first managed host are paired through the
  // API; the second managed host through the page's Pair Host dialog.
  const [primary, secondary] = lab.hosts;
  const [m1, m2] = lab.managed_hosts;
  // The console on the primary recorded itself as lab-primary: its agent
  // pairs under another name, with a new pairing string.
  run(tandemd, ['unpair', '--config', primary.config]);
  fs.writeFileSync(primary.pairing_file, run(tandemd, ['pair-token', '--config', primary.config]), { mode: 0o600 });
  await pair(primary, 'lab-primary-agent');
  await pair(secondary);
  await pair(m1);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused API call is logged by Chromium as a failed resource load:
    // expected (the test provokes refusals); anything else is a fault.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });

  await page.goto(`${lab.api.url}/`);
  await page.getByLabel('User').waitFor({ timeout: 30000 });
  await shot(page, 'login');
  check(await page.getByRole('button', { name: 'Log out' }).isHidden(), 'no Log out button before the login');
  await accessibility(page, 'the login view');
  await page.getByLabel('User').fill(lab.api.user);
  await page.getByLabel('Password').fill('wrong password, surely');
  await page.getByRole('button', { name: 'Log in' }).click();
  await waitFor('the login refusal', async () => (await page.locator('#login-error').textContent()).length > 0, 30000);
  check(await page.locator('#app-view').isHidden(), 'a wrong password does not log in');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#hosts-body tr.host').first().waitFor({ timeout: 30000 });
  check(await page.locator('#login-view').isHidden(), 'logged in');
  check(await page.getByRole('button', { name: 'Log out' }).isVisible(), 'the Log out button once logged in');

  // Pair Host dialog: a bad pairing string is refused next to its field.
  await page.getByRole('button', { name: 'Pair Host' }).click();
  await page.getByLabel('Agent address (host:port)').fill(m2.agent.address);
  await page.getByLabel('Pairing string').fill('tp1.not-a-token');
  await page.getByRole('button', { name: 'Pair', exact: true }).click();
  await waitFor('the pairing refusal', async () =>
    (await page.locator('#pair-error').textContent()) || (await page.locator('#err-p-pairing_token').textContent()), 30000);
  await shot(page, 'pair-refused');
  await page.getByLabel('Pairing string').fill(pairingString(m2));
  await page.getByRole('button', { name: 'Pair', exact: true }).click();
  await page.locator('#pair').waitFor({ state: 'hidden', timeout: 30000 });
  await page.locator(`tr[data-host="${m2.name}"]`).waitFor({ timeout: 30000 });
  check(true, 'paired lab-managed-2 through the Pair Host dialog');

  // Live updates: both hosts of the lab's pair reach Active/Standby.
  await waitStatus(page, { 'lab-primary-agent': 'Active', 'lab-secondary': 'Standby',
                           [m1.name]: 'Unclustered', [m2.name]: 'Unclustered' }, 120000);
  const version = await page.locator(`tr[data-host="${m1.name}"] td`).nth(5).textContent();
  check(/^\d+\.\d+/.test(version), `the version column shows ${version}`);
  await shot(page, 'hosts');
  await accessibility(page, 'the hosts view');

  // Keyboard: the menu opens with the keyboard, Escape closes it and a
  // dialog, and focus comes back to the menu button.
  await selectHost(page, m1.name);
  await page.getByRole('button', { name: /High Availability/ }).focus();
  await page.keyboard.press('ArrowDown');
  check(await page.locator('#ha-menu').isVisible(), 'ArrowDown opens the High Availability menu');
  const focused = await page.evaluate(() => document.activeElement?.textContent);
  check(focused === 'Add HA Host', `the first enabled menu entry has the focus (${focused})`);
  await page.keyboard.press('Enter');
  await page.locator('#wizard').waitFor({ state: 'visible', timeout: 10000 });
  check(await page.evaluate(() => document.getElementById('wizard').contains(document.activeElement)),
        'the wizard takes the focus');
  await page.keyboard.press('Escape');
  await page.locator('#wizard').waitFor({ state: 'hidden', timeout: 10000 });
  check(await page.evaluate(() => document.activeElement?.id === 'ha-menu-button'),
        'Escape closes the wizard and focus returns to the menu button');

  // An HA license for the new cluster (`tandem license keygen|sign`, its
  // public key trusted by the console): without one it shows Needs License
  // and runs no HA role.
  {
    const keys = path.join(tmp, 'license-signing');
    fs.mkdirSync(keys, { recursive: true, mode: 0o700 });
    fs.mkdirSync(lab.api.license_keys_dir, { recursive: true, mode: 0o700 });
    run(tandem, ['license', 'keygen', '--dir', keys, '--name', 'web']);
    fs.copyFileSync(path.join(keys, 'web.pem'), path.join(lab.api.license_keys_dir, 'web.pem'));
    const doc = run(tandem, ['license', 'sign', '--key', path.join(keys, 'web.key'), '--id', 'ha-web-001',
                             '--issued-to', 'Web Test', '--expires', '2099-12-31T23:59:59Z']);
    const added = await call('POST', '/licenses', { document: doc });
    if (added.status !== 201) throw new Error(`license: ${JSON.stringify(added.body)}`);
  }

  // Add HA Host: a refusal next to its field, then the cluster.
  await menuAction(page, 'Add HA Host');
  const wizard = page.locator('#wizard');
  await wizard.waitFor({ state: 'visible', timeout: 10000 });
  await wizard.getByLabel('Primary host').selectOption(m1.name);
  await wizard.getByLabel('Secondary host').selectOption(m2.name);
  await wizard.getByLabel('New IP of the primary').fill('198.18.0.50');
  await wizard.getByRole('button', { name: 'Create cluster' }).click();
  const refusal = await waitFor('the refusal next to the new IP', async () =>
    page.locator('#err-primary_new_ip').textContent(), 120000);
  check(/subnet_mismatch/.test(refusal), `the refusal is shown next to the field: ${refusal}`);
  check((await wizard.getByLabel('New IP of the primary').getAttribute('aria-invalid')) === 'true',
        'the field is marked invalid');
  await page.locator('#w-advanced summary').click();
  await shot(page, 'wizard-refused');
  await accessibility(page, 'the Add HA Host wizard');
  const subnet = primary.address.slice(0, primary.address.lastIndexOf('.'));
  await wizard.getByLabel('New IP of the primary').fill(`${subnet}.30`);
  await wizard.getByLabel('Synchronization rate (MB/s)').fill('200');
  // Heartbeats every second, 6 s to declare the peer dead: the roles move
  // within seconds in this test (the appliance defaults are 10 s / 30 s).
  await wizard.getByLabel('Heartbeat interval (ms)').fill('1000');
  await wizard.getByLabel('Heartbeat timeout (ms)').fill('6000');
  await wizard.getByRole('button', { name: 'Create cluster' }).click();
  const result = page.locator('#result');
  await result.waitFor({ state: 'visible', timeout: 180000 });
  const resultText = await result.textContent();
  check(resultText.includes(`Cluster ${m1.name} created`), `the cluster was created: ${resultText}`);
  check(/Link measured/.test(resultText), 'the measured link is shown');
  await shot(page, 'cluster-created');
  await result.getByRole('button', { name: 'Close' }).click();
  await page.locator(`tr[data-cluster="${m1.name}"]`).waitFor({ timeout: 30000 });
  await page.locator(`tr[data-host="${m1.name}-primary"]`).waitFor({ timeout: 30000 });
  await page.locator(`tr[data-host="${m1.name}-secondary"]`).waitFor({ timeout: 30000 });
  const clusterApi = (await call('GET', `/clusters/${m1.name}`)).body.cluster;
  check(clusterApi?.options?.sync_rate_mb === 200, 'the advanced option reached the cluster');
  // Hover: the cluster's VIP, primary, secondary and crossover IPs.
  await page.locator(`tr[data-cluster="${m1.name}"] .cluster-name`).hover();
  const tip = page.locator(`tr[data-cluster="${m1.name}"] [role=tooltip]`);
  await tip.waitFor({ state: 'visible', timeout: 10000 });
  const tipText = await tip.textContent();
  check(tipText.includes(m1.address) && tipText.includes(`${subnet}.30`), `the cluster's IPs on hover: ${tipText}`);
  await shot(page, 'cluster-hover');
  await page.mouse.move(0, 0);

  // Deploy Changes: the two managed hosts restart as the members of the
  // new cluster and reach Active / Standby (docs/CONSOLE.md, "Clusters
  // formed by a deploy").
  const pri = `${m1.name}-primary`, sec = `${m1.name}-secondary`;
  await deployChanges(page);
  await waitStatus(page, { [pri]: 'Active', [sec]: 'Standby' }, 180000);
  await shot(page, 'cluster-formed');

  // Set the active offline: confirmation, the roles switch, online, give back.
  if (await hostAction(page, pri, 'Set System Offline', true)) {
    await waitStatus(page, { [sec]: 'Active', [pri]: 'Offline' }, 180000);
    await shot(page, 'offline-roles-switched');
    await hostAction(page, pri, 'Set System Online', false);
    await waitStatus(page, { [sec]: 'Active', [pri]: 'Standby' }, 180000);
    await shot(page, 'online-standby');
    // A full sync of the lab pair's standby (`ha invalidate`) at the slowest
    // rate: it is Synchronizing for seconds, and the page shows the
    // progress with its rate and ETA.
    const labActive = 'lab-primary-agent';
    run(tandem, ['store', 'fill', '--config', primary.config, '--files', '4', '--bytes', '3000000']);
    run(ha, ['sync-rate', '1', '--config', primary.config]);
    run(ha, ['invalidate', '--config', secondary.config]);
    await waitStatus(page, { 'lab-secondary': 'Synchronizing' }, 120000);
    await selectHost(page, 'lab-secondary');
    let shown = '';
    const label = await waitFor('the synchronization progress with rate and ETA', async () => {
      shown = await page.locator('#sync-label').textContent({ timeout: 1000 }).catch(() => '');
      return /\d+\.\d% .* at .*\/s, ETA /.test(shown) ? shown : false;
    }, 60000).catch((e) => { throw new Error(`${e.message}; the page showed "${shown}"`); });
    check(await page.locator('#details-body progress').isVisible(), `a progress bar: ${label}`);
    await shot(page, 'synchronizing');
    run(ha, ['sync-rate', '100', '--config', primary.config]);
    await waitStatus(page, { [labActive]: 'Active', 'lab-secondary': 'Standby' }, 300000);
    await selectHost(page, pri);
    await waitFor('the troubleshooting advice', async () => (await page.locator('#details-body').textContent()).includes('Standby'), 30000);
    // Restore System: the primary's state file cannot be written (a
    // directory in the way of its temporary file), so the giveback that
    // would make it active fails it (Failed) and the secondary stays
    // Active; mended, Restore System brings it back to Standby.
    const blocker = path.join(path.dirname(m1.config), 'state', 'state.json.tmp');
    fs.mkdirSync(blocker);
    await hostAction(page, sec, 'Giveback', true);
    await waitStatus(page, { [pri]: 'Failed', [sec]: 'Active' }, 180000);
    await shot(page, 'failed');
    fs.rmdirSync(blocker);
    await hostAction(page, pri, 'Restore System', false);
    await waitStatus(page, { [pri]: 'Standby', [sec]: 'Active' }, 180000);
    await shot(page, 'restored');
    // Give back: the roles as created.
    await hostAction(page, sec, 'Giveback', true);
    await waitStatus(page, { [pri]: 'Active', [sec]: 'Standby' }, 180000);
    await waitFor('a failover on the timeline', async () => (await page.locator('#timeline li.failover').count()) > 0, 60000);
    check(true, 'the timeline shows the failover');
    await shot(page, 'gave-back-timeline');
  } else {
    log('SKIPPED: the console has no host actions endpoint (POST /api/v1/hosts/{name}/actions)');
  }
  const changes = await page.locator('#timeline li').count();
  check(changes > 0, `the timeline lists ${changes} status changes`);
  await accessibility(page, 'the hosts view with a cluster');

  // Edit HA Host: an option changed on the running cluster, deployed, live
  // (no restart, no failover).
  await selectHost(page, pri);
  await menuAction(page, 'Edit HA Host');
  const edit = page.locator('#edit');
  await edit.waitFor({ state: 'visible', timeout: 10000 });
  await edit.getByLabel('Synchronization rate (MB/s)').fill('150');
  await shot(page, 'edit');
  await accessibility(page, 'the Edit HA Host dialog');
  await edit.getByRole('button', { name: 'Save' }).click();
  await edit.waitFor({ state: 'hidden', timeout: 30000 });
  await waitFor('the edit notice', async () => /changed: deploy/.test(await page.locator('#notice').textContent()), 30000);
  await deployChanges(page);
  check((await call('GET', `/clusters/${m1.name}`)).body.cluster?.options?.sync_rate_mb === 150, 'the edited option');
  await waitStatus(page, { [pri]: 'Active', [sec]: 'Standby' }, 60000);

  // Remove HA Host: the secondary leaves; deployed, both hosts run
  // unclustered again.
  await selectHost(page, pri);
  await menuAction(page, 'Remove HA Host');
  const removeDialog = page.locator('#confirm');
  await removeDialog.waitFor({ state: 'visible', timeout: 10000 });
  check((await removeDialog.textContent()).includes(sec), 'the confirmation names the secondary');
  await removeDialog.getByRole('button', { name: 'Remove', exact: true }).click();
  await waitFor('the remove notice', async () => /left cluster/.test(await page.locator('#notice').textContent()), 30000);
  await deployChanges(page);
  await waitStatus(page, { [pri]: 'Unclustered', [m2.name]: 'Unclustered' }, 180000);
  await shot(page, 'removed');

  // Factory Reset of the unclustered host: confirmed, its row goes.
  await selectHost(page, m2.name);
  await menuAction(page, 'Factory Reset');
  const resetDialog = page.locator('#confirm');
  await resetDialog.waitFor({ state: 'visible', timeout: 10000 });
  check((await resetDialog.textContent()).includes(m2.name), 'the factory reset confirmation names the host');
  await resetDialog.getByRole('button', { name: 'Factory reset', exact: true }).click();
  await waitFor('the factory reset notice', async () => /factory reset and removed/.test(await page.locator('#notice').textContent()), 60000);
  await page.locator(`tr[data-host="${m2.name}"]`).waitFor({ state: 'detached', timeout: 30000 });
  check(true, `${m2.name} was factory reset and left the list`);

  // Narrow screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'narrow');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no page-wide horizontal scrolling at 390 px (${overflow} px)`);
  await accessibility(page, 'the narrow view');

  for (const e of pageErrors) log(e);
  check(pageErrors.length === 0, 'no script errors and no CSP violations in the page');
  status = failures.length === 0 ? 0 : 1;
} catch (e) {
  log(`FAIL: ${e.stack ?? e}`);
  status = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (lab || fs.existsSync(labDir)) {
    const r = spawnSync(tandem, ['lab', 'down', '--dir', labDir], { encoding: 'utf8', timeout: 120000 });
    if (r.status !== 0) log(`lab down: ${r.stderr}`);
  }
  if (status !== 0 && fs.existsSync(labDir)) {
    // Keep the daemons' logs next to the screenshots for the CI log.
    for (const f of fs.readdirSync(labDir, { recursive: true })) {
      if (String(f).endsWith('.log')) {
        const src = path.join(labDir, String(f));
        try { fs.copyFileSync(src, path.join(shots, String(f).replaceAll('/', '_'))); } catch { /* gone */ }
      }
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}
log(status === 0 ? 'PASS' : `FAILED: ${failures.join('; ')}`);
process.exit(status);
