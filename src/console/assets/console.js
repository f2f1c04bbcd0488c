// Seawall incident console: reads /-/status every second and draws it.
//
// Served under `script-src 'self'; style-src 'self'`: no inline script, no code from strings, no style
// attributes (widths go through the CSSOM, which the policy allows), and no string is ever parsed
// as HTML: every string in /-/status may be a client's input (rejected keys, campaign tags,
// blocked hosts), so it reaches the page as textContent only.
'use strict';

(function () {
  const SLOTS = 600; // seconds of history the server keeps (docs/console.md)
  const REFRESH_MS = 1000;
  const SVGNS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // DOM helpers

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function add(parent, ...children) {
    for (const c of children) {
      if (c !== null && c !== undefined && c !== false) parent.append(c);
    }
    return parent;
  }

  function badge(text, kind) {
    return el('span', 'badge' + (kind ? ' ' + kind : ''), text);
  }

  function withUnit(value, unit, cls) {
    const e = el('div', cls || 'big', value);
    if (unit) e.append(el('span', 'unit', unit));
    return e;
  }

  // ---------------------------------------------------------------------------------------
  // Formatting: what an SRE reads at a glance, not what a machine would print.

  function fmtRate(v) {
    v = Number(v) || 0;
    if (v === 0) return '0';
    if (v >= 10000) return (v / 1000).toFixed(0) + 'k';
    if (v >= 1000) return (v / 1000).toFixed(1) + 'k';
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    if (v >= 0.01) return v.toFixed(2);
    return '<0.01';
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    if (v < 1) return v.toFixed(2) + ' ms';
    if (v < 10) return v.toFixed(1) + ' ms';
    if (v < 1000) return v.toFixed(0) + ' ms';
    return (v / 1000).toFixed(2) + ' s';
  }

  function fmtCount(n) {
    return Number(n || 0).toLocaleString('en-US');
  }

  function fmtBytes(n) {
    n = Number(n) || 0;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[i];
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.floor(Number(s) || 0));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + sec + 's';
    return sec + 's';
  }

  function parseTime(t) {
    if (!t) return null;
    // RFC 3339 with nanoseconds: Date wants at most milliseconds.
    const d = new Date(String(t).replace(/(\.\d{3})\d+/, '$1'));
    return isNaN(d.getTime()) ? null : d;
  }

  function fmtClock(t) {
    const d = parseTime(t);
    return d ? d.toLocaleTimeString('en-GB') : '–';
  }

  function fmtAgo(t) {
    const d = parseTime(t);
    if (!d) return '';
    return fmtDuration((Date.now() - d.getTime()) / 1000) + ' ago';
  }

  function fmtRatio(r) {
    if (r === null || r === undefined) return '–';
    return (r >= 10 ? r.toFixed(0) : r.toFixed(1)) + '×';
  }

  function level(ratio) {
    if (ratio === null || ratio === undefined) return '';
    return ratio > 2 ? 'bad' : ratio > 1 ? 'warn' : 'ok';
  }

  // ---------------------------------------------------------------------------------------
  // Sparklines: inline SVG over a fixed ten-minute axis, newest at the right, so a short
  // history (a console just started) reads as "only the last minutes", not as stretched.

  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function spark(values, opts) {
    opts = opts || {};
    const W = 600, H = 100, PAD = 3;
    const s = svg('svg', {
      viewBox: '0 0 ' + W + ' ' + H,
      preserveAspectRatio: 'none',
      class: 'spark' + (opts.cls ? ' ' + opts.cls : ''),
      'aria-hidden': 'true',
    });
    const vals = (values || []).slice(-SLOTS).map((v) => Number(v) || 0);
    const n = vals.length;
    let max = 0;
    for (const v of vals) if (v > max) max = v;
    if (opts.ref && opts.ref > max) max = opts.ref;
    max = max <= 0 ? 1 : max * 1.1;
    const y = (v) => (H - PAD - (v / max) * (H - 2 * PAD)).toFixed(1);
    const x = (i) => (((SLOTS - n + i) / (SLOTS - 1)) * W).toFixed(1);
    s.append(svg('line', { class: 'axis', x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5,
      'vector-effect': 'non-scaling-stroke' }));
    if (n > 0) {
      const pts = [];
      for (let i = 0; i < n; i++) pts.push(x(i) + ',' + y(vals[i]));
      if (n === 1) pts.push(W + ',' + y(vals[0]));
      const first = pts[0].split(',')[0];
      const last = pts[pts.length - 1].split(',')[0];
      s.append(svg('path', { class: 'area', d: 'M' + first + ',' + H + ' L' + pts.join(' L') + ' L' + last + ',' + H + ' Z' }));
      s.append(svg('polyline', { class: 'line', points: pts.join(' '), 'vector-effect': 'non-scaling-stroke' }));
    }
    if (opts.ref) {
      const ry = y(opts.ref);
      s.append(svg('line', { class: 'ref', x1: 0, x2: W, y1: ry, y2: ry, 'vector-effect': 'non-scaling-stroke' }));
    }
    return s;
  }

  /// Element-wise sum of series aligned at their newest end.
  function sumSeries(list) {
    let len = 0;
    for (const s of list) len = Math.max(len, s.length);
    const out = new Array(len).fill(0);
    for (const s of list) {
      const off = len - s.length;
      for (let i = 0; i < s.length; i++) out[off + i] += Number(s[i]) || 0;
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Header, alerts, tiles

  function renderFacts(o) {
    const f = $('facts');
    const fact = (label, value) => add(el('span'), label + ' ', el('b', null, value));
    f.replaceChildren(
      fact('generation', o.generation),
      fact('loaded', fmtClock(o.loaded_at)),
      fact('up', fmtDuration(o.uptime_s)),
      fact('listening on', (o.listen || []).join(', ') || '–'),
    );
  }

  function alertBox(kind, title, items) {
    const box = el('div', 'alert ' + kind);
    box.append(el('div', 'title', title));
    if (items && items.length) {
      const ul = el('ul');
      for (const it of items) {
        const li = el('li');
        if (it.at) li.append(el('span', 'at', it.at));
        li.append(document.createTextNode(it.message));
        ul.append(li);
      }
      box.append(ul);
    }
    return box;
  }

  function renderAlerts(s) {
    const o = s.overview;
    const out = [];
    const r = o.last_reload;
    if (r && !r.ok) {
      out.push(alertBox('bad',
        'Last reload FAILED at ' + fmtClock(r.at) + ' (' + fmtAgo(r.at) + '): generation ' +
        o.generation + ', loaded ' + fmtClock(o.loaded_at) + ', is still in force.',
        r.errors.map((e) => ({ at: e.at, message: e.message }))));
    } else if (r && r.ok) {
      const at = parseTime(r.at);
      if (at && Date.now() - at.getTime() < 10 * 60 * 1000) {
        const changes = (o.last_changes || []).slice(0, 8).map((c) => ({ message: c }));
        if ((o.last_changes || []).length > 8) {
          changes.push({ message: '… and ' + (o.last_changes.length - 8) + ' more (GET /-/config)' });
        }
        out.push(alertBox('info', 'Reloaded at ' + fmtClock(r.at) + ' (' + fmtAgo(r.at) +
          '): generation ' + o.generation + (changes.length ? '' : ', no changes'), changes));
      }
    }
    for (const u of s.upstreams) {
      if (u.servers.length > 0 && u.healthy_servers === 0) {
        out.push(alertBox('bad', 'Upstream "' + u.name + '" has no healthy server (' +
          u.servers.join(', ') + ')'));
      }
    }
    if ((o.needs_restart || []).length) {
      out.push(alertBox('warn', 'Changed settings that take effect only after a restart',
        o.needs_restart.map((m) => ({ message: m }))));
    }
    if ((o.warnings || []).length) {
      out.push(alertBox('warn', 'Config warnings', o.warnings.map((w) => ({ at: w.at, message: w.message }))));
    }
    $('alerts').replaceChildren(...out);
  }

  function tile(id, label, value, unit, sub, status, series, sparkCls) {
    const t = el('div', 'tile' + (status ? ' ' + status : ''));
    t.dataset.tile = id;
    t.append(el('div', 'label', label));
    const v = el('div', 'value', value);
    if (unit) v.append(el('span', 'unit', unit));
    t.append(v);
    t.append(el('div', 'sub', sub || '\u00a0'));
    if (series) t.append(spark(series, { cls: sparkCls }));
    return t;
  }

  function renderTiles(s) {
    const routes = s.routes;
    const rps = routes.reduce((a, r) => a + r.rps, 0);
    const e5 = routes.reduce((a, r) => a + r.per_s['5xx'], 0);
    const e4 = routes.reduce((a, r) => a + r.per_s['4xx'], 0);
    const rejected = s.limits.reduce((a, l) => a + l.per_s.rejected, 0);
    const dry = s.limits.reduce((a, l) => a + l.per_s.dry_run_rejected, 0);
    let worstLimit = null;
    for (const l of s.limits) {
      if (l.per_s.rejected > 0 && (!worstLimit || l.per_s.rejected > worstLimit.per_s.rejected)) worstLimit = l;
    }
    let hottest = null;
    for (const c of s.campaigns) {
      if (c.ratio !== null && (!hottest || c.ratio > hottest.ratio)) hottest = c;
    }
    const busiest = s.campaigns.reduce((a, c) => (a && a.observed_rps >= c.observed_rps ? a : c), null);
    let slow = null;
    for (const r of routes) {
      if (r.p99_ms !== null && (!slow || r.p99_ms > slow.p99_ms)) slow = r;
    }
    const servers = s.upstreams.reduce((a, u) => a + u.servers.length, 0);
    const healthy = s.upstreams.reduce((a, u) => a + u.healthy_servers, 0);
    const downPools = s.upstreams.filter((u) => u.servers.length > 0 && u.healthy_servers === 0);
    const errShare = rps > 0 ? (e5 / rps) * 100 : 0;

    const tiles = [
      tile('requests', 'Requests', fmtRate(rps), '/s',
        fmtRate(e4) + '/s 4xx · ' + routes.filter((r) => r.rps > 0).length + ' routes busy',
        '', sumSeries(routes.map((r) => r.series))),
      tile('errors', 'Server errors (5xx)', fmtRate(e5), '/s',
        rps > 0 ? errShare.toFixed(errShare < 10 ? 1 : 0) + '% of requests' : 'no traffic',
        e5 === 0 ? 'ok' : errShare > 1 ? 'bad' : 'warn'),
      tile('limited', 'Rate-limited', fmtRate(rejected), '/s',
        worstLimit ? 'mostly ' + (worstLimit.campaign ? worstLimit.name : worstLimit.scope + ' / ' + worstLimit.name)
          : dry > 0 ? fmtRate(dry) + '/s would be (dry run)' : 'no limit is rejecting',
        rejected > 0 ? 'warn' : 'ok', sumSeries(s.limits.map((l) => l.rejected_series)), 'red'),
      tile('campaigns', 'Campaign load',
        hottest ? fmtRatio(hottest.ratio) : busiest && busiest.observed_rps > 0 ? fmtRate(busiest.observed_rps) : '–',
        hottest ? 'of plan' : busiest && busiest.observed_rps > 0 ? '/s' : '',
        hottest ? hottest.name + ' ' + fmtRate(hottest.observed_rps) + ' / ' + fmtRate(hottest.expected_peak_rps) + ' r/s'
          : busiest && busiest.observed_rps > 0 ? busiest.name : s.campaigns.length ? 'no campaign traffic' : 'no campaigns configured',
        hottest ? level(hottest.ratio) : ''),
      tile('upstreams', 'Healthy servers', healthy + ' / ' + servers, '',
        downPools.length ? downPools.map((u) => u.name).join(', ') + ' down' : s.upstreams.length + ' upstream pools',
        downPools.length ? 'bad' : healthy < servers ? 'warn' : 'ok'),
      tile('latency', 'Slowest p99', slow ? fmtMs(slow.p99_ms) : '–', '',
        slow ? slow.name + ' · p50 ' + fmtMs(slow.p50_ms) : 'no requests in 60 s', ''),
      tile('csp', 'CSP violations', fmtCount(s.csp.last_10m), 'in 10 min',
        fmtCount(s.csp.total) + ' since start', s.csp.last_10m > 0 ? 'warn' : 'ok', s.csp.series, 'violet'),
    ];
    $('tiles').replaceChildren(...tiles);
  }

  // ---------------------------------------------------------------------------------------
  // Routes

  function td(text, cls) {
    return el('td', cls, text);
  }

  function renderRoutes(s) {
    const body = $('routes').tBodies[0];
    const rows = [];
    for (const r of s.routes) {
      const tr = el('tr');
      tr.dataset.route = r.name;
      const busy = r.series.some((n) => n > 0);
      if (!busy) tr.className = 'quiet';
      tr.append(td(r.matched ? r.name : '(no route)', 'name'));
      const up = el('td');
      if (r.upstream) {
        up.append(document.createTextNode(r.upstream));
        const kind = r.healthy_servers === 0 ? 'bad' : r.healthy_servers < r.servers ? 'warn' : 'ok';
        up.append(badge(r.healthy_servers + '/' + r.servers + ' up', kind));
      } else {
        up.append(el('span', 'dim', 'answered by Seawall (404, CSP reports)'));
      }
      tr.append(up);
      tr.append(td(fmtRate(r.rps), 'num c-rps'));
      const chart = el('td', 'chart-col');
      chart.append(spark(r.series, { cls: r.per_s['5xx'] > 0 ? 'red' : '' }));
      tr.append(chart);
      const cls = (v, hot) => 'num' + (v > 0 && hot ? ' ' + hot : '');
      tr.append(td(fmtRate(r.per_s['2xx']), cls(r.per_s['2xx'], 'okc') + ' c-2xx'));
      tr.append(td(fmtRate(r.per_s['3xx']), 'num c-3xx'));
      tr.append(td(fmtRate(r.per_s['4xx']), cls(r.per_s['4xx'], 'warm') + ' c-4xx'));
      tr.append(td(fmtRate(r.per_s['5xx']), cls(r.per_s['5xx'], 'hot') + ' c-5xx'));
      tr.append(td(fmtMs(r.p50_ms), 'num c-p50'));
      tr.append(td(fmtMs(r.p99_ms), 'num c-p99'));
      rows.push(tr);
    }
    if (!rows.length) {
      const tr = el('tr');
      const c = td('No routes configured.', 'empty');
      c.colSpan = 10;
      tr.append(c);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  // ---------------------------------------------------------------------------------------
  // Limits

  const DECISIONS = [
    ['passed', 'passed'], ['delayed', 'delayed'], ['rejected', 'rejected'],
    ['dry_run_rejected', 'dry-run rejected'], ['exempt', 'exempt'],
  ];

  function keysTable(keys, caption, dry) {
    const t = el('table', 'keys' + (dry ? ' dry' : ''));
    t.append(el('caption', null, caption));
    const max = keys.reduce((a, k) => Math.max(a, k.count), 1);
    keys.forEach((k, i) => {
      const tr = el('tr');
      tr.append(td(i + 1, 'rank'));
      const key = td(k.key, 'key');
      key.title = k.key;
      tr.append(key);
      const bar = el('td', 'bar');
      const fill = el('div', 'bar-fill');
      fill.style.width = Math.max(2, (k.count / max) * 100).toFixed(1) + '%';
      bar.append(fill);
      tr.append(bar);
      const c = td(null, 'count');
      if (k.error > 0) {
        c.append(el('span', 'approx', '≈'));
        c.title = '± ' + fmtCount(k.error) + ' (space-saving estimate)';
      }
      c.append(document.createTextNode(fmtCount(k.count)));
      tr.append(c);
      t.append(tr);
    });
    return t;
  }

  function limitCard(l) {
    const biting = l.per_s.rejected > 0;
    const card = el('div', 'card' + (biting ? ' biting' : ''));
    card.dataset.limit = l.scope + '/' + l.name;
    const head = el('div', 'card-head');
    const owner = !l.campaign ? l.scope : l.name.includes(l.campaign) ? 'campaign' : 'campaign ' + l.campaign;
    head.append(el('span', 'scope', owner + ' ·'));
    head.append(el('span', 'title', l.name));
    head.append(badge('key ' + l.key, 'info'));
    if (l.dry_run) head.append(badge('dry run', 'warn'));
    if (biting) head.append(badge('rejecting', 'bad'));
    card.append(head);
    card.append(el('div', 'spec', l.rate + ' · burst ' + l.burst + (l.nodelay ? ' · nodelay' : '') +
      ' · answers ' + l.status));

    const row = el('div', 'row');
    const big = withUnit(fmtRate(l.per_s.rejected), 'rejected/s', 'big' + (biting ? ' hot' : ''));
    big.classList.add('c-rejected');
    row.append(big);
    const dec = el('div', 'decisions');
    const total = DECISIONS.reduce((a, [k]) => a + l.per_s[k], 0);
    const stack = el('div', 'stack');
    const legend = el('div', 'legend');
    for (const [k, label] of DECISIONS) {
      const v = l.per_s[k];
      if (total > 0 && v > 0) {
        const part = el('span', 'k-' + k);
        part.style.width = ((v / total) * 100).toFixed(2) + '%';
        stack.append(part);
      }
      if (v > 0 || k === 'passed' || k === 'rejected') {
        const item = el('span');
        item.append(el('span', 'sw k-' + k), document.createTextNode(label + ' '), el('b', null, fmtRate(v) + '/s'));
        legend.append(item);
      }
    }
    dec.append(stack, legend);
    row.append(dec);
    card.append(row);
    card.append(spark(l.rejected_series, { cls: 'red wide' }));
    const tracked = el('div', 'spark-legend');
    tracked.append(el('span', null, 'rejected/s, last 10 min'),
      el('span', null, fmtCount(l.tracked_keys) + ' of ' + fmtCount(l.max_keys) + ' keys tracked'));
    card.append(tracked);
    if (l.top_rejected.length) {
      card.append(keysTable(l.top_rejected, 'Rejected most, last 60 s', false));
    } else {
      card.append(el('div', 'empty', 'No key rejected in the last 60 s.'));
    }
    if (l.top_dry_run_rejected.length) {
      card.append(keysTable(l.top_dry_run_rejected, 'Would have been rejected (dry run), last 60 s', true));
    }
    return card;
  }

  function renderLimits(s) {
    const list = s.limits.slice();
    // The limits that bite come first; otherwise the config's order, so cards do not dance.
    const bites = (l) => (l.per_s.rejected > 0 || l.top_rejected.length ? 0 : 1);
    list.sort((a, b) => bites(a) - bites(b));
    const cards = list.map(limitCard);
    $('limits').replaceChildren(...(cards.length ? cards : [el('div', 'empty', 'No rate limits configured.')]));
  }

  // ---------------------------------------------------------------------------------------
  // Campaigns

  function campaignCard(c) {
    const card = el('div', 'card' + (c.ratio > 1 ? ' over' : ''));
    card.dataset.campaign = c.name;
    const head = el('div', 'card-head');
    head.append(el('span', 'title', c.name));
    head.append(badge(c.action, c.action === 'pause' || c.action === 'reject' ? 'bad' : 'info'));
    if (!c.registered) head.append(badge('no launch ticket', 'warn'));
    else head.append(badge(c.window, c.window === 'active' ? 'ok' : ''));
    card.append(head);

    const row = el('div', 'row');
    const obs = el('div', 'vs');
    obs.append(document.createTextNode('observed '), el('b', 'c-observed', fmtRate(c.observed_rps)), document.createTextNode(' r/s'));
    row.append(obs);
    if (c.expected_peak_rps !== null && c.expected_peak_rps !== undefined) {
      const exp = el('div', 'vs');
      exp.append(document.createTextNode('expected peak '), el('b', null, fmtRate(c.expected_peak_rps)), document.createTextNode(' r/s'));
      row.append(exp);
      row.append(el('div', 'ratio ' + level(c.ratio), fmtRatio(c.ratio) + ' of plan'));
    }
    card.append(row);
    card.append(spark(c.series, { cls: 'wide ' + (c.ratio > 1 ? 'amber' : 'green'), ref: c.expected_peak_rps || 0 }));
    const legend = el('div', 'spark-legend');
    legend.append(el('span', null, '10 min ago'),
      el('span', null, 'peak ' + fmtRate(c.peak_rps_10m) + ' r/s' + (c.expected_peak_rps ? ' · dashed: expected' : '')),
      el('span', null, 'now'));
    card.append(legend);
    const meta = el('div', 'meta');
    const part = (label, value) => {
      if (value === null || value === undefined || value === '' || (Array.isArray(value) && !value.length)) return;
      if (meta.childNodes.length) meta.append(document.createTextNode(' · '));
      meta.append(document.createTextNode(label + ' '), el('b', null, Array.isArray(value) ? value.join(', ') : value));
    };
    if (c.registered) {
      part('owner', c.owner);
      part('ticket', c.ticket);
      part('tags', c.tags);
      part('targets', c.targets);
      if (c.window !== 'active') part(c.window === 'upcoming' ? 'starts' : 'ended', fmtClock(c.window === 'upcoming' ? c.starts : c.ends));
    } else {
      part('applies to', 'tagged requests no launch names');
    }
    part('limit', c.limit);
    if (meta.childNodes.length) card.append(meta);
    if (!c.registered) {
      const tags = el('div', 'tags');
      for (const t of c.tags_seen || []) {
        const chip = el('span', 'tag', t.tag);
        chip.append(el('b', null, fmtCount(t.count)));
        tags.append(chip);
      }
      if (tags.childNodes.length) {
        card.append(el('div', 'meta', 'Unregistered tags seen (requests):'), tags);
      } else {
        card.append(el('div', 'meta', 'No unregistered tag seen yet.'));
      }
    }
    return card;
  }

  function renderCampaigns(s) {
    const cards = s.campaigns.map(campaignCard);
    $('campaigns').replaceChildren(...(cards.length ? cards : [el('div', 'empty', 'No campaigns configured (campaigns_file).')]));
  }

  // ---------------------------------------------------------------------------------------
  // CSP

  function renderCsp(s) {
    const c = s.csp;
    const out = [];
    const top = el('div', 'csp-top');
    top.append(withUnit(fmtCount(c.last_10m), 'in the last 10 min'));
    top.append(spark(c.series, { cls: 'violet' }));
    const pol = el('div');
    for (const p of c.policies) pol.append(badge(p.name + ': ' + p.mode, p.mode === 'enforce' ? 'ok' : 'warn'));
    top.append(pol);
    out.push(top);
    if (c.violations.length) {
      const t = el('table', 'grid-table');
      const head = el('tr');
      for (const h of ['Policy', 'Blocked host', 'Directives', 'Reports']) head.append(el('th', h === 'Reports' ? 'num' : null, h));
      t.append(add(el('thead'), head));
      const body = el('tbody');
      for (const v of c.violations) {
        const tr = el('tr');
        tr.append(td(v.policy, 'name'), td(v.blocked_host, 'mono'), td(v.directives.join(', '), 'mono'), td(fmtCount(v.count), 'num'));
        body.append(tr);
      }
      t.append(body);
      out.push(t);
    } else {
      out.push(el('div', 'empty', 'No violation reported since start.'));
    }
    $('csp').replaceChildren(...out);
  }

  // ---------------------------------------------------------------------------------------
  // Queues, canaries, fleet: panels that appear when the JSON has entries. Known fields get
  // a heading and a format; other scalar fields are shown as they come.

  const PANELS = {
    queues: {
      columns: [
        ['name', 'Queue'], ['depth', 'Depth', fmtCount], ['bytes', 'Bytes', fmtBytes],
        ['oldest_age_s', 'Oldest', fmtDuration], ['pace_rps', 'Pace', (v) => fmtRate(v) + '/s'],
        ['inflight', 'In flight', fmtCount], ['dead_letters', 'Dead letters', fmtCount],
        ['paused', 'Delivery', (v) => (v ? 'paused' : 'running')],
      ],
      actions: (q) => [q.paused
        ? { label: 'Resume', url: '/-/queues/' + encodeURIComponent(q.name) + '/resume', text: 'Restart delivery of queue "' + q.name + '" to its upstream.' }
        : { label: 'Pause', url: '/-/queues/' + encodeURIComponent(q.name) + '/pause', danger: true, text: 'Stop delivering queue "' + q.name + '" (requests are still accepted and stored).' }],
    },
    canaries: {
      columns: [
        ['route', 'Route'], ['upstream', 'Canary upstream'], ['weight', 'Weight', (v) => v + '%'],
        ['state', 'State'], ['error_rate', 'Error rate', (v) => (v * 100).toFixed(2) + '%'],
        ['p99_ms', 'p99', fmtMs], ['bad_windows', 'Bad windows'],
      ],
      actions: (c) => (c.weight > 0 ? [{ label: 'Roll back', danger: true, url: '/-/canary/' + encodeURIComponent(c.route) + '/rollback',
        text: 'Send all of route "' + c.route + '" back to its stable upstream now.' }] : []),
    },
    fleet: {
      columns: [['instance', 'Instance'], ['status', 'Status'], ['last_seen', 'Last seen', fmtAgo]],
      actions: () => [],
    },
  };

  function scalar(v) {
    return v === null || ['string', 'number', 'boolean'].includes(typeof v);
  }

  function renderOptional(name, entries) {
    const panel = $(name + '-panel');
    if (!Array.isArray(entries) || entries.length === 0) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const spec = PANELS[name];
    const known = spec.columns.filter(([k]) => entries.some((e) => k in e));
    const knownKeys = new Set(spec.columns.map(([k]) => k));
    const extra = [];
    for (const e of entries) {
      for (const k of Object.keys(e)) {
        if (!knownKeys.has(k) && !extra.includes(k) && scalar(e[k])) extra.push(k);
      }
    }
    const cols = known.concat(extra.map((k) => [k, k.replace(/_/g, ' ')]));
    const table = $(name);
    const head = el('tr');
    for (const [, label] of cols) head.append(el('th', null, label));
    head.append(el('th'));
    table.tHead.replaceChildren(head);
    const rows = entries.map((e) => {
      const tr = el('tr');
      cols.forEach(([k, , f], i) => {
        const v = e[k];
        tr.append(td(v === undefined || v === null ? '–' : f ? f(v) : String(v), i === 0 ? 'name' : null));
      });
      const act = el('td', 'num');
      for (const a of spec.actions(e)) {
        const b = el('button', 'btn small' + (a.danger ? ' danger' : ''), a.label);
        b.type = 'button';
        b.dataset.action = a.url;
        b.dataset.title = a.label;
        b.dataset.text = a.text;
        act.append(b);
      }
      tr.append(act);
      return tr;
    });
    table.tBodies[0].replaceChildren(...rows);
  }

  // ---------------------------------------------------------------------------------------
  // Actions: POSTs that change the running proxy. Always confirmed; with an admin token
  // configured, the token is asked for once and sent as `Authorization: Bearer`.

  let tokenRequired = false;
  let token = null;

  function toast(text, kind) {
    const t = $('toast');
    t.textContent = text;
    t.className = 'toast show ' + (kind || '');
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = 'toast ' + (kind || ''); }, 7000);
  }

  function confirmAction(title, text) {
    const d = $('action-dialog');
    $('action-title').textContent = title;
    $('action-text').textContent = text;
    const needToken = tokenRequired && !token;
    $('token-row').hidden = !needToken;
    $('token-input').value = '';
    return new Promise((resolve) => {
      const done = (ok) => {
        $('action-ok').onclick = null;
        $('action-cancel').onclick = null;
        $('token-input').onkeydown = null;
        d.close();
        if (ok && needToken) token = $('token-input').value.trim();
        resolve(ok && (!needToken || token));
      };
      $('action-ok').onclick = () => done(true);
      $('action-cancel').onclick = () => done(false);
      $('token-input').onkeydown = (e) => { if (e.key === 'Enter') done(true); };
      d.onclose = () => resolve(false);
      d.showModal();
      if (needToken) $('token-input').focus();
    });
  }

  async function post(url) {
    const headers = {};
    if (tokenRequired && token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(url, { method: 'POST', headers, cache: 'no-store' });
    const text = await r.text();
    let body = null;
    try { body = JSON.parse(text); } catch (_) { body = null; }
    return { status: r.status, text, body };
  }

  function describe(url, res) {
    if (url === '/-/reload' && res.body) {
      if (res.status === 200) {
        const n = (res.body.changes || []).length;
        return ['Reloaded: generation ' + res.body.generation + (n ? ', ' + n + ' change' + (n > 1 ? 's' : '') : ', no changes'), 'ok'];
      }
      if (res.status === 422) {
        return ['Reload rejected, the previous config stays:\n' + (res.body.errors || []).join('\n'), 'bad'];
      }
    }
    const ok = res.status >= 200 && res.status < 300;
    return [(ok ? 'Done: ' : 'Failed (' + res.status + '): ') + res.text.trim().slice(0, 300), ok ? 'ok' : 'bad'];
  }

  async function runAction(button) {
    const url = button.dataset.action;
    if (!(await confirmAction(button.dataset.title, button.dataset.text))) return;
    button.disabled = true;
    try {
      const res = await post(url);
      if (res.status === 401) {
        token = null;
        toast('The admin token was refused; nothing changed.', 'bad');
      } else {
        const [msg, kind] = describe(url, res);
        toast(msg, kind);
      }
    } catch (e) {
      toast('Could not reach the admin listener: ' + e.message, 'bad');
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  document.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (b) runAction(b);
  });

  // ---------------------------------------------------------------------------------------
  // The refresh loop

  let lastOk = 0;
  let timer = null;
  let inFlight = false;

  function setLive(ok, why) {
    const live = $('live');
    if (ok) {
      live.className = 'live ok';
      $('live-text').textContent = 'live · ' + new Date().toLocaleTimeString('en-GB');
    } else {
      live.className = 'live stale';
      const age = lastOk ? ' for ' + fmtDuration((Date.now() - lastOk) / 1000) : '';
      $('live-text').textContent = 'stale' + age + ': ' + why;
    }
  }

  function render(s) {
    const o = s.overview;
    tokenRequired = !!o.admin_token_required;
    $('instance').textContent = o.instance + ' · admin ' + o.admin_listen;
    $('version').textContent = o.version;
    renderFacts(o);
    renderAlerts(s);
    renderTiles(s);
    renderRoutes(s);
    renderLimits(s);
    renderCampaigns(s);
    renderCsp(s);
    for (const name of Object.keys(PANELS)) renderOptional(name, s[name]);
    const bad = o.last_reload && !o.last_reload.ok ? '⚠ reload failed · ' : '';
    document.title = bad + 'Seawall · ' + o.instance;
  }

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    clearTimeout(timer);
    try {
      const r = await fetch('/-/status', { cache: 'no-store' });
      if (!r.ok) throw new Error('/-/status answered ' + r.status);
      const s = await r.json();
      render(s);
      lastOk = Date.now();
      setLive(true);
    } catch (e) {
      setLive(false, e.message || String(e));
    } finally {
      inFlight = false;
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  $('reload-btn').dataset.action = '/-/reload';
  $('reload-btn').dataset.title = 'Reload the configuration';
  $('reload-btn').dataset.text = 'Read seawall.toml, csp.toml and campaigns.toml again and apply them if they are valid (the running config stays otherwise).';
  refresh();
})();
