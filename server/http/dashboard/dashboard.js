// The daxd dashboard: polls /metrics (Prometheus text) and /api/v1/* once per interval
// (?interval=MS, default 1000), derives rates from counter deltas and percentiles from
// histogram bucket deltas, and draws everything with inline SVG. No dependencies.
//
// For tests and the curious, window.daxdDashboard holds the last snapshot it rendered:
// { ticks, volume, sessions, pins, locks, nbd, rates }.
//
// With `daxd serve --auth`, /api/v1/* needs an admin token (and /metrics a token under
// --metrics-auth token). The page learns that from GET /api/v1/auth (open: {required}),
// then shows a form instead of the data until a token is entered. The token is kept in
// sessionStorage (this tab only; gone when it closes) and sent as `Authorization: Bearer`
// on every fetch. A 401/403/429 stops the polling, forgets the token and shows the form
// again with the server's reason. After a token is (re)entered, the first poll fetches one
// URL before the others, so a wrong token costs one failed attempt, not six (failures
// are rate-limited per address).
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const POLL_MS = Math.max(200, Number(params.get('interval')) || 1000);
  /** The least top of a chart's y axis, by unit: 4 KiB/s, 4 ops/s, 1 ms, 4. */
  const AXIS_MAX_MIN = { bytes: 4096, ops: 4, ms: 1, count: 4 };
  const HISTORY_POINTS = 120;
  const LOCK_WINDOW_MS = 10000;
  const TABLE_ROWS = 10;
  const COLORS = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626', '#0891b2'];
  const TOKEN_KEY = 'daxd.token';

  const state = {
    ticks: 0, prev: null, lockSnapshots: [], volume: null, sessions: null, pins: null, locks: null, nbd: null, rates: null,
    series: {
      // read and write: every path (file, mapping, DMA, NBD); nbd: the NBD part of both.
      iops: { read: [], write: [], nbd: [] },
      bandwidth: { read: [], write: [], nbd: [] },
      faults: { hole: [], allocate: [], mapped: [], cow: [], sync: [] },
      lockwait: { p50: [], p95: [], p99: [] },
      pins: { 'pins active': [], 'layout breaks waiting': [], 'layout-break waits /s': [] },
    },
  };
  window.daxdDashboard = state;

  // ---- the token (auth on) -----------------------------------------------------------------

  const auth = {
    token: window.sessionStorage.getItem(TOKEN_KEY),
    /** The current token has been accepted by a fetch of /api/v1/*. */
    accepted: false,
    /** Bumped to stop the running poll loop (a refused token, a new token). */
    generation: 0,
  };

  /** A fetch refused for its credentials (401, 403, 429): the form comes back with `message`. */
  class AuthRefused extends Error {}

  async function get(path) {
    const headers = auth.token ? { authorization: 'Bearer ' + auth.token } : {};
    const r = await fetch(path, { cache: 'no-store', headers });
    if (r.status === 401 || r.status === 403 || r.status === 429) {
      let reason = '';
      try {
        const body = await r.json();
        reason = body.message || body.reason || '';
      } catch { /* not JSON: the status says enough */ }
      throw new AuthRefused('HTTP ' + r.status + (reason ? ': ' + reason : ''));
    }
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r;
  }

  function setStatus(text, cls, dataState) {
    const status = document.getElementById('status');
    status.textContent = text;
    status.className = 'pill ' + cls;
    status.dataset.state = dataState;
  }

  /** Hides the data, stops polling and asks for a token (error: why, '' at first). */
  function askForToken(error) {
    auth.generation++;
    auth.token = null;
    auth.accepted = false;
    window.sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(state, { prev: null, lockSnapshots: [], volume: null, sessions: null, pins: null, locks: null, nbd: null, rates: null });
    document.querySelector('main').hidden = true;
    document.getElementById('auth').hidden = false;
    document.getElementById('auth-error').textContent = error;
    document.getElementById('meta').textContent = '';
    document.getElementById('updated').textContent = '';
    setStatus('token needed', 'pill-wait', 'auth');
    const input = document.getElementById('auth-token');
    input.value = '';
    input.focus();
  }

  document.getElementById('auth').addEventListener('submit', (event) => {
    // No navigation (the CSP forbids form actions anyway): the token stays in this page.
    event.preventDefault();
    const token = document.getElementById('auth-token').value.trim();
    if (token === '') {
      document.getElementById('auth-error').textContent = 'Enter a token.';
      return;
    }
    auth.token = token;
    auth.accepted = false;
    window.sessionStorage.setItem(TOKEN_KEY, token);
    document.getElementById('auth').hidden = true;
    document.querySelector('main').hidden = false;
    setStatus('connecting…', 'pill-wait', 'connecting');
    startPolling();
  });

  // ---- Prometheus text format ----------------------------------------------------------

  function parseMetrics(text) {
    const samples = new Map();
    for (const line of text.split('\n')) {
      if (line === '' || line[0] === '#') continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      if (!samples.has(m[1])) samples.set(m[1], []);
      samples.get(m[1]).push({ labels, value: Number(m[3]) });
    }
    return samples;
  }

  function sum(samples, name, filter) {
    let total = 0;
    for (const s of samples.get(name) || []) {
      if (!filter || Object.entries(filter).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
    return total;
  }

  /** Cumulative bucket counts of a histogram without labels: [[le, count], ...] ascending. */
  function buckets(samples, name) {
    return (samples.get(name + '_bucket') || [])
      .map((s) => [s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), s.value])
      .sort((a, b) => a[0] - b[0]);
  }

  /** histogram_quantile over the difference of two bucket snapshots; null without observations. */
  function quantile(q, now, before) {
    const delta = now.map(([le, c], i) => [le, c - (before && before[i] ? before[i][1] : 0)]);
    const total = delta.length ? delta[delta.length - 1][1] : 0;
    if (total <= 0) return null;
    const rank = q * total;
    let lower = 0;
    let lowerCount = 0;
    for (const [le, c] of delta) {
      if (c >= rank) {
        if (le === Infinity) return lower;
        return lower + (le - lower) * ((rank - lowerCount) / Math.max(c - lowerCount, 1e-9));
      }
      lower = le;
      lowerCount = c;
    }
    return lower;
  }

  // ---- formatting -------------------------------------------------------------------------

  function fmtNumber(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    if (a >= 100 || Number.isInteger(v)) return Math.round(v).toString();
    return v.toFixed(a >= 10 ? 1 : 2);
  }

  function fmtBytes(v) {
    if (v === null || v === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + units[i];
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms < 1) return Math.round(ms * 1000) + ' µs';
    if (ms < 1000) return (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    const s = Math.round(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  }

  function fmtUnit(unit, v) {
    if (unit === 'bytes') return fmtBytes(v) + '/s';
    if (unit === 'ms') return fmtMs(v);
    if (unit === 'ops') return fmtNumber(v) + '/s';
    return fmtNumber(v);
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      // Through the CSSOM: the page's CSP forbids inline style attributes.
      if (k === 'style') node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // ---- charts -----------------------------------------------------------------------------

  /**
   * The y axis's top: four gridline steps of a round size (1, 2, 2.5, 5 x 10^k; bytes in the
   * top's unit, KiB or MiB, so they stay round) covering v, and never less than AXIS_MAX_MIN of the unit, so
   * an idle chart still has four distinct labels (not "1 B, 1 B, 1 B").
   */
  function niceMax(v, unit) {
    const want = Math.max(v > 0 ? v : 0, AXIS_MAX_MIN[unit] || 4) / 4;
    // Bytes: round in the unit of the top (a 2 MiB top steps by 0.5 MiB, not by 500 KiB).
    const base = unit === 'bytes' ? Math.pow(1024, Math.max(0, Math.floor(Math.log(4 * want) / Math.log(1024)))) : 1;
    const scaled = want / base;
    const p = Math.pow(10, Math.floor(Math.log10(scaled)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= scaled) return 4 * m * p * base;
    return 40 * p * base;
  }

  function push(series, values) {
    for (const [name, v] of Object.entries(values)) {
      const arr = series[name];
      arr.push(v);
      if (arr.length > HISTORY_POINTS) arr.shift();
    }
  }

  function drawChart(id, series) {
    const fig = document.getElementById(id);
    const unit = fig.dataset.unit;
    const svg = fig.querySelector('svg');
    const width = Math.max(svg.clientWidth, 300);
    const height = Math.max(svg.clientHeight, 120);
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.replaceChildren();
    const left = 58;
    const right = 8;
    const top = 8;
    const bottom = 18;
    const names = Object.keys(series);
    const all = names.flatMap((n) => series[n]).filter((v) => v !== null);
    const max = niceMax(Math.max(0, ...all), unit);
    const points = Math.max(...names.map((n) => series[n].length));
    // Until the history is full, the points span the whole width: the axis says how long.
    const span = Math.max(points - 1, 1);
    const x = (i) => left + ((width - left - right) * i) / span;
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    for (let g = 0; g <= 4; g++) {
      const v = (max * g) / 4;
      svg.append(svgEl('line', { class: 'gridline', x1: left, x2: width - right, y1: y(v), y2: y(v) }));
      const label = svgEl('text', { class: 'axis', x: left - 6, y: y(v) + 3, 'text-anchor': 'end' });
      label.textContent = v === 0 ? '0' : fmtUnit(unit, v).replace('/s', '');
      svg.append(label);
    }
    const seconds = Math.round((span * POLL_MS) / 1000);
    for (const [t, anchor, xPos] of [['-' + seconds + ' s', 'start', left], ['now', 'end', width - right]]) {
      const label = svgEl('text', { class: 'axis', x: xPos, y: height - 4, 'text-anchor': anchor });
      label.textContent = t;
      svg.append(label);
    }
    const legend = fig.querySelector('.legend');
    legend.replaceChildren();
    names.forEach((name, k) => {
      const color = COLORS[k % COLORS.length];
      const values = series[name];
      let d = '';
      values.forEach((v, i) => {
        if (v === null) return;
        d += (d === '' || values[i - 1] === null ? 'M' : 'L') + x(i).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
      });
      // Every other series dashed: equal rates (reads = writes) stay visible as two lines.
      if (d !== '') svg.append(svgEl('path', { class: 'series-line', d, stroke: color, 'stroke-dasharray': k % 2 === 1 ? '6 4' : 'none' }));
      const latest = values.length ? values[values.length - 1] : null;
      const value = el('b', {}, [fmtUnit(unit, latest)]);
      legend.append(el('span', { class: 'series', 'data-series': name, 'data-value': latest === null ? '' : String(latest) }, [
        el('span', { class: 'swatch', style: 'background:' + color }), name + ' ', value,
      ]));
    });
    fig.dataset.points = String(points);
  }

  // ---- tiles, volume, tables --------------------------------------------------------------

  function tile(id, value, raw, sub) {
    const t = document.getElementById(id);
    const v = t.querySelector('.value');
    v.textContent = value;
    v.dataset.value = raw === null || raw === undefined ? '' : String(raw);
    t.querySelector('.sub').textContent = sub || '';
  }

  function renderVolume(v) {
    const b = v.blocks;
    const unwritten = b.unwritten === null ? 0 : b.unwritten;
    const written = b.used - unwritten;
    const pct = (n) => (b.total > 0 ? (100 * n) / b.total : 0);
    const bar = document.getElementById('volume-bar');
    bar.querySelector('.seg-written').style.width = pct(written) + '%';
    bar.querySelector('.seg-unwritten').style.width = pct(unwritten) + '%';
    const legend = document.getElementById('volume-legend');
    legend.replaceChildren(
      ...[['written', 'var(--written)', written], ['unwritten', 'var(--unwritten)', unwritten], ['free', 'var(--free)', b.free]].map(([name, color, n]) =>
        el('span', { class: 'series', 'data-series': name, 'data-value': String(n) }, [
          el('span', { class: 'swatch', style: 'background:' + color }), name + ' ', el('b', {}, [fmtBytes(n * v.blockSize) + ' (' + pct(n).toFixed(1) + '%)']),
        ])),
    );
    const facts = [
      // raw = the volume file; usable = its data blocks (the rest is superblock, journal, inodes, bitmaps).
      ['size', fmtBytes(v.sizeBytes) + ' raw · ' + fmtBytes(b.total * v.blockSize) + ' usable (' + b.total.toLocaleString('en-US') + ' blocks of ' + fmtBytes(v.blockSize) + ')'],
      ['files', v.files.toLocaleString('en-US') + ' of ' + v.maxFiles.toLocaleString('en-US')],
      ['unwritten', b.unwritten === null ? 'counting…' : b.unwritten.toLocaleString('en-US') + ' blocks'],
      ['journal', v.journal.commits.toLocaleString('en-US') + ' commits · last ' + fmtMs(v.journal.lastCommitMs)],
      ['mount', v.mount.wasClean ? 'clean' : 'after a crash · journal ' + v.mount.journal],
    ];
    document.getElementById('volume-facts').replaceChildren(...facts.flatMap(([k, val]) => [el('dt', {}, [k]), el('dd', { 'data-fact': k }, [val])]));
    tile('tile-volume', pct(b.used).toFixed(1) + '%', b.used, fmtBytes(b.used * v.blockSize) + ' of ' + fmtBytes(b.total * v.blockSize) + ' usable');
    const up = fmtMs(v.server.uptimeMs);
    document.getElementById('meta').textContent =
      v.volumePath + ' · ' + v.uuid.slice(0, 8) + ' · gRPC ' + v.server.grpcAddress + ' · v' + v.server.version + ' · up ' + up;
  }

  function fillTable(id, rows, total, cells, emptyText) {
    const body = document.querySelector('#' + id + ' tbody');
    const columns = document.querySelectorAll('#' + id + ' thead th').length;
    const out = rows.slice(0, TABLE_ROWS).map((r) => {
      const tr = el('tr', { 'data-key': cells.key(r) });
      for (const [text, cls] of cells.row(r)) tr.append(el('td', cls ? { class: cls } : {}, [text]));
      return tr;
    });
    if (rows.length === 0) out.push(el('tr', { class: 'none' }, [el('td', { colspan: String(columns) }, [emptyText])]));
    if (total > out.length && rows.length > 0) {
      out.push(el('tr', { class: 'more' }, [el('td', { colspan: String(columns) }, ['… ' + (total - Math.min(rows.length, TABLE_ROWS)) + ' more'])]));
    }
    body.replaceChildren(...out);
  }

  function renderSessions(s) {
    const now = Date.now();
    document.getElementById('sessions-count').textContent = s.total + ' open';
    fillTable('table-sessions', s.sessions, s.total, {
      key: (r) => r.id,
      row: (r) => [[r.id, 'id'], [r.clientName], [fmtMs(r.leaseMs), 'num'], [fmtMs(Math.max(0, r.expiresAtMs - now)), 'num'],
        [String(r.mappings), 'num'], [String(r.pins), 'num']],
    }, 'no sessions');
  }

  function renderPins(p) {
    document.getElementById('pins-count').textContent = p.total + ' pins · ' + p.pinnedBlocks + ' blocks · ' + p.recalls + ' recalls · ' + p.revocations + ' revoked';
    fillTable('table-pins', p.pins, p.total, {
      key: (r) => r.id,
      row: (r) => [[r.id, 'id'], [r.sessionId, 'id'], [r.clientName], [String(r.ino), 'num'],
        [r.npages === 1 ? String(r.firstPgoff) : r.firstPgoff + '–' + (r.firstPgoff + r.npages - 1), 'num'],
        [r.writable ? 'rw' : 'ro'], [r.state, 'state-' + r.state], [fmtMs(r.ageMs), 'num']],
    }, 'no pins');
    tile('tile-pins', String(p.total), p.total, p.pinnedBlocks + ' blocks pinned · ' + p.revocations + ' revoked');
  }

  function renderLocks(l) {
    document.getElementById('locks-count').textContent = l.held + ' held · ' + l.waiters + ' waiting';
    fillTable('table-locks', l.locks, l.held, {
      key: (r) => r.ino + ':' + r.pgoff,
      row: (r) => [[String(r.ino), 'num'], [String(r.pgoff), 'num'], [r.state], [fmtMs(r.heldMs), r.heldMs >= 100 ? 'num hot' : 'num'],
        [String(r.waiters), r.waiters > 0 ? 'num hot' : 'num'], [r.waiters ? fmtMs(r.longestWaitMs) : '–', 'num']],
    }, 'no entry lock held');
  }

  function renderNbd(n) {
    const now = Date.now();
    document.getElementById('nbd-count').textContent = n.address === null ? 'NBD off' : n.total + ' open · ' + n.address;
    fillTable('table-nbd', n.connections, n.total, {
      key: (r) => String(r.id),
      row: (r) => [[String(r.id), 'num'], [r.peer, 'id'], [r.export === null ? '(handshake)' : r.export], [String(r.inFlight), 'num'],
        [fmtMs(Math.max(0, now - r.openedAtMs)), 'num']],
    }, n.address === null ? 'NBD is off (--nbd off)' : 'no NBD connection');
  }

  // A drain in progress on a node: "draining 3/10 files · 12 MiB / 40 MiB".
  function drainText(d) {
    if (!d) return '';
    return ', draining ' + d.filesMoved + '/' + d.filesTotal + ' files' + (d.filesFailed > 0 ? ' (' + d.filesFailed + ' failed)' : '') + ' · ' + fmtBytes(d.bytesCopied) + ' / ' + fmtBytes(d.bytesTotal);
  }

  // A cluster node (daxd serve --etcd): its view of the nodes. Hidden on a lone server.
  function renderCluster(c) {
    document.getElementById('card-cluster').hidden = !c.enabled;
    if (!c.enabled) return;
    const live = c.nodes.filter((n) => n.state === 'live').length;
    document.getElementById('cluster-count').textContent = 'this node: ' + c.self + (c.fenced ? ' (FENCED)' : '') + ' · ' + live + ' live of ' + c.nodes.length;
    fillTable('table-cluster', c.nodes, c.nodes.length, {
      key: (n) => n.name,
      row: (n) => [[n.name + (n.name === c.self ? ' (this node)' : ''), 'id'], [n.state === 'live' ? (n.name === c.self && c.fenced ? 'fenced' : 'live') + drainText(n.drain) : 'down'],
        [n.grpc || '-', 'id'], [n.state === 'live' ? fmtBytes(n.capacityBytes) : '-', 'num'], [n.state === 'live' ? fmtBytes(n.freeBytes) : '-', 'num'],
        [String(n.files), 'num']],
    }, 'no node');
  }

  // ---- one poll --------------------------------------------------------------------------

  async function json(path) {
    return (await get(path)).json();
  }

  function rates(samples, nowMs) {
    const c = {
      readOps: sum(samples, 'daxd_io_ops_total', { direction: 'read' }),
      writeOps: sum(samples, 'daxd_io_ops_total', { direction: 'write' }),
      readBytes: sum(samples, 'daxd_io_bytes_total', { direction: 'read' }),
      writeBytes: sum(samples, 'daxd_io_bytes_total', { direction: 'write' }),
      nbdOps: sum(samples, 'daxd_io_ops_total', { path: 'nbd' }),
      nbdBytes: sum(samples, 'daxd_io_bytes_total', { path: 'nbd' }),
      layoutBreakWaits: sum(samples, 'daxd_layout_break_waits_total'),
      lockWaits: sum(samples, 'daxd_entry_lock_waits_total'),
      faults: {},
    };
    for (const kind of Object.keys(state.series.faults)) c.faults[kind] = sum(samples, 'daxd_page_faults_total', { kind });
    const prev = state.prev;
    state.prev = { t: nowMs, c };
    if (!prev) return null;
    const dt = (nowMs - prev.t) / 1000;
    const r = (a, b) => Math.max(0, (a - b) / dt);
    const out = {
      readOps: r(c.readOps, prev.c.readOps), writeOps: r(c.writeOps, prev.c.writeOps),
      readBytes: r(c.readBytes, prev.c.readBytes), writeBytes: r(c.writeBytes, prev.c.writeBytes),
      nbdOps: r(c.nbdOps, prev.c.nbdOps), nbdBytes: r(c.nbdBytes, prev.c.nbdBytes),
      layoutBreakWaits: r(c.layoutBreakWaits, prev.c.layoutBreakWaits), lockWaits: r(c.lockWaits, prev.c.lockWaits), faults: {},
    };
    for (const kind of Object.keys(c.faults)) out.faults[kind] = r(c.faults[kind], prev.c.faults[kind]);
    return out;
  }

  function lockPercentiles(samples, nowMs) {
    const now = buckets(samples, 'daxd_entry_lock_wait_seconds');
    state.lockSnapshots.push({ t: nowMs, b: now });
    while (state.lockSnapshots.length > 1 && nowMs - state.lockSnapshots[1].t >= LOCK_WINDOW_MS) state.lockSnapshots.shift();
    const before = state.lockSnapshots.length > 1 ? state.lockSnapshots[0].b : null;
    const ms = (q) => { const s = quantile(q, now, before); return s === null ? null : s * 1000; };
    return { p50: ms(0.5), p95: ms(0.95), p99: ms(0.99) };
  }

  async function tick() {
    const started = performance.now();
    // A token not yet accepted is tried on one URL first (one failure if it is wrong).
    const first = auth.accepted ? null : await json('/api/v1/volume');
    auth.accepted = true;
    const [text, volume, sessions, pins, locks, nbd, cluster] = await Promise.all([
      get('/metrics').then((r) => r.text()),
      first === null ? json('/api/v1/volume') : first, json('/api/v1/sessions'), json('/api/v1/pins'), json('/api/v1/locks'), json('/api/v1/nbd'),
      json('/api/v1/cluster'),
    ]);
    const samples = parseMetrics(text);
    const r = rates(samples, started);
    const lock = lockPercentiles(samples, started);
    Object.assign(state, { volume, sessions, pins, locks, nbd, rates: r });
    if (r) {
      push(state.series.iops, { read: r.readOps, write: r.writeOps, nbd: r.nbdOps });
      push(state.series.bandwidth, { read: r.readBytes, write: r.writeBytes, nbd: r.nbdBytes });
      push(state.series.faults, r.faults);
      push(state.series.lockwait, lock);
      push(state.series.pins, {
        'pins active': pins.total, 'layout breaks waiting': sum(samples, 'daxd_layout_breaks_waiting'), 'layout-break waits /s': r.layoutBreakWaits,
      });
      const faultsTotal = Object.values(r.faults).reduce((a, b) => a + b, 0) - r.faults.sync;
      tile('tile-iops', fmtNumber(r.readOps + r.writeOps), r.readOps + r.writeOps,
        fmtNumber(r.readOps) + ' read · ' + fmtNumber(r.writeOps) + ' write · ' + fmtNumber(r.nbdOps) + ' NBD');
      tile('tile-bandwidth', fmtBytes(r.readBytes + r.writeBytes) + '/s', r.readBytes + r.writeBytes,
        fmtBytes(r.readBytes) + ' read · ' + fmtBytes(r.writeBytes) + ' write · ' + fmtBytes(r.nbdBytes) + ' NBD');
      tile('tile-faults', fmtNumber(faultsTotal), faultsTotal, fmtNumber(r.faults.allocate) + ' allocate · ' + fmtNumber(r.faults.hole) + ' hole');
      tile('tile-lockwait', fmtMs(lock.p99), lock.p99, fmtNumber(r.lockWaits) + ' waits/s · ' + sum(samples, 'daxd_entry_lock_waiters') + ' waiting now');
      for (const id of Object.keys(state.series)) drawChart('chart-' + id, state.series[id]);
    }
    renderVolume(volume);
    renderSessions(sessions);
    renderPins(pins);
    renderLocks(locks);
    renderNbd(nbd);
    renderCluster(cluster);
    tile('tile-sessions', String(sessions.total), sessions.total, sum(samples, 'daxd_sessions_ended_total', { reason: 'expired' }) + ' expired since start');
    state.ticks++;
    document.body.dataset.ticks = String(state.ticks);
  }

  async function loop(generation) {
    try {
      await tick();
      if (generation !== auth.generation) return;
      setStatus('live', 'pill-ok', 'live');
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString() + ' · every ' + POLL_MS / 1000 + ' s';
    } catch (err) {
      if (generation !== auth.generation) return;
      if (err instanceof AuthRefused) return askForToken(err.message);
      setStatus('unreachable', 'pill-bad', 'error');
      document.getElementById('updated').textContent = String(err && err.message ? err.message : err);
    }
    setTimeout(() => { if (generation === auth.generation) loop(generation); }, POLL_MS);
  }

  function startPolling() {
    loop(++auth.generation);
  }

  /** Asks the server whether it wants a token (GET /api/v1/auth, open), then polls or shows the form. */
  async function start() {
    let required = false;
    try {
      const r = await fetch('/api/v1/auth', { cache: 'no-store' });
      // A daxd without the endpoint (404) has no auth.
      if (r.ok) required = (await r.json()).required === true;
      else if (r.status !== 404) throw new Error('/api/v1/auth: HTTP ' + r.status);
    } catch (err) {
      setStatus('unreachable', 'pill-bad', 'error');
      document.getElementById('updated').textContent = String(err && err.message ? err.message : err);
      setTimeout(start, POLL_MS);
      return;
    }
    if (required && !auth.token) askForToken('');
    else startPolling();
  }

  start();
})();
