/*
 * ack-gateway progress page: follows one ackgateway.v1.WatchService stream and shows it live.
 *
 * Structure, top to bottom:
 *   1. Settings  what to watch, from the query string; without one, the chooser form builds
 *                the deep link and navigates to it.
 *   2. Token     a bearer token handed over as #token=… (kept in sessionStorage, removed from the
 *                URL) or typed into the token form when the gateway answers `unauthenticated`.
 *   3. Connect   a tiny client for the Connect protocol's server streaming with JSON: fetch, one
 *                request envelope, then response envelopes read from a ReadableStream.
 *   4. Session   one stream at a time: reconnects with backoff and jitter after a lost
 *                connection, aborts a stream that stays silent too long (heartbeat watchdog),
 *                and stops on the final outcome.
 *   5. View      the state the messages carry and how it is rendered. Server data only ever
 *                goes through textContent.
 */

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// 1. Settings
// ---------------------------------------------------------------------------------------------

const query = new URLSearchParams(location.search);

/** The watch the query asks for, or null when it names none. */
function watchFromQuery(q) {
  const get = (name) => (q.get(name) || '').trim();
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
  if (get('cluster')) {
    const target = get('target') || 'running';
    return { method: 'WatchCluster', kind: `Cluster → ${target}`, id: get('cluster'),
             request: { clusterId: get('cluster'), targetStates: [target] } };
  }
  if (get('task')) {
    return { method: 'WatchTask', kind: 'Task', id: get('task'), request: { taskId: get('task') } };
  }
  return null;
}

const watch = watchFromQuery(query);
const profile = (query.get('profile') || '').trim();
const region = (query.get('region') || '').trim();
const heartbeatSeconds = Number(query.get('heartbeat')) > 0 ? Number(query.get('heartbeat')) : 15;

function setUpChooser() {
  const form = $('chooser-form');
  const idLabels = { task: 'Task id', cluster: 'Cluster id', upgrade: 'Cluster id', addons: 'Cluster id' };
  const placeholders = { task: 'T-…', cluster: 'c…', upgrade: 'c…', addons: 'c…' };
  const sync = () => {
    const kind = form.elements.kind.value;
    form.querySelector('[data-label-for="id"]').textContent = idLabels[kind];
    form.elements.id.placeholder = placeholders[kind];
    for (const el of form.querySelectorAll('[data-only]')) el.hidden = el.dataset.only !== kind;
    form.elements.names.required = kind === 'addons';
  };
  form.elements.kind.addEventListener('change', sync);
  sync();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = form.elements;
    const kind = f.kind.value;
    const q = new URLSearchParams();
    q.set(kind, f.id.value.trim());
    if (kind === 'cluster' && f.target.value !== 'running') q.set('target', f.target.value);
    if (kind === 'upgrade' && f.task.value.trim()) q.set('task', f.task.value.trim());
    if (kind === 'addons') q.set('names', f.names.value.split(',').map((s) => s.trim()).filter(Boolean).join(','));
    if (f.profile.value.trim()) q.set('profile', f.profile.value.trim());
    if (f.region.value.trim()) q.set('region', f.region.value.trim());
    location.assign(`${location.pathname}?${q}`);
  });
  $('chooser').hidden = false;
  document.title = 'Watch — ack-gateway';
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
 * Calls a server-streaming procedure. `onMessage` gets each message; resolves with the
 * end-of-stream `{error}` (error undefined on success), or `{error}` from a non-200 answer or
 * an unreadable message. Rejects when the network fails, the call is aborted, or the stream is
 * cut short.
 */
async function connectStream(path, request, headers, signal, onMessage) {
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

// ---------------------------------------------------------------------------------------------
// 4. Session: one stream at a time, reconnecting until the work has a final outcome
// ---------------------------------------------------------------------------------------------

const RETRY_FIRST = 3000;
const RETRY_FACTOR = 1.5;
const RETRY_MAX = 30000;
const RETRY_JITTER = 0.2;
const RECONNECT_CODES = new Set(['unavailable', 'deadline_exceeded']);

const session = {
  controller: null,   // the AbortController of the current stream
  failures: 0,        // consecutive reconnects without a message in between
  retryTimer: 0,
  reconnectAt: 0,     // when the scheduled reconnect runs (ms), 0 when none
  lostReason: '',
  watchdog: 0,
};

function requestHeaders() {
  const headers = {};
  const token = storedToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (profile) headers['x-ack-profile'] = profile;
  if (region) headers['x-ack-region'] = region;
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
    outcome = await connectStream(`/ackgateway.v1.WatchService/${watch.method}`, watch.request,
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

function onStreamEnd({ lost, error }) {
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
    showNotice('notice-error', error.code, error.message || '');
  }
  render();
  finish(error.code === 'aborted' ? 'failed' : 'error');
}

function scheduleReconnect(reason) {
  const base = Math.min(RETRY_MAX, RETRY_FIRST * RETRY_FACTOR ** session.failures);
  const delay = base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * Math.random());
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
  const text = session.reconnectAt
    ? `Reconnecting in ${Math.max(0, Math.ceil((session.reconnectAt - Date.now()) / 1000))} s (${session.lostReason}).`
    : `Reconnecting now (${session.lostReason}).`;
  notice.querySelector('.notice-text').textContent = text;
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
  openedAt: Date.now(),
  endedAt: 0,
};

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
  if (kind === 'FINAL') {
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
  $('phase').textContent = phase;
  $('phase').dataset.phase = phase;
  document.title = `${phase} · ${watch.id} — ack-gateway`;

  const bar = $('progress');
  const percent = phase === 'SUCCEEDED' ? 100 : status.progressPercent;
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

  $('stage').textContent = status.stage || '';
  $('message').textContent = status.message && status.message !== status.stage ? status.message : '';
  renderFacts(status);
  renderStages(status.stages || []);
  renderEvents();
  renderAddons(status.addons || []);

  if (view.failed || view.endError) {
    const error = status.error || {};
    const reason = view.endError?.details?.find((d) => d.debug?.reason)?.debug.reason;
    const code = error.code || reason || view.endError?.code || status.state || phase;
    const text = error.message || view.endError?.message || status.message || '';
    $('notice-failed').querySelector('.notice-title').textContent =
      phase === 'CANCELED' ? 'The work was canceled' : 'The work failed';
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
  if (status.state) facts.push(['upstream state', status.state]);
  const attributes = Object.entries(status.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
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

/** Once a second (and after every render): elapsed time, running stage, reconnect countdown. */
function tick() {
  if (!watch) return;
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

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

adoptFragmentToken();
if (!watch) {
  setUpChooser();
} else {
  $('watch').hidden = false;
  $('target-kind').textContent = watch.kind;
  $('target-id').textContent = watch.id;
  $('retry-now').addEventListener('click', () => connect());
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = e.target.elements.token;
    if (!/^[\x21-\x7e]+$/.test(input.value)) return input.setCustomValidity('printable ASCII only');
    sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = '';
    e.target.hidden = true;
    session.failures = 0;
    connect();
  });
  $('token-form').elements.token.addEventListener('input', (e) => e.target.setCustomValidity(''));
  render();
  if (watch.method === 'WatchAddonUpgrade' && watch.request.addons.length === 0) {
    showNotice('notice-error', 'invalid_argument', 'name the add-ons with &names=a,b');
  } else {
    setInterval(tick, 500);
    connect();
  }
}
