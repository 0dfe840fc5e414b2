// End-to-end test of the progress page (/ui/) in headless Chromium.
//
// Starts the ACK simulator and the gateway (binary from ACK_GATEWAY_BIN, default
// target/debug/ack-gateway), creates clusters through the gateway's Connect JSON API, and
// follows their tasks in the page: success, a failed task, a failing upstream poll, a lost
// connection (the gateway is stopped and started again), a silent connection (the gateway is
// SIGSTOPped: the heartbeat watchdog), the token form, the chooser form, the local-token mode,
// and no console error or warning on any page.
// Prints "N passed, N failed" last; exits 1 when a case failed. Needs node >= 20,
// playwright-core (npm install here) and Chromium at /usr/bin/chromium (or $CHROMIUM).
// ACK_UI_SCREENSHOT=1 also writes docs/progress-page.png and docs/progress-page-running.png.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(ROOT, process.env.ACK_GATEWAY_BIN || 'target/debug/ack-gateway');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = process.env.ACK_UI_SCREENSHOT === '1';
const TASK_SECONDS = 6;
const RUN_LIMIT_MS = 170_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ack-ui-test-'));
const children = new Set();
const everyProcess = [];
let context = null;
const results = [];

// --- processes --------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Spawns the binary; `output` accumulates stdout and stderr for diagnostics and waits. */
function start(name, args, env) {
  const child = spawn(BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = { name, child, stdout: '', output: '', exited: false };
  child.stdout.on('data', (d) => { proc.stdout += d; proc.output += d; });
  child.stderr.on('data', (d) => { proc.output += d; });
  child.on('exit', () => { proc.exited = true; children.delete(proc); });
  child.on('error', (e) => {
    proc.output += `\nspawn error: ${e.message}`;
    proc.exited = true;
    children.delete(proc);
  });
  children.add(proc);
  everyProcess.push(proc);
  return proc;
}

async function stop(proc) {
  if (proc.exited) return;
  proc.child.kill('SIGTERM');
  const until = Date.now() + 3000;
  while (!proc.exited && Date.now() < until) await sleep(50);
  if (!proc.exited) {
    proc.child.kill('SIGKILL');
    while (!proc.exited) await sleep(20);
  }
}

async function waitFor(what, timeoutMs, check) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function baseEnv() {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' };
  for (const key of Object.keys(env)) if (key.startsWith('ALIBABA_CLOUD_')) delete env[key];
  return env;
}

const keyId = `LTAItest${randomBytes(6).toString('hex')}`;
const keySecret = randomBytes(18).toString('base64url');

async function startSimulator() {
  const port = await freePort();
  const args = ['simulator', '--listen', `127.0.0.1:${port}`, '--task-seconds', String(TASK_SECONDS)];
  const proc = start('simulator', args,
    { ...baseEnv(), ALIBABA_CLOUD_ACCESS_KEY_ID: keyId, ALIBABA_CLOUD_ACCESS_KEY_SECRET: keySecret });
  await waitFor('the simulator to serve', 20_000, () => {
    if (proc.exited) throw new Error(`the simulator exited:\n${proc.output}`);
    return proc.output.includes('serving the ACK API at');
  });
  return { proc, port, url: `http://127.0.0.1:${port}` };
}

function gatewayConfig({ port, simPort, tokenSha256 }) {
  const lines = [
    `listen = "127.0.0.1:${port}"`,
    '[admin]', 'listen = "127.0.0.1:0"',
    '[simulator]', 'mode = "never"',
    '[endpoints]',
    `cs = "http://127.0.0.1:${simPort}"`,
    `sts = "http://127.0.0.1:${simPort}"`,
    `ehpc = "http://127.0.0.1:${simPort}"`,
    '[watch]',
    'initial_interval = "200ms"', 'max_interval = "1s"', 'heartbeat_interval = "2s"',
    'retry_initial = "200ms"', 'retry_max = "1s"',
    '[profiles.default]',
    'type = "access_key"', `access_key_id = "${keyId}"`, `access_key_secret = "${keySecret}"`,
    'region = "cn-hangzhou"',
  ];
  if (tokenSha256) {
    lines.push('[auth]', 'mode = "enforce"',
      '[callers.ui]', `token_sha256 = ["${tokenSha256}"]`, 'profiles = ["*"]', 'operations = ["*"]');
  }
  const file = path.join(tmp, `gateway-${port}.toml`);
  fs.writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return file;
}

async function startGateway(configFile, port) {
  const proc = start(`gateway :${port}`, ['serve', '--config', configFile], baseEnv());
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`the gateway on ${port} to serve /ui/`, 30_000, async () => {
    if (proc.exited) throw new Error(`the gateway exited:\n${proc.output}`);
    try {
      const res = await fetch(`${base}/ui/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  });
  return { proc, port, base };
}

// --- the API, as a script would call it ---------------------------------------------------------

async function unary(base, token, method, body) {
  const res = await fetch(`${base}/alibabacloud.cs.v20151215.ContainerService/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${method}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

async function createCluster(gateway, token) {
  const out = await unary(gateway.base, token, 'CreateCluster',
    { name: 'ui-test', region_id: 'cn-hangzhou', cluster_type: 'ManagedKubernetes' });
  const task = out.task_id ?? out.taskId;
  const cluster = out.cluster_id ?? out.clusterId;
  if (!task || !cluster) throw new Error(`CreateCluster answered ${JSON.stringify(out)}`);
  return { task, cluster };
}

async function simulatorPost(sim, route, body) {
  const res = await fetch(`${sim.url}/__simulator/${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${route}: HTTP ${res.status}: ${text}`);
}

const queueTaskFailure = (sim) => simulatorPost(sim, 'task-failures',
  { operation: 'CreateCluster', code: 'ClusterCreateFailed', message: 'simulated failure' });

// --- the browser --------------------------------------------------------------------------------

const consoleProblems = [];
// What Chromium itself logs while the gateway is down (case "reconnect" only).
const NETWORK_NOISE =
  /net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|CONNECTION_CLOSED|EMPTY_RESPONSE|INCOMPLETE_CHUNKED_ENCODING)/;

async function openPage(url, { allowNetworkErrors = false } = {}) {
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = msg.text();
    if (allowNetworkErrors && NETWORK_NOISE.test(text)) return;
    consoleProblems.push(`${msg.type()} on ${url.split('#')[0]}: ${text}`);
  });
  page.on('pageerror', (e) => consoleProblems.push(`page error on ${url.split('#')[0]}: ${e.message}`));
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  return page;
}

const phaseOf = (page) => page.locator('#phase').textContent();

async function waitForPhase(page, phase, timeout = 30_000) {
  await page.waitForFunction((p) => document.querySelector('#phase')?.textContent === p, phase,
    { timeout, polling: 100 });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function runCase(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok    ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL  ${name}: ${e.stack || e}`);
  }
}

// --- the run ------------------------------------------------------------------------------------

async function main() {
  for (const [what, file] of [['the gateway binary', BIN], ['Chromium', CHROMIUM]]) {
    if (!fs.existsSync(file)) throw new Error(`${what} is missing: ${file}`);
  }
  const sim = await startSimulator();
  const token = randomBytes(24).toString('base64url');
  const tokenSha256 = createHash('sha256').update(token).digest('hex');
  const port = await freePort();
  const config = gatewayConfig({ port, simPort: sim.port, tokenSha256 });
  let gateway = await startGateway(config, port);

  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1180, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

  let succeededTask = null;

  await runCase('success: a task is followed to SUCCEEDED', async () => {
    const { task } = await createCluster(gateway, token);
    const page = await openPage(`${gateway.base}/ui/?task=${task}&heartbeat=5#token=${token}`);
    await waitForPhase(page, 'RUNNING', 15_000);
    check(!(await page.evaluate(() => location.href)).includes(token), 'the token stayed in the URL');
    check(!(await page.evaluate(() => location.hash)), 'the fragment stayed in the URL');
    check(await page.locator('#progress').getAttribute('role') === 'progressbar', 'no progressbar role');
    if (SCREENSHOTS) {
      await page.waitForFunction(() => document.querySelectorAll('#stages li').length >= 3
        && document.querySelector('#phase').textContent === 'RUNNING', null, { timeout: 15_000, polling: 100 });
      await page.locator('body').screenshot({ path: path.join(ROOT, 'docs', 'progress-page-running.png') });
    }
    await waitForPhase(page, 'SUCCEEDED');
    await page.waitForFunction(() => document.querySelector('#progress').getAttribute('aria-valuenow') === '100',
      null, { timeout: 5000 });
    const title = await page.title();
    check(title.includes('SUCCEEDED') && title.includes(task), `title is ${JSON.stringify(title)}`);
    const events = await page.locator('#events li').count();
    check(events >= 4, `${events} events shown, expected one per stage at least`);
    const stages = await page.locator('#stages li').count();
    check(stages === 4, `${stages} stages shown, expected 4`);
    check(await page.locator('#notice-failed').isHidden(), 'the failure notice is shown');
    check(await page.locator('#notice-connection').isHidden(), 'the connection notice is shown');
    if (SCREENSHOTS) {
      await sleep(600); // the bar's width transition
      await page.locator('body').screenshot({ path: path.join(ROOT, 'docs', 'progress-page.png') });
    }
    succeededTask = task;
    await page.close();
  });

  await runCase('failure: a failed task shows the upstream error', async () => {
    await queueTaskFailure(sim);
    const { task } = await createCluster(gateway, token);
    const page = await openPage(`${gateway.base}/ui/?task=${task}#token=${token}`);
    const notice = page.locator('#notice-failed');
    await notice.waitFor({ state: 'visible', timeout: 30_000 });
    const text = await notice.textContent();
    check(text.includes('ClusterCreateFailed'), `the failure notice says ${JSON.stringify(text)}`);
    check(text.includes('simulated failure'), `the failure notice says ${JSON.stringify(text)}`);
    await waitForPhase(page, 'FAILED', 5000);
    check((await page.title()).includes('FAILED'), 'the title has no FAILED');
    check(await page.locator('#progress').getAttribute('aria-valuenow') === null, 'a failed task shows a percentage');
    await page.close();
  });

  await runCase('poll error: a failing upstream poll is shown, then cleared', async () => {
    const { task } = await createCluster(gateway, token);
    const page = await openPage(`${gateway.base}/ui/?task=${task}#token=${token}`);
    await waitForPhase(page, 'RUNNING', 15_000);
    await simulatorPost(sim, 'faults', { operation: 'DescribeTaskInfo', status: 503,
      code: 'ServiceUnavailable', message: 'simulated outage', times: 16 });
    const notice = page.locator('#notice-poll');
    await notice.waitFor({ state: 'visible', timeout: 10_000 });
    const text = await notice.textContent();
    check(text.includes('UNAVAILABLE') && /retrying in [\d.]+ s/.test(text),
      `the poll notice says ${JSON.stringify(text)}`);
    await notice.waitFor({ state: 'hidden', timeout: 15_000 });
    await waitForPhase(page, 'SUCCEEDED');
    await page.close();
  });

  await runCase('reconnect: the page survives a gateway restart', async () => {
    const { task } = await createCluster(gateway, token);
    const page = await openPage(`${gateway.base}/ui/?task=${task}&heartbeat=5#token=${token}`,
      { allowNetworkErrors: true });
    await waitForPhase(page, 'RUNNING', 15_000);
    await stop(gateway.proc);
    const notice = page.locator('#notice-connection');
    try {
      await notice.waitFor({ state: 'visible', timeout: 10_000 });
      const text = await notice.textContent();
      check(/reconnecting in \d+ s/i.test(text), `the connection notice says ${JSON.stringify(text)}`);
      check(await page.locator('#retry-now').isVisible(), 'no "Retry now" button');
    } finally {
      gateway = await startGateway(config, port);
    }
    await notice.waitFor({ state: 'hidden', timeout: 20_000 });
    await waitForPhase(page, 'SUCCEEDED');
    check(await page.locator('#progress').getAttribute('aria-valuenow') === '100', 'aria-valuenow is not 100');
    await page.close();
  });

  await runCase('watchdog: a silent stream is abandoned, "Retry now" reconnects', async () => {
    const { task } = await createCluster(gateway, token);
    // The gateway sends a heartbeat every 2 s; the page gives up after 3 × 2 s of silence.
    const page = await openPage(`${gateway.base}/ui/?task=${task}&heartbeat=2#token=${token}`,
      { allowNetworkErrors: true });
    await waitForPhase(page, 'RUNNING', 15_000);
    gateway.proc.child.kill('SIGSTOP');
    try {
      const notice = page.locator('#notice-connection');
      await notice.waitFor({ state: 'visible', timeout: 12_000 });
      const text = await notice.textContent();
      check(/no message for 6 s/.test(text), `the connection notice says ${JSON.stringify(text)}`);
    } finally {
      gateway.proc.child.kill('SIGCONT');
    }
    await page.locator('#retry-now').click();
    await page.locator('#notice-connection').waitFor({ state: 'hidden', timeout: 10_000 });
    await waitForPhase(page, 'SUCCEEDED');
    await page.close();
  });

  await runCase('token form: a page without a token asks for one', async () => {
    check(succeededTask, 'no task from the success case');
    const page = await openPage(`${gateway.base}/ui/?task=${succeededTask}`);
    const form = page.locator('#token-form');
    await form.waitFor({ state: 'visible', timeout: 10_000 });
    await form.locator('input[type=password]').fill(token);
    await form.locator('button[type=submit]').click();
    await waitForPhase(page, 'SUCCEEDED', 15_000);
    check(await form.isHidden(), 'the token form stayed');
    await page.close();
  });

  await runCase('chooser: the form without a query navigates to the deep link', async () => {
    check(succeededTask, 'no task from the success case');
    const page = await openPage(`${gateway.base}/ui/#token=${token}`);
    await page.locator('#chooser-form').waitFor({ state: 'visible', timeout: 10_000 });
    await page.locator('select[name=kind]').selectOption('task');
    await page.locator('input[name=id]').fill(succeededTask);
    await page.locator('#chooser-form button[type=submit]').click();
    await page.waitForURL((url) => url.searchParams.get('task') === succeededTask, { timeout: 10_000 });
    await waitForPhase(page, 'SUCCEEDED', 15_000);
    await page.close();
  });

  await runCase('local token: a gateway without callers prints a /ui/ link with a token', async () => {
    check(succeededTask, 'no task from the success case');
    const localPort = await freePort();
    const local = await startGateway(gatewayConfig({ port: localPort, simPort: sim.port }), localPort);
    try {
      const match = await waitFor('the /ui/#token= line', 10_000,
        () => /\/ui\/#token=([A-Za-z0-9_-]+)/.exec(local.proc.stdout));
      const page = await openPage(`${local.base}/ui/?task=${succeededTask}#token=${match[1]}`);
      await waitForPhase(page, 'SUCCEEDED', 15_000);
      check(!(await page.evaluate(() => location.href)).includes(match[1]), 'the token stayed in the URL');
      await page.close();
    } finally {
      await stop(local.proc);
    }
  });

  await runCase('console: no errors or warnings on any page', async () => {
    check(consoleProblems.length === 0, consoleProblems.join('\n'));
  });
}

async function cleanup() {
  if (context) await Promise.race([context.close().catch(() => {}), sleep(5000)]);
  await Promise.all([...children].map(stop));
  fs.rmSync(tmp, { recursive: true, force: true });
}

process.on('exit', () => {
  for (const proc of children) proc.child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const proc of children) proc.child.kill('SIGKILL');
    process.exit(1);
  });
}

const limit = setTimeout(() => {
  console.log(`FAIL  the run took longer than ${RUN_LIMIT_MS / 1000} s`);
  for (const proc of everyProcess) console.log(`--- ${proc.name} output ---\n${proc.output.slice(-4000)}`);
  console.log(`${results.filter((r) => r.ok).length} passed, ${results.filter((r) => !r.ok).length + 1} failed`);
  process.exit(1);
}, RUN_LIMIT_MS);

try {
  if (SCREENSHOTS) fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
  await main();
} catch (e) {
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL  setup: ${e.stack || e}`);
}
if (results.some((r) => !r.ok)) {
  for (const proc of everyProcess) console.log(`--- ${proc.name} output ---\n${proc.output.slice(-4000)}`);
}
await cleanup();
clearTimeout(limit);
const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
