// The console: every export at a glance, one export's runs, and a wizard for a new definition.
// It calls the app's own HTTP API (same origin) with the function key, which it keeps in
// sessionStorage. Every value from the API is inserted as text (textContent, text nodes,
// attributes via setAttribute), never as HTML: names, SendGrid's reasons and messages can hold
// markup. No inline script or style anywhere (the page's Content-Security-Policy forbids both).
'use strict';

(() => {
  const KEY_STORE = 'ci-sendgrid-export.function-key';
  const ACTIVE = new Set(['queued', 'running', 'confirming']);
  const FINAL = new Set(['succeeded', 'partial', 'failed']);
  const STEPS = ['queued', 'running', 'confirming'];
  const POLL_MS = 1500;
  const LIST_REFRESH_MS = 3000;
  const HISTORY_PAGE = 20;
  const SVG = 'http://www.w3.org/2000/svg';
  // The reserved fields the app maps, used when GET /api/sendgrid/fields cannot be read.
  const RESERVED = ['email', 'first_name', 'last_name', 'country', 'state_province_region', 'city', 'postal_code',
    'address_line_1', 'address_line_2', 'external_id'];
  const COUNT_NAMES = ['read', 'valid', 'rejected', 'duplicates', 'sent', 'failed', 'unchanged', 'removed'];

  const $ = (id) => document.getElementById(id);
  let view = 0; // bumped on every navigation: answers for an earlier view are dropped
  let timer = null;
  let listCache = null; // {byId: Map(id -> name), problem}

  // ---------------------------------------------------------------- DOM helpers (text only)

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (/^on/i.test(name) || name === 'style') throw new Error('no inline handler or style: ' + name);
      if (name === 'class') node.setAttribute('class', value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function text(value) {
    return value === undefined || value === null ? '' : String(value);
  }

  function number(value) {
    return typeof value === 'number' && Number.isFinite(value) ? value.toLocaleString('en') : '–';
  }

  function when(iso) {
    if (typeof iso !== 'string' || !iso) return el('span', { class: 'muted' }, '–');
    const date = new Date(iso);
    const shown = Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
    return el('time', { datetime: iso, title: iso }, shown);
  }

  function badge(status) {
    const known = FINAL.has(status) || ACTIVE.has(status);
    const label = known ? status : 'unknown';
    const mark = { succeeded: '✓', partial: '◐', failed: '✕', queued: '…', running: '▶', confirming: '⧗' }[label] || '?';
    return el('span', { class: 'badge badge-' + label }, el('span', { 'aria-hidden': 'true' }, mark + ' '), known ? status : text(status) || 'unknown');
  }

  function enc(part) {
    return encodeURIComponent(part);
  }

  // ---------------------------------------------------------------- the key and the API

  function getKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || '';
    } catch (e) {
      return '';
    }
  }

  function setKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch (e) {
      showMessage('This browser does not allow the console to keep the key (sessionStorage): ' + e.message);
    }
  }

  // #key=<key> (optionally followed by &/route): taken into sessionStorage, then removed from the
  // address bar and the history, so it is not bookmarked or shown over a shoulder.
  function takeKeyFromFragment() {
    const match = /^#key=([^&]*)(?:&(.*))?$/.exec(location.hash);
    if (!match) return;
    let key = match[1];
    try {
      key = decodeURIComponent(key);
    } catch (e) { /* keep it as it is */ }
    setKey(key);
    const rest = match[2] && match[2].startsWith('/') ? '#' + match[2] : '#/';
    history.replaceState(null, '', location.pathname + location.search + rest);
  }

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.status = status;
      this.code = code;
      this.body = body;
    }
  }

  const API_BASE = new URL('./', location.href); // /api/console -> /api/

  async function api(method, path, body) {
    const key = getKey();
    if (!key) throw new ApiError(401, 'no_key', 'Enter the function key first.');
    const init = {
      method,
      headers: { 'x-functions-key': key, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, API_BASE), init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The app could not be reached (' + e.message + '). Is it running?');
    }
    const raw = await response.text();
    let data = null;
    if (raw) {
      try {
        data = JSON.parse(raw);
      } catch (e) {
        data = null;
      }
    }
    if (response.ok) return { status: response.status, data };
    const error = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : null;
    if (response.status === 401 || response.status === 403) {
      throw new ApiError(response.status, 'unauthorized',
        'The function key was not accepted (HTTP ' + response.status + ' from the Functions host). Enter the key again.', data);
    }
    const code = error && typeof error.code === 'string' ? error.code : 'http_' + response.status;
    const message = error && typeof error.message === 'string' ? error.message : 'The app answered HTTP ' + response.status + ' with no explanation.';
    throw new ApiError(response.status, code, message, data);
  }

  // An error in words: what happened and what to do.
  function explain(error) {
    if (!(error instanceof ApiError)) return 'Something went wrong in the console: ' + text(error && error.message);
    const code = error.code;
    if (error.status === 0) return error.message;
    if (code === 'unauthorized' || code === 'no_key') return error.message;
    if (code === 'run_in_progress') {
      const id = error.body && error.body.run_id ? ' (run ' + error.body.run_id + ')' : '';
      return 'A run of this export is already queued or going on' + id + '. Wait for it to end, or follow it.';
    }
    const kind = {
      invalid_definition: 'The definition is not valid',
      consent_required: 'The definition has no privacy consent',
      export_disabled: 'The export is disabled',
      unknown_column: 'The definition names a column the segment does not have',
      unknown_custom_field: 'The definition names a custom field SendGrid does not have',
      unknown_list: 'The definition names a list SendGrid does not have',
      source_not_found: 'The Customer Insights export was not found',
      source_invalid: 'The Customer Insights export cannot be read',
      too_many_profiles: 'The segment has more profiles than the definition allows',
      removal_guard: 'The mirror guard refused the run',
      sendgrid_auth_failed: 'SendGrid refused the API key',
      sendgrid_unavailable: 'SendGrid could not be reached',
      sendgrid_error: 'SendGrid answered with an error',
      keyvault_unavailable: 'Key Vault could not be read',
      storage_unavailable: 'Storage could not be reached',
      time_limit: 'The run reached its time limit',
      internal_error: 'The app failed',
      bad_request: 'The app refused the request',
      not_found: 'Not found',
    }[code] || 'The app answered HTTP ' + error.status;
    return kind + ' (' + code + ', HTTP ' + error.status + '): ' + error.message;
  }

  function showMessage(words, kind) {
    const box = $('message');
    box.className = 'message' + (kind ? ' message-' + kind : '');
    fill(box, words);
    show(box, true);
  }

  function clearMessage() {
    show($('message'), false);
    fill($('message'));
  }

  // A failed call of the current view: a refused key goes back to the key form.
  function failed(error, token) {
    if (token !== view) return;
    show($('loading'), false);
    if (error instanceof ApiError && (error.code === 'unauthorized' || error.code === 'no_key')) {
      setKey('');
      showKeyView(error.message);
      return;
    }
    showMessage(explain(error));
  }

  // ---------------------------------------------------------------- views and routing

  function showView(id, title) {
    for (const section of document.querySelectorAll('.view')) show(section, section.id === id);
    document.title = title + ' · ci-sendgrid-export console';
    show($('forget-key'), Boolean(getKey()));
    for (const link of document.querySelectorAll('nav a')) {
      const here = (id === 'view-new') === (link.id === 'nav-new') && id !== 'view-key';
      if (here) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }

  function stopTimer() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function later(token, ms, action) {
    stopTimer();
    timer = setTimeout(() => {
      timer = null;
      if (token === view) action();
    }, ms);
  }

  function route() {
    takeKeyFromFragment();
    const hash = location.hash || '#/';
    if (!hash.startsWith('#/')) return; // the skip link and other in-page anchors
    view += 1;
    stopTimer();
    clearMessage();
    show($('loading'), true);
    if (!getKey()) {
      showKeyView();
      return;
    }
    const parts = hash.slice(2).split('/').map((part) => {
      try {
        return decodeURIComponent(part);
      } catch (e) {
        return part;
      }
    });
    if (parts[0] === 'exports' && parts[1]) showExport(parts[1], view);
    else if (parts[0] === 'new') showNew(view);
    else showList(view);
  }

  function showKeyView(problem) {
    showView('view-key', 'Function key');
    show($('loading'), false);
    if (problem) showMessage(problem);
    $('key-input').value = '';
    $('key-input').focus();
  }

  function focusHeading(id) {
    const heading = $(id);
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }

  // ---------------------------------------------------------------- SendGrid list names

  async function listNames() {
    if (listCache) return listCache;
    try {
      const { data } = await api('GET', 'sendgrid/lists');
      const byId = new Map();
      for (const entry of (data && data.lists) || []) {
        if (entry && typeof entry.id === 'string') byId.set(entry.id, text(entry.name));
      }
      listCache = { byId, lists: (data && data.lists) || [], problem: null };
    } catch (error) {
      if (error instanceof ApiError && error.code === 'unauthorized') throw error;
      return { byId: new Map(), lists: [], problem: explain(error) };
    }
    return listCache;
  }

  function listLabel(ids, names) {
    if (!Array.isArray(ids) || !ids.length) return '–';
    return ids.map((id) => names.byId.get(id) || id).join(', ');
  }

  // ---------------------------------------------------------------- exports at a glance

  async function showList(token, refreshing) {
    if (!refreshing) showView('view-list', 'Exports');
    let listing;
    let names;
    try {
      [listing, names] = await Promise.all([api('GET', 'exports').then((r) => r.data), listNames()]);
    } catch (error) {
      failed(error, token);
      return;
    }
    if (token !== view) return;
    show($('loading'), false);
    const exports = Array.isArray(listing && listing.exports) ? listing.exports : [];
    fill($('list-source'), listing && listing.definitions_from
      ? 'Definitions read from ' + listing.definitions_from + '.' : text(listing && listing.note));
    if (names.problem) $('list-source').append(' List names could not be read: ' + names.problem);
    const body = $('exports-table').tBodies[0];
    fill(body, exports.map((entry) => exportRow(entry, names)));
    show($('list-empty'), !exports.length);
    fill($('list-empty'), exports.length ? '' : 'No exports are defined. Create one with New export, then deploy it in exports.json.');
    const going = exports.filter((entry) => entry.last_run && ACTIVE.has(entry.last_run.status));
    fill($('list-live'), going.length
      ? going.length + ' run(s) going on: this list refreshes itself every ' + LIST_REFRESH_MS / 1000 + ' s.' : '');
    if (going.length) later(token, LIST_REFRESH_MS, () => showList(token, true));
    if (!refreshing) focusHeading('list-title');
  }

  function cell(label, ...children) {
    return el('td', { 'data-label': label }, ...children);
  }

  function exportRow(entry, names) {
    const name = text(entry.name);
    const last = entry.last_run && typeof entry.last_run === 'object' ? entry.last_run : null;
    const counts = (last && last.counts) || {};
    const display = text(entry.display_name) || name;
    const link = el('a', { href: '#/exports/' + enc(name), class: 'export-link' }, display);
    const valid = entry.valid === true;
    const problem = entry.problem && typeof entry.problem === 'object' ? entry.problem : {};
    return el('tr', { 'data-export': name },
      el('th', { scope: 'row', 'data-label': 'Export' }, link, display !== name ? el('span', { class: 'sub' }, name) : null),
      cell('Mode', valid ? text(entry.sync_mode) : '–', valid && entry.enabled === false ? el('span', { class: 'sub' }, 'disabled') : null),
      cell('Lists', valid ? listLabel(entry.list_ids, names) : '–'),
      cell('Last run', last ? [badge(last.status), last.dry_run ? el('span', { class: 'sub' }, 'dry run') : null]
        : el('span', { class: 'muted' }, entry.last_run_problem ? text(entry.last_run_problem) : 'never run')),
      cell('When', last ? when(last.finished_at || last.started_at) : when(null)),
      cell('Sent / rejected / failed', last ? number(counts.sent) + ' / ' + number(counts.rejected) + ' / ' + number(counts.failed) : '–'),
      cell('Definition', valid ? el('span', { class: 'ok' }, '✓ valid')
        : el('span', { class: 'bad' }, '✕ invalid: ', text(problem.message) || text(problem.code) || 'no reason given')),
    );
  }

  // ---------------------------------------------------------------- one export

  const current = { name: null, summary: null, names: null, runs: [], nextBefore: null };

  async function showExport(name, token) {
    showView('view-export', name);
    Object.assign(current, { name, summary: null, runs: [], nextBefore: null });
    fill($('export-title'), name);
    fill($('export-facts'));
    for (const id of ['run-panel', 'guard-panel', 'report-panel']) show($(id), false);
    fill($('history-table').tBodies[0]);
    fill($('history-chart-area'));
    let summary;
    let page;
    let names;
    try {
      [summary, page, names] = await Promise.all([
        api('GET', 'exports/' + enc(name)).then((r) => r.data),
        api('GET', 'exports/' + enc(name) + '/runs?limit=' + HISTORY_PAGE).then((r) => r.data),
        listNames(),
      ]);
    } catch (error) {
      failed(error, token);
      return;
    }
    if (token !== view) return;
    show($('loading'), false);
    current.summary = summary;
    current.names = names;
    const display = text(summary.display_name) || name;
    fill($('export-title'), display);
    document.title = display + ' · ci-sendgrid-export console';
    renderFacts(summary, names);
    setHistory(page, false);
    const valid = summary.valid === true;
    setBusy(!valid);
    if (!valid) {
      const problem = summary.problem || {};
      showMessage('This definition cannot run: ' + text(problem.message || problem.code) + ' Fix it in exports.json and deploy again.');
    }
    focusHeading('export-title');
    const last = summary.last_run;
    if (valid && last && ACTIVE.has(last.status)) follow(name, last.run_id, token);
  }

  function renderFacts(summary, names) {
    const facts = [['Name', summary.name]];
    if (summary.valid === true) {
      facts.push(
        ['Segment', summary.segment],
        ['Source folder', summary.source_folder],
        ['Mode', summary.sync_mode + (summary.sync_mode === 'mirror' ? ' (unlinks at most ' + summary.max_removal_fraction + ' of its contacts a run)' : '')],
        ['Lists', listLabel(summary.list_ids, names)],
        ['Enabled', summary.enabled === false ? 'no: only runs over HTTP' : 'yes'],
        ['SendGrid key secret', summary.sendgrid_api_key_secret],
      );
    } else {
      facts.push(['Definition', 'invalid: ' + text((summary.problem || {}).message)]);
    }
    fill($('export-facts'), facts.map(([term, value]) => [el('dt', null, term), el('dd', null, text(value) || '–')]));
  }

  function setBusy(busy) {
    $('btn-run').disabled = busy;
    $('btn-dry-run').disabled = busy;
  }

  function setHistory(page, more) {
    const runs = Array.isArray(page && page.runs) ? page.runs : [];
    current.runs = more ? current.runs.concat(runs) : runs;
    current.nextBefore = page && page.next_before ? page.next_before : null;
    const body = $('history-table').tBodies[0];
    fill(body, current.runs.map(historyRow));
    show($('history-empty'), !current.runs.length);
    show($('history-more'), Boolean(current.nextBefore));
    drawChart(current.runs);
  }

  function historyRow(run) {
    const counts = (run && run.counts) || {};
    const id = text(run.run_id);
    const button = el('button', { type: 'button', class: 'quiet', 'data-run': id }, 'View');
    button.setAttribute('aria-label', 'View the report of run ' + id);
    button.addEventListener('click', () => viewReport(current.name, id, view));
    return el('tr', { 'data-run': id },
      el('th', { scope: 'row', 'data-label': 'Run' }, el('code', null, id)),
      cell('Trigger', text(run.trigger) || '–'),
      cell('Status', run.problem ? el('span', { class: 'bad' }, text(run.problem)) : badge(run.status)),
      cell('Started', when(run.started_at)),
      cell('Sent', number(counts.sent)),
      cell('Rejected', number(counts.rejected)),
      cell('Failed', number(counts.failed)),
      cell('Report', run.problem ? '–' : button),
    );
  }

  async function olderRuns() {
    const token = view;
    const before = current.nextBefore;
    if (!before) return;
    try {
      const { data } = await api('GET', 'exports/' + enc(current.name) + '/runs?limit=' + HISTORY_PAGE + '&before=' + enc(before));
      if (token === view) setHistory(data, true);
    } catch (error) {
      failed(error, token);
    }
  }

  async function reloadHistory(token) {
    try {
      const { data } = await api('GET', 'exports/' + enc(current.name) + '/runs?limit=' + HISTORY_PAGE);
      if (token === view) setHistory(data, false);
    } catch (error) {
      failed(error, token);
    }
  }

  // The chart: stacked bars of sent, rejected and failed contacts per run, drawn as inline SVG.
  function drawChart(runs) {
    const area = $('history-chart-area');
    const shown = runs.filter((run) => run && run.counts && !run.problem).slice(0, 40).reverse();
    show($('history-chart'), shown.length > 0);
    if (!shown.length) {
      fill(area);
      return;
    }
    const width = 640;
    const height = 180;
    const pad = { left: 56, right: 8, top: 10, bottom: 24 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const value = (run, key) => (typeof run.counts[key] === 'number' && run.counts[key] > 0 ? run.counts[key] : 0);
    const total = (run) => value(run, 'sent') + value(run, 'rejected') + value(run, 'failed');
    const top = Math.max(1, ...shown.map(total));
    const band = Math.min(plotW / shown.length, 48);
    const barW = Math.max(2, Math.min(36, band * 0.7));
    const sum = shown.reduce((acc, run) => ({
      sent: acc.sent + value(run, 'sent'), rejected: acc.rejected + value(run, 'rejected'), failed: acc.failed + value(run, 'failed'),
    }), { sent: 0, rejected: 0, failed: 0 });
    const label = 'Bar chart of ' + shown.length + ' run(s): ' + sum.sent.toLocaleString('en') + ' sent, '
      + sum.rejected.toLocaleString('en') + ' rejected, ' + sum.failed.toLocaleString('en') + ' failed in all. The table below has each run.';
    const chart = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, class: 'chart-svg', role: 'img', 'aria-label': label, preserveAspectRatio: 'xMinYMin meet' });
    chart.append(
      svg('line', { x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + plotH, class: 'axis' }),
      svg('line', { x1: pad.left, y1: pad.top + plotH, x2: width - pad.right, y2: pad.top + plotH, class: 'axis' }),
      svg('text', { x: pad.left - 6, y: pad.top + 8, class: 'tick', 'text-anchor': 'end' }, top.toLocaleString('en')),
      svg('text', { x: pad.left - 6, y: pad.top + plotH, class: 'tick', 'text-anchor': 'end' }, '0'),
    );
    shown.forEach((run, index) => {
      const x = pad.left + index * band + (band - barW) / 2;
      let y = pad.top + plotH;
      const group = svg('g', { class: 'bar' });
      for (const key of ['sent', 'rejected', 'failed']) {
        const amount = value(run, key);
        if (!amount) continue;
        const h = Math.max(1.5, (amount / top) * plotH);
        y -= h;
        group.append(svg('rect', { x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: h.toFixed(1), class: 'bar-' + key },
          svg('title', null, text(run.run_id) + ': ' + amount.toLocaleString('en') + ' ' + key)));
      }
      if (!group.childNodes.length) {
        group.append(svg('rect', { x: x.toFixed(1), y: (pad.top + plotH - 1).toFixed(1), width: barW.toFixed(1), height: 1, class: 'bar-none' },
          svg('title', null, text(run.run_id) + ': no contacts sent, rejected or failed')));
      }
      chart.append(group);
    });
    const first = shown[0].started_at;
    const last = shown[shown.length - 1].started_at;
    const day = (iso) => (typeof iso === 'string' ? iso.slice(0, 10) : '');
    chart.append(svg('text', { x: pad.left, y: height - 6, class: 'tick' }, day(first)));
    if (shown.length * band > 160 && day(last) !== day(first)) {
      chart.append(svg('text', { x: pad.left + shown.length * band, y: height - 6, class: 'tick', 'text-anchor': 'end' }, day(last)));
    }
    fill(area, chart);
  }

  // ---------------------------------------------------------------- running

  function runPanel(...children) {
    const panel = $('run-panel');
    fill(panel, ...children);
    show(panel, true);
    return panel;
  }

  function stepper(status) {
    const final = FINAL.has(status);
    const at = final ? STEPS.length : STEPS.indexOf(status);
    const items = STEPS.map((step, index) => {
      const state = index < at ? 'done' : index === at ? 'now' : 'todo';
      return el('li', { class: 'step-' + state, 'aria-current': state === 'now' ? 'step' : null },
        step, state === 'done' ? el('span', { class: 'sr-only' }, ' (done)') : null);
    });
    items.push(el('li', { class: final ? 'step-now step-final' : 'step-todo', 'aria-current': final ? 'step' : null },
      final ? badge(status) : 'succeeded | partial | failed'));
    return el('ol', { class: 'stepper', 'aria-label': 'Run progress' }, items);
  }

  async function dryRun() {
    const token = view;
    const name = current.name;
    setBusy(true);
    show($('guard-panel'), false);
    show($('report-panel'), false);
    runPanel(el('p', null, 'Dry run: reading the segment and comparing it with what SendGrid has…'));
    try {
      const { data } = await api('POST', 'exports/' + enc(name) + '/run', { dry_run: true });
      if (token !== view) return;
      const plan = (data && data.plan) || {};
      runPanel(
        el('h2', { id: 'plan-title' }, 'Plan of a run now'),
        el('p', { class: 'plan', id: 'dry-run-plan' },
          number(plan.upsert) + ' contact(s) to add or update, ' + number(plan.remove) + ' to unlink. Nothing was sent or stored.'),
      );
      showReport(data);
    } catch (error) {
      if (token !== view) return;
      runRefused(error, name, token, 'The dry run');
    } finally {
      if (token === view) setBusy(false);
    }
  }

  async function runNow(options) {
    const token = view;
    const name = current.name;
    setBusy(true);
    show($('guard-panel'), false);
    show($('report-panel'), false);
    runPanel(el('p', null, 'Queueing a run…'));
    try {
      const { data } = await api('POST', 'exports/' + enc(name) + '/run', options);
      if (token !== view) return;
      follow(name, data.run_id, token);
    } catch (error) {
      if (token !== view) return;
      setBusy(false);
      runRefused(error, name, token, 'The run');
    }
  }

  function runRefused(error, name, token, what) {
    if (error instanceof ApiError && error.code === 'unauthorized') {
      failed(error, token);
      return;
    }
    if (error instanceof ApiError && error.code === 'run_in_progress' && error.body && error.body.run_id) {
      const id = text(error.body.run_id);
      const button = el('button', { type: 'button', id: 'follow-running' }, 'Follow run ' + id);
      button.addEventListener('click', () => follow(name, id, token));
      runPanel(el('p', { class: 'bad' }, explain(error)), button);
      return;
    }
    const report = error instanceof ApiError && error.body && typeof error.body.report === 'object' ? error.body.report : null;
    if (error instanceof ApiError && error.code === 'removal_guard') {
      show($('run-panel'), false);
      showGuard(error.message, report);
      if (report) showReport(report);
      return;
    }
    runPanel(el('p', { class: 'bad', role: 'alert' }, what + ' was refused. ' + explain(error)));
    if (report) showReport(report);
  }

  // Follow a run through its states until it is final, then show its report and the new history.
  function follow(name, runId, token) {
    setBusy(true);
    show($('guard-panel'), false);
    let shown = null; // the panel changes (and is read out) only when the status does
    const poll = async () => {
      let report;
      try {
        report = (await api('GET', 'exports/' + enc(name) + '/runs/' + enc(runId))).data;
      } catch (error) {
        if (token !== view) return;
        setBusy(false);
        if (error instanceof ApiError && error.code === 'unauthorized') failed(error, token);
        else runPanel(el('p', { class: 'bad' }, 'The run ' + runId + ' could not be followed. ' + explain(error)));
        return;
      }
      if (token !== view) return;
      const status = text(report && report.status);
      const note = status === 'confirming' && report.awaiting
        ? 'SendGrid accepted the contacts; ' + number(report.awaiting.jobs) + ' import job(s) are still being applied.' : null;
      if (status !== shown) runPanel(
        el('h2', null, 'Run ', el('code', null, runId)),
        stepper(status),
        el('p', { id: 'run-status', 'data-status': status }, FINAL.has(status) ? 'The run ended: ' : 'The run is ', badge(status), note ? ' ' + note : ''),
      );
      shown = status;
      if (FINAL.has(status)) {
        setBusy(false);
        showReport(report);
        if (report.error && report.error.code === 'removal_guard') showGuard(text(report.error.message), report);
        reloadHistory(token);
        return;
      }
      later(token, POLL_MS, poll);
    };
    poll();
  }

  function showGuard(message, report) {
    const plan = (report && report.plan) || {};
    const summary = current.summary || {};
    fill($('guard-message'), message);
    fill($('guard-facts'),
      el('dt', null, 'Contacts it would unlink'), el('dd', { id: 'guard-remove' }, number(plan.remove)),
      el('dt', null, 'Contacts it would add or update'), el('dd', null, number(plan.upsert)),
      el('dt', null, 'Largest share allowed (max_removal_fraction)'), el('dd', null, text(summary.max_removal_fraction) || '–'));
    $('guard-ack').checked = false;
    $('guard-confirm').disabled = true;
    show($('guard-panel'), true);
    $('guard-title').setAttribute('tabindex', '-1');
    $('guard-title').focus();
  }

  // ---------------------------------------------------------------- a run's report

  async function viewReport(name, runId, token) {
    try {
      const { data } = await api('GET', 'exports/' + enc(name) + '/runs/' + enc(runId));
      if (token !== view) return;
      showReport(data);
      $('report-title').setAttribute('tabindex', '-1');
      $('report-title').focus();
    } catch (error) {
      failed(error, token);
    }
  }

  function table(caption, headers, rows, className) {
    return el('div', { class: 'table-wrap' }, el('table', { class: className || '' },
      el('caption', null, caption),
      el('thead', null, el('tr', null, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', null, rows.map((row) => el('tr', null, row.map((value, i) => (i === 0 ? el('th', { scope: 'row' }, value) : el('td', null, value))))))));
  }

  function showReport(report) {
    const body = $('report-body');
    if (!report || typeof report !== 'object') {
      fill(body, el('p', null, 'No report.'));
      show($('report-panel'), true);
      return;
    }
    const counts = report.counts && typeof report.counts === 'object' ? report.counts : {};
    const parts = [];
    parts.push(el('p', { class: 'report-head' },
      el('code', null, text(report.run_id)), ' ', badge(report.status), ' ',
      report.dry_run ? 'dry run · ' : '', 'trigger ', text(report.trigger) || '–', ' · started ', when(report.started_at),
      report.finished_at ? [' · finished ', when(report.finished_at)] : null));
    if (report.error && typeof report.error === 'object') {
      parts.push(el('p', { class: 'bad report-error' }, text(report.error.code) + ': ' + text(report.error.message)));
    }
    if (report.unchanged_snapshot) parts.push(el('p', null, 'The same Customer Insights snapshot and definition as the last succeeded run: nothing to send.'));
    if (report.held_back) parts.push(el('p', { class: 'bad' }, 'Removals held back: ' + text(report.held_back)));
    if (report.awaiting && typeof report.awaiting === 'object' && report.awaiting.jobs > 0) {
      parts.push(el('p', null, number(report.awaiting.jobs) + ' import job(s) pending, awaited until ', when(report.awaiting.until), '.'));
    }
    if (report.plan && typeof report.plan === 'object') {
      parts.push(el('p', null, 'Plan: ' + number(report.plan.upsert) + ' to add or update, ' + number(report.plan.remove) + ' to unlink.'));
    }
    parts.push(table('Counts', ['Count', 'Contacts or rows'], COUNT_NAMES.map((key) => [key, number(counts[key])]), 'counts'));
    const rejects = report.rejects && typeof report.rejects === 'object' ? Object.entries(report.rejects) : [];
    parts.push(rejects.length
      ? table('Reject reasons', ['Reason', 'Rows'], rejects.map(([reason, count]) => [reason, number(count)]), 'rejects')
      : el('p', null, counts.rejected > 0 ? 'This report lists no reject reasons.' : 'No row was rejected.'));
    const jobs = Array.isArray(report.jobs) ? report.jobs : [];
    if (jobs.length) {
      parts.push(table('SendGrid import jobs', ['Job', 'Contacts', 'Status', 'Failed', "SendGrid's reason"],
        jobs.map((job) => [el('code', null, text(job.job_id)), number(job.contacts), text(job.status) || 'pending', number(job.failed), text(job.reason) || '–']), 'jobs'));
    }
    if (report.rejects_blob) {
      parts.push(el('p', null, 'Rejects CSV (every row not sent, with its reason; it may hold profile data): ',
        el('code', { class: 'rejects-blob' }, text(report.rejects_blob)), ' in the state container (STATE_CONTAINER, default sendgrid-export-state).'));
    }
    if (report.finalised_by) parts.push(el('p', { class: 'hint' }, 'Made final by ' + text(report.finalised_by) + '.'));
    fill(body, parts);
    show($('report-panel'), true);
  }

  // ---------------------------------------------------------------- the new-export wizard

  const wiz = {
    sources: [], continuation: null, fields: null, lists: [], columns: [], folder: null, segment: null,
    suggested: new Map(), checked: false,
  };

  async function showNew(token) {
    showView('view-new', 'New export');
    for (const id of ['draft-form', 'preview-result', 'definition-out']) show($(id), false);
    Object.assign(wiz, { sources: [], continuation: null, columns: [], folder: null, segment: null, checked: false });
    fill($('source-select'));
    fill($('segment-select'));
    $('segment-select').disabled = true;
    $('segment-use').disabled = true;
    fill($('source-info'), 'Looking for Customer Insights exports…');
    let sources;
    try {
      const [page, fields, names] = await Promise.all([
        api('GET', 'sources?limit=50').then((r) => r.data),
        api('GET', 'sendgrid/fields').then((r) => r.data).catch((error) => {
          if (error instanceof ApiError && error.code === 'unauthorized') throw error;
          return { problem: explain(error) };
        }),
        listNames(),
      ]);
      sources = page;
      wiz.fields = fields;
      wiz.lists = names.lists;
      const problems = [fields.problem, names.problem].filter(Boolean);
      if (problems.length) showMessage('SendGrid could not be read, so custom fields or lists are missing here: ' + problems.join(' '), 'warn');
    } catch (error) {
      failed(error, token);
      return;
    }
    if (token !== view) return;
    show($('loading'), false);
    addSources(sources);
    focusHeading('new-title');
  }

  function addSources(page) {
    const found = Array.isArray(page && page.sources) ? page.sources : [];
    wiz.sources = wiz.sources.concat(found);
    wiz.continuation = page && page.continuation ? page.continuation : null;
    const select = $('source-select');
    fill(select, el('option', { value: '' }, wiz.sources.length ? 'Choose a folder…' : 'No Customer Insights export found'),
      wiz.sources.map((source, index) => el('option', { value: String(index), disabled: source.problem ? true : null },
        text(source.folder) + (source.problem ? ' (unreadable: ' + text(source.problem) + ')' : ''))));
    show($('sources-more'), Boolean(wiz.continuation));
    fill($('source-info'), wiz.sources.length ? wiz.sources.length + ' folder(s) found.'
      : 'No folder of the source container holds a model.json or *.manifest.cdm.json yet.');
  }

  async function moreSources() {
    const token = view;
    try {
      const { data } = await api('GET', 'sources?limit=50&continuation=' + enc(wiz.continuation));
      if (token === view) addSources(data);
    } catch (error) {
      failed(error, token);
    }
  }

  function chooseSource() {
    const source = wiz.sources[Number($('source-select').value)];
    const select = $('segment-select');
    if (!$('source-select').value || !source) {
      fill(select);
      select.disabled = true;
      $('segment-use').disabled = true;
      return;
    }
    const entities = Array.isArray(source.entities) ? source.entities : [];
    fill(select, el('option', { value: '' }, 'Choose a segment…'),
      entities.map((entity, index) => el('option', { value: String(index) },
        text(entity.name) + ' (' + number((entity.columns || []).length) + ' columns)')));
    select.disabled = false;
    $('segment-use').disabled = true;
    fill($('source-info'), 'Snapshot of ', when(source.snapshot_time), ' · metadata ', text(source.metadata) || '–');
  }

  function chooseSegment() {
    $('segment-use').disabled = !$('segment-select').value;
  }

  async function suggest() {
    const token = view;
    const source = wiz.sources[Number($('source-select').value)];
    const entity = source && (source.entities || [])[Number($('segment-select').value)];
    if (!entity) return;
    wiz.folder = text(source.folder);
    wiz.segment = text(entity.name);
    wiz.columns = (entity.columns || []).map((column) => ({ name: text(column.name), type: text(column.data_type) }));
    $('segment-use').disabled = true;
    fill($('draft-state'), 'Asking the app for a suggested definition…');
    let answer;
    try {
      answer = (await api('POST', 'preview', { source_folder: wiz.folder, segment: wiz.segment, sample_size: 5 })).data;
    } catch (error) {
      $('segment-use').disabled = false;
      failed(error, token);
      return;
    }
    if (token !== view) return;
    $('segment-use').disabled = false;
    wiz.suggested = new Map((answer.suggestions || []).map((s) => [text(s.field), s]));
    buildForm(answer.definition || {});
    showPreview(answer);
    show($('draft-form'), true);
    $('draft-name').focus();
  }

  function customFields() {
    return wiz.fields && Array.isArray(wiz.fields.custom) ? wiz.fields.custom : [];
  }

  function reservedFields() {
    const listed = wiz.fields && Array.isArray(wiz.fields.reserved) ? wiz.fields.reserved.map((f) => text(f.name)) : [];
    return listed.length ? listed : RESERVED;
  }

  function columnSelect(id, chosen) {
    const options = [el('option', { value: '' }, '— not mapped —')];
    for (const column of wiz.columns) {
      options.push(el('option', { value: column.name, selected: column.name === chosen ? true : null }, column.name + ' (' + column.type + ')'));
    }
    return el('select', { id, class: 'column-select' }, options);
  }

  function buildForm(definition) {
    $('draft-name').value = text(definition.name);
    $('draft-display').value = text(definition.display_name);
    const mapping = definition.mapping && typeof definition.mapping === 'object' ? definition.mapping : {};
    const custom = definition.custom_fields && typeof definition.custom_fields === 'object' ? definition.custom_fields : {};
    const rows = [];
    reservedFields().forEach((field, index) => {
      const why = wiz.suggested.get('mapping.' + field);
      rows.push(el('tr', null,
        el('th', { scope: 'row' }, el('label', { for: 'map-r' + index }, field, field === 'email' ? ' (required)' : '')),
        el('td', null, columnSelect('map-r' + index, mapping[field])),
        el('td', { class: 'why' }, why ? 'suggested: ' + text(why.why) : '')));
      rows[rows.length - 1].dataset.field = field;
      rows[rows.length - 1].dataset.kind = 'reserved';
    });
    customFields().forEach((field, index) => {
      const name = text(field.name);
      const why = wiz.suggested.get('custom_fields.' + name);
      const row = el('tr', null,
        el('th', { scope: 'row' }, el('label', { for: 'map-c' + index }, name, el('span', { class: 'sub' }, 'custom ' + text(field.type)))),
        el('td', null, columnSelect('map-c' + index, custom[name])),
        el('td', { class: 'why' }, why ? 'suggested: ' + text(why.why) : ''));
      row.dataset.field = name;
      row.dataset.kind = 'custom';
      rows.push(row);
    });
    fill($('mapping-table').tBodies[0], rows);
    const chosenLists = new Set(Array.isArray(definition.list_ids) ? definition.list_ids : []);
    fill($('list-choices'), wiz.lists.length ? wiz.lists.map((list, index) => el('p', { class: 'check' },
      el('input', { type: 'checkbox', id: 'list-' + index, value: text(list.id), checked: chosenLists.has(list.id) ? true : null }),
      el('label', { for: 'list-' + index }, text(list.name), el('span', { class: 'sub' }, number(list.contact_count) + ' contacts'))))
      : el('p', { class: 'bad' }, 'No SendGrid list could be read. Create one in SendGrid first.'));
    $('draft-sync').value = definition.sync_mode === 'mirror' ? 'mirror' : 'upsert';
    $('draft-fraction').value = typeof definition.max_removal_fraction === 'number' ? String(definition.max_removal_fraction) : '0.2';
    $('draft-overlength').value = definition.on_overlength === 'reject' ? 'reject' : 'truncate';
    $('draft-enabled').checked = definition.enabled !== false;
    $('draft-consent').checked = definition.privacy_consent === true;
    syncFraction();
    markColumns();
    draftChanged();
  }

  function syncFraction() {
    show($('fraction-field'), $('draft-sync').value === 'mirror');
  }

  // The column list beside the mapping: each column with the field(s) it feeds.
  function markColumns() {
    const feeds = new Map();
    for (const row of $('mapping-table').tBodies[0].rows) {
      const column = row.querySelector('select').value;
      if (column) feeds.set(column, (feeds.get(column) || []).concat(row.dataset.field));
    }
    fill($('column-list'), wiz.columns.map((column) => el('li', { class: feeds.has(column.name) ? 'fed' : '' },
      el('code', null, column.name), ' ', el('span', { class: 'sub' }, column.type),
      feeds.has(column.name) ? ' → ' + feeds.get(column.name).join(', ') : '')));
  }

  function draft() {
    const mapping = {};
    const custom = {};
    for (const row of $('mapping-table').tBodies[0].rows) {
      const column = row.querySelector('select').value;
      if (!column) continue;
      if (row.dataset.kind === 'custom') custom[row.dataset.field] = column;
      else mapping[row.dataset.field] = column;
    }
    const lists = [...$('list-choices').querySelectorAll('input[type=checkbox]')].filter((box) => box.checked).map((box) => box.value);
    const definition = { name: $('draft-name').value.trim() };
    const display = $('draft-display').value.trim();
    if (display) definition.display_name = display;
    Object.assign(definition, { source_folder: wiz.folder, segment: wiz.segment, list_ids: lists });
    if ($('draft-consent').checked) definition.privacy_consent = true;
    definition.mapping = mapping;
    if (Object.keys(custom).length) definition.custom_fields = custom;
    definition.sync_mode = $('draft-sync').value;
    if (definition.sync_mode === 'mirror') {
      const fraction = Number($('draft-fraction').value);
      definition.max_removal_fraction = Number.isFinite(fraction) ? fraction : 0.2;
    }
    if ($('draft-overlength').value === 'reject') definition.on_overlength = 'reject';
    if (!$('draft-enabled').checked) definition.enabled = false;
    return definition;
  }

  function draftChanged() {
    wiz.checked = false;
    $('copy-definition').disabled = true;
    fill($('copy-status'));
    if (!$('definition-out').hidden) fill($('copy-status'), 'Changed since the last check: check and preview again before you copy.');
    fill($('draft-state'), 'Check and preview to see the sample, the reject reasons and the plan of this draft.');
  }

  async function checkDraft(event) {
    event.preventDefault();
    const token = view;
    const definition = draft();
    if (!definition.name) delete definition.name; // the app suggests one
    $('draft-check').disabled = true;
    fill($('draft-state'), 'Checking the draft and reading the first rows of the segment…');
    let answer;
    try {
      answer = (await api('POST', 'preview', { ...definition, sample_size: 5 })).data;
    } catch (error) {
      if (token !== view) return;
      $('draft-check').disabled = false;
      fill($('draft-state'));
      if (error instanceof ApiError && error.code === 'unauthorized') failed(error, token);
      else showMessage('The draft could not be checked. ' + explain(error));
      return;
    }
    if (token !== view) return;
    $('draft-check').disabled = false;
    clearMessage();
    if (!definition.name && answer.definition && answer.definition.name) {
      $('draft-name').value = text(answer.definition.name);
      definition.name = text(answer.definition.name);
    }
    showPreview(answer);
    const problems = Array.isArray(answer.problems) ? answer.problems : [];
    const ready = answer.valid === true && problems.length === 0;
    fill($('draft-state'), ready ? 'The draft is complete and valid.' : problems.length + ' problem(s) to fix: see the preview.');
    showDefinition(definition, ready, answer.definition);
    $('preview-title').setAttribute('tabindex', '-1');
    $('preview-title').focus();
  }

  function showPreview(answer) {
    const parts = [];
    const problems = Array.isArray(answer.problems) ? answer.problems : [];
    if (problems.length) {
      parts.push(el('h3', null, 'Problems'), el('ul', { class: 'problems' }, problems.map((problem) => el('li', null,
        el('code', null, text(problem.field)), ': ', text(problem.message),
        problem.did_you_mean ? [' Did you mean ', el('code', null, text(problem.did_you_mean)), '?'] : null))));
    } else {
      parts.push(el('p', { class: 'ok' }, '✓ No problem found.'));
    }
    const names = new Map(customFields().map((field) => [text(field.id), text(field.name)]));
    const sample = Array.isArray(answer.sample) ? answer.sample : [];
    if (sample.length) {
      const keys = [];
      const rows = sample.map((contact) => {
        const flat = {};
        for (const [key, value] of Object.entries(contact || {})) {
          if (key === 'custom_fields' && value && typeof value === 'object') {
            for (const [id, inner] of Object.entries(value)) flat[names.get(id) || id] = inner;
          } else flat[key] = value;
        }
        for (const key of Object.keys(flat)) if (!keys.includes(key)) keys.push(key);
        return flat;
      });
      parts.push(el('h3', null, 'Sample'), table(
        'The first ' + sample.length + ' contact(s) as they would be sent' + (answer.masked === false ? '' : ' (masked)'),
        keys, rows.map((row) => keys.map((key) => text(row[key]))), 'sample'));
    }
    const rejects = answer.rejects && typeof answer.rejects === 'object' ? Object.entries(answer.rejects) : [];
    parts.push(el('h3', null, 'Rows that would be rejected'), rejects.length
      ? table('Reject reasons in the first ' + number(answer.rows_read) + ' row(s)', ['Reason', 'Rows'],
        rejects.map(([reason, count]) => [reason, number(count)]), 'rejects')
      : el('p', null, 'None in the first ' + number(answer.rows_read) + ' row(s).'));
    const plan = answer.plan && typeof answer.plan === 'object' ? answer.plan : null;
    parts.push(el('h3', null, 'Plan'), el('p', { id: 'preview-plan' }, plan
      ? 'A run now would add or update ' + number(plan.upsert) + ' contact(s) and unlink ' + number(plan.remove) + '.'
      : 'No plan yet: the plan comes once the draft is complete and has no problem.'));
    fill($('preview-body'), parts);
    show($('preview-result'), true);
  }

  function showDefinition(definition, ready, completed) {
    $('definition-json').value = JSON.stringify(definition, null, 2);
    $('copy-definition').disabled = !ready;
    wiz.checked = ready;
    const extra = completed && completed.mapping && typeof completed.mapping === 'object'
      ? Object.keys(completed.mapping).filter((field) => !(field in definition.mapping)) : [];
    const notes = [ready ? 'Checked: this is the definition the preview tried.' : 'Not ready to copy: fix the problems above, then check again.'];
    if (extra.length) notes.push(' The app would also map ' + extra.join(', ') + ' (a column looks like it); your definition leaves them out.');
    fill($('copy-status'), notes);
    show($('definition-out'), true);
  }

  async function copyDefinition() {
    const value = $('definition-json').value;
    try {
      await navigator.clipboard.writeText(value);
    } catch (e) {
      $('definition-json').select();
      if (!document.execCommand('copy')) {
        fill($('copy-status'), 'The browser did not allow copying: select the text above and copy it.');
        return;
      }
    }
    fill($('copy-status'), 'Copied. Paste it into the exports array of exports.json.');
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $('skip').addEventListener('click', (event) => {
      event.preventDefault();
      $('main').focus();
    });
    $('key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const key = $('key-input').value.trim();
      if (!key) {
        showMessage('Enter the function key.');
        return;
      }
      setKey(key);
      listCache = null;
      if (!location.hash.startsWith('#/')) history.replaceState(null, '', location.pathname + location.search + '#/');
      route();
    });
    $('forget-key').addEventListener('click', () => {
      setKey('');
      listCache = null;
      route();
    });
    $('list-refresh').addEventListener('click', () => route());
    $('btn-dry-run').addEventListener('click', dryRun);
    $('btn-run').addEventListener('click', () => runNow(undefined));
    $('history-more').addEventListener('click', olderRuns);
    $('guard-ack').addEventListener('change', () => {
      $('guard-confirm').disabled = !$('guard-ack').checked;
    });
    $('guard-confirm').addEventListener('click', () => {
      show($('guard-panel'), false);
      runNow({ confirm_removals: true });
    });
    $('guard-cancel').addEventListener('click', () => show($('guard-panel'), false));
    $('source-select').addEventListener('change', chooseSource);
    $('segment-select').addEventListener('change', chooseSegment);
    $('segment-use').addEventListener('click', suggest);
    $('sources-more').addEventListener('click', moreSources);
    $('draft-form').addEventListener('submit', checkDraft);
    $('draft-form').addEventListener('input', draftChanged);
    $('draft-form').addEventListener('change', (event) => {
      if (event.target.id === 'draft-sync') syncFraction();
      if (event.target.classList.contains('column-select')) markColumns();
      draftChanged();
    });
    $('copy-definition').addEventListener('click', copyDefinition);
    window.addEventListener('hashchange', route);
    route();
  }

  init();
})();
