// End-to-end test of the progress page (/ui/) in headless Chromium.
//
// Starts the ACK simulator and the gateway (binary from ACK_GATEWAY_BIN, default
// target/debug/ack-gateway) with two callers (`ui`, granted `journal = "all"`, and `alice`),
// creates clusters through the gateway's Connect JSON API, and follows their tasks in the
// page: success, a failed task, a failing upstream poll, a lost connection (the gateway is
// stopped and started again), a silent connection (the gateway is SIGSTOPped: the heartbeat
// watchdog); the operations list (another client's write live with its bar and outcome, the
// filters in the URL, a row opening its task view with the stages counted, a caller without
// the grant seeing only its own, the bound on followed tasks); a node pool growing (nodes
// serving of desired); a wait (?wait=, built by the chooser form) reaching done as a cluster
// runs, another ending on its timeout, a bad path refused naming the field, a failed value; the
// cluster view's events panel (a node pool's creation live, a gateway restart, the level
// filter) and its operations panel (the writes on the cluster, live, a row opening its task);
// the token form, the chooser form, the local-token mode, and no console error or
// warning on any page.
// ACK_UI_ONLY=<regex> runs only the cases whose name matches (for working on a few).
// Prints "N passed, N failed" last; exits 1 when a case failed. Needs node >= 20,
// playwright-core (npm install here) and Chromium at /usr/bin/chromium (or $CHROMIUM).
// ACK_UI_SCREENSHOT=1 also writes docs/progress-page.png, docs/progress-page-running.png,
// docs/operations-list.png and docs/nodepool-view.png.

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
const RUN_LIMIT_MS = 220_000;

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

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function gatewayConfig({ port, simPort, tokenSha256, aliceSha256 }) {
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
      '[callers.ui]', `token_sha256 = ["${tokenSha256}"]`, 'profiles = ["*"]', 'operations = ["*"]',
      'journal = "all"');
  }
  if (aliceSha256) {
    lines.push('[callers.alice]', `token_sha256 = ["${aliceSha256}"]`, 'profiles = ["*"]', 'operations = ["*"]');
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

async function openPage(url, { allowNetworkErrors = false, allowStatus = 0 } = {}) {
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const text = msg.text();
    if (allowNetworkErrors && NETWORK_NOISE.test(text)) return;
    // What Chromium logs for an answer the case expects to be refused.
    if (allowStatus && text.startsWith(`Failed to load resource: the server responded with a status of ${allowStatus} `)) return;
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

/** Waits until the operations stream is open. */
async function waitForLive(page) {
  await page.waitForFunction(() => document.querySelector('#link-state')?.dataset.state === 'live', null,
    { timeout: 10_000, polling: 50 }).catch(async (e) => {
    const state = await page.locator('#link-state').textContent().catch(() => '?');
    throw new Error(`not live on ${page.url()} (${state}): ${e.message.split('\n')[0]}`);
  });
}

const rowIds = (page) => page.locator('#operation-rows tr').evaluateAll((rows) => rows.map((r) => r.dataset.id));

/** The rows once there is one (and the list settled for a moment); `body` is the list's, or the
 *  cluster view's panel's (`#cluster-ops-rows`). */
async function waitForRows(page, body = '#operation-rows') {
  await page.locator(`${body} tr`).first().waitFor({ state: 'visible', timeout: 10_000 })
    .catch((e) => { throw new Error(`no row on ${page.url()}: ${e.message.split('\n')[0]}`); });
  await sleep(300);
  return page.locator(`${body} tr`).evaluateAll((rows) => rows.map((r) => ({
    id: r.dataset.id, caller: r.dataset.caller, phase: r.dataset.phase,
    op: r.querySelector('.row-link').textContent, target: r.querySelector('.op-target').textContent,
    started: r.querySelector('time').dateTime,
  })));
}

/** In-flight rows first, then the ended ones newest first. */
function checkOrder(rows) {
  const inFlight = (r) => ['RUNNING', 'QUEUED', 'TASK_RUNNING'].includes(r.phase);
  const firstEnded = rows.findIndex((r) => !inFlight(r));
  check(firstEnded === -1 || rows.slice(firstEnded).every((r) => !inFlight(r)),
    `an in-flight row after an ended one: ${rows.map((r) => r.phase)}`);
  const ended = rows.filter((r) => !inFlight(r)).map((r) => Date.parse(r.started));
  check(ended.every((t, i) => i === 0 || t <= ended[i - 1]), 'ended rows not newest first');
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** ACK_UI_ONLY=<regex>: only the cases whose name matches run (the others are skipped, not
 *  counted); a case that needs an earlier one's cluster needs that case too. */
const ONLY = process.env.ACK_UI_ONLY ? new RegExp(process.env.ACK_UI_ONLY) : null;

async function runCase(name, fn) {
  if (ONLY && !ONLY.test(name)) return;
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
  const aliceToken = randomBytes(24).toString('base64url');
  const port = await freePort();
  const config = gatewayConfig({ port, simPort: sim.port, tokenSha256: sha256(token),
    aliceSha256: sha256(aliceToken) });
  let gateway = await startGateway(config, port);

  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1180, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

  let succeededTask = null;
  let succeededCluster = null;
  let failedCluster = null;
  // A cluster created (by the case "wait") after the last gateway restart before the case
  // "cluster operations": the journal is kept in memory, so a restart forgets older writes.
  let waitCluster = null;

  await runCase('success: a task is followed to SUCCEEDED', async () => {
    const { task, cluster } = await createCluster(gateway, token);
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
    succeededCluster = cluster;
    await page.close();
  });

  await runCase('failure: a failed task shows the upstream error', async () => {
    await queueTaskFailure(sim);
    const { task, cluster } = await createCluster(gateway, token);
    failedCluster = cluster;
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

  await runCase('operations: another client\'s write is listed within a second, its bar moves, its outcome shows', async () => {
    const page = await openPage(`${gateway.base}/ui/#token=${token}`);
    await waitForLive(page);
    check(await page.locator('#operations').isVisible(), 'the page does not open on the operations list');
    check(await page.locator('#own-only').isHidden(), 'a caller granted journal = "all" is told it sees only its own');
    await waitForRows(page); // the journal's entries so far, rendered (they arrive after the stream opens)
    const before = new Set(await rowIds(page));
    const sent = Date.now();
    const creating = createCluster(gateway, aliceToken); // another client, another caller
    const id = await page.waitForFunction((known) => [...document.querySelectorAll('#operation-rows tr')]
      .map((tr) => tr.dataset.id).find((i) => !known.includes(i)), [...before], { timeout: 5000, polling: 20 })
      .then((h) => h.jsonValue());
    const after = Date.now() - sent;
    check(after <= 1000, `the write was listed after ${after} ms`);
    console.log(`      (listed ${after} ms after the call was sent)`);
    const { task } = await creating;
    const row = page.locator(`#operation-rows tr[data-id="${id}"]`);
    check(await row.getAttribute('data-caller') === 'alice', 'the new row is not alice\'s');
    await page.waitForFunction((t) => document.querySelector(`#operation-rows tr[data-task="${t}"]`), task,
      { timeout: 5000, polling: 50 });
    // Follow the bar until the outcome: the values it shows while the task runs.
    const seen = [];
    const notes = new Set();
    const until = Date.now() + 30_000;
    for (;;) {
      const state = await row.evaluate((tr) => ({
        phase: tr.dataset.phase,
        now: tr.querySelector('[role=progressbar]').getAttribute('aria-valuenow'),
        note: tr.querySelector('.op-note').textContent,
        noteTitle: tr.querySelector('.op-note').title,
      }));
      if (state.phase === 'TASK_RUNNING' && state.now !== null && seen.at(-1) !== Number(state.now)) seen.push(Number(state.now));
      if (state.phase === 'TASK_RUNNING' && /\d+ of \d+ stages?/.test(state.note)) {
        notes.add(state.note);
        check(/stages the cloud lists/.test(state.noteTitle), `the count does not say where it comes from: ${state.noteTitle}`);
      }
      if (state.phase === 'SUCCEEDED') break;
      check(Date.now() < until && !['FAILED', 'UNKNOWN'].includes(state.phase), `the row ended ${state.phase}`);
      await sleep(100);
    }
    check(seen.length >= 2 && seen.every((v, i) => i === 0 || v > seen[i - 1]) && seen.at(-1) < 100,
      `the bar did not move forward while the task ran: ${JSON.stringify(seen)}`);
    check(notes.size >= 2, `the stage count did not change: ${[...notes]}`);
    check(await row.locator('[role=progressbar]').getAttribute('aria-valuenow') === '100', 'the bar is not full at the end');
    check(await row.locator('.op-code').textContent() === 'OK', 'the outcome shows no OK');
    const hint = await page.locator('#list-hint .source').getAttribute('title');
    check(/DescribeTaskInfo/.test(hint || ''), `the page does not say where the stage count comes from: ${hint}`);
    await page.close();
  });

  await runCase('operations: filters live in the URL and in the filter bar', async () => {
    check(succeededCluster, 'no cluster from the success case');
    await unary(gateway.base, token, 'ModifyCluster', { cluster_id: succeededCluster, deletion_protection: true });
    // A write the cloud refuses (the journal of this gateway started with the restart above).
    await simulatorPost(sim, 'faults', { operation: 'CreateCluster', status: 400,
      code: 'QuotaExceeded.Cluster', message: 'simulated refusal', times: 1 });
    const refused = await createCluster(gateway, token).then(() => null, (e) => e);
    check(refused, 'the refused write succeeded');
    const page = await openPage(`${gateway.base}/ui/?caller=alice&operation=CreateCluster&state=succeeded#token=${token}`);
    await waitForLive(page);
    const form = page.locator('#filters');
    for (const [name, value] of [['caller', 'alice'], ['operation', 'CreateCluster'], ['state', 'succeeded']]) {
      const shown = await form.locator(`[name=${name}]`).inputValue();
      check(shown === value, `the filter bar shows ${name} = ${JSON.stringify(shown)}`);
    }
    const rows = await waitForRows(page);
    check(rows.length >= 1 && rows.every((r) => r.caller === 'alice' && r.phase === 'SUCCEEDED' && r.op === 'CreateCluster'),
      `rows outside the filter: ${JSON.stringify(rows)}`);
    // The bar: clear the caller, ask for failures; the URL says so and the rows follow.
    await form.locator('[name=caller]').fill('');
    await form.locator('[name=state]').selectOption('failed');
    await form.locator('button[type=submit]').click();
    await page.waitForURL((url) => url.searchParams.get('state') === 'failed' && !url.searchParams.has('caller'));
    await waitForLive(page);
    const failed = await waitForRows(page);
    check(failed.length >= 1 && failed.every((r) => r.phase === 'FAILED'), `rows: ${JSON.stringify(failed)}`);
    const reasons = await page.locator('#operation-rows .op-reason').allTextContents();
    check(reasons.includes('QuotaExceeded.Cluster'), `no upstream code in the outcomes: ${reasons}`);
    // A cluster, through the bar: only the writes that name it. `?cluster=` alone stays the
    // cluster's watch, so the bar adds `state=any`.
    await form.locator('[name=state]').selectOption('');
    await form.locator('[name=operation]').fill('');
    await form.locator('[name=cluster]').fill(succeededCluster);
    await form.locator('button[type=submit]').click();
    await page.waitForURL((url) => url.searchParams.get('cluster') === succeededCluster
      && url.searchParams.get('state') === 'any');
    await waitForLive(page);
    const mine = await waitForRows(page);
    check(mine.length >= 1 && mine.every((r) => r.target.startsWith(succeededCluster) && r.op === 'ModifyCluster'),
      `rows: ${JSON.stringify(mine)}`);
    check(await form.locator('[name=cluster]').inputValue() === succeededCluster, 'the cluster filter is not shown');
    // The older deep link is still the cluster's watch.
    await page.goto(`${gateway.base}/ui/?cluster=${succeededCluster}`);
    await waitForPhase(page, 'SUCCEEDED', 15_000);
    await page.close();
  });

  await runCase('operations: clicking a row opens its task view, which counts the stages', async () => {
    const { task } = await createCluster(gateway, token);
    const page = await openPage(`${gateway.base}/ui/#token=${token}`);
    const row = page.locator(`#operation-rows tr[data-task="${task}"]`);
    await row.waitFor({ state: 'visible', timeout: 5000 });
    check(await row.locator('a.row-link').getAttribute('href') !== null, 'the row has no link');
    await row.locator('.op-caller').click(); // the row itself, not only its link
    await page.waitForURL((url) => url.searchParams.get('task') === task, { timeout: 5000 });
    await waitForPhase(page, 'RUNNING', 15_000);
    const counted = await page.waitForFunction(() => {
      const bar = document.querySelector('#progress');
      const note = document.querySelector('#progress-note');
      return document.querySelector('#phase').textContent === 'RUNNING' && !note.hidden
        && /^\d+ of \d+ stages?/.test(note.textContent) && bar.getAttribute('aria-valuenow') !== null
        && !bar.classList.contains('indeterminate') && note.textContent;
    }, null, { timeout: 15_000, polling: 100 }).then((h) => h.jsonValue());
    check(/stages reported by the cloud/.test(counted), `the count does not say its source: ${counted}`);
    await waitForPhase(page, 'SUCCEEDED');
    const note = await page.locator('#progress-note').textContent();
    check(/^4 of 4 stages/.test(note), `the finished task shows ${JSON.stringify(note)}`);
    await page.close();
  });

  await runCase('operations: a caller without the grant sees only its own', async () => {
    await createCluster(gateway, aliceToken);
    // allowStatus: the refused filter at the end (Chromium logs the 403 itself).
    const page = await openPage(`${gateway.base}/ui/#token=${aliceToken}`, { allowStatus: 403 });
    await waitForLive(page);
    await page.locator('#own-only').waitFor({ state: 'visible', timeout: 5000 });
    const rows = await waitForRows(page);
    check(rows.every((r) => r.caller === 'alice'), `alice sees ${JSON.stringify(rows.map((r) => r.caller))}`);
    // The same list as `ui` has more callers in it.
    if (SCREENSHOTS) await createCluster(gateway, token); // a second running row for the picture
    const all = await openPage(`${gateway.base}/ui/#token=${token}`);
    const everyone = await waitForRows(all);
    if (SCREENSHOTS) {
      await all.waitForFunction(() => [...document.querySelectorAll('#operation-rows .op-note.counted')]
        .filter((n) => /^[1-9]\d* of/.test(n.textContent)).length >= 2, null, { timeout: 10_000, polling: 100 });
      await sleep(500); // the bars' width transition
      await all.locator('body').screenshot({ path: path.join(ROOT, 'docs', 'operations-list.png') });
    }
    check(everyone.some((r) => r.caller === 'ui') && everyone.length > rows.length,
      `ui sees ${everyone.length} rows, alice ${rows.length}`);
    check(await all.locator('#own-only').isHidden(), 'ui is told it sees only its own');
    check(everyone.some((r) => r.phase === 'TASK_RUNNING'), 'alice\'s new write is not in flight');
    checkOrder(everyone);
    await all.close();
    // Asking for someone else's is refused, and the page says so.
    await page.goto(`${gateway.base}/ui/?caller=ui`);
    const error = page.locator('#list-error');
    await error.waitFor({ state: 'visible', timeout: 5000 });
    const text = await error.textContent();
    check(/permission_denied/.test(text), `the error says ${JSON.stringify(text)}`);
    check(await page.locator('#operation-rows tr').count() === 0, 'rows shown with a refused filter');
    await page.close();
  });

  await runCase('operations: running tasks are followed a few at a time, the others sweep', async () => {
    // Over HTTP/1.1 (this gateway has no TLS) the page follows at most 3 tasks at once.
    const tasks = await Promise.all([1, 2, 3, 4, 5].map(() => createCluster(gateway, token).then((c) => c.task)));
    const page = await openPage(`${gateway.base}/ui/?state=in_flight#token=${token}`);
    // The page's own count of the task streams it holds open (the network's request events
    // can report a stream's end after the next one's start, which the page never overlaps).
    await page.evaluate(() => {
      const root0 = document.documentElement;
      window.mostTaskStreams = Number(root0.dataset.taskStreams || 0);
      const root = document.documentElement;
      new MutationObserver(() => {
        window.mostTaskStreams = Math.max(window.mostTaskStreams, Number(root.dataset.taskStreams || 0));
      }).observe(root, { attributes: true, attributeFilter: ['data-task-streams'] });
    });
    await page.waitForFunction((ids) => ids.every((t) => document.querySelector(`#operation-rows tr[data-task="${t}"]`)),
      tasks, { timeout: 5000, polling: 50 });
    check(await page.locator('#follow-limit').textContent() === '3', 'the page does not say how many it follows');
    await page.waitForFunction(() => document.querySelectorAll('#operation-rows .op-note.counted').length === 3, null,
      { timeout: 10_000, polling: 100 });
    const rows = await page.locator('#operation-rows tr[data-phase="TASK_RUNNING"]').evaluateAll((trs) => trs.map((tr) => ({
      counted: tr.querySelector('.op-note').classList.contains('counted'),
      sweeping: tr.querySelector('[role=progressbar]').classList.contains('indeterminate'),
      title: tr.querySelector('.op-note').title,
    })));
    const counted = rows.filter((r) => r.counted).length;
    const sweeping = rows.filter((r) => r.sweeping && /at most 3 running tasks/.test(r.title)).length;
    check(counted === 3 && sweeping === rows.length - 3 && rows.length >= 5, `rows: ${JSON.stringify(rows)}`);
    // The filter is `in flight`: each row leaves the list when its write ends.
    await page.waitForFunction((ids) => ids.every((t) => !document.querySelector(`#operation-rows tr[data-task="${t}"]`)),
      tasks, { timeout: 40_000, polling: 200 });
    const most = await page.evaluate(() => window.mostTaskStreams);
    check(most >= 1 && most <= 3, `${most} task streams at once`);
    await page.close();
  });

  await runCase('node pool: the view counts nodes serving of desired', async () => {
    check(succeededCluster, 'no cluster from the success case');
    const created = await unary(gateway.base, token, 'CreateClusterNodePool', { cluster_id: succeededCluster,
      nodepool_info: { name: 'ui-pool' }, scaling_group: { desired_size: 3 } });
    const pool = created.nodepool_id ?? created.nodepoolId;
    check(pool, `CreateClusterNodePool answered ${JSON.stringify(created)}`);
    const page = await openPage(`${gateway.base}/ui/?nodepool=${succeededCluster}/${pool}#token=${token}`);
    await waitForPhase(page, 'RUNNING', 15_000);
    const growing = await page.waitForFunction(() => {
      const note = document.querySelector('#progress-note');
      return !note.hidden && /^[0-2] of 3 nodes serving/.test(note.textContent) && note.textContent;
    }, null, { timeout: 10_000, polling: 100 }).then((h) => h.jsonValue());
    check(/node counts reported by the cloud/.test(growing), `the count does not say its source: ${growing}`);
    const count = (name) => page.locator(`#node-counts [data-count="${name}"] dd`).textContent();
    check(await count('desired') === '3', `desired is ${await count('desired')}`);
    if (SCREENSHOTS) {
      await page.waitForFunction(() => /^[12] of 3/.test(document.querySelector('#progress-note').textContent), null,
        { timeout: 10_000, polling: 100 });
      await sleep(500); // the bar's width transition
      await page.locator('body').screenshot({ path: path.join(ROOT, 'docs', 'nodepool-view.png') });
    }
    await waitForPhase(page, 'SUCCEEDED', 30_000);
    check(/^3 of 3 nodes serving/.test(await page.locator('#progress-note').textContent()), 'not 3 of 3 at the end');
    check(await count('serving') === '3', `serving is ${await count('serving')}`);
    check(await page.locator('#progress').getAttribute('aria-valuenow') === '100', 'the bar is not full');
    const conditions = await page.locator('#conditions tr').allTextContents();
    check(conditions.some((c) => c.startsWith('ReadyTrue')), `conditions: ${conditions}`);
    // The list shows the write on that cluster, and links to what it started.
    await page.goto(`${gateway.base}/ui/?cluster=${succeededCluster}&operation=CreateClusterNodePool`);
    // (The pool may be active before its task has ended.)
    await page.locator('#operation-rows tr[data-phase="SUCCEEDED"]').waitFor({ timeout: 15_000 });
    const rows = await waitForRows(page);
    check(rows.length === 1 && rows[0].op === 'CreateClusterNodePool', `rows: ${JSON.stringify(rows)}`);
    const href = await page.locator('#operation-rows a.row-link').getAttribute('href');
    check(/[?&](task|nodepool)=/.test(href || ''), `the row links to ${href}`);
    await page.close();
  });

  /** A wait's deep link. */
  const waitLink = (cluster, path, extra = '') => `${gateway.base}/ui/?wait=DescribeClusterDetail&request=${
    encodeURIComponent(JSON.stringify({ cluster_id: cluster }))}&path=${encodeURIComponent(path)}${extra}#token=${token}`;
  const outcomeOf = (page) => page.locator('#wait-outcome').getAttribute('data-outcome');
  async function waitForOutcome(page, outcome, timeout = 30_000) {
    await page.waitForFunction((o) => document.querySelector('#wait-outcome')?.dataset.outcome === o, outcome,
      { timeout, polling: 100 }).catch(async (e) => {
      throw new Error(`the wait is ${await outcomeOf(page)}, not ${outcome}: ${e.message.split('\n')[0]}`);
    });
  }

  await runCase('wait: the chooser builds a wait that reaches done as a new cluster runs; a timeout ends another', async () => {
    const { cluster } = await createCluster(gateway, token);
    waitCluster = cluster;
    // A wait whose timeout passes before the cluster runs (checked below).
    const early = await openPage(waitLink(cluster, 'state', '&done=running&timeout=2s'));
    // The chooser: "A value of any read" builds the deep link.
    const page = await openPage(`${gateway.base}/ui/?follow#token=${token}`);
    await page.locator('select[name=kind]').selectOption('wait');
    check(await page.locator('textarea[name=request]').isVisible(), 'the wait\'s fields are not shown');
    check(await page.locator('[data-label-for=id]').textContent() === 'Read operation', 'the id field is not the operation');
    await page.locator('input[name=id]').fill('DescribeClusterDetail');
    await page.locator('textarea[name=request]').fill(`{"cluster_id": "${cluster}"}`);
    await page.locator('input[name=path]').fill('state');
    await page.locator('input[name=done]').fill('running');
    await page.locator('input[name=failed]').fill('failed, delete_failed');
    await page.locator('#chooser-form button[type=submit]').click();
    await page.waitForURL((url) => url.searchParams.get('wait') === 'DescribeClusterDetail', { timeout: 10_000 });
    const q = new URL(page.url()).searchParams;
    check(JSON.parse(q.get('request')).cluster_id === cluster && q.get('path') === 'state'
      && q.getAll('done').join() === 'running' && q.getAll('failed').join() === 'failed,delete_failed',
    `the chooser built ${page.url()}`);
    await waitForOutcome(page, 'waiting', 10_000);
    // The early wait's timeout: its outcome, with the value it had.
    await waitForOutcome(early, 'timeout', 10_000);
    check(await early.locator('#phase').textContent() === 'TIMED OUT', `the badge says ${await early.locator('#phase').textContent()}`);
    const said = await early.locator('#wait-outcome').textContent();
    check(/within 2s; state was initial/.test(said), `the timeout says ${JSON.stringify(said)}`);
    check(await early.locator('#link-state').textContent() === 'timed out', 'the link state does not say timed out');
    await early.close();
    check(await page.locator('#target-id').textContent() === 'DescribeClusterDetail', 'the view does not name the operation');
    check(/Wait for state/.test(await page.locator('#target-kind').textContent()), 'the view does not name the path');
    const spec = await page.locator('#wait-spec').textContent();
    check(/done whenrunning/.test(spec) && /failed whenfailed, delete_failed/.test(spec), `the wait says ${spec}`);
    await waitForOutcome(page, 'done');
    await waitForPhase(page, 'SUCCEEDED', 5000);
    const values = await page.locator('#wait-values li code').allTextContents();
    check(values.length >= 2 && values[0] === 'initial' && values.at(-1) === 'running', `values read: ${values}`);
    check(await page.locator('#wait-values li.current .wait-mark').textContent() === 'done', 'the last value is not marked done');
    check(await page.locator('#progress').getAttribute('aria-valuenow') === '100', 'the bar is not full');
    check(/state is running/.test(await page.locator('#wait-outcome').textContent()), 'the outcome does not say the value');
    check(await page.locator('#notice-error').isHidden() && await page.locator('#notice-failed').isHidden(), 'a notice is shown');
    await page.close();
  });

  await runCase('wait: a bad path is invalid_argument naming the field; a failed value ends a wait', async () => {
    check(succeededCluster && failedCluster, 'no clusters from the first cases');
    const page = await openPage(waitLink(succeededCluster, 'stat', '&done=running'));
    await waitForOutcome(page, 'error', 10_000);
    const notice = await page.locator('#notice-error').textContent();
    check(/invalid_argument/.test(notice) && /path: .*no field `stat`/.test(notice), `the notice says ${JSON.stringify(notice)}`);
    check(await page.locator('#wait-outcome .wait-field code').textContent() === 'path', 'the outcome does not name the field');
    check(await page.locator('#phase').textContent() === 'ERROR', 'the badge does not say ERROR');
    // A value that means failure (the cluster whose creation failed).
    await page.goto(waitLink(failedCluster, 'state', '&done=running&failed=failed'));
    await waitForOutcome(page, 'failed', 10_000);
    const failed = await page.locator('#notice-failed').textContent();
    check(/A value that means failure/.test(failed) && /state is failed/.test(failed), `the notice says ${JSON.stringify(failed)}`);
    await waitForPhase(page, 'FAILED', 5000);
    await page.close();
  });

  await runCase('cluster operations: the cluster\'s view lists the writes on it, live, each row opening its watch', async () => {
    check(waitCluster, 'no cluster from the case "wait"');
    const page = await openPage(`${gateway.base}/ui/?cluster=${waitCluster}#token=${token}`);
    await waitForPhase(page, 'SUCCEEDED', 15_000);
    check(await page.locator('#cluster-ops-card').isVisible(), 'no operations panel');
    check(await page.locator('#operations').isHidden(), 'the operations list is shown');
    // Its creation, ended (the task may end just after the cluster runs).
    await page.waitForFunction(() => [...document.querySelectorAll('#cluster-ops-rows tr[data-phase="SUCCEEDED"] .row-link')]
      .some((a) => a.textContent === 'CreateCluster'), null, { timeout: 15_000, polling: 100 })
      .catch(async (e) => { throw new Error(`no CreateCluster row that succeeded: ${JSON.stringify(await waitForRows(page, '#cluster-ops-rows').catch(() => []))} (${e.message.split('\n')[0]})`); });
    const rows = await waitForRows(page, '#cluster-ops-rows');
    check(rows.every((r) => r.target.includes(waitCluster)), `a row on another cluster: ${JSON.stringify(rows)}`);
    checkOrder(rows);
    check(rows.length <= 50 && new Set(rows.map((r) => r.id)).size === rows.length, `${rows.length} rows, or one twice`);
    check(await page.locator('#cluster-ops-own-only').isHidden(), 'the own-only notice for a caller with the grant');
    const all = new URL(await page.locator('#cluster-ops-all').getAttribute('href'), gateway.base);
    check(all.pathname === '/ui/' && all.searchParams.get('cluster') === waitCluster
      && all.searchParams.get('state') === 'any', `"all operations" links to ${all}`);
    // Live: a new write on the cluster comes on top, in flight.
    const created = await unary(gateway.base, token, 'CreateClusterNodePool', { cluster_id: waitCluster,
      nodepool_info: { name: 'panel-pool' }, scaling_group: { desired_size: 1 } });
    const pool = created.nodepool_id ?? created.nodepoolId;
    check(pool, `CreateClusterNodePool answered ${JSON.stringify(created)}`);
    await page.waitForFunction((p) => document.querySelector('#cluster-ops-rows tr')?.querySelector('.op-target')
      .textContent.includes(p), pool, { timeout: 10_000, polling: 100 });
    const live = await waitForRows(page, '#cluster-ops-rows');
    check(live.some((r) => r.op === 'CreateClusterNodePool' && r.target.includes(pool))
      && live.some((r) => r.op === 'CreateCluster'), `after the write: ${JSON.stringify(live)}`);
    checkOrder(live);
    // A row opens its watch view: the creation's task.
    const link = page.locator('#cluster-ops-rows tr', { hasText: 'CreateCluster' })
      .filter({ hasNotText: 'NodePool' }).locator('a.row-link').first();
    const href = await link.getAttribute('href');
    check(/^\/ui\/\?task=/.test(href || ''), `the CreateCluster row links to ${href}`);
    await link.click();
    await page.waitForURL((url) => url.searchParams.has('task'), { timeout: 10_000 });
    await waitForPhase(page, 'SUCCEEDED', 15_000);
    await page.close();
  });

  await runCase('cluster events: the cluster\'s view shows its events live as a node pool is created, across a gateway restart, filtered by level', async () => {
    check(succeededCluster && failedCluster, 'no clusters from the first cases');
    const page = await openPage(`${gateway.base}/ui/?cluster=${succeededCluster}&heartbeat=5#token=${token}`,
      { allowNetworkErrors: true });
    await waitForPhase(page, 'SUCCEEDED', 15_000);
    const card = page.locator('#cluster-events-card');
    check(await card.isVisible(), 'no events panel');
    // The last day's events first: the cluster's creation among them.
    await page.waitForFunction(() => [...document.querySelectorAll('#cluster-events li')]
      .some((li) => li.textContent.includes('ClusterCreated') || li.textContent.includes('is running')), null,
    { timeout: 10_000, polling: 100 });
    const created = await unary(gateway.base, token, 'CreateClusterNodePool', { cluster_id: succeededCluster,
      nodepool_info: { name: 'events-pool' }, scaling_group: { desired_size: 1 } });
    const pool = created.nodepool_id ?? created.nodepoolId;
    check(pool, `CreateClusterNodePool answered ${JSON.stringify(created)}`);
    const rows = () => page.locator('#cluster-events li').evaluateAll((lis) => lis.map((li) => ({
      level: li.dataset.level, what: li.querySelector('.event-what').textContent,
      message: li.querySelector('.event-message').textContent, time: li.querySelector('time').dateTime,
    })));
    // Live: the task starting, then the pool created, each on top.
    await page.waitForFunction((p) => document.querySelector('#cluster-events li')?.textContent.includes(`node pool ${p} created`),
      pool, { timeout: 20_000, polling: 100 });
    const shown = await rows();
    const mine = shown.filter((r) => r.what.includes(pool) || r.message.includes(pool));
    check(mine.length >= 2 && mine[0].what.startsWith('nodepool_create'), `the pool's events: ${JSON.stringify(mine)}`);
    check(shown.every((r, i) => i === 0 || Date.parse(r.time) <= Date.parse(shown[i - 1].time)), 'not newest first');
    check(shown.length <= 200, `${shown.length} events in the DOM`);
    const ids = await page.locator('#cluster-events li').evaluateAll((lis) => lis.map((li) => li.dataset.id));
    check(new Set(ids).size === ids.length, 'an event is shown twice');
    check(Number(await page.locator('#cluster-event-count').textContent()) === shown.length, 'the count is not the events shown');
    // The gateway restarts: the panel says so, reconnects from its newest event, shows each once.
    await stop(gateway.proc);
    const notice = page.locator('#cluster-events-notice');
    try {
      await notice.waitFor({ state: 'visible', timeout: 10_000 });
      const text = await notice.textContent();
      check(/reconnecting in \d+ s/i.test(text), `the panel's notice says ${JSON.stringify(text)}`);
    } finally {
      gateway = await startGateway(config, port);
    }
    await notice.waitFor({ state: 'hidden', timeout: 20_000 });
    check((await rows()).length === shown.length, `after the restart: ${JSON.stringify(await rows())}`);
    // The level filter: without `info`, the pool's events leave the list, and the URL says so.
    await page.locator('#event-levels input[value=info]').uncheck();
    await page.waitForURL((url) => url.searchParams.get('levels') === 'warning,error', { timeout: 5000 });
    const filtered = await rows();
    check(filtered.every((r) => r.level !== 'info'), `info events remain: ${JSON.stringify(filtered)}`);
    await page.locator('#event-levels input[value=info]').check();
    check((await rows()).length === shown.length, 'the events did not come back');
    // An error, from the link: the cluster whose creation failed, errors only.
    await page.goto(`${gateway.base}/ui/?cluster=${failedCluster}&levels=error`);
    await waitForPhase(page, 'FAILED', 15_000);
    check(!(await page.locator('#event-levels input[value=info]').isChecked()), 'the filter of the link is not applied');
    await page.locator('#cluster-events li').first().waitFor({ timeout: 10_000 });
    const errors = await rows();
    check(errors.length === 1 && errors[0].level === 'error' && /ClusterCreateFailed/.test(errors[0].message),
      `errors: ${JSON.stringify(errors)}`);
    check(await page.locator('#cluster-events-notice').isHidden(), 'the panel shows a notice');
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

  await runCase('chooser: "Follow a task or cluster by id" opens the form, which navigates to the deep link', async () => {
    check(succeededTask, 'no task from the success case');
    const page = await openPage(`${gateway.base}/ui/#token=${token}`);
    await page.locator('#follow-link').click();
    await page.waitForURL((url) => url.searchParams.has('follow'), { timeout: 10_000 });
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
