// paddockd's dashboard: plain JavaScript over the daemon's API, signed in by a session cookie (Dashboard/ in the
// daemon says how). Every text from the API is put into the page with textContent, never as HTML.
'use strict';

const state = { session: null, timer: null, terminal: null, socket: null, charts: [] };

// ---- API ----------------------------------------------------------------------------------------------------------

async function api(method, path, body, raw) {
  const headers = {};
  if (state.session && method !== 'GET') headers['X-Paddock-Csrf'] = state.session.csrf;
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers['Content-Type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (response.status === 401 && path !== '/dashboard/api/session') {
    showSignIn('Your session ended: sign in again.');
    throw new Error('not signed in');
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).message || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// ---- helpers ------------------------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headings, rows) {
  return el('table', {}, el('thead', {}, el('tr', {}, headings.map(h => el('th', {}, h)))), el('tbody', {}, rows));
}

function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function age(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

function until(iso) {
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  return s <= 0 ? 'now' : s < 120 ? `in ${s} s` : s < 7200 ? `in ${Math.round(s / 60)} min` : `in ${Math.round(s / 3600)} h`;
}

function showError(error) {
  document.getElementById('error').textContent = error ? String(error.message || error) : '';
}

function view(...children) {
  const main = document.getElementById('view');
  main.replaceChildren(...children);
  return main;
}

function stopLive() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  if (state.socket) state.socket.close();
  state.socket = null;
  if (state.terminal) state.terminal.dispose();
  state.terminal = null;
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
}

function every(ms, fn) {
  fn();
  state.timer = setInterval(fn, ms);
}

// ---- sign-in ------------------------------------------------------------------------------------------------------

function showSignIn(message) {
  stopLive();
  state.session = null;
  document.getElementById('app').hidden = true;
  document.getElementById('sign-in-page').hidden = false;
  document.getElementById('sign-in-error').textContent = message || '';
  document.getElementById('api-key').focus();
}

function showApp(session) {
  state.session = session;
  document.getElementById('sign-in-page').hidden = true;
  document.getElementById('app').hidden = false;
  document.getElementById('who').textContent = `team ${session.teamID}${session.admin ? ' (admin)' : ''} · key ${session.keyMask}`;
  document.getElementById('nav-teams').hidden = !session.admin;
  route();
}

document.getElementById('sign-in-form').addEventListener('submit', async event => {
  event.preventDefault();
  const input = document.getElementById('api-key');
  try {
    const session = await api('POST', '/dashboard/api/session', { apiKey: input.value });
    input.value = '';
    showApp(session);
  } catch (error) {
    document.getElementById('sign-in-error').textContent = `Sign-in refused: ${error.message}`;
  }
});

document.getElementById('sign-out').addEventListener('click', async () => {
  try { await api('DELETE', '/dashboard/api/session'); } catch { /* signed out anyway */ }
  showSignIn('Signed out.');
});

// ---- routes -------------------------------------------------------------------------------------------------------

function route() {
  if (!state.session) return;
  stopLive();
  showError(null);
  const hash = location.hash || '#/sandboxes';
  const sandbox = hash.match(/^#\/sandboxes\/([A-Za-z0-9-]+)(?:\/(\w+))?$/);
  try {
    if (sandbox) sandboxPage(sandbox[1], sandbox[2] || 'terminal');
    else if (hash === '#/templates') templatesPage();
    else if (hash.startsWith('#/templates/')) templatePage(decodeURIComponent(hash.slice('#/templates/'.length)));
    else if (hash === '#/teams') teamsPage();
    else if (hash === '#/host') hostPage();
    else sandboxesPage();
  } catch (error) {
    showError(error);
  }
}

window.addEventListener('hashchange', route);

// ---- sandboxes ----------------------------------------------------------------------------------------------------

function sandboxesPage() {
  const stateFilter = el('select', { id: 'filter-state' },
    el('option', { value: '' }, 'any state'), el('option', { value: 'running' }, 'running'), el('option', { value: 'frozen' }, 'frozen'));
  const metadataFilter = el('input', { id: 'filter-metadata', placeholder: 'metadata: key=value, key2=value2' });
  const body = el('div', { id: 'sandboxes' });
  const refresh = () => loadSandboxes(body, stateFilter.value, metadataFilter.value).catch(showError);
  stateFilter.addEventListener('change', refresh);
  metadataFilter.addEventListener('change', refresh);
  view(el('h2', {}, 'Sandboxes'), el('div', { class: 'filters' }, stateFilter, metadataFilter), body);
  every(2000, refresh);
}

async function loadSandboxes(body, stateFilter, metadataFilter) {
  const query = new URLSearchParams();
  if (stateFilter) query.append('state', stateFilter);
  for (const pair of metadataFilter.split(',').map(s => s.trim()).filter(Boolean)) query.append('metadata', pair);
  const sandboxes = await api('GET', `/dashboard/api/sandboxes?${query}`);
  // A cluster's rows name the node that runs each sandbox; a single daemon's have no node.
  const clustered = sandboxes.some(s => s.nodeID !== undefined);
  const rows = sandboxes.map(s => el('tr', { 'data-sandbox-id': s.sandboxID },
    el('td', {}, s.ownTeam ? el('a', { href: `#/sandboxes/${s.sandboxID}` }, s.sandboxID) : s.sandboxID),
    el('td', {}, s.teamID),
    ...(clustered ? [el('td', { class: 'node' }, s.nodeID ?? '')] : []),
    el('td', { class: 'state' }, s.state),
    el('td', {}, s.isolation),
    el('td', {}, s.alias || s.templateID),
    el('td', {}, Object.entries(s.metadata).map(([k, v]) => `${k}=${v}`).join(', ')),
    el('td', { class: 'num' }, age(s.startedAt)),
    el('td', { class: 'num', title: s.endAt }, until(s.endAt)),
    el('td', { class: 'num' }, s.cpuUsedPct === undefined ? '' : `${s.cpuUsedPct.toFixed(1)} % of ${s.cpuCount}`),
    el('td', { class: 'num' }, s.memUsed === undefined ? '' : `${bytes(s.memUsed)} / ${s.memoryMB} MiB`),
    el('td', {},
      el('button', { class: 'extend', type: 'button', onclick: () => extend(s.sandboxID) }, '+5 min'),
      el('button', { class: 'kill', type: 'button', onclick: () => kill(s.sandboxID) }, 'Kill'))));
  body.replaceChildren(sandboxes.length === 0
    ? el('p', { class: 'muted', id: 'no-sandboxes' }, 'No sandboxes.')
    : table(['ID', 'Team', ...(clustered ? ['Node'] : []), 'State', 'Tier', 'Template', 'Metadata', 'Age', 'Deadline', 'CPU', 'Memory', ''], rows));
}

async function kill(id) {
  if (!confirm(`Kill sandbox ${id}? Its processes and files are lost.`)) return;
  try {
    await api('DELETE', `/dashboard/api/sandboxes/${id}`);
    if (location.hash.startsWith(`#/sandboxes/${id}`)) location.hash = '#/sandboxes'; else route();
  } catch (error) { showError(error); }
}

async function extend(id) {
  try {
    await api('POST', `/dashboard/api/sandboxes/${id}/timeout`, { timeout: 300 });
    route();
  } catch (error) { showError(error); }
}

// ---- one sandbox --------------------------------------------------------------------------------------------------

const tabs = { terminal: terminalTab, files: filesTab, commands: commandsTab, charts: chartsTab, audit: auditTab, logs: logsTab };

function sandboxPage(id, tab) {
  const bar = el('div', { class: 'tabs' }, Object.keys(tabs).map(name =>
    el('button', { type: 'button', id: `tab-${name}`, 'aria-selected': String(name === tab), onclick: () => { location.hash = `#/sandboxes/${id}/${name}`; } }, name)));
  const body = el('div', { id: 'tab-body' });
  view(el('h2', {}, 'Sandbox ', el('code', { id: 'sandbox-id' }, id), ' ',
      el('button', { class: 'extend', type: 'button', onclick: () => extend(id) }, '+5 min'),
      el('button', { class: 'kill', id: 'kill-sandbox', type: 'button', onclick: () => kill(id) }, 'Kill')),
    bar, body);
  (tabs[tab] || terminalTab)(id, body);
}

function terminalTab(id, body) {
  const size = el('span', { id: 'terminal-size', class: 'muted' });
  const status = el('span', { id: 'terminal-status', class: 'muted' }, 'connecting');
  const box = el('div', { id: 'terminal' });
  body.replaceChildren(el('p', {}, status, ' · ', size), box);
  const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  state.terminal = term;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams({ cols: term.cols, rows: term.rows, csrf: state.session.csrf });
  const socket = new WebSocket(`${scheme}//${location.host}/dashboard/api/sandboxes/${id}/terminal?${query}`);
  socket.binaryType = 'arraybuffer';
  state.socket = socket;
  const encoder = new TextEncoder();
  const showSize = () => { size.textContent = `${term.cols}x${term.rows}`; };
  showSize();
  socket.onopen = () => { status.textContent = 'connected'; term.focus(); };
  socket.onmessage = message => {
    if (typeof message.data === 'string') {
      const control = JSON.parse(message.data);
      if (control.type === 'exit') status.textContent = `shell exited with code ${control.exitCode}`;
      return;
    }
    term.write(new Uint8Array(message.data));
  };
  socket.onclose = event => { if (!status.textContent.startsWith('shell exited')) status.textContent = `closed${event.reason ? ': ' + event.reason : ''}`; };
  term.onData(data => { if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data)); });
  term.onResize(({ cols, rows }) => {
    showSize();
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'resize', cols, rows }));
  });
  const onWindowResize = () => { if (state.terminal === term) fit.fit(); };
  window.addEventListener('resize', onWindowResize);
  term.onDispose?.(() => window.removeEventListener('resize', onWindowResize));
}

function filesTab(id, body) {
  const path = el('input', { id: 'files-path', value: '/home/user', size: 50 });
  const list = el('div', { id: 'file-list' });
  const upload = el('input', { id: 'upload-input', type: 'file' });
  const status = el('span', { id: 'upload-status', class: 'muted' });
  const load = async () => {
    try {
      const entries = await api('GET', `/dashboard/api/sandboxes/${id}/files?path=${encodeURIComponent(path.value)}`);
      const parent = path.value.replace(/\/[^/]+\/?$/, '') || '/';
      const rows = [el('tr', {}, el('td', {}, el('button', { type: 'button', class: 'link', onclick: () => { path.value = parent; load(); } }, '..')), el('td'), el('td'), el('td'))]
        .concat(entries.map(e => el('tr', { 'data-path': e.path },
          el('td', {}, e.type === 'dir'
            ? el('button', { type: 'button', class: 'link', onclick: () => { path.value = e.path; load(); } }, `${e.name}/`)
            : el('a', { href: `/dashboard/api/sandboxes/${id}/files/content?path=${encodeURIComponent(e.path)}`, download: e.name }, e.name)),
          el('td', {}, e.type), el('td', { class: 'num' }, e.type === 'dir' ? '' : bytes(e.size)), el('td', {}, el('code', {}, e.permissions)))));
      list.replaceChildren(table(['Name', 'Type', 'Size', 'Mode'], rows));
    } catch (error) { list.replaceChildren(el('p', { class: 'error' }, error.message)); }
  };
  upload.addEventListener('change', async () => {
    const file = upload.files[0];
    if (!file) return;
    const target = `${path.value.replace(/\/$/, '')}/${file.name}`;
    status.textContent = `uploading ${file.name}`;
    try {
      await api('POST', `/dashboard/api/sandboxes/${id}/files/content?path=${encodeURIComponent(target)}`, file);
      status.textContent = `uploaded ${target}`;
      upload.value = '';
      load();
    } catch (error) { status.textContent = `upload failed: ${error.message}`; }
  });
  path.addEventListener('change', load);
  body.replaceChildren(el('div', { class: 'filters' }, path, el('button', { type: 'button', onclick: load }, 'Open'), upload, status), list);
  load();
}

async function auditEvents(id) {
  const events = [];
  let after = 0;
  for (let page = 0; page < 20; page++) {
    const result = await api('GET', `/sandboxes/${id}/audit?after=${after}&limit=1000`);
    events.push(...result.events);
    if (result.events.length < 1000) break;
    after = result.next;
  }
  return events;
}

function commandsTab(id, body) {
  const holder = el('div', { id: 'commands' });
  body.replaceChildren(holder);
  every(3000, async () => {
    try {
      const events = await auditEvents(id);
      const ends = new Map(events.filter(e => e.kind === 'process.end' || e.kind === 'pty.close').map(e => [e.pid, e]));
      const rows = events.filter(e => e.kind === 'process.start' || e.kind === 'pty.open').map(e => {
        const end = ends.get(e.pid);
        return el('tr', {},
          el('td', {}, new Date(e.at).toLocaleTimeString()),
          el('td', {}, e.kind === 'pty.open' ? 'terminal' : 'command'),
          el('td', {}, el('code', {}, [e.cmd, ...(e.args || [])].filter(Boolean).join(' '))),
          el('td', {}, e.user || ''), el('td', {}, e.cwd || ''),
          el('td', { class: 'num exit-code' }, end ? (end.exitCode ?? end.status ?? '') : 'running'));
      });
      holder.replaceChildren(rows.length ? table(['Started', 'Kind', 'Command', 'User', 'Cwd', 'Exit'], rows) : el('p', { class: 'muted' }, 'No commands yet.'));
    } catch (error) { showError(error); }
  });
}

function chartsTab(id, body) {
  const cpu = el('div', { class: 'chart', id: 'chart-cpu' });
  const mem = el('div', { class: 'chart', id: 'chart-mem' });
  body.replaceChildren(el('h3', {}, 'CPU %'), cpu, el('h3', {}, 'Memory (MiB)'), mem);
  const width = Math.max(300, body.clientWidth - 20);
  const make = (target, label, color) => {
    const chart = new uPlot({ width, height: 200, series: [{}, { label, stroke: color, width: 2 }], axes: [{}, {}] }, [[], []], target);
    state.charts.push(chart);
    return chart;
  };
  const cpuChart = make(cpu, 'CPU %', '#2a7d4f');
  const memChart = make(mem, 'memory MiB', '#285fa8');
  every(5000, async () => {
    try {
      const samples = await api('GET', `/sandboxes/${id}/metrics`);
      const t = samples.map(s => s.timestampUnix);
      cpuChart.setData([t, samples.map(s => s.cpuUsedPct)]);
      memChart.setData([t, samples.map(s => s.memUsed / 1048576)]);
    } catch (error) { showError(error); }
  });
}

function auditTab(id, body) {
  const holder = el('div', { id: 'audit' });
  body.replaceChildren(holder);
  every(3000, async () => {
    try {
      const events = await auditEvents(id);
      holder.replaceChildren(table(['Seq', 'At', 'Kind', 'What', 'Result'], events.map(e => el('tr', {},
        el('td', { class: 'num' }, e.seq), el('td', {}, new Date(e.at).toLocaleTimeString()), el('td', {}, e.kind),
        el('td', {}, el('code', {}, e.cmd ? [e.cmd, ...(e.args || [])].join(' ') : e.address ? `${e.protocol || ''} ${e.address}${e.port !== undefined ? ':' + e.port : ''}`.trim() : [e.path, e.destination].filter(Boolean).join(' -> '))),
        el('td', {}, [e.exitCode, e.status, e.verdict, e.httpStatus, e.bytesOut !== undefined ? `out ${e.bytesOut} B in ${e.bytesIn} B` : e.bytes !== undefined ? `${e.bytes} B` : undefined, e.durationMs !== undefined ? `${e.durationMs} ms` : undefined].filter(v => v !== undefined && v !== null).join(' '))))));
    } catch (error) { showError(error); }
  });
}

function logsTab(id, body) {
  const pre = el('pre', { class: 'logs', id: 'logs' });
  body.replaceChildren(pre);
  every(3000, async () => {
    try {
      const result = await api('GET', `/v2/sandboxes/${id}/logs`);
      pre.textContent = result.logs.map(l => `${l.timestamp}  ${l.level.padEnd(5)}  ${l.message}`).join('\n');
    } catch (error) { showError(error); }
  });
}

// ---- templates, teams, host ---------------------------------------------------------------------------------------

async function templatesPage() {
  const holder = el('div', { id: 'templates' });
  view(el('h2', {}, 'Templates'), holder);
  try {
    const templates = await api('GET', '/templates');
    holder.replaceChildren(table(['Template', 'Names', 'Kind', 'Layers', 'Size', 'Build', 'Spawned'], templates.map(t => el('tr', {},
      el('td', {}, el('a', { href: `#/templates/${encodeURIComponent(t.templateID)}` }, t.templateID)),
      el('td', {}, (t.aliases || []).concat(t.names || []).filter((v, i, a) => a.indexOf(v) === i).join(', ')),
      el('td', {}, t.kind), el('td', { class: 'num' }, t.layers), el('td', { class: 'num' }, bytes(t.sizeBytes)),
      el('td', {}, t.buildStatus), el('td', { class: 'num' }, t.spawnCount)))));
  } catch (error) { showError(error); }
}

async function templatePage(templateId) {
  const logs = el('pre', { class: 'logs', id: 'build-logs' });
  const info = el('div');
  view(el('h2', {}, 'Template ', el('code', {}, templateId)), info, el('h3', {}, 'Build logs'), logs);
  try {
    const template = await api('GET', `/templates/${encodeURIComponent(templateId)}`);
    info.replaceChildren(el('p', {}, `${template.layers} layers · ${bytes(template.sizeBytes)} · ${template.kind}`));
    const build = template.builds[template.builds.length - 1];
    if (!build) return;
    let offset = 0;
    let done = false;
    every(2000, async () => {
      if (done) return;
      const status = await api('GET', `/templates/${encodeURIComponent(templateId)}/builds/${build.buildID}/status?logsOffset=${offset}`);
      const lines = status.logs || [];
      offset += lines.length;
      logs.textContent += lines.join('\n') + (lines.length ? '\n' : '');
      done = status.status !== 'building' && status.status !== 'waiting';
    });
  } catch (error) { showError(error); }
}

async function teamsPage() {
  const holder = el('div', { id: 'teams' });
  view(el('h2', {}, 'Teams and keys'), holder);
  try {
    const teams = await api('GET', '/teams');
    const rows = [];
    for (const team of teams) {
      let keys = [];
      try { keys = await api('GET', `/admin/teams/${encodeURIComponent(team.teamID)}/api-keys`); } catch (error) { showError(error); }
      rows.push(el('tr', {},
        el('td', {}, team.teamID), el('td', {}, team.name), el('td', {}, team.isAdmin ? 'admin' : ''),
        el('td', {}, JSON.stringify(team.limits)), el('td', {}, JSON.stringify(team.usage)),
        el('td', {}, keys.map(k => el('div', {}, `${k.name} ${k.mask?.maskedValueSuffix ? '…' + k.mask.maskedValueSuffix : ''}${k.revokedAt ? ' (revoked)' : ''}`)))));
    }
    holder.replaceChildren(table(['Team', 'Name', '', 'Limits', 'Usage', 'Keys'], rows));
  } catch (error) { showError(error); }
}

function hostPage() {
  const holder = el('div', { id: 'host' });
  view(el('h2', {}, 'Host'), holder);
  every(3000, async () => {
    try {
      const host = await api('GET', '/dashboard/api/host');
      holder.replaceChildren(table(['', ''], [
        // In a cluster these are the figures of the node that serves this page only.
        ...(host.nodeID === undefined ? [] : [el('tr', {}, el('td', {}, 'Node'), el('td', { id: 'host-node' }, `${host.nodeID} (this node's figures only)`))]),
        el('tr', {}, el('td', {}, 'Capacity'), el('td', {}, `${host.reserved} of ${host.maxSandboxes} sandboxes (${host.maxSandboxes - host.reserved} left)`)),
        el('tr', {}, el('td', {}, 'Running'), el('td', {}, host.running)),
        el('tr', {}, el('td', {}, 'Frozen (idle)'), el('td', { id: 'host-frozen' }, host.frozen)),
        el('tr', {}, el('td', {}, 'Warm pools'), el('td', {}, Object.entries(host.pools).map(([k, v]) => `${k}: ${v} ready`).join(', ') || 'none')),
        el('tr', {}, el('td', {}, 'Isolation tiers'), el('td', {}, `${host.tiers.join(', ')} (default ${host.defaultTier})`))]));
    } catch (error) { showError(error); }
  });
}

// ---- start --------------------------------------------------------------------------------------------------------

api('GET', '/dashboard/api/session').then(showApp, () => showSignIn());
