// Dashboard: deliveries, success rate, latency and error analysis over a window.
//
// It reads the account-wide `GET /v1/accounts/{a}/stats?window=&bucket=` (api.md). Where a
// deployment does not have that route yet (404 `route_not_found`), it sums the per-endpoint
// `GET …/webhooks/{w}/stats` and groups the failed and dead deliveries' `last_error` itself.

import { acct, seg, get, query, endpoints, listAll } from './api.js';
import {
  h, s, uid, field, option, ms, percent, table, errorBox, causeOf, time,
} from './dom.js';
import { deliveryLink } from './endpoints.js';

const WINDOWS = [['1h', '1 h', 3600e3, '5m'], ['24h', '24 h', 86400e3, '1h'], ['7d', '7 d', 7 * 86400e3, '1d']];
const STATUSES = ['succeeded', 'failed', 'dead', 'pending', 'skipped'];

// The causes the API names, as a person reads them.
const CAUSES = {
  http_500: 'HTTP 500', timeout: 'Timeout', connection_refused: 'Connection refused', tls: 'TLS',
  dns: 'DNS', blocked_address: 'Blocked address',
};
const causeName = (c) => CAUSES[c] || (/^http_(\d{3})$/.exec(c) ? `HTTP ${c.slice(5)}` : c);

/** A horizontal bar chart as SVG, with a <title>, and a text summary beside it. */
function barChart(title, bars) {
  const titleId = uid('chart');
  const max = Math.max(1, ...bars.map((b) => b.value));
  const rowH = 26;
  const width = 420;
  const labelW = 110;
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${bars.length * rowH + 4}`, width, height: bars.length * rowH + 4,
    role: 'img', 'aria-labelledby': titleId, class: 'chart',
  }, s('title', { id: titleId }, title));
  bars.forEach((b, i) => {
    const y = i * rowH + 2;
    const w = Math.round(((width - labelW - 60) * b.value) / max);
    svg.append(
      s('text', { x: 0, y: y + 17, class: 'chart-label' }, b.label),
      s('rect', { x: labelW, y: y + 4, width: Math.max(w, b.value ? 2 : 0), height: rowH - 10, class: `bar bar-${b.kind || 'plain'}` }),
      s('text', { x: labelW + w + 6, y: y + 17, class: 'chart-value' }, String(b.value)));
  });
  const summary = h('ul', { class: 'chart-summary' }, bars.map((b) => h('li', {}, `${b.label}: ${b.value}`)));
  return h('figure', { class: 'figure' }, svg, h('figcaption', {}, h('p', {}, title), summary));
}

/** `fn` over `items`, at most `limit` at a time: an account with hundreds of endpoints
 * must not send hundreds of requests at once (the API's rate limit is shared). */
async function mapLimited(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Account stats from the account route, or summed from each endpoint's. */
async function loadStats(windowKey, bucket, since) {
  try {
    return await get(acct('/stats') + query({ window: windowKey, bucket }));
  } catch (err) {
    if (err.code !== 'route_not_found') throw err;
  }
  const subs = await endpoints();
  const per = await mapLimited(subs, 4, async (sub) => ({
    sub,
    stats: await get(acct(`/webhooks/${seg(sub.id)}/stats`) + query({ window: windowKey })),
  }));
  const counts = {};
  let total = 0;
  for (const { stats } of per) {
    total += stats.total || 0;
    for (const [k, v] of Object.entries(stats.counts || {})) counts[k] = (counts[k] || 0) + v;
  }
  const ended = (counts.succeeded || 0) + (counts.failed || 0) + (counts.dead || 0);
  // TODO(api): replace with the account stats' `errors` field
  // ([{cause, count, last_seen, example_delivery_ids}]) once GET /v1/accounts/{a}/stats exists
  // everywhere; until then the causes come from the failed and dead deliveries' `last_error`
  // (at most 100 of each per endpoint).
  const groups = new Map();
  await mapLimited(subs, 4, async (sub) => {
    for (const status of ['failed', 'dead']) {
      const list = await listAll(acct(`/webhooks/${seg(sub.id)}/deliveries`), { status }, 1);
      for (const d of list) {
        if (Date.parse(d.created_at) < since) continue;
        const cause = causeOf(d.last_error);
        const g = groups.get(cause) || { cause, count: 0, last_seen: null, example_delivery_ids: [] };
        g.count += 1;
        if (!g.last_seen || d.updated_at > g.last_seen) g.last_seen = d.updated_at;
        if (g.example_delivery_ids.length < 3) g.example_delivery_ids.push(d.id);
        groups.set(cause, g);
      }
    }
  });
  return {
    total,
    counts,
    success_rate: ended ? (counts.succeeded || 0) / ended : null,
    latency_ms: null, // percentiles do not add up across endpoints
    per_endpoint: per,
    errors: [...groups.values()].sort((a, b) => b.count - a.count),
    derived: true,
  };
}

function section(id, title, ...content) {
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...content);
}

function render(st, label) {
  const counts = st.counts || {};
  const extra = Object.keys(counts).filter((k) => !STATUSES.includes(k));
  const bars = [...STATUSES, ...extra].map((k) => ({ label: k, value: counts[k] || 0, kind: k }));
  const ended = (counts.succeeded || 0) + (counts.failed || 0) + (counts.dead || 0);

  // A time series, when the API gives one: [{start, counts: {...}, latency_ms: {...}}].
  const series = st.series || st.buckets || null;
  const seriesChart = Array.isArray(series) && series.length
    ? barChart(`Deliveries per bucket, last ${label}`, series.map((b) => ({
      label: b.start ? new Date(b.start).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '',
      value: Object.values(b.counts || {}).reduce((a, n) => a + n, 0),
    })))
    : null;

  let latency;
  if (st.latency_ms) {
    latency = table(`Latency of each delivery's last attempt, last ${label}`, ['Percentile', 'Latency'], [
      ['p50', ms(st.latency_ms.p50)], ['p95', ms(st.latency_ms.p95)], ['p99', ms(st.latency_ms.p99)]]);
  } else {
    latency = st.per_endpoint && st.per_endpoint.length
      ? table(`Latency per endpoint, last ${label}`, ['Endpoint', 'p50', 'p95', 'p99'],
        st.per_endpoint.map(({ sub, stats }) => [
          h('a', { href: `#/endpoints/${seg(sub.id)}` }, sub.url),
          ms(stats.latency_ms?.p50), ms(stats.latency_ms?.p95), ms(stats.latency_ms?.p99)]))
      : h('p', { class: 'empty' }, 'No endpoints yet.');
  }

  const errors = st.errors || st.error_groups || [];
  const errorTable = errors.length
    ? table(`Failures by cause, last ${label}`, ['Cause', 'Count', 'Last seen', 'Examples'],
      errors.map((g) => [
        causeName(g.cause),
        String(g.count),
        time(g.last_seen),
        h('span', {}, (g.example_delivery_ids || []).map((id, i) => [i ? ', ' : '', deliveryLink(id)])),
      ]))
    : h('p', { class: 'empty' }, `No failures in the last ${label}.`);

  return [
    section('db-deliveries', 'Deliveries',
      h('p', { class: 'big' }, `${st.total ?? 0} deliveries in the last ${label}`),
      barChart(`Deliveries by status, last ${label}`, bars),
      seriesChart),
    section('db-success', 'Success rate',
      h('p', { class: 'big' }, percent(st.success_rate)),
      h('p', {}, ended
        ? `${counts.succeeded || 0} succeeded of ${ended} that ended (succeeded, failed or dead).`
        : 'No delivery has ended in this window.')),
    section('db-latency', 'Latency', latency),
    section('db-errors', 'Error analysis', errorTable,
      st.derived ? h('p', { class: 'hint' }, 'Grouped from the last error of failed and dead deliveries.') : null),
  ];
}

export async function dashboardPage(root) {
  const select = h('select', { name: 'window' },
    WINDOWS.map(([value, label]) => option(value, label, value === '24h')));
  const content = h('div', { 'aria-busy': 'false' });
  let generation = 0;
  async function load() {
    const gen = ++generation;
    const [key, label, span, bucket] = WINDOWS.find((w) => w[0] === select.value);
    content.setAttribute('aria-busy', 'true');
    try {
      const st = await loadStats(key, bucket, Date.now() - span);
      if (gen === generation) content.replaceChildren(...render(st, label));
    } catch (err) {
      if (gen === generation) content.replaceChildren(errorBox(err));
    } finally {
      if (gen === generation) content.setAttribute('aria-busy', 'false');
    }
  }
  select.addEventListener('change', load);
  root.append(h('h1', {}, 'Dashboard'), h('div', { class: 'inline' }, field('Window', select)), content);
  content.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  await load();
}
