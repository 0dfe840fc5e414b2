/*
 * ack-gateway progress page: the live list of operations from the journal
 * (ackgateway.v1.OperationsService), and the view that follows one ackgateway.v1.WatchService
 * stream.
 *
 * Structure, top to bottom:
 *   1. Settings  what to show, from the query string: a watch (?task=, ?cluster=, ..., and
 *                ?wait=, a WaitFor request in the URL), the chooser form (?follow, builds a
 *                watch's deep link), else the operations list with its filters (?cluster=,
 *                &caller=, &operation=, &state=).
 *   2. Token     a bearer token handed over as #token=… (kept in sessionStorage, removed from the
 *                URL) or typed into the token form when the gateway answers `unauthenticated`.
 *   3. Connect   a tiny client for the Connect protocol's server streaming with JSON: fetch, one
 *                request envelope, then response envelopes read from a ReadableStream.
 *   4. Session   one stream at a time: reconnects with backoff and jitter after a lost
 *                connection, aborts a stream that stays silent too long (heartbeat watchdog),
 *                and stops on the final outcome.
 *   5. View      the state the messages carry and how it is rendered (a wait: the values read
 *                as they changed, and its outcome). Server data only ever goes through
 *                textContent.
 *   6. Operations the list: one WatchOperations stream (reconnecting like the watch), the rows
 *                in-flight first, and the running tasks of at most MAX_FOLLOWED rows followed
 *                with WatchTask so their bars count the stages the cloud reports.
 *                The cluster view's panel of the writes on that cluster is a second such list
 *                (`clusterOps`: its own stream, at most CLUSTER_OPS_SHOWN rows), rendered by the
 *                same functions.
 *   7. Events    the cluster view's panel of the cluster's events: its own WatchClusterEvents
 *                stream (reconnecting from the newest event it has), newest first, filtered by
 *                level in the page, at most EVENTS_SHOWN in the DOM.
 */

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// 1. Settings
// ---------------------------------------------------------------------------------------------

const query = new URLSearchParams(location.search);

/** Filters of the operations list that are no watch's parameter. */
const LIST_ONLY_KEYS = ['caller', 'operation', 'state'];

/** A value of a `done=`/`failed=` parameter: JSON when it reads as JSON (`1`, `true`, `null`,
 *  `"1"`), else the text itself (`running`). */
function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `90`, `90s`, `500ms`, `10m`, `1h` in milliseconds; NaN when it is none of those. */
function parseDuration(text) {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] || 's'];
}

/**
 * `?wait=Operation&request={…}&path=…&done=v&failed=v&gone=done&match=all&timeout=10m&service=cs`
 * as a WaitFor request. `problem` is what the page refuses before asking (request not JSON, a
 * timeout it cannot read); everything else the gateway checks, naming the field.
 */
function waitFromQuery(q, get) {
  const spec = { operation: get('wait'), path: get('path'), service: get('service'), requestText: get('request'),
                 done: q.getAll('done').map(parseValue), failed: q.getAll('failed').map(parseValue),
                 gone: get('gone') === 'done', all: get('match') === 'all', timeoutMs: 0, problem: null };
  const request = { operation: spec.operation, path: spec.path };
  if (spec.service) request.service = spec.service;
  if (spec.requestText) {
    try {
      request.request = JSON.parse(spec.requestText);
      if (!request.request || typeof request.request !== 'object' || Array.isArray(request.request)) {
        throw new Error('not a JSON object');
      }
    } catch (e) {
      spec.problem = { field: 'request', message: `request: ${e.message}` };
    }
  }
  if (spec.done.length) request.doneValues = spec.done;
  if (spec.failed.length) request.failedValues = spec.failed;
  if (spec.gone) request.doneWhenGone = true;
  if (spec.all) request.match = 'WAIT_FOR_MATCH_ALL';
  if (get('timeout')) {
    spec.timeoutMs = parseDuration(get('timeout'));
    if (!(spec.timeoutMs > 0)) spec.problem = { field: 'timeout', message: 'timeout: a duration such as 90s, 10m or 1h' };
  }
  return { method: 'WaitFor', kind: 'Wait for a value', id: `${spec.operation} ${spec.path}`.trim(), request, wait: spec };
}

/** The watch the query asks for, or null when it names none. */
function watchFromQuery(q) {
  const get = (name) => (q.get(name) || '').trim();
  if (get('wait')) return waitFromQuery(q, get);
  if (get('upgrade')) {
    const request = { clusterId: get('upgrade') };
    if (get('task')) request.taskId = get('task');
    return { method: 'WatchClusterUpgrade', kind: 'Cluster upgrade', id: get('upgrade'), request };
  }
  if (get('addons')) {
    const addons = get('names').split(',').map((s) => s.trim()).filter(Boolean);
    return { method: 'WatchAddonUpgrade', kind: 'Add-on upgrade', id: get('addons'),
             request: { clusterId: get('addons'), addons } };
  }
  // With a filter of the operations list beside it (`&caller=`, `&operation=`, `&state=`, e.g.
  // `&state=any`), `cluster` filters the list instead.
  if (get('cluster') && !LIST_ONLY_KEYS.some((key) => q.has(key))) {
    const target = get('target') || 'running';
    return { method: 'WatchCluster', kind: `Cluster → ${target}`, id: get('cluster'),
             request: { clusterId: get('cluster'), targetStates: [target] } };
  }
  if (get('nodepool')) {
    const [clusterId, nodepoolId = ''] = get('nodepool').split('/', 2);
    const request = { clusterId, nodepoolId };
    if (get('target')) request.targetStates = [get('target')];
    return { method: 'WatchNodePool', kind: `Node pool → ${get('target') || 'active'}`,
             id: get('nodepool'), request };
  }
  if (get('task')) {
    return { method: 'WatchTask', kind: 'Task', id: get('task'), request: { taskId: get('task') } };
  }
  return null;
}

const watch = watchFromQuery(query);
/** `watch`, `chooser` or `operations`. */
const route = watch ? 'watch' : query.has('follow') ? 'chooser' : 'operations';
const profile = (query.get('profile') || '').trim();
const region = (query.get('region') || '').trim();
const heartbeatSeconds = Number(query.get('heartbeat')) > 0 ? Number(query.get('heartbeat')) : 15;

function setUpChooser() {
  const form = $('chooser-form');
  const f = form.elements;
  const idLabels = { task: 'Task id', cluster: 'Cluster id', upgrade: 'Cluster id', addons: 'Cluster id',
                    nodepool: 'Cluster id / node pool id', wait: 'Read operation' };
  const placeholders = { task: 'T-…', cluster: 'c…', upgrade: 'c…', addons: 'c…', nodepool: 'c…/np…',
                         wait: 'DescribeClusterDetail' };
  const sync = () => {
    const kind = f.kind.value;
    form.querySelector('[data-label-for="id"]').textContent = idLabels[kind];
    f.id.placeholder = placeholders[kind];
    for (const el of form.querySelectorAll('[data-only]')) el.hidden = el.dataset.only !== kind;
    f.names.required = kind === 'addons';
    f.path.required = kind === 'wait';
    f.id.pattern = kind === 'nodepool' ? '[^/]+/[^/]+' : '.*';
    if (kind === 'wait') f.id.setAttribute('list', 'read-operations');
    else f.id.removeAttribute('list');
  };
  f.kind.addEventListener('change', sync);
  const kindInQuery = query.get('follow');
  if (kindInQuery && [...f.kind.options].some((o) => o.value === kindInQuery)) f.kind.value = kindInQuery;
  sync();
  for (const input of [f.request, f.done, f.timeout]) input.addEventListener('input', () => input.setCustomValidity(''));
  f.gone.addEventListener('change', () => f.done.setCustomValidity(''));
  /** Splits "a, b" into values; a value with a comma can be written as JSON in the URL instead. */
  const values = (text) => text.split(',').map((v) => v.trim()).filter(Boolean);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const kind = f.kind.value;
    const q = new URLSearchParams();
    q.set(kind, f.id.value.trim());
    if (kind === 'cluster' && f.target.value !== 'running') q.set('target', f.target.value);
    if (kind === 'nodepool' && f.poolTarget.value !== 'active') q.set('target', f.poolTarget.value);
    if (kind === 'upgrade' && f.task.value.trim()) q.set('task', f.task.value.trim());
    if (kind === 'addons') q.set('names', values(f.names.value).join(','));
    if (kind === 'wait') {
      const text = f.request.value.trim();
      if (text) {
        try {
          q.set('request', JSON.stringify(JSON.parse(text)));
        } catch (err) {
          f.request.setCustomValidity(`not JSON: ${err.message}`);
          return f.request.reportValidity();
        }
      }
      q.set('path', f.path.value.trim());
      if (!values(f.done.value).length && !f.gone.checked) {
        f.done.setCustomValidity('name a value that means done, or check "gone means done"');
        return f.done.reportValidity();
      }
      for (const v of values(f.done.value)) q.append('done', v);
      for (const v of values(f.failed.value)) q.append('failed', v);
      if (f.gone.checked) q.set('gone', 'done');
      if (f.all.checked) q.set('match', 'all');
      if (f.timeout.value.trim()) {
        if (!(parseDuration(f.timeout.value.trim()) > 0)) {
          f.timeout.setCustomValidity('a duration such as 90s, 10m or 1h');
          return f.timeout.reportValidity();
        }
        q.set('timeout', f.timeout.value.trim());
      }
    }
    if (f.profile.value.trim()) q.set('profile', f.profile.value.trim());
    if (f.region.value.trim()) q.set('region', f.region.value.trim());
    location.assign(`${location.pathname}?${q}`);
  });
  $('chooser').hidden = false;
  document.title = 'Follow by id — ack-gateway';
}

// ---------------------------------------------------------------------------------------------
// 2. Token
// ---------------------------------------------------------------------------------------------

const TOKEN_KEY = 'ack-gateway.ui.token';

/** Moves a #token=… fragment into sessionStorage and out of the URL. */
function adoptFragmentToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  if (token === null) return;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  history.replaceState(history.state, '', location.pathname + location.search);
}

const storedToken = () => sessionStorage.getItem(TOKEN_KEY) || '';

// ---------------------------------------------------------------------------------------------
// 3. Connect: server streaming, JSON envelopes (flags byte, 4-byte big-endian length, payload)
// ---------------------------------------------------------------------------------------------

const END_STREAM = 0x02;
const COMPRESSED = 0x01;

/** The Connect code of an HTTP status without a Connect error body. */
function codeOfHttpStatus(status) {
  const codes = { 400: 'internal', 401: 'unauthenticated', 403: 'permission_denied',
                  404: 'unimplemented', 429: 'unavailable', 502: 'unavailable',
                  503: 'unavailable', 504: 'unavailable' };
  return codes[status] || 'unknown';
}

/**
 * Calls a server-streaming procedure. `onMessage` gets each message (`onOpen`, if given, is
 * called once the answer's head says the stream is open); resolves with the end-of-stream
 * `{error}` (error undefined on success), or `{error}` from a non-200 answer or an unreadable
 * message. Rejects when the network fails, the call is aborted, or the stream is cut short.
 */
async function connectStream(path, request, headers, signal, onMessage, onOpen) {
  const payload = new TextEncoder().encode(JSON.stringify(request));
  const body = new Uint8Array(5 + payload.length);
  new DataView(body.buffer).setUint32(1, payload.length);
  body.set(payload, 5);
  const res = await fetch(path, {
    method: 'POST', body, signal, cache: 'no-store',
    headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1', ...headers },
  });
  if (res.status !== 200) {
    const error = { code: codeOfHttpStatus(res.status), message: `HTTP ${res.status}` };
    try {
      const json = await res.json();
      if (json && typeof json.code === 'string') Object.assign(error, json);
    } catch { /* not a Connect error body */ }
    return { error };
  }
  if (!(res.headers.get('content-type') || '').startsWith('application/connect+json')) {
    return { error: { code: 'internal', message: `unexpected content-type ${res.headers.get('content-type')}` } };
  }
  if (onOpen) onOpen();
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error('the stream ended without its end-of-stream message');
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    while (buffer.length >= 5) {
      const flags = buffer[0];
      const length = new DataView(buffer.buffer, buffer.byteOffset, 5).getUint32(1);
      if (buffer.length < 5 + length) break;
      let json;
      try {
        if (flags & COMPRESSED) throw new Error('a compressed message was not asked for');
        json = JSON.parse(decoder.decode(buffer.subarray(5, 5 + length)));
      } catch (e) {
        reader.cancel().catch(() => {});
        return { error: { code: 'internal', message: `unreadable message: ${e.message}` } };
      }
      buffer = buffer.subarray(5 + length);
      if (flags & END_STREAM) {
        reader.cancel().catch(() => {});
        return { error: json.error };
      }
      onMessage(json);
    }
  }
}

/** Calls a unary procedure with JSON; resolves with `{message}` or `{error}`. */
async function connectUnary(path, request, headers, signal) {
  const res = await fetch(path, {
    method: 'POST', body: JSON.stringify(request), signal, cache: 'no-store',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', ...headers },
  });
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (res.status === 200 && json) return { message: json };
  const error = { code: codeOfHttpStatus(res.status), message: `HTTP ${res.status}` };
  if (json && typeof json.code === 'string') Object.assign(error, json);
  return { error };
}

// ---------------------------------------------------------------------------------------------
// 4. Session: one stream at a time, reconnecting until the work has a final outcome
// ---------------------------------------------------------------------------------------------

const RETRY_FIRST = 3000;
const RETRY_FACTOR = 1.5;
const RETRY_MAX = 30000;
const RETRY_JITTER = 0.2;
const RECONNECT_CODES = new Set(['unavailable', 'deadline_exceeded']);

/** The wait before reconnecting after `failures` consecutive failures: backoff with jitter. */
function retryDelay(failures) {
  const base = Math.min(RETRY_MAX, RETRY_FIRST * RETRY_FACTOR ** failures);
  return base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * Math.random());
}

/** A connection notice's text: when the next attempt is, and why. */
function reconnectText(reconnectAt, reason) {
  return reconnectAt
    ? `Reconnecting in ${Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000))} s (${reason}).`
    : `Reconnecting now (${reason}).`;
}

const session = {
  controller: null,   // the AbortController of the current stream
  failures: 0,        // consecutive reconnects without a message in between
  retryTimer: 0,
  reconnectAt: 0,     // when the scheduled reconnect runs (ms), 0 when none
  lostReason: '',
  watchdog: 0,
};

function requestHeaders(forProfile = profile, forRegion = region) {
  const headers = {};
  const token = storedToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (forProfile) headers['x-ack-profile'] = forProfile;
  if (forRegion) headers['x-ack-region'] = forRegion;
  return headers;
}

function armWatchdog(controller) {
  clearTimeout(session.watchdog);
  const seconds = 3 * heartbeatSeconds;
  session.watchdog = setTimeout(() => controller.abort(new Error(`no message for ${seconds} s`)), seconds * 1000);
}

async function connect() {
  clearTimeout(session.retryTimer);
  session.reconnectAt = 0;
  if (session.controller) {
    const old = session.controller;
    session.controller = null; // its outcome is ignored from now on
    old.abort(new Error('replaced'));
  }
  const controller = new AbortController();
  session.controller = controller;
  setLinkState(session.failures ? 'reconnecting' : 'connecting');
  renderConnectionNotice();
  armWatchdog(controller);
  let first = true;
  let outcome;
  try {
    outcome = await connectStream(`/ackgateway.v1.WatchService/${watch.method}`, watchRequest(),
      requestHeaders(), controller.signal, (message) => {
        if (session.controller !== controller) return;
        armWatchdog(controller);
        session.failures = 0;
        if (first) {
          first = false;
          session.lostReason = '';
          setLinkState('live');
          renderConnectionNotice();
        }
        onMessage(message);
      });
  } catch (e) {
    const reason = controller.signal.aborted && controller.signal.reason?.message;
    outcome = { lost: reason || e.message || 'network error' };
  }
  if (session.controller !== controller) return; // replaced by "Retry now"
  clearTimeout(session.watchdog);
  session.controller = null;
  onStreamEnd(outcome);
}

/** The request of the next stream: a wait asks for what is left of its timeout. */
function watchRequest() {
  if (!watch.wait?.timeoutMs) return watch.request;
  const left = Math.max(0, view.openedAt + watch.wait.timeoutMs - Date.now());
  return { ...watch.request, timeout: `${(left / 1000).toFixed(3)}s` };
}

/** Whether a wait's own timeout has passed (then DEADLINE_EXCEEDED is its outcome). */
const waitTimedOut = () => Boolean(watch.wait?.timeoutMs) && Date.now() >= view.openedAt + watch.wait.timeoutMs;

function onStreamEnd({ lost, error }) {
  if (error?.code === 'deadline_exceeded' && waitTimedOut()) {
    view.finished = true;
    view.outcome = 'timeout';
    render();
    return finish('timed out');
  }
  if (lost !== undefined || (error && RECONNECT_CODES.has(error.code))) {
    if (view.finished) return finish(view.failed ? 'failed' : 'done');
    return scheduleReconnect(lost !== undefined ? lost : `${error.code}: ${error.message || ''}`);
  }
  if (!error) {
    view.finished = true;
    render();
    return finish(view.failed ? 'failed' : 'done');
  }
  session.lostReason = '';
  renderConnectionNotice();
  if (error.code === 'unauthenticated') {
    sessionStorage.removeItem(TOKEN_KEY);
    setLinkState('needs token');
    $('token-form').querySelector('.notice-text').textContent = error.message || '';
    $('token-form').hidden = false;
    $('token-form').elements.token.focus();
    return;
  }
  view.finished = true;
  if (error.code === 'aborted') {
    view.failed = true;
    view.endError = error;
  } else {
    view.refusal = error;
    view.outcome = 'error';
    showNotice('notice-error', error.code, error.message || '');
  }
  render();
  finish(error.code === 'aborted' ? 'failed' : 'error');
}

function scheduleReconnect(reason) {
  if (waitTimedOut()) return onStreamEnd({ error: { code: 'deadline_exceeded' } });
  const delay = retryDelay(session.failures);
  session.failures += 1;
  session.lostReason = reason;
  session.reconnectAt = Date.now() + delay;
  session.retryTimer = setTimeout(connect, delay);
  setLinkState('disconnected');
  view.pollError = null; // unknown until the next stream says
  render();
}

function finish(linkState) {
  session.reconnectAt = 0;
  session.lostReason = '';
  setLinkState(linkState);
  renderConnectionNotice();
  view.endedAt = view.endedAt || Date.now();
  tick();
}

function renderConnectionNotice() {
  const notice = $('notice-connection');
  notice.hidden = !session.lostReason;
  if (notice.hidden) return;
  notice.querySelector('.notice-text').textContent = reconnectText(session.reconnectAt, session.lostReason);
}

function setLinkState(text) {
  const el = $('link-state');
  el.hidden = false;
  el.textContent = text;
  el.dataset.state = text;
}

// ---------------------------------------------------------------------------------------------
// 5. View: the state carried by the messages, and its rendering
// ---------------------------------------------------------------------------------------------

const PHASES = ['UNSPECIFIED', 'PENDING', 'RUNNING', 'PAUSED', 'SUCCEEDED', 'FAILED', 'CANCELED'];
const KINDS = ['UNSPECIFIED', 'INITIAL', 'CHANGE', 'HEARTBEAT', 'POLL_ERROR', 'FINAL'];

const view = {
  status: null,       // the latest WatchStatus
  events: [],         // every TaskEvent so far
  shownEvents: 0,     // how many of them are in the DOM
  pollError: null,    // set while the latest message is a POLL_ERROR
  finished: false,    // a FINAL message or a final end of stream was seen
  failed: false,
  endError: null,     // the end-of-stream error of failed work
  refusal: null,      // any other end-of-stream error
  outcome: '',        // a wait's end when it is no phase: `timeout` or `error`
  values: [],         // a wait's last MAX_VALUES values as they changed: { text, json, gone, phase, at }
  valuesSeen: 0,      // how many it has seen
  openedAt: Date.now(),
  endedAt: 0,
};

/** Phases after which nothing changes: a FINAL message in another one (the gateway's maximum
 *  watch duration passed) is followed by a reconnect, not an outcome. */
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);
/** Values of a wait's history kept. */
const MAX_VALUES = 12;

const phaseName = (p) =>
  (typeof p === 'number' ? PHASES[p] : String(p || 'UNSPECIFIED').replace(/^PHASE_/, ''));
const kindName = (k) =>
  (typeof k === 'number' ? KINDS[k] : String(k || 'UNSPECIFIED').replace(/^WATCH_EVENT_KIND_/, ''));

function onMessage(message) {
  const kind = kindName(message.kind);
  if (kind === 'INITIAL') {
    view.events = [];
    view.shownEvents = 0;
    $('events').replaceChildren();
  }
  view.events.push(...(message.newEvents || []));
  if (message.status) view.status = message.status;
  view.pollError = kind === 'POLL_ERROR' ? message.pollError || {} : null;
  const phase = phaseName(view.status?.phase);
  view.failed = phase === 'FAILED' || phase === 'CANCELED';
  if (watch.wait && message.status) noteValue(message);
  if (kind === 'FINAL' && TERMINAL.has(phase)) {
    view.finished = true;
    view.endedAt = Date.now();
  }
  render();
}

function showNotice(id, code, text) {
  const el = $(id);
  el.querySelector('.notice-code').textContent = code || '';
  el.querySelector('.notice-code').hidden = !code;
  el.querySelector('.notice-text').textContent = text;
  el.hidden = false;
}

function render() {
  const status = view.status || {};
  const phase = view.status ? phaseName(status.phase) : 'CONNECTING';
  // The badge: the phase, unless the stream ended without one (a refusal, a wait's timeout).
  const badge = { error: 'ERROR', timeout: 'TIMED OUT' }[view.outcome] || phase;
  $('phase').textContent = badge;
  $('phase').dataset.phase = badge;
  document.title = `${badge} · ${watch.id} — ack-gateway`;

  const bar = $('progress');
  const stages = stageCount(status);
  const counting = stages && (phase === 'RUNNING' || phase === 'PAUSED');
  let percent = phase === 'SUCCEEDED' ? 100 : status.progressPercent;
  if (typeof percent !== 'number' && counting) percent = stagePercent(stages);
  bar.dataset.phase = phase;
  if (typeof percent === 'number') {
    bar.setAttribute('aria-valuenow', String(percent));
    bar.classList.remove('indeterminate');
    bar.firstElementChild.style.width = `${percent}%`;
  } else {
    bar.removeAttribute('aria-valuenow');
    bar.classList.toggle('indeterminate', !view.finished && phase !== 'PAUSED');
    bar.firstElementChild.style.width = '';
  }
  if (stages) bar.setAttribute('aria-valuetext', stageText(stages));
  else bar.removeAttribute('aria-valuetext');
  const note = $('progress-note');
  const nodes = status.nodeCounts;
  let message = status.message && status.message !== status.stage ? status.message : '';
  note.hidden = !stages && !nodes;
  if (stages) note.replaceChildren(el('strong', stageText(stages)), ' (', stageSource(), ')');
  if (nodes) {
    // The gateway's message starts with the same count ("2 of 3 nodes serving, 1 joining").
    const rest = message.startsWith(nodesText(nodes)) ? message.slice(nodesText(nodes).length) : '';
    if (message.startsWith(nodesText(nodes))) message = '';
    const source = el('span', 'node counts reported by the cloud', 'source');
    source.title = NODES_SOURCE_TITLE;
    note.replaceChildren(el('strong', nodesText(nodes)), rest, ' (', source, ')');
    bar.setAttribute('aria-valuetext', nodesText(nodes));
  }

  $('stage').textContent = status.stage || '';
  $('message').textContent = message;
  renderFacts(status);
  renderStages(status.stages || []);
  renderEvents();
  renderAddons(status.addons || []);
  renderNodePool(status);
  if (watch.wait) renderWait(status, phase);

  if (view.failed || view.endError) {
    const error = status.error || {};
    const reason = view.endError?.details?.find((d) => d.debug?.reason)?.debug.reason;
    const code = error.code || reason || view.endError?.code || status.state || phase;
    const text = error.message || view.endError?.message || status.message || '';
    $('notice-failed').querySelector('.notice-title').textContent = watch.wait ? 'A value that means failure'
      : phase === 'CANCELED' ? 'The work was canceled' : 'The work failed';
    showNotice('notice-failed', code, text);
  }

  const poll = view.pollError;
  $('notice-poll').hidden = !poll;
  if (poll) {
    const retryIn = parseFloat(poll.retryIn || '0');
    showNotice('notice-poll', poll.code || 'UNKNOWN',
      `${poll.message || ''} (attempt ${poll.attempt || 1}); retrying in ${formatSeconds(retryIn)} s.`);
  }
  tick();
}

function renderFacts(status) {
  const facts = [];
  if (status.state && !watch.wait) facts.push(['upstream state', status.state]);
  // A wait's value and path are in its own card.
  const attributes = watch.wait ? [] : Object.entries(status.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  for (const [key, value] of attributes) {
    const time = key === 'created' ? Date.parse(value) : NaN;
    facts.push([key.replace(/_/g, ' '), Number.isNaN(time) ? value : new Date(time).toLocaleString()]);
  }
  if (profile) facts.push(['profile', profile]);
  if (region) facts.push(['region', region]);
  $('facts').replaceChildren(...facts.map(([k, v]) => {
    const item = el('div');
    item.append(el('dt', k), el('dd', v));
    return item;
  }));
  $('facts').hidden = facts.length === 0;
}

function renderStages(stages) {
  const items = stages.map((stage, i) => {
    const li = el('li', '', 'stage-row');
    li.dataset.state = stage.state || '';
    if (i === stages.length - 1 && !view.finished) li.classList.add('current');
    li.append(el('span', '', 'dot'), el('span', stage.name || '(unnamed)', 'stage-name'),
              el('span', stage.state || '', 'stage-state'), el('span', '', 'stage-duration'));
    li.dataset.start = stage.startTime || '';
    li.dataset.end = stage.endTime || '';
    return li;
  });
  $('stages').replaceChildren(...items);
  $('stages-empty').hidden = items.length > 0;
}

function renderEvents() {
  // A cluster's own watch has no events: its view shows the cluster's events panel instead.
  $('events-card').hidden = watch.method === 'WatchCluster' && view.events.length === 0;
  $('watch-columns').classList.toggle('single', $('events-card').hidden);
  const list = $('events');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  for (const event of view.events.slice(view.shownEvents)) {
    const li = el('li', '', 'event');
    li.dataset.level = (event.level || '').toLowerCase();
    const time = el('time', formatClock(event.timestamp), 'event-time');
    if (event.timestamp) time.dateTime = event.timestamp;
    li.title = [event.timestamp, event.source, event.action].filter(Boolean).join(' · ');
    li.append(time, el('span', event.reason || event.level || '', 'event-reason'),
              el('span', event.message || '', 'event-message'));
    list.append(li);
  }
  view.shownEvents = view.events.length;
  if (atBottom) list.scrollTop = list.scrollHeight;
  $('events-empty').hidden = view.events.length > 0;
  $('event-count').textContent = view.events.length ? String(view.events.length) : '';
}

function renderAddons(addons) {
  $('addons-card').hidden = addons.length === 0 && watch.method !== 'WatchAddonUpgrade';
  $('addons').replaceChildren(...addons.map((a) => {
    const tr = el('tr');
    const phase = phaseName(a.phase);
    const badge = el('span', phase, 'badge small');
    badge.dataset.phase = phase;
    const versions = a.targetVersion && a.targetVersion !== a.version
      ? `${a.version || '?'} → ${a.targetVersion}` : a.version || a.targetVersion || '';
    tr.append(el('td', a.name || ''), el('td'), el('td', versions), el('td', a.message || a.state || ''));
    tr.children[1].append(badge);
    return tr;
  }));
}

const NODES_SOURCE_TITLE = 'Serving nodes out of the desired size, as DescribeClusterNodePoolDetail reports '
  + 'them (status.serving_nodes, scaling_group.desired_size). While the pool shrinks, the bar counts '
  + 'the nodes released out of those leaving.';
const num = (n) => Number(n || 0); // int64 arrives as a string in JSON
const nodesText = (n) => `${num(n.serving)} of ${num(n.desired)} nodes serving`;

function renderNodePool(status) {
  $('nodepool-card').hidden = watch.method !== 'WatchNodePool';
  if (watch.method !== 'WatchNodePool') return;
  const n = status.nodeCounts;
  const counts = n ? [['desired', n.desired], ['serving', n.serving], ['total', n.total],
    ['healthy', n.healthy], ['joining', n.initial], ['removing', n.removing], ['failed', n.failed],
    ['offline', n.offline]] : [];
  $('node-counts').replaceChildren(...counts.map(([k, v]) => {
    const item = el('div');
    item.dataset.count = k;
    if (k === 'failed' && num(v) > 0) item.classList.add('bad');
    item.append(el('dt', k), el('dd', String(num(v))));
    return item;
  }));
  const conditions = status.conditions || [];
  $('conditions-table').hidden = conditions.length === 0;
  $('conditions').replaceChildren(...conditions.map((c) => {
    const tr = el('tr');
    tr.dataset.status = (c.status || '').toLowerCase();
    tr.append(el('td', c.type || ''), el('td', c.status || ''), el('td', c.reason || ''),
              el('td', c.message || ''), el('td', formatClock(c.lastTransitionTime)));
    tr.lastElementChild.title = c.lastTransitionTime || '';
    return tr;
  }));
}

// A wait (`?wait=`): what it waits for, the values seen as they changed, and how it ended.

/** A value as the gateway shows it (`status.state`): a string as itself, anything else as JSON. */
const shownValue = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
/** The read answered NOT_FOUND and that means done: `state` is `gone`, with no value. */
const isGone = (status) => status.state === 'gone' && status.attributes?.value === undefined;

/** Adds the message's value to the history when it differs from the last one. */
function noteValue(message) {
  const status = message.status;
  const phase = phaseName(status.phase);
  if (phase === 'PENDING' || phase === 'UNSPECIFIED') return; // nothing read (yet)
  const gone = isGone(status);
  const json = gone ? '' : status.attributes?.value ?? JSON.stringify(status.state ?? null);
  const last = view.values.at(-1);
  if (last && last.json === json && last.gone === gone) {
    last.phase = phase;
    return;
  }
  view.valuesSeen += 1;
  view.values.push({ json, gone, phase, text: gone ? 'gone (NOT_FOUND)' : status.state ?? '',
                     at: message.observedAt || new Date().toISOString() });
  if (view.values.length > MAX_VALUES) view.values.shift();
}

/** The field a refusal names (`google.rpc.BadRequest`), if any. */
function refusedField(error) {
  for (const d of error?.details || []) {
    const field = d.debug?.fieldViolations?.[0]?.field;
    if (field) return field;
  }
  return /^([a-z_]+): /.exec(error?.message || '')?.[1] || '';
}

function setUpWait() {
  const w = watch.wait;
  $('wait-card').hidden = false;
  $('watch-columns').hidden = true; // a wait has no stages and no events
  $('target-id').textContent = w.operation;
  $('target-kind').textContent = `Wait for ${w.path || '(no path)'} in`;
  const list = (values) => values.map(shownValue).join(', ');
  const spec = [
    ['operation', w.service ? `${w.operation} (${w.service})` : w.operation],
    ['request', w.requestText ? JSON.stringify(parseValue(w.requestText)) : '{}'],
    ['path', w.path + (w.path.includes('[*]') ? (w.all ? ' (every element)' : ' (any element)') : '')],
    ['done when', [list(w.done), w.gone && 'gone (NOT_FOUND)'].filter(Boolean).join(', or ') || '—'],
    ['failed when', list(w.failed) || '—'],
    ['timeout', w.timeoutMs ? formatDuration(w.timeoutMs) : 'none'],
  ];
  $('wait-spec').replaceChildren(...spec.map(([k, v]) => {
    const item = el('div');
    item.dataset.key = k.replace(/ /g, '-');
    item.append(el('dt', k), el('dd', v));
    return item;
  }));
}

function renderWait(status, phase) {
  const w = watch.wait;
  const current = view.values.at(-1);
  const now = current ? current.text : 'not read yet';
  let outcome = 'waiting';
  let text = `${w.path} is ${now}`;
  if (view.outcome === 'error') {
    outcome = 'error';
    text = view.refusal.code === 'not_found' && view.values.length
      ? `${w.operation} answered NOT_FOUND (gone), which does not mean done here`
      : `the gateway ${view.values.length ? 'ended' : 'refused'} the wait: ${view.refusal.code}`;
  } else if (view.outcome === 'timeout') {
    outcome = 'timeout';
    text = `no done value within ${formatDuration(w.timeoutMs)}; ${w.path} was ${now}`;
  } else if (phase === 'SUCCEEDED') {
    outcome = current?.gone ? 'gone' : 'done';
    text = current?.gone ? `${w.operation} answered NOT_FOUND, which means done` : `${w.path} is ${now}`;
  } else if (phase === 'FAILED') {
    outcome = 'failed';
    text = `${w.path} is ${now}, a value that means failure`;
  } else if (!view.status) {
    outcome = 'connecting';
    text = 'opening the wait';
  }
  const box = $('wait-outcome');
  box.dataset.outcome = outcome;
  box.querySelector('.wait-word').textContent = outcome;
  box.querySelector('.wait-text').textContent = text;
  const field = outcome === 'error' ? refusedField(view.refusal) : '';
  const fieldEl = box.querySelector('.wait-field');
  fieldEl.hidden = !field;
  fieldEl.replaceChildren('field ', el('code', field));

  $('wait-values').replaceChildren(...view.values.map((v, i) => {
    const li = el('li', '', 'wait-value');
    li.dataset.phase = v.phase;
    if (i === view.values.length - 1) li.classList.add('current');
    const time = el('time', formatClock(v.at), 'event-time');
    time.dateTime = v.at;
    const code = el('code', v.text);
    code.title = v.gone ? 'the read answered NOT_FOUND' : `JSON: ${v.json}`;
    const mark = { SUCCEEDED: 'done', FAILED: 'failed' }[v.phase] || '';
    li.append(time, code, el('span', mark, 'wait-mark'));
    return li;
  }));
  $('wait-values-empty').hidden = view.values.length > 0;
  const seen = view.valuesSeen;
  $('wait-count').textContent = seen > view.values.length ? `last ${view.values.length} of ${seen}` : seen ? String(seen) : '';
}

/** Once a second (and after every render): elapsed time, running stage, reconnect countdown. */
function tick() {
  if (!watch) return listTick();
  const status = view.status || {};
  const stages = status.stages || [];
  // The work's own start when the upstream tells it, else when this page started watching.
  const known = Date.parse(status.attributes?.created || '') || Date.parse(stages[0]?.startTime || '');
  let end = Date.now();
  if (view.finished) end = Date.parse(stages.at(-1)?.endTime || '') || view.endedAt || end;
  $('elapsed-label').textContent = known ? 'elapsed' : 'watched for';
  $('elapsed').textContent = formatDuration(end - (known || view.openedAt));
  for (const li of $('stages').children) {
    const s = Date.parse(li.dataset.start);
    const e = Date.parse(li.dataset.end) || (view.finished ? NaN : Date.now());
    li.querySelector('.stage-duration').textContent = s && e ? formatDuration(e - s) : '';
  }
  renderConnectionNotice();
  if (clusterEvents.lostReason) renderEventsNotice(); // its countdown
  if (clusterOps.filter.cluster) listTick(clusterOps); // the panel's times and countdown
}

function el(tag, text = '', className = '') {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function formatDuration(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

const formatSeconds = (s) => (s < 10 ? s.toFixed(1).replace(/\.0$/, '') : String(Math.round(s)));

function formatClock(timestamp) {
  const t = Date.parse(timestamp || '');
  return Number.isNaN(t) ? '' : new Date(t).toLocaleTimeString([], { hour12: false });
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
function formatAgo(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

const STAGE_DONE = /^(success|succeeded|successful|finished|done|completed?|skipped)$/i;
const STAGE_SOURCE_TITLE = 'Counted from the stages the cloud lists for the task (DescribeTaskInfo). '
  + 'The cloud may list a stage only once it starts, so the total can grow.';

/** Stages done of those the cloud listed, for a task that lists any; else null. */
function stageCount(status) {
  const stages = status?.stages || [];
  if (status?.targetKind !== 'task' || stages.length === 0) return null;
  return { done: stages.filter((s) => STAGE_DONE.test(s.state || '')).length, total: stages.length };
}

const stagePercent = ({ done, total }) => Math.round((done * 100) / total);
const stageText = ({ done, total }) => `${done} of ${total} stage${total === 1 ? '' : 's'}`;

/** The small "stages reported by the cloud" hint that says where a count comes from. */
function stageSource() {
  const source = el('span', 'stages reported by the cloud', 'source');
  source.title = STAGE_SOURCE_TITLE;
  return source;
}

// ---------------------------------------------------------------------------------------------
// 6. Operations: the journal, live
// ---------------------------------------------------------------------------------------------

const OPERATIONS = '/ackgateway.v1.OperationsService';
const OP_PHASES = ['UNSPECIFIED', 'RUNNING', 'QUEUED', 'TASK_RUNNING', 'SUCCEEDED', 'FAILED', 'UNKNOWN'];
const IN_FLIGHT = new Set(['RUNNING', 'QUEUED', 'TASK_RUNNING']);
const PHASE_WORDS = new Set(OP_PHASES.slice(1).map((p) => p.toLowerCase()));
/**
 * At most this many running tasks are followed (WatchTask) at once; other bars sweep. Over
 * HTTP/1.1 a browser opens at most 6 connections to the gateway, each stream holds one, and the
 * list's own stream and other tabs need some: 3 there.
 */
const MAX_FOLLOWED = /^h[23]/.test(performance.getEntriesByType('navigation')[0]?.nextHopProtocol || '') ? 10 : 3;
/** Entries kept in the page (the oldest ended ones go first), and asked for when opening. */
const MAX_ENTRIES = 500;
const PAGE_SIZE = 100;
const FOLLOW_RETRY_MS = 5000;

const opPhaseName = (p) =>
  (typeof p === 'number' ? OP_PHASES[p] || 'UNSPECIFIED' : String(p || 'UNSPECIFIED').replace(/^OPERATION_PHASE_/, ''));

/**
 * A list of journal entries, live: the page's list, or the cluster view's panel of the writes on
 * that cluster. Both are rendered by the functions below; `ids` names the list's elements, and
 * only the page's list (`main`) sets the link state in the top bar.
 */
function opsList({ filter, ids, main = false, maxEntries = MAX_ENTRIES, pageSize = PAGE_SIZE, maxFollowed = MAX_FOLLOWED }) {
  return {
    filter, ids, main, maxEntries, pageSize, maxFollowed,
    entries: new Map(),   // entry id -> Operation, as last heard
    rows: new Map(),      // entry id -> its <tr>
    tasks: new Map(),     // task id -> { status, active, final, controller, retryAt, problem }
    ownOnly: false,
    controller: null,     // the WatchOperations stream's AbortController
    failures: 0,
    retryTimer: 0,
    reconnectAt: 0,
    lostReason: '',
    renderTimer: 0,
  };
}

const list = opsList({
  filter: {
    cluster: (query.get('cluster') || '').trim(),
    caller: (query.get('caller') || '').trim(),
    operation: (query.get('operation') || '').trim(),
    state: (query.get('state') || '').trim().replace(/^any$/, ''),
  },
  ids: { rows: 'operation-rows', summary: 'list-summary', empty: 'operations-empty', ownOnly: 'own-only',
         error: 'list-error', connection: 'list-connection' },
  main: true,
});

/** The cluster view's panel: the newest CLUSTER_OPS_SHOWN writes on the cluster. Its stream is the
 *  view's third (with the watch and the events), so it follows fewer running tasks. */
const CLUSTER_OPS_SHOWN = 50;
const clusterOps = opsList({
  filter: { cluster: '', caller: '', operation: '', state: '' },
  ids: { rows: 'cluster-ops-rows', summary: 'cluster-ops-summary', empty: 'cluster-ops-empty',
         ownOnly: 'cluster-ops-own-only', error: 'cluster-ops-error', connection: 'cluster-ops-connection' },
  maxEntries: CLUSTER_OPS_SHOWN, pageSize: CLUSTER_OPS_SHOWN, maxFollowed: Math.max(1, MAX_FOLLOWED - 2),
});

/** The journal's filter for the page's: a state is filtered here (see `visible`) when streaming. */
function journalFilter(l, withOutcome) {
  const f = l.filter;
  const filter = {};
  if (f.cluster) filter.clusterId = f.cluster;
  if (f.caller) filter.caller = f.caller;
  if (f.operation) filter.operation = f.operation;
  if (withOutcome && f.state && f.state !== 'in_flight') filter.outcome = f.state;
  return filter;
}

function setUpOperations() {
  const l = list;
  $('operations').hidden = false;
  document.title = 'Operations — ack-gateway';
  const form = $('filters');
  for (const name of ['cluster', 'caller', 'operation']) form.elements[name].value = l.filter[name];
  const state = form.elements.state;
  if (l.filter.state && ![...state.options].some((o) => o.value === l.filter.state)) {
    state.append(new Option(l.filter.state, l.filter.state)); // a code name (OK, NOT_FOUND…)
  }
  state.value = l.filter.state;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const name of ['cluster', 'caller', 'operation', 'state']) {
      const value = form.elements[name].value.trim();
      if (value) q.set(name, value);
    }
    // `?cluster=` alone is the cluster's watch (a deep link older than the list).
    if (q.has('cluster') && !LIST_ONLY_KEYS.some((key) => q.has(key))) q.set('state', 'any');
    location.assign(String(q) ? `${location.pathname}?${q}` : location.pathname);
  });
  $('list-retry-now').addEventListener('click', () => listConnect(l));
  linkRows(l);
  $('follow-limit').textContent = String(MAX_FOLLOWED);
  renderList(l);
  setInterval(() => listTick(l), 1000);
  listConnect(l);
}

/** A click on a row (not on a link, not selecting text) opens the row's link; the list is
 *  rendered again when the tab is hidden or shown (a hidden tab follows no task). */
function linkRows(l) {
  $(l.ids.rows).addEventListener('click', (e) => {
    if (e.target.closest('a') || String(window.getSelection() || '')) return;
    e.target.closest('tr')?.querySelector('a.row-link')?.click();
  });
  document.addEventListener('visibilitychange', () => scheduleListRender(l));
}

/** The cluster view's panel of the writes on the cluster (newest and in-flight first). */
function setUpClusterOperations(clusterId) {
  const l = clusterOps;
  l.filter.cluster = clusterId;
  $('cluster-ops-all').href = `/ui/?${new URLSearchParams({ cluster: clusterId, state: 'any' })}`;
  $('cluster-ops-retry').addEventListener('click', () => listConnect(l));
  $('cluster-ops-shown').textContent = String(CLUSTER_OPS_SHOWN);
  linkRows(l);
  $('cluster-ops-card').hidden = false;
  renderList(l);
  listConnect(l);
}

/**
 * The stream: WatchOperations with the journal's filter (without the state: an entry leaving
 * the state must still reach the page), then the entries in that state the journal holds
 * (ListOperations, which also says whether the caller sees only its own).
 */
async function listConnect(l = list) {
  clearTimeout(l.retryTimer);
  l.reconnectAt = 0;
  if (l.controller) {
    const old = l.controller;
    l.controller = null;
    old.abort(new Error('replaced'));
  }
  const controller = new AbortController();
  l.controller = controller;
  if (l.main) setLinkState(l.failures ? 'reconnecting' : 'connecting');
  renderListConnection(l);
  const request = { filter: journalFilter(l, false), includeExisting: true,
                    pageSize: l.filter.state ? l.maxEntries : l.pageSize };
  let outcome;
  try {
    outcome = await connectStream(`${OPERATIONS}/WatchOperations`, request, requestHeaders('', ''),
      controller.signal, (message) => {
        if (l.controller !== controller) return;
        l.ownOnly = Boolean(message.ownOnly);
        if (message.operation?.id) l.entries.set(message.operation.id, message.operation);
        scheduleListRender(l);
      }, () => {
        if (l.controller !== controller) return;
        l.failures = 0;
        l.lostReason = '';
        $(l.ids.error).hidden = true;
        if (l.main) setLinkState('live');
        renderListConnection(l);
        listExisting(l, controller);
      });
  } catch (e) {
    const reason = controller.signal.aborted && controller.signal.reason?.message;
    outcome = { lost: reason || e.message || 'network error' };
  }
  if (l.controller !== controller) return;
  l.controller = null;
  onListEnd(l, outcome);
}

/** Entries the journal holds in the filtered state; adds those the stream did not bring. */
async function listExisting(l, controller) {
  let answer;
  try {
    answer = await connectUnary(`${OPERATIONS}/ListOperations`,
      { filter: journalFilter(l, true), pageSize: l.pageSize }, requestHeaders('', ''), controller.signal);
  } catch {
    return; // the stream reports what went wrong
  }
  if (l.controller !== controller || !answer.message) return;
  l.ownOnly = Boolean(answer.message.ownOnly);
  for (const op of answer.message.operations || []) {
    // The stream's copy is never older: it was subscribed first and hears every rewrite.
    if (op.id && !l.entries.has(op.id)) l.entries.set(op.id, op);
  }
  scheduleListRender(l);
}

function onListEnd(l, { lost, error }) {
  if (lost !== undefined || !error || RECONNECT_CODES.has(error.code)) {
    const reason = lost !== undefined ? lost : error ? `${error.code}: ${error.message || ''}` : 'the stream ended';
    const delay = retryDelay(l.failures);
    l.failures += 1;
    l.lostReason = reason;
    l.reconnectAt = Date.now() + delay;
    l.retryTimer = setTimeout(() => listConnect(l), delay);
    if (l.main) setLinkState('disconnected');
    renderListConnection(l);
    return;
  }
  l.lostReason = '';
  renderListConnection(l);
  if (error.code === 'unauthenticated') {
    if (!l.main) return; // the view's own watch asks for the token; giving it reconnects the panel
    sessionStorage.removeItem(TOKEN_KEY);
    setLinkState('needs token');
    $('token-form').querySelector('.notice-text').textContent = error.message || '';
    $('token-form').hidden = false;
    $('token-form').elements.token.focus();
    return;
  }
  if (l.main) setLinkState('error');
  showNotice(l.ids.error, error.code, error.message || '');
}

function renderListConnection(l = list) {
  const notice = $(l.ids.connection);
  notice.hidden = !l.lostReason;
  if (notice.hidden) return;
  notice.querySelector('.notice-text').textContent = reconnectText(l.reconnectAt, l.lostReason);
}

/** Where an entry stands on the page: the journal's word, or its task's end once the task
 *  watch saw it and the journal did not say so yet. */
function standing(l, op) {
  const journal = opPhaseName(op.phase);
  const task = op.taskId ? l.tasks.get(op.taskId) : undefined;
  const taskPhase = task?.status ? phaseName(task.status.phase) : '';
  if (journal === 'TASK_RUNNING' && task?.final && ['SUCCEEDED', 'FAILED', 'CANCELED'].includes(taskPhase)) {
    return { phase: taskPhase === 'SUCCEEDED' ? 'SUCCEEDED' : 'FAILED', task, fromTask: true };
  }
  return { phase: journal, task, fromTask: false };
}

function visible(l, op) {
  const state = l.filter.state;
  if (!state) return true;
  const phase = standing(l, op).phase;
  if (state === 'in_flight') return IN_FLIGHT.has(phase);
  if (PHASE_WORDS.has(state)) return phase === state.toUpperCase();
  return op.code === state; // a code name
}

const startedMs = (op) => Date.parse(op.startedAt || '') || 0;

/** In-flight work first, then what ended; newest first within each. */
function sortedEntries(l) {
  return [...l.entries.values()].sort((a, b) => {
    const fa = IN_FLIGHT.has(standing(l, a).phase);
    const fb = IN_FLIGHT.has(standing(l, b).phase);
    if (fa !== fb) return fa ? -1 : 1;
    return startedMs(b) - startedMs(a) || String(b.startedAt).localeCompare(String(a.startedAt));
  });
}

/** Keeps the page's entries bounded: the oldest ended ones go first. */
function trimEntries(l, sorted) {
  if (sorted.length <= l.maxEntries) return sorted;
  for (const op of sorted.slice(l.maxEntries)) l.entries.delete(op.id);
  return sorted.slice(0, l.maxEntries);
}

function scheduleListRender(l = list) {
  if (!l.renderTimer) l.renderTimer = setTimeout(() => renderList(l), 30);
}

function renderList(l = list) {
  clearTimeout(l.renderTimer);
  l.renderTimer = 0;
  const sorted = trimEntries(l, sortedEntries(l));
  followTasks(l, sorted);
  const shown = sorted.filter((op) => visible(l, op));
  const body = $(l.ids.rows);
  const keep = new Set();
  shown.forEach((op, i) => {
    let row = l.rows.get(op.id);
    if (!row) {
      row = buildRow();
      l.rows.set(op.id, row);
    }
    fillRow(l, row, op);
    keep.add(op.id);
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  for (const [id, row] of l.rows) {
    if (!keep.has(id)) {
      row.remove();
      l.rows.delete(id);
    }
  }
  const running = shown.filter((op) => IN_FLIGHT.has(standing(l, op).phase)).length;
  $(l.ids.summary).textContent = shown.length
    ? `${running} in flight, ${shown.length - running} ended` : 'No operation';
  $(l.ids.empty).hidden = shown.length > 0;
  $(l.ids.ownOnly).hidden = !l.ownOnly;
  const names = [...new Set([...l.entries.values()].map((op) => op.operation).filter(Boolean))].sort();
  const datalist = $('operation-names');
  if (l.main && datalist.children.length !== names.length) { // the filter bar's suggestions
    datalist.replaceChildren(...names.map((name) => new Option(name)));
  }
  listTick(l);
}

function buildRow() {
  const row = el('tr', '', 'op-row');
  const link = el('a', '', 'row-link');
  const opCell = el('td', '', 'op-name');
  opCell.append(link, el('span', '', 'op-sub'));
  const bar = el('div', '', 'progress small');
  bar.setAttribute('role', 'progressbar');
  bar.setAttribute('aria-valuemin', '0');
  bar.setAttribute('aria-valuemax', '100');
  bar.append(el('div', '', 'progress-fill'));
  const badge = el('span', '', 'badge small');
  const progressCell = el('td', '', 'op-progress');
  const head = el('div', '', 'op-progress-head');
  head.append(badge, el('span', '', 'op-note'));
  progressCell.append(head, bar);
  const time = el('time', '', 'op-started');
  const startedCell = el('td');
  startedCell.append(time);
  const outcome = el('td', '', 'op-outcome');
  outcome.append(el('code', '', 'op-code'), el('code', '', 'op-reason'), el('span', '', 'op-message'));
  row.append(opCell, el('td', '', 'op-target'), el('td', '', 'op-caller'), startedCell, progressCell, outcome);
  return row;
}

/** The watch view a row opens: its task, else its cluster; '' when it names neither. */
function rowHref(op, cluster) {
  const q = new URLSearchParams();
  if (op.taskId) {
    q.set('task', op.taskId);
  } else if (cluster && op.nodepoolId) {
    q.set('nodepool', `${cluster}/${op.nodepoolId}`);
    if (op.operation === 'DeleteClusterNodepool') q.set('target', 'deleted');
  } else if (cluster) {
    q.set('cluster', cluster);
    if (op.operation === 'DeleteCluster') q.set('target', 'deleted');
  } else {
    return '';
  }
  if (op.profile) q.set('profile', op.profile);
  if (op.region) q.set('region', op.region);
  return `/ui/?${q}`;
}

function fillRow(l, row, op) {
  const { phase, task, fromTask } = standing(l, op);
  const status = task?.status;
  const cluster = op.clusterId || status?.attributes?.cluster_id || '';
  const [opCell, targetCell, callerCell, startedCell, progressCell, outcomeCell] = row.children;
  row.dataset.id = op.id;
  row.dataset.phase = phase;
  row.dataset.task = op.taskId || '';
  row.dataset.caller = op.caller || '';

  const link = opCell.firstElementChild;
  const href = rowHref(op, cluster);
  link.textContent = op.operation || '(write)';
  if (href) link.setAttribute('href', href);
  else link.removeAttribute('href');
  link.title = op.taskId ? `Follow task ${op.taskId}` : href ? `Follow cluster ${cluster}` : '';
  row.classList.toggle('linked', Boolean(href));
  const sub = [op.taskId, op.replay ? 'replayed' : '', op.idempotencyKey ? 'keyed' : ''].filter(Boolean);
  opCell.lastElementChild.textContent = sub.join(' · ');

  targetCell.replaceChildren();
  for (const [id, what] of [[cluster, 'cluster'], [op.nodepoolId, 'node pool']]) {
    if (!id) continue;
    const span = el('span', id);
    span.title = `${what} ${id}${what === 'cluster' && !op.clusterId ? ' (named by the task)' : ''}`;
    if (what === 'node pool' && cluster) {
      // The node pool's own watch, beside the row's (its task's) link.
      const q = new URLSearchParams({ nodepool: `${cluster}/${id}` });
      if (op.profile) q.set('profile', op.profile);
      if (op.region) q.set('region', op.region);
      const a = el('a', id, 'pool-link');
      a.href = `/ui/?${q}`;
      span.replaceChildren(a);
    }
    targetCell.append(span);
  }
  if (!cluster && !op.nodepoolId) targetCell.append(el('span', '—', 'muted'));

  callerCell.textContent = op.caller || '';
  callerCell.title = [op.profile && `profile ${op.profile}`, op.region && `region ${op.region}`]
    .filter(Boolean).join(', ');

  const time = startedCell.firstElementChild;
  if (time.dateTime !== (op.startedAt || '')) {
    time.dateTime = op.startedAt || '';
    const t = startedMs(op);
    time.title = t ? new Date(t).toLocaleString() : '';
  }

  // Progress: the badge, a note and the bar.
  const [head, bar] = progressCell.children;
  const badge = head.firstElementChild;
  badge.textContent = phase.replace(/_/g, ' ');
  badge.dataset.phase = phase === 'TASK_RUNNING' ? 'RUNNING' : phase;
  const following = task && (task.active || task.final);
  const stages = following ? stageCount(status) : null;
  let note = '';
  let noteTitle = '';
  let percent;
  let indeterminate = false;
  switch (phase) {
    case 'RUNNING':
      note = 'waiting for the answer';
      indeterminate = true;
      break;
    case 'QUEUED':
      note = 'cluster busy: queued';
      indeterminate = true;
      break;
    case 'TASK_RUNNING':
      if (stages) {
        percent = stagePercent(stages);
        note = stageText(stages);
        noteTitle = [status.stage && `current stage: ${status.stage}`, STAGE_SOURCE_TITLE].filter(Boolean).join('. ');
      } else {
        indeterminate = true;
        note = 'task running';
        noteTitle = !op.taskId ? ''
          : task?.problem ? `The task cannot be followed: ${task.problem}`
            : following ? 'The cloud reports no stages for this task yet.'
              : `Not followed: at most ${l.maxFollowed} running tasks are followed at once.`;
      }
      break;
    case 'SUCCEEDED':
      percent = 100;
      note = stages ? stageText(stages) : '';
      break;
    default: // FAILED, UNKNOWN
      note = stages ? stageText(stages) : phase === 'UNKNOWN' ? 'may or may not have been applied' : '';
  }
  const noteEl = head.lastElementChild;
  noteEl.textContent = note;
  noteEl.title = noteTitle || (stages ? STAGE_SOURCE_TITLE : '');
  noteEl.classList.toggle('counted', Boolean(stages));
  bar.dataset.phase = { TASK_RUNNING: 'RUNNING', QUEUED: 'PAUSED' }[phase] || phase;
  bar.setAttribute('aria-label', `Progress of ${op.operation || 'the write'}`);
  bar.classList.toggle('indeterminate', indeterminate);
  if (typeof percent === 'number') {
    bar.setAttribute('aria-valuenow', String(percent));
    bar.firstElementChild.style.width = `${percent}%`;
  } else {
    bar.removeAttribute('aria-valuenow');
    bar.firstElementChild.style.width = indeterminate ? '' : '100%';
  }
  if (note) bar.setAttribute('aria-valuetext', note);
  else bar.removeAttribute('aria-valuetext');

  // Outcome: the call's code, the upstream reason, the message.
  const [code, reason, message] = outcomeCell.children;
  const error = fromTask ? status?.error || {} : {};
  code.textContent = fromTask ? (phase === 'SUCCEEDED' ? 'OK' : 'ABORTED') : op.code || '';
  code.title = op.durationMs ? `answered in ${op.durationMs} ms` : '';
  reason.textContent = fromTask ? error.code || '' : op.reason || '';
  reason.title = reason.textContent ? 'upstream code' : '';
  message.textContent = fromTask ? error.message || '' : op.message || '';
  message.title = message.textContent;
  for (const part of [code, reason]) part.hidden = !part.textContent;
  if (IN_FLIGHT.has(phase)) code.hidden = true; // the answer's code while its task still runs
  outcomeCell.title = fromTask ? 'from the task watch (the journal has not recorded the end yet)' : '';
}

/** Starts and stops the WatchTask streams: the first MAX_FOLLOWED running tasks in the list. */
function followTasks(l, sorted) {
  const now = Date.now();
  const chosen = new Map();
  for (const op of sorted) {
    if (chosen.size >= l.maxFollowed || document.hidden) break; // a hidden tab follows none
    if (!op.taskId || opPhaseName(op.phase) !== 'TASK_RUNNING' || !visible(l, op)) continue;
    const task = l.tasks.get(op.taskId);
    if (task?.final || (task && !task.active && (task.problem || task.retryAt > now))) continue;
    chosen.set(op.taskId, op);
  }
  const listed = new Set(sorted.map((op) => op.taskId).filter(Boolean));
  for (const [id, task] of l.tasks) {
    if (task.active && !chosen.has(id)) {
      task.active = false;
      task.controller.abort(new Error('not followed any more'));
    }
    if (!task.active && !listed.has(id)) l.tasks.delete(id); // no row shows it any more
  }
  for (const [id, op] of chosen) if (!l.tasks.get(id)?.active) followTask(l, op);
  countTaskStreams();
}

/** How many task streams the lists hold open, on the page's root (`data-task-streams`). */
function countTaskStreams() {
  let open = 0;
  for (const l of [list, clusterOps]) for (const task of l.tasks.values()) if (task.active) open += 1;
  document.documentElement.dataset.taskStreams = String(open);
}

async function followTask(l, op) {
  const task = l.tasks.get(op.taskId) || { status: null, final: false };
  l.tasks.set(op.taskId, task);
  const controller = new AbortController();
  Object.assign(task, { active: true, controller, retryAt: 0 });
  let outcome;
  try {
    outcome = await connectStream('/ackgateway.v1.WatchService/WatchTask', { taskId: op.taskId },
      requestHeaders(op.profile || '', op.region || ''), controller.signal, (message) => {
        if (task.controller !== controller) return;
        if (message.status) task.status = message.status;
        if (kindName(message.kind) === 'FINAL') task.final = true;
        scheduleListRender(l);
      });
  } catch (e) {
    outcome = { lost: e.message || 'network error' };
  }
  if (task.controller !== controller) return;
  task.controller = null;
  if (controller.signal.aborted) return; // stopped by followTasks
  task.active = false;
  countTaskStreams();
  const { lost, error } = outcome;
  if (lost === undefined && (!error || error.code === 'aborted')) {
    task.final = true; // succeeded, or failed / canceled (ABORTED)
  } else if (lost !== undefined || RECONNECT_CODES.has(error.code)) {
    task.retryAt = Date.now() + FOLLOW_RETRY_MS;
    setTimeout(() => scheduleListRender(l), FOLLOW_RETRY_MS + 50);
  } else {
    task.problem = `${error.code}: ${error.message || ''}`;
  }
  scheduleListRender(l);
}

/** Once a second: the rows' relative times and the reconnect countdown. */
function listTick(l = list) {
  const now = Date.now();
  for (const time of $(l.ids.rows).querySelectorAll('time')) {
    const t = Date.parse(time.dateTime);
    time.textContent = t ? formatAgo(now - t) : '';
  }
  renderListConnection(l);
}

// ---------------------------------------------------------------------------------------------
// 7. Cluster events: a panel of the cluster's view, its own WatchClusterEvents stream
// ---------------------------------------------------------------------------------------------

/** The events kept (the gateway's window), and the newest of those the filter keeps in the DOM. */
const EVENTS_KEPT = 1000;
const EVENTS_SHOWN = 200;
/** How far back the panel starts: the events of the last day, then the new ones. */
const EVENTS_SINCE_MS = 24 * 3600 * 1000;
const LEVELS = ['info', 'warning', 'error'];

/** `warning` for `warn`, `error` for `critical` or `fatal`; any other word counts as `info`. */
function levelOf(event) {
  const level = String(event.level || '').toLowerCase();
  if (/^warn/.test(level)) return 'warning';
  if (/^(error|critical|fatal)/.test(level)) return 'error';
  return 'info';
}

const clusterEvents = {
  cluster: '',
  kept: [],             // { event, id, seq, at }, in arrival order
  ids: new Set(),       // the event ids kept
  seq: 0,
  levels: new Set(LEVELS),
  since: '',            // asked for by the next stream: the newest event's time once there is one
  controller: null,
  failures: 0,
  retryTimer: 0,
  reconnectAt: 0,
  lostReason: '',
  watchdog: 0,
  ended: null,          // { title, code, text } once the stream will not be opened again
  renderTimer: 0,
};

function setUpClusterEvents(clusterId) {
  const ce = clusterEvents;
  ce.cluster = clusterId;
  ce.since = new Date(Date.now() - EVENTS_SINCE_MS).toISOString();
  const asked = (query.get('levels') || '').split(',').map((l) => l.trim().toLowerCase()).filter((l) => LEVELS.includes(l));
  if (asked.length) ce.levels = new Set(asked);
  const boxes = $('event-levels').querySelectorAll('input[type=checkbox]');
  for (const box of boxes) {
    box.checked = ce.levels.has(box.value);
    box.addEventListener('change', () => {
      ce.levels = new Set([...boxes].filter((b) => b.checked).map((b) => b.value));
      // The filter is part of the link (all levels: no parameter).
      const q = new URLSearchParams(location.search);
      if (ce.levels.size === LEVELS.length) q.delete('levels');
      else q.set('levels', [...ce.levels].join(','));
      history.replaceState(history.state, '', `${location.pathname}?${q}`);
      renderClusterEvents();
    });
  }
  $('cluster-events-retry').addEventListener('click', () => eventsConnect());
  $('cluster-events-card').hidden = false;
  renderClusterEvents();
  eventsConnect();
}

function armEventsWatchdog(controller) {
  clearTimeout(clusterEvents.watchdog);
  const seconds = 3 * heartbeatSeconds;
  clusterEvents.watchdog = setTimeout(() => controller.abort(new Error(`no message for ${seconds} s`)), seconds * 1000);
}

/** Opens the stream; a reconnect asks for the events from the newest one kept (each is kept
 *  once, by its id), so nothing between two streams is missed. */
async function eventsConnect() {
  const ce = clusterEvents;
  clearTimeout(ce.retryTimer);
  ce.reconnectAt = 0;
  ce.ended = null;
  if (ce.controller) {
    const old = ce.controller;
    ce.controller = null;
    old.abort(new Error('replaced'));
  }
  const controller = new AbortController();
  ce.controller = controller;
  armEventsWatchdog(controller);
  renderEventsNotice();
  let outcome;
  try {
    outcome = await connectStream('/ackgateway.v1.WatchService/WatchClusterEvents',
      { clusterId: ce.cluster, since: ce.since }, requestHeaders(), controller.signal, (message) => {
        if (ce.controller !== controller) return;
        armEventsWatchdog(controller);
        ce.failures = 0;
        if (ce.lostReason) {
          ce.lostReason = '';
          renderEventsNotice();
        }
        for (const event of message.newEvents || []) keepEvent(event);
        scheduleEventsRender();
      });
  } catch (e) {
    const reason = controller.signal.aborted && controller.signal.reason?.message;
    outcome = { lost: reason || e.message || 'network error' };
  }
  if (ce.controller !== controller) return;
  clearTimeout(ce.watchdog);
  ce.controller = null;
  onEventsEnd(outcome);
}

function keepEvent(event) {
  const ce = clusterEvents;
  const id = event.eventId || `${event.timestamp}|${event.type}|${event.subject}|${event.message}`;
  if (ce.ids.has(id)) return;
  ce.ids.add(id);
  const at = Date.parse(event.timestamp || '') || 0;
  ce.kept.push({ event, id, seq: ce.seq++, at });
  if (at > Date.parse(ce.since)) ce.since = new Date(at).toISOString();
  if (ce.kept.length > EVENTS_KEPT) {
    const [oldest] = ce.kept.splice(0, 1);
    ce.ids.delete(oldest.id);
  }
}

function onEventsEnd({ lost, error }) {
  const ce = clusterEvents;
  // The gateway's maximum watch duration (or a clean end): open the next stream at once.
  if (!lost && (!error || error.code === 'deadline_exceeded') && ce.failures === 0) {
    ce.failures = 1; // a second end in a row without a message backs off
    ce.retryTimer = setTimeout(eventsConnect, 100);
    return;
  }
  if (lost !== undefined || !error || RECONNECT_CODES.has(error.code)) {
    const delay = retryDelay(ce.failures);
    ce.failures += 1;
    ce.lostReason = lost !== undefined ? lost : error ? `${error.code}: ${error.message || ''}` : 'the stream ended';
    ce.reconnectAt = Date.now() + delay;
    ce.retryTimer = setTimeout(eventsConnect, delay);
    return renderEventsNotice();
  }
  ce.lostReason = '';
  if (error.code === 'unauthenticated') {
    ce.ended = { title: 'Waiting for a token', code: '', text: 'the events follow once the token is given' };
  } else if (error.code === 'not_found') {
    ce.ended = { title: 'The cluster is gone', code: 'not_found', text: 'no more events will come' };
  } else {
    ce.ended = { title: 'The events cannot be followed', code: error.code, text: error.message || '' };
  }
  renderEventsNotice();
}

/** The panel's own notice: a lost connection (with "Retry now"), or why the stream ended. */
function renderEventsNotice() {
  const ce = clusterEvents;
  const notice = $('cluster-events-notice');
  const ended = ce.ended;
  notice.hidden = !ce.lostReason && !ended;
  if (notice.hidden) return;
  notice.className = `notice ${ended ? (ended.code === 'not_found' || !ended.code ? 'notice-info' : 'notice-error') : 'notice-connection'}`;
  notice.dataset.state = ended ? ended.code || 'token' : 'reconnecting';
  notice.querySelector('.notice-title').textContent = ended ? ended.title : 'Events: connection lost';
  const code = notice.querySelector('.notice-code');
  code.textContent = ended?.code || '';
  code.hidden = !code.textContent;
  notice.querySelector('.notice-text').textContent = ended ? ended.text : reconnectText(ce.reconnectAt, ce.lostReason);
  $('cluster-events-retry').hidden = Boolean(ended && ended.code === 'not_found');
}

function scheduleEventsRender() {
  if (!clusterEvents.renderTimer) clusterEvents.renderTimer = setTimeout(renderClusterEvents, 30);
}

/** Newest first, the filter's levels only, at most EVENTS_SHOWN of them. */
function renderClusterEvents() {
  const ce = clusterEvents;
  clearTimeout(ce.renderTimer);
  ce.renderTimer = 0;
  const matching = ce.kept.filter((k) => ce.levels.has(levelOf(k.event)))
    .sort((a, b) => b.at - a.at || b.seq - a.seq);
  const shown = matching.slice(0, EVENTS_SHOWN);
  $('cluster-events').replaceChildren(...shown.map(({ event, id }) => {
    const li = el('li', '', 'event cluster-event');
    const level = levelOf(event);
    li.dataset.level = level;
    li.dataset.id = id;
    const time = el('time', formatWhen(event.timestamp), 'event-time');
    if (event.timestamp) time.dateTime = event.timestamp;
    time.title = event.timestamp || '';
    const badge = el('span', event.level || level, 'level');
    const what = el('span', '', 'event-what');
    what.append(el('strong', event.type || event.reason || ''), el('span', event.subject || '', 'event-subject'));
    what.title = [event.reason && `reason ${event.reason}`, event.source && `source ${event.source}`, event.eventId]
      .filter(Boolean).join(' · ');
    li.append(time, badge, what, el('span', event.message || event.reason || '', 'event-message'));
    return li;
  }));
  const total = ce.kept.length;
  $('cluster-event-count').textContent = matching.length ? String(matching.length) : '';
  $('cluster-events-empty').hidden = shown.length > 0;
  $('cluster-events-empty').textContent = total
    ? `None of the ${total} events is of the levels chosen.`
    : 'No event in the last 24 hours yet. New ones appear here as they happen.';
  $('cluster-events-more').hidden = matching.length <= EVENTS_SHOWN;
  $('cluster-events-more').textContent = `The newest ${EVENTS_SHOWN} of ${matching.length} are shown.`;
}

/** A time of today as the clock shows it; an older one with its date. */
function formatWhen(timestamp) {
  const t = Date.parse(timestamp || '');
  if (Number.isNaN(t)) return '';
  const date = new Date(t);
  if (date.toDateString() === new Date().toDateString()) return formatClock(timestamp);
  return `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${formatClock(timestamp)}`;
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

adoptFragmentToken();
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = e.target.elements.token;
  if (!/^[\x21-\x7e]+$/.test(input.value)) return input.setCustomValidity('printable ASCII only');
  sessionStorage.setItem(TOKEN_KEY, input.value);
  input.value = '';
  e.target.hidden = true;
  if (route === 'watch') {
    session.failures = 0;
    connect();
    if (clusterEvents.cluster && !clusterEvents.controller) {
      clusterEvents.failures = 0;
      eventsConnect();
    }
    if (clusterOps.filter.cluster && !clusterOps.controller) {
      clusterOps.failures = 0;
      listConnect(clusterOps);
    }
  } else {
    list.failures = 0;
    listConnect();
  }
});
$('token-form').elements.token.addEventListener('input', (e) => e.target.setCustomValidity(''));
if (route === 'chooser') {
  setUpChooser();
} else if (route === 'operations') {
  setUpOperations();
} else {
  $('watch').hidden = false;
  $('target-kind').textContent = watch.kind;
  $('target-id').textContent = watch.id;
  $('retry-now').addEventListener('click', () => connect());
  if (watch.wait) setUpWait();
  render();
  const refused = watch.method === 'WatchAddonUpgrade' && watch.request.addons.length === 0
    ? { code: 'invalid_argument', message: 'addons: name the add-ons with &names=a,b' }
    : watch.wait?.problem ? { code: 'invalid_argument', message: watch.wait.problem.message } : null;
  if (refused) {
    // Refused by the page itself, before asking the gateway.
    onStreamEnd({ error: refused });
  } else {
    setInterval(tick, 500);
    connect();
    if (watch.method === 'WatchCluster') {
      setUpClusterOperations(watch.request.clusterId);
      setUpClusterEvents(watch.request.clusterId);
    }
  }
}
