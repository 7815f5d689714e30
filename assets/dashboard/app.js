// The ollana dashboard: listens to /ollana/v1/events (server-sent events, one snapshot a second) and
// draws the node, the LAN and three charts of the last minutes with uPlot. No inline script or style
// (the page's Content-Security-Policy allows only the node's own files).

const KEEP = 300;
const series = {
  rps: { el: 'chart-rps', label: 'requests/s', pick: (r) => r.rps, stroke: '#2f6fdb' },
  ttft: { el: 'chart-ttft', label: 'seconds', pick: (r) => r.ttftS, stroke: '#d9822b' },
  tps: { el: 'chart-tps', label: 'tokens/s', pick: (r) => r.tps, stroke: '#1a7f37' },
};
const times = [];
const charts = {};

function chartWidth(el) {
  return Math.max(280, el.clientWidth || 320);
}

function makeCharts() {
  for (const [key, s] of Object.entries(series)) {
    const el = document.getElementById(s.el);
    s.values = [];
    charts[key] = new uPlot(
      {
        width: chartWidth(el),
        height: 180,
        legend: { show: false },
        // The last five minutes, however few points there are yet.
        scales: {
          x: { time: true, range: (_u, _min, max) => [(max ?? Date.now() / 1000) - KEEP, max ?? Date.now() / 1000] },
          y: { range: (_u, _min, max) => [0, Math.max(1e-3, max ?? 1) * 1.1] },
        },
        series: [{}, { label: s.label, stroke: s.stroke, width: 2, spanGaps: false }],
        axes: [{}, { size: 56 }],
      },
      [[], []],
      el,
    );
  }
  addEventListener('resize', () => {
    for (const [key, s] of Object.entries(series)) {
      const el = document.getElementById(s.el);
      charts[key].setSize({ width: chartWidth(el), height: 180 });
    }
  });
}

function addRates(list) {
  for (const r of list) {
    times.push(r.t / 1000);
    for (const s of Object.values(series)) s.values.push(s.pick(r));
  }
  while (times.length > KEEP) {
    times.shift();
    for (const s of Object.values(series)) s.values.shift();
  }
  for (const [key, s] of Object.entries(series)) {
    charts[key].setData([times, s.values]);
    const el = document.getElementById(s.el);
    el.dataset.points = String(times.length);
    el.dataset.max = String(Math.max(0, ...s.values.filter((v) => v !== null)));
    el.dataset.last = String(s.values.at(-1) ?? '');
  }
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(id, rows, empty) {
  const body = document.querySelector(`#${id} tbody`);
  const trs = rows.map((cells) => {
    const tr = document.createElement('tr');
    tr.append(...cells);
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement('tr');
    const td = cell(empty, 'muted');
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    tr.append(td);
    trs.push(tr);
  }
  body.replaceChildren(...trs);
  body.parentElement.dataset.rows = String(rows.length);
}

// Node ids are long; the first group names a node on a small LAN, the whole id is in the tooltip.
function idCell(id, note) {
  const td = cell(`${id.split('-')[0]}${note}`);
  td.title = id;
  return td;
}

function health(h) {
  if (h === null) return cell('unknown', 'muted');
  return h ? cell('healthy', 'ok') : cell('down', 'bad');
}

function show(snap) {
  const node = document.getElementById('node');
  node.textContent = `${snap.node.name} (${snap.node.role}) · ${snap.node.id.split('-')[0]} · v${snap.node.version}`;
  node.title = snap.node.id;
  node.dataset.role = snap.node.role;
  fill(
    'servers',
    snap.servers.map((s) => [
      idCell(s.id, s.self ? ' (this node)' : ''),
      cell(s.url),
      cell(s.leader ? 'leader' : ''),
      health(s.healthy),
      cell(s.inFlight === null ? '' : String(s.inFlight), 'num'),
      cell(s.models.join(', ')),
    ]),
    snap.node.role === 'client' ? 'no server node found on the LAN yet' : 'none',
  );
  fill(
    'models',
    snap.models.map((m) => [
      cell(m.model),
      cell(`${m.inFlight} / ${m.slots}`, 'num'),
      cell(String(m.waiting), 'num'),
      cell(m.waiting > 0 ? (m.longestWaitMs / 1000).toFixed(1) : '', 'num'),
    ]),
    snap.node.role === 'client' ? 'queues are kept by the server nodes' : 'no model in use',
  );
  fill(
    'devices',
    snap.devices.map((d) => [
      cell(d.device),
      cell(String(d.requests), 'num'),
      cell(String(d.tokens), 'num'),
      cell(String(d.waiting), 'num'),
      cell(String(d.servedAfterWait), 'num'),
      cell(String(d.refused), d.refused > 0 ? 'num bad' : 'num'),
      cell(d.weight === null ? '' : String(d.weight), 'num'),
    ]),
    snap.node.role === 'client' ? 'devices are seen by server nodes' : 'no device has sent a request',
  );
  document.getElementById('totals').textContent =
    `${snap.requests} requests served · ${snap.inFlight} in flight · ${snap.clients} client node(s) heard · up ${snap.node.uptimeS} s`;
  if (snap.rate !== null) addRates([snap.rate]);
}

function connect() {
  const live = document.getElementById('live');
  const events = new EventSource('/ollana/v1/events');
  events.addEventListener('open', () => {
    live.dataset.state = 'live';
    live.textContent = 'live';
  });
  events.addEventListener('error', () => {
    live.dataset.state = 'lost';
    live.textContent = 'reconnecting';
  });
  events.addEventListener('history', (e) => {
    times.length = 0;
    for (const s of Object.values(series)) s.values.length = 0;
    addRates(JSON.parse(e.data));
  });
  events.addEventListener('snapshot', (e) => show(JSON.parse(e.data)));
  events.addEventListener('unavailable', (e) => {
    live.dataset.state = 'lost';
    live.textContent = `node status unavailable: ${JSON.parse(e.data)}`;
  });
}

makeCharts();
connect();
