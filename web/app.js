// Tandem's System and License Management page (docs/WEB.md): the hosts and
// clusters of the deployment, the High Availability menu, live status by
// polling the console's API every 2 s, synchronization progress, the
// guide's troubleshooting advice and a timeline of changes and failovers.
import { Api, ApiError, clusterPath, hostPath } from './api.js';

const POLL_MS = 2000;
const HISTORY_ROWS = 50;
const api = new Api();
const $ = (id) => document.getElementById(id);

const state = {
  hosts: [], clusters: [], statusClusters: [], licenses: [], history: [],
  details: new Map(),  // host name -> GET /hosts/{name} host (facts with ha)
  selected: null, polling: false, timer: null, lastOk: null,
};

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function statusClass(status) {
  switch (status) {
    case 'Active': case 'Protected': return 's-ok';
    case 'Standby': case 'Online': return 's-info';
    case 'Synchronizing': case 'Setting Offline': case 'Offline': case 'Needs Upgrade':
    case 'Upgrading': case 'Needs License': case 'Unprotected': return 's-warn';
    case 'Failed': case 'Unreachable': case 'Split Brain': return 's-bad';
    default: return 's-idle';
  }
}

const badge = (status) => el('span', { class: `badge ${statusClass(status)}`, text: status ?? 'Unknown' });

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatEta(s) {
  if (!Number.isFinite(s) || s < 0) return 'unknown';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const timeOf = (iso) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso ?? '') : d.toLocaleString();
};

// The replication object of `ha status --json` in a host's facts.
function replicationOf(name) {
  const h = state.details.get(name);
  const ha = h?.facts?.ha;
  return ha && typeof ha === 'object' ? ha.replication ?? null : null;
}

const haClusterOf = (name) => state.details.get(name)?.facts?.ha?.cluster?.name ?? null;

// The sync progress of a host: its own replication.sync when it knows the
// total, else its HA peer's (the sync source knows the total and the rate).
function syncOf(name) {
  const own = replicationOf(name)?.sync ?? null;
  if (own && Number.isFinite(own.percent)) return own;
  const cluster = haClusterOf(name);
  if (cluster) {
    for (const other of state.details.keys()) {
      if (other === name || haClusterOf(other) !== cluster) continue;
      const s = replicationOf(other)?.sync;
      if (s && Number.isFinite(s.percent)) return s;
    }
  }
  return own;
}

const hostByName = (name) => state.hosts.find((h) => h.name === name) ?? null;
const clusterOf = (host) => (host?.cluster ? state.clusters.find((c) => c.name === host.cluster) ?? null : null);
const statusClusterOf = (host) =>
  (host?.cluster ? state.statusClusters.find((c) => c.name === host.cluster) ?? null : null);

function notice(text, bad = false) {
  const n = $('notice');
  n.textContent = text;
  n.classList.toggle('bad', bad);
}

// ------------------------------------------------------------------ views

function showLogin(message = '') {
  stopPolling();
  $('app-view').hidden = true;
  $('who').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message;
  $('login-user').focus();
}

function showApp() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = `Logged in as ${api.user}`;
  startPolling();
}

// Re-rendering keeps the focused control (by its data-key) focused.
function keepFocus(render) {
  const key = document.activeElement?.dataset?.key;
  render();
  if (key) document.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

function renderHosts() {
  const body = $('hosts-body');
  const rows = [];
  const inCluster = new Set();
  for (const c of state.clusters) {
    const members = [...c.members].sort((a, b) => (a.role === 'primary' ? -1 : 1));
    members.forEach((m) => inCluster.add(m.name));
    const tipId = `tip-${c.name}`;
    const ips = c.ips ?? {};
    const tip = el('div', { class: 'tip', role: 'tooltip', id: tipId },
      el('dl', {},
        el('dt', { text: 'VIP' }), el('dd', { text: ips.vip ?? '—' }),
        el('dt', { text: 'Primary' }), el('dd', { text: ips.primary ?? '—' }),
        el('dt', { text: 'Secondary' }), el('dd', { text: ips.secondary ?? '—' }),
        el('dt', { text: 'Crossover' }),
        el('dd', { text: ips.crossover ? `${ips.crossover.interface}: ${ips.crossover.primary} / ${ips.crossover.secondary}` : 'none' })));
    const cell = el('th', { colspan: 7, scope: 'rowgroup', class: 'cluster-cell' },
      el('button', { type: 'button', class: 'cluster-name', 'data-key': `cluster:${c.name}`,
                     'aria-describedby': tipId }, `Cluster ${c.name}`),
      ' ', badge(c.status), c.status_reason ? el('span', { class: 'hint', text: ` ${c.status_reason}` }) : null,
      tip);
    cell.addEventListener('keydown', (e) => { if (e.key === 'Escape') cell.classList.add('tip-hidden'); });
    cell.addEventListener('focusout', () => cell.classList.remove('tip-hidden'));
    cell.addEventListener('mouseleave', () => cell.classList.remove('tip-hidden'));
    rows.push(el('tr', { class: 'cluster-row', 'data-cluster': c.name }, cell));
    for (const m of members) {
      const h = hostByName(m.name) ?? { name: m.name, address: m.address, status: m.status, cluster: c.name };
      rows.push(hostRow(h, c, m.role));
    }
  }
  for (const h of state.hosts) {
    if (!inCluster.has(h.name)) rows.push(hostRow(h, null, h.cluster_role));
  }
  keepFocus(() => body.replaceChildren(...rows));
  if (state.selected && !hostByName(state.selected)) select(null);
}

function hostRow(h, cluster, role) {
  const selected = h.name === state.selected;
  const radio = el('input', { type: 'radio', name: 'host-select', value: h.name,
                              'aria-label': `Select ${h.name}`, 'data-key': `select:${h.name}`,
                              checked: selected });
  radio.addEventListener('change', () => select(h.name));
  const license = cluster?.license ? `${cluster.license.id}${cluster.license.valid ? '' : ' (invalid)'}` : '—';
  const roleText = role ?? (h.role === 'console' ? 'console' : '—');
  const status = el('td', { 'data-label': 'Status' }, badge(h.status));
  const sync = h.status === 'Synchronizing' ? syncOf(h.name) : null;
  if (h.status === 'Synchronizing' && sync && Number.isFinite(sync.percent)) {
    status.append(el('progress', { class: 'mini-progress', max: 100, value: sync.percent.toFixed(1),
                                   'aria-label': `${h.name} synchronization` }));
  }
  const tr = el('tr', { class: `host${cluster ? ' member' : ''}${selected ? ' selected' : ''}`, 'data-host': h.name },
    el('td', { class: 'pick' }, radio),
    el('td', { class: 'name', text: h.name }),
    el('td', { 'data-label': 'IP', text: h.address ?? '—' }),
    el('td', { 'data-label': 'Role', text: roleText }),
    status,
    el('td', { 'data-label': 'Version', text: h.facts?.version ?? '—' }),
    el('td', { 'data-label': 'License', text: license }));
  tr.addEventListener('click', (e) => { if (e.target !== radio) { select(h.name); radio.focus(); } });
  return tr;
}

function select(name) {
  state.selected = name;
  for (const tr of document.querySelectorAll('#hosts-body tr.host')) {
    const on = tr.dataset.host === name;
    tr.classList.toggle('selected', on);
    const r = tr.querySelector('input[type=radio]');
    if (r) r.checked = on;
  }
  $('selected-line').textContent = name ? `Selected: ${name}` : 'Select a host to act on it.';
  updateMenu();
  renderDetails();
  if (name) refreshDetails(name).then(renderDetails, () => {});
}

// Which menu entries the selected host allows (the API still decides).
function allowed(action, h) {
  if (!h) return false;
  const paired = h.paired !== false && h.role !== 'console';
  switch (action) {
    case 'add': return paired && !h.cluster;
    case 'edit': case 'remove': return !!h.cluster;
    case 'online': return paired && /Offline/.test(h.status ?? '');
    case 'offline': return paired && h.status !== 'Offline' && h.status !== 'Unclustered';
    case 'restore': return paired && h.status === 'Failed';
    case 'takeover': return paired && h.status === 'Standby';
    case 'giveback': return paired && h.status === 'Active';
    case 'factory_reset': return paired && h.role === 'managed' && !h.cluster;
    default: return false;
  }
}

function updateMenu() {
  const h = hostByName(state.selected);
  for (const b of $('ha-menu').querySelectorAll('button')) {
    const ok = allowed(b.dataset.action, h);
    b.disabled = !ok;
    b.setAttribute('aria-disabled', String(!ok));
  }
}

function renderDetails() {
  const box = $('details-body');
  const h = hostByName(state.selected);
  if (!h) { box.replaceChildren(el('p', { class: 'hint', text: 'No host selected.' })); return; }
  const c = clusterOf(h);
  const sc = statusClusterOf(h);
  const parts = [];
  parts.push(el('dl', { class: 'facts' },
    el('dt', { text: 'Name' }), el('dd', { text: h.name }),
    el('dt', { text: 'Status' }), el('dd', {}, badge(h.status), h.status_reason ? ` ${h.status_reason}` : ''),
    el('dt', { text: 'Cluster' }), el('dd', { text: h.cluster ?? 'none' }),
    el('dt', { text: 'Role' }), el('dd', { text: h.cluster_role ?? '—' }),
    el('dt', { text: 'Agent' }), el('dd', { text: h.agent_address ?? '—' }),
    el('dt', { text: 'Facts read' }), el('dd', { text: h.facts_at ? timeOf(h.facts_at) : 'never' })));
  const repl = replicationOf(h.name);
  const sync = h.status === 'Synchronizing' ? syncOf(h.name) : repl?.sync;
  if (repl || sync) {
    if (sync) {
      const pct = Number.isFinite(sync.percent) ? sync.percent : null;
      const rate = `${formatBytes(sync.rate_bytes_per_s)}/s`;
      const label = pct === null
        ? `Synchronizing: ${formatBytes(sync.done_bytes)} sent at ${rate}`
        : `Synchronizing: ${pct.toFixed(1)}% (${formatBytes(sync.done_bytes)} of ${formatBytes(sync.total_bytes)}) at ${rate}, ETA ${formatEta(sync.eta_s)}`;
      parts.push(el('div', { class: 'sync' },
        el('p', { id: 'sync-label', text: label }),
        el('progress', { max: 100, 'aria-labelledby': 'sync-label', ...(pct === null ? {} : { value: pct.toFixed(1) }) })));
    } else {
      parts.push(el('p', { text: `Replication: ${repl?.replication ?? '?'}, disk ${repl?.disk ?? '?'}${repl?.protected ? ', protected' : ''}` }));
    }
  }
  if (sc) {
    parts.push(el('h3', { text: 'Troubleshooting' }),
      el('p', {}, `Primary ${sc.primary?.host ?? '—'}: `, badge(sc.primary?.status),
                  ` · Secondary ${sc.secondary?.host ?? '—'}: `, badge(sc.secondary?.status)),
      el('p', { class: 'advice', text: sc.possible_action || 'No action needed.' }));
  } else if (h.status_reason) {
    parts.push(el('h3', { text: 'Troubleshooting' }), el('p', { class: 'advice', text: h.status_reason }));
  }
  if (c) {
    parts.push(el('p', { class: 'hint', text: `Cluster ${c.name}: VIP ${c.ips?.vip ?? '—'}, license ${c.license?.id ?? 'none'}` }));
  }
  keepFocus(() => box.replaceChildren(...parts));
}

function renderTimeline() {
  // Kinds (docs/CONSOLE.md, "History"): status and failover rows show the
  // change; an action row changes no status: it shows what was asked and
  // the answer (its reason), e.g. "action offline requested by admin: accepted".
  const items = state.history.map((e) => el('li', { class: ['failover', 'action'].includes(e.kind) ? e.kind : 'status' },
    el('time', { datetime: e.at, text: timeOf(e.at) }),
    e.kind === 'failover' ? el('span', { class: 'kind', text: 'Failover' }) : null,
    el('strong', { text: e.host }), e.cluster ? ` (${e.cluster})` : '', ': ',
    e.kind === 'action'
      ? e.reason ?? 'action'
      : [e.old_status ?? '?', ' → ', e.new_status ?? '?',
         e.reason ? el('span', { class: 'hint', text: ` — ${e.reason}` }) : null]));
  if (items.length === 0) items.push(el('li', { class: 'hint', text: 'No status changes yet.' }));
  $('timeline').replaceChildren(...items);
}

// ------------------------------------------------------------------ polling

async function refreshDetails(name) {
  const r = await api.get(hostPath(name));
  state.details.set(name, r.host);
}

async function poll() {
  if (!api.loggedIn || state.polling) return;
  state.polling = true;
  try {
    const [hosts, status, clusters, history, licenses] = await Promise.all([
      api.get('/hosts'), api.get('/status'), api.get('/clusters'),
      api.get(`/history?limit=${HISTORY_ROWS}`), api.get('/licenses')]);
    state.hosts = hosts.hosts ?? [];
    const byName = new Map((status.hosts ?? []).map((s) => [s.name, s]));
    for (const h of state.hosts) {
      const s = byName.get(h.name);
      if (s) Object.assign(h, { status: s.status, status_reason: s.status_reason, cluster_role: s.cluster_role });
    }
    state.statusClusters = status.clusters ?? [];
    state.clusters = clusters.clusters ?? [];
    state.history = history.entries ?? [];
    state.licenses = licenses.licenses ?? [];
    // Facts with the replication object: the selected host and every host
    // that synchronizes (for its progress bar).
    // While a host synchronizes, every host with an HA role (its peer, the
    // sync source, knows the total).
    const syncing = state.hosts.some((h) => h.status === 'Synchronizing');
    const wanted = new Set(state.hosts.filter((h) => h.status === 'Synchronizing' || (syncing && h.cluster_role))
      .map((h) => h.name));
    if (state.selected) wanted.add(state.selected);
    await Promise.all([...wanted].map((n) => refreshDetails(n).catch(() => {})));
    for (const n of [...state.details.keys()]) if (!wanted.has(n)) state.details.delete(n);
    renderHosts();
    renderDetails();
    renderTimeline();
    updateMenu();
    state.lastOk = new Date();
    $('live').textContent = `Updated ${state.lastOk.toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    $('live').textContent = `Update failed: ${e.message}`;
  } finally {
    state.polling = false;
  }
}

function startPolling() {
  stopPolling();
  const tick = async () => {
    await poll();
    if (api.loggedIn) state.timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
}

// ------------------------------------------------------------------ dialogs

let opener = null;

function openDialog(d) {
  opener = document.activeElement;
  d.showModal();
  const first = d.querySelector('[autofocus], input:not([type=hidden]), select, textarea, button:not(.cancel)');
  first?.focus();
}

function closeDialog(d) {
  if (d.open) d.close();
}

function restoreFocus() {
  const target = opener && document.contains(opener) && !opener.disabled ? opener : $('ha-menu-button');
  target.focus();
}

for (const d of document.querySelectorAll('dialog')) {
  d.addEventListener('close', restoreFocus);
  d.querySelector('.cancel')?.addEventListener('click', () => closeDialog(d));
}

// Field errors: the API names the offending field ("options.sync_rate_mb").
function clearErrors(form, general) {
  $(general).textContent = '';
  for (const f of form.querySelectorAll('[data-field]')) f.removeAttribute('aria-invalid');
  for (const p of form.querySelectorAll('.field-error')) p.textContent = '';
}

function showError(form, general, e) {
  const field = e.field ? form.querySelector(`[data-field="${CSS.escape(e.field)}"]`) : null;
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    const p = $(field.getAttribute('aria-describedby').split(' ')[0]);
    p.textContent = `${e.message} (${e.code})`;
    const details = field.closest('details');
    if (details) details.open = true;
    field.focus();
  } else {
    $(general).textContent = `${e.message}${e.code ? ` (${e.code})` : ''}`;
  }
}

const OPTIONS = [
  { key: 'heartbeat_interval_ms', label: 'Heartbeat interval (ms)', type: 'number' },
  { key: 'heartbeat_timeout_ms', label: 'Heartbeat timeout (ms)', type: 'number' },
  { key: 'sync_rate_mb', label: 'Synchronization rate (MB/s)', type: 'number' },
  { key: 'connectivity_peers', label: 'Connectivity test peers (comma-separated; empty: every other managed host)', type: 'list' },
  { key: 'crossover_interface', label: 'Crossover interface', type: 'text' },
  { key: 'crossover_primary_ip', label: 'Crossover IP of the primary', type: 'text' },
  { key: 'crossover_secondary_ip', label: 'Crossover IP of the secondary', type: 'text' },
  { key: 'disable_replication', label: 'Disable replication (managed hosts only)', type: 'bool' },
];

function buildOptionFields(prefix) {
  const grid = document.querySelector(`[data-options="${prefix}"]`);
  for (const o of OPTIONS) {
    const id = `${prefix}-opt-${o.key}`;
    const errId = `err-${prefix}-opt-${o.key}`;
    const input = o.type === 'bool'
      ? el('input', { id, type: 'checkbox', 'data-field': `options.${o.key}`, 'aria-describedby': errId })
      : el('input', { id, type: o.type === 'number' ? 'number' : 'text', 'data-field': `options.${o.key}`,
                      'aria-describedby': errId, autocomplete: 'off' });
    grid.append(el('div', { class: `field${o.type === 'bool' ? ' check' : ''}` },
      o.type === 'bool' ? input : null, el('label', { for: id, text: o.label }), o.type === 'bool' ? null : input,
      el('p', { class: 'field-error', id: errId })));
  }
}

// The options object of a form: only the fields given (or all, for an edit).
function readOptions(prefix, all) {
  const options = {};
  for (const o of OPTIONS) {
    const input = $(`${prefix}-opt-${o.key}`);
    if (o.type === 'bool') {
      if (all || input.checked) options[o.key] = input.checked;
      continue;
    }
    const v = input.value.trim();
    if (v === '') {
      if (all && o.type !== 'number') options[o.key] = null;
      continue;
    }
    if (o.type === 'number') options[o.key] = Number(v);
    else if (o.type === 'list') options[o.key] = v.split(',').map((s) => s.trim()).filter(Boolean);
    else options[o.key] = v;
  }
  return options;
}

function fillOptions(prefix, options) {
  for (const o of OPTIONS) {
    const input = $(`${prefix}-opt-${o.key}`);
    const v = options?.[o.key];
    if (o.type === 'bool') input.checked = !!v;
    else if (o.type === 'list') input.value = Array.isArray(v) ? v.join(', ') : '';
    else input.value = v ?? '';
  }
}

function licenseOptions(select, current) {
  const opts = [el('option', { value: '', text: 'Automatic (the free valid license that expires last)' })];
  for (const l of state.licenses) {
    const free = !l.cluster || l.id === current;
    opts.push(el('option', { value: l.id, disabled: !free || !l.valid,
                             text: `${l.id} — ${l.issued_to}${l.valid ? '' : ' (invalid)'}${free ? '' : ` (used by ${l.cluster})`}` }));
  }
  select.replaceChildren(...opts);
  select.value = current ?? '';
}

function openWizard() {
  const form = $('wizard-form');
  form.reset();
  clearErrors(form, 'wizard-error');
  const candidates = state.hosts.filter((h) => h.role !== 'console' && !h.cluster);
  const mk = (sel) => sel.replaceChildren(...candidates.map((h) => el('option', { value: h.name, text: `${h.name} (${h.address})` })));
  mk($('w-primary'));
  mk($('w-secondary'));
  $('w-primary').value = state.selected;
  const other = candidates.find((h) => h.name !== state.selected);
  if (other) $('w-secondary').value = other.name;
  licenseOptions($('w-license'), null);
  fillOptions('w', {});
  $('w-advanced').open = false;
  openDialog($('wizard'));
}

async function submitWizard(ev) {
  ev.preventDefault();
  const form = $('wizard-form');
  clearErrors(form, 'wizard-error');
  const body = { primary: $('w-primary').value, secondary: $('w-secondary').value,
                 primary_new_ip: $('w-ip').value.trim() };
  if ($('w-license').value) body.license = $('w-license').value;
  const options = readOptions('w', false);
  if (Object.keys(options).length) body.options = options;
  const button = $('wizard-submit');
  button.disabled = true;
  button.textContent = 'Checking the hosts and measuring the link…';
  try {
    const r = await api.post('/clusters', body);
    closeDialog($('wizard'));
    const c = r.cluster;
    const lines = [el('p', { text: `Cluster ${c.name} created: VIP ${c.ips.vip}, primary ${c.ips.primary}. Deploy the changes to apply it.` })];
    if (r.link) lines.push(el('p', { text: `Link measured: ${r.link.rtt_ms.toFixed(2)} ms round trip, ${r.link.mbps.toFixed(0)} Mbit/s.` }));
    if (r.warnings?.length) {
      lines.push(el('div', { class: 'warnings', role: 'note' }, el('strong', { text: 'Warnings' }),
        el('ul', {}, r.warnings.map((w) => el('li', { text: `${w.message} (${w.code})` })))));
    }
    showResult('Add HA Host', lines);
    await poll();
  } catch (e) {
    showError(form, 'wizard-error', e);
  } finally {
    button.disabled = false;
    button.textContent = 'Create cluster';
  }
}

function openEdit() {
  const h = hostByName(state.selected);
  const c = clusterOf(h);
  if (!c) return;
  const form = $('edit-form');
  form.reset();
  clearErrors(form, 'edit-error');
  $('edit-h').textContent = `Edit HA Host: cluster ${c.name}`;
  licenseOptions($('e-license'), c.license?.id ?? null);
  fillOptions('e', c.options);
  form.dataset.cluster = c.name;
  openDialog($('edit'));
}

async function submitEdit(ev) {
  ev.preventDefault();
  const form = $('edit-form');
  clearErrors(form, 'edit-error');
  const body = { options: readOptions('e', true) };
  const license = $('e-license').value;
  body.license = license === '' ? null : license;
  try {
    const r = await api.patch(clusterPath(form.dataset.cluster), body);
    closeDialog($('edit'));
    notice(r.changed ? `Cluster ${form.dataset.cluster} changed: deploy the changes to apply them.`
                     : `Cluster ${form.dataset.cluster}: nothing changed.`);
    await poll();
  } catch (e) {
    showError(form, 'edit-error', e);
  }
}

function confirmAction(title, text, ok) {
  return new Promise((resolve) => {
    $('confirm-h').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = ok;
    const d = $('confirm');
    const done = () => { d.removeEventListener('close', done); resolve(d.returnValue === 'ok'); };
    d.returnValue = '';
    d.addEventListener('close', done);
    openDialog(d);
    $('confirm-ok').focus();
  });
}
$('confirm-ok').value = 'ok';

function showResult(title, nodes) {
  $('result-h').textContent = title;
  $('result-body').replaceChildren(...nodes);
  openDialog($('result'));
}

async function removeSecondary() {
  const h = hostByName(state.selected);
  const c = clusterOf(h);
  if (!c) return;
  const secondary = c.members.find((m) => m.role === 'secondary');
  const ok = await confirmAction('Remove HA Host',
    `Remove ${secondary?.name ?? 'the secondary'} from cluster ${c.name}? The primary runs unprotected ` +
    `and takes the VIP ${c.ips.vip} back as its address once deployed.`, 'Remove');
  if (!ok) return;
  try {
    const r = await api.del(`${clusterPath(c.name)}/secondary`);
    notice(`${r.host} left cluster ${c.name}: deploy the changes to apply it.`);
    await poll();
  } catch (e) {
    notice(`Remove HA Host refused: ${e.message} (${e.code})`, true);
  }
}

const ACTIONS = {
  offline: { title: 'Set System Offline', verb: 'Set offline' },
  online: { title: 'Set System Online', verb: 'Set online' },
  restore: { title: 'Restore System', verb: 'Restore' },
  takeover: { title: 'Takeover', verb: 'Take over' },
  giveback: { title: 'Giveback', verb: 'Give back' },
};

// The text of the confirmation, or null where nothing moves the VIP.
function vipMove(action, h) {
  const c = clusterOf(h);
  const vip = c?.ips?.vip ? `the VIP ${c.ips.vip}` : 'the VIP';
  if (action === 'offline' && h.status === 'Active') {
    return `${h.name} is active: setting it offline is a manual failover; ${vip} and the services move to its peer.`;
  }
  if (action === 'offline') return `${h.name} stops taking part in HA until it is set online.`;
  if (action === 'takeover') return `${h.name} takes over: the active host releases ${vip} and the services, and ${h.name} becomes active.`;
  if (action === 'giveback') return `${h.name} gives back: it releases ${vip} and the services, and its peer becomes active.`;
  return null;
}

async function hostAction(action) {
  const h = hostByName(state.selected);
  if (!h) return;
  const a = ACTIONS[action];
  const move = vipMove(action, h);
  if (move && !(await confirmAction(a.title, `${move} Continue?`, a.verb))) return;
  notice(`${a.title}: asking ${h.name}…`);
  try {
    const r = await api.post(`${hostPath(h.name)}/actions`, { action });
    const reply = typeof r.reply === 'string' ? r.reply : r.reply?.message ?? JSON.stringify(r.reply ?? 'done');
    notice(`${a.title} on ${r.host}: ${reply}`);
    await poll();
  } catch (e) {
    notice(`${a.title} refused: ${e.message} (${e.code})`, true);
  }
}

// Factory Reset (docs/CONSOLE.md, "Host actions"): an unclustered managed
// host forgets its pairing and what was deployed to it; its row goes.
async function factoryReset() {
  const h = hostByName(state.selected);
  if (!h) return;
  const ok = await confirmAction('Factory Reset',
    `Factory reset ${h.name}? It forgets this console (its pairing), the configuration deployed to it and ` +
    `any HA state, and is removed from the list. Its /store data and content packages are kept. ` +
    `To manage it again, pair it with a new pairing string (tandemd pair-token on ${h.name}).`, 'Factory reset');
  if (!ok) return;
  notice(`Factory Reset: asking ${h.name}…`);
  try {
    const r = await api.post(`${hostPath(h.name)}/actions`, { action: 'factory_reset' });
    notice(`${r.host} was factory reset and removed from the console.`);
    await poll();
  } catch (e) {
    notice(`Factory Reset refused: ${e.message} (${e.code})`, true);
  }
}

async function deploy() {
  const ok = await confirmAction('Deploy Changes',
    'Send the pending configuration changes to every host? Hosts joining or leaving a cluster restart their HA role.', 'Deploy');
  if (!ok) return;
  notice('Deploying…');
  try {
    const r = await api.post('/deploy', { full: false });
    notice(`Deployed revision ${r.revision} to ${Array.isArray(r.hosts) ? r.hosts.length : 0} host(s).`);
    await poll();
  } catch (e) {
    notice(`Deploy refused: ${e.message} (${e.code})`, true);
  }
}

async function submitPair(ev) {
  ev.preventDefault();
  const form = $('pair-form');
  clearErrors(form, 'pair-error');
  const body = { address: $('p-address').value.trim(), pairing_token: $('p-token').value.trim() };
  if ($('p-name').value.trim()) body.name = $('p-name').value.trim();
  try {
    const r = await api.post('/hosts', body);
    closeDialog($('pair'));
    notice(`Paired ${r.host.name} (${r.host.address}).`);
    await poll();
  } catch (e) {
    showError(form, 'pair-error', e);
  }
}

// ------------------------------------------------------------------ menu

const menuButton = $('ha-menu-button');
const menu = $('ha-menu');
const menuItems = () => [...menu.querySelectorAll('button:not(:disabled)')];

function openMenu() {
  updateMenu();
  menu.hidden = false;
  menuButton.setAttribute('aria-expanded', 'true');
  (menuItems()[0] ?? menu.querySelector('button'))?.focus();
}

function closeMenu(focusButton) {
  menu.hidden = true;
  menuButton.setAttribute('aria-expanded', 'false');
  if (focusButton) menuButton.focus();
}

menuButton.addEventListener('click', () => (menu.hidden ? openMenu() : closeMenu(false)));
menuButton.addEventListener('keydown', (e) => { if (e.key === 'ArrowDown') { e.preventDefault(); openMenu(); } });
menu.addEventListener('keydown', (e) => {
  const items = menuItems();
  const i = items.indexOf(document.activeElement);
  if (e.key === 'Escape') { e.preventDefault(); closeMenu(true); }
  else if (e.key === 'ArrowDown') { e.preventDefault(); items[(i + 1) % items.length]?.focus(); }
  else if (e.key === 'ArrowUp') { e.preventDefault(); items[(i - 1 + items.length) % items.length]?.focus(); }
  else if (e.key === 'Tab') closeMenu(false);
});
document.addEventListener('click', (e) => {
  if (!menu.hidden && !menu.contains(e.target) && e.target !== menuButton) closeMenu(false);
});
menu.addEventListener('click', (e) => {
  const b = e.target.closest('button');
  if (!b || b.disabled) return;
  closeMenu(true);
  const action = b.dataset.action;
  if (action === 'add') openWizard();
  else if (action === 'edit') openEdit();
  else if (action === 'remove') removeSecondary();
  else if (action === 'factory_reset') factoryReset();
  else hostAction(action);
});

// ------------------------------------------------------------------ start

buildOptionFields('w');
buildOptionFields('e');
$('wizard-form').addEventListener('submit', submitWizard);
$('edit-form').addEventListener('submit', submitEdit);
$('pair-form').addEventListener('submit', submitPair);
$('pair-button').addEventListener('click', () => {
  const form = $('pair-form');
  form.reset();
  clearErrors(form, 'pair-error');
  openDialog($('pair'));
});
$('deploy-button').addEventListener('click', deploy);
$('logout').addEventListener('click', async () => {
  try { await api.logout(); } catch { /* the session is forgotten anyway */ }
  showLogin('Logged out.');
});
$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  try {
    await api.login($('login-user').value.trim(), $('login-password').value);
    $('login-password').value = '';
    showApp();
    $('main').focus();
  } catch (e) {
    $('login-error').textContent = `${e.message}`;
    $('login-password').select();
  }
});
api.onUnauthenticated = () => showLogin('The session has ended: log in again.');
updateMenu();
if (api.loggedIn) showApp(); else showLogin();
