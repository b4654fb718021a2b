// Live kiosk analytics: one server-sent event per update of the kiosk's panel, then an `end` event.
// Everything is written with textContent: class and head names are data, never markup.
const $ = (id) => document.getElementById(id);
const status = (text, cls = '') => { $('status').textContent = text; $('status').className = `status ${cls}`; };
window.dashboard = { updates: 0, state: null, ended: false };

function get(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? o : o[k]), obj);
}

function fmt(v) {
  if (v === null || v === undefined) return '-';
  return typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : String(v);
}

function group(title, counts, key) {
  const box = document.createElement('div');
  box.className = 'group';
  box.appendChild(Object.assign(document.createElement('h2'), { textContent: title }));
  const max = Math.max(1, ...Object.values(counts));
  for (const [name, n] of Object.entries(counts)) {
    const row = document.createElement('div');
    row.className = 'row';
    const bar = document.createElement('div');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.style.width = `${(100 * n) / max}%`;
    bar.appendChild(fill);
    const count = Object.assign(document.createElement('span'), { className: 'count', textContent: String(n) });
    count.dataset.key = `totals.${key}.${name}`;
    count.dataset.value = JSON.stringify(n);
    row.append(Object.assign(document.createElement('span'), { textContent: name }), bar, count);
    box.appendChild(row);
  }
  return box;
}

function render(s) {
  window.dashboard.state = s;
  window.dashboard.updates += 1;
  for (const el of document.querySelectorAll('.numbers [data-key]')) {
    const v = get(s, el.dataset.key);
    el.textContent = fmt(v);
    el.dataset.value = JSON.stringify(v ?? null);
  }
  $('about').textContent = `${s.model} on ${s.source} · ${s.processed_frames} frames analysed`;
  const groups = [];
  for (const [key, value] of Object.entries(s.totals)) {
    if (key.startsWith('by_')) groups.push(group(key.slice(3).replace(/_/g, ' '), value, key));
  }
  const other = Object.entries(s.totals).filter(([k]) => (k.startsWith('mean_') && k !== 'mean_dwell_s') || k.startsWith('unknown_'));
  if (other.length) {
    const box = document.createElement('div');
    box.className = 'group';
    box.appendChild(Object.assign(document.createElement('h2'), { textContent: 'other heads' }));
    for (const [k, v] of other) {
      const p = document.createElement('div');
      p.className = 'row';
      const value = Object.assign(document.createElement('span'), { className: 'count', textContent: fmt(v) });
      value.dataset.key = `totals.${k}`;
      value.dataset.value = JSON.stringify(v ?? null);
      p.append(Object.assign(document.createElement('span'), { textContent: k.replace(/_/g, ' ') }), document.createElement('span'), value);
      box.appendChild(p);
    }
    groups.push(box);
  }
  $('groups').replaceChildren(...groups);
  const notices = [...s.notices, ...s.warnings.filter((w) => !s.notices.includes(w))];
  $('notices').hidden = notices.length === 0;
  $('notices').replaceChildren(...notices.map((n) => Object.assign(document.createElement('p'), { textContent: n })));
  status(s.final ? 'kiosk stopped: final totals' : 'live', s.final ? 'stopped' : '');
}

const events = new EventSource('events');
events.onopen = () => status('live');
events.onmessage = (e) => render(JSON.parse(e.data));
events.addEventListener('end', () => {
  window.dashboard.ended = true;
  events.close();
  status('kiosk stopped: final totals', 'stopped');
});
events.onerror = () => { if (!window.dashboard.ended) status('disconnected: waiting for the kiosk…', 'down'); };
