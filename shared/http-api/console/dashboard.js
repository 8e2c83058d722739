// Dashboard: outcomes over time, success rate, latency and error analysis, for the whole
// account or one endpoint, from `GET /v1/accounts/{a}/stats` and
// `GET …/webhooks/{w}/stats` (`?window=&bucket=`).
//
// Every chart is an SVG with a title, and the same numbers are in a table beside it, so
// nothing is only drawn.

import { acct, seg, get, query, endpoints } from './api.js';
import {
  h, s, uid, field, option, ms, percent, table, errorBox, time, causeName,
} from './dom.js';
import { deliveryLink } from './endpoints.js';

// [window, label, bucket]
const WINDOWS = [['1h', '1 h', '5m'], ['24h', '24 h', '1h'], ['7d', '7 d', '6h']];
const OUTCOMES = ['succeeded', 'failed', 'dead'];
const PERCENTILES = ['p50', 'p95', 'p99'];

/** A bucket's start as a short label: the time for a day or less, else the date. */
function bucketLabel(iso, longWindow) {
  const d = new Date(iso);
  return longWindow
    ? d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit' })
    : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

const W = 640;
const H = 170;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

/** The frame of a chart over the series: its SVG, a y scale, and an x position per bucket. */
function frame(title, series, max) {
  const titleId = uid('chart');
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-labelledby': titleId, class: 'chart',
  }, s('title', { id: titleId }, title));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const top = Math.max(1, max);
  const y = (v) => PAD.top + plotH - (plotH * v) / top;
  const step = plotW / Math.max(1, series.length);
  const x = (i) => PAD.left + i * step;
  // Axis: zero and the top value, and a few bucket labels along the bottom.
  svg.append(
    s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: 'axis' }),
    s('text', { x: PAD.left - 6, y: y(0) + 4, class: 'chart-tick', 'text-anchor': 'end' }, '0'),
    s('text', { x: PAD.left - 6, y: y(top) + 10, class: 'chart-tick', 'text-anchor': 'end' }, String(top)));
  const every = Math.max(1, Math.ceil(series.length / 6));
  return { svg, y, x, step, every };
}

function labels(f, series, longWindow) {
  series.forEach((b, i) => {
    if (i % f.every === 0) {
      f.svg.append(s('text', { x: f.x(i) + f.step / 2, y: H - 6, class: 'chart-tick', 'text-anchor': 'middle' },
        bucketLabel(b.start, longWindow)));
    }
  });
}

/** Per bucket, a column of attempts (succeeded under failed) and beside it, narrower, the
 * deliveries that went dead: a dead delivery is also a failed attempt, so it is not stacked
 * on top of one. */
function outcomesChart(title, series, longWindow) {
  const max = Math.max(0, ...series.map((b) => Math.max(b.succeeded + b.failed, b.dead)));
  const f = frame(title, series, max);
  const column = (x, width, from, count, kind) => {
    if (!count) return;
    const y0 = f.y(from);
    const y1 = f.y(from + count);
    f.svg.append(s('rect', { x, y: y1, width: Math.max(1, width), height: Math.max(1, y0 - y1), class: `bar bar-${kind}` }));
  };
  const attemptsW = Math.max(1, f.step * 0.62 - 1);
  const deadW = Math.max(1, f.step * 0.3);
  series.forEach((b, i) => {
    const x = f.x(i) + 1;
    column(x, attemptsW, 0, b.succeeded, 'succeeded');
    column(x, attemptsW, b.succeeded, b.failed, 'failed');
    column(x + attemptsW + 1, deadW, 0, b.dead, 'dead');
  });
  labels(f, series, longWindow);
  return f.svg;
}

/** One line per percentile, a dot per bucket; a bucket without attempts leaves a gap. */
function latencyChart(title, series, longWindow) {
  const max = Math.max(0, ...series.flatMap((b) => PERCENTILES.map((p) => b.latency_ms[p] ?? 0)));
  const f = frame(title, series, max);
  for (const p of PERCENTILES) {
    let d = '';
    let drawing = false;
    const dots = [];
    series.forEach((b, i) => {
      const v = b.latency_ms[p];
      if (v === null || v === undefined) {
        drawing = false;
        return;
      }
      const [cx, cy] = [(f.x(i) + f.step / 2).toFixed(1), f.y(v).toFixed(1)];
      d += `${drawing ? 'L' : 'M'}${cx} ${cy} `;
      dots.push(s('circle', { cx, cy, r: 3, class: `dot dot-${p}` }));
      drawing = true;
    });
    if (d) f.svg.append(s('path', { d, class: `line line-${p}` }), ...dots);
  }
  labels(f, series, longWindow);
  return f.svg;
}

/** A chart, its legend, and its numbers as a table a screen reader (or a person) can read. */
function figure(caption, chart, legend, dataTable) {
  return h('figure', { class: 'figure' },
    chart,
    h('figcaption', {},
      h('p', {}, caption),
      h('ul', { class: 'legend' }, legend.map(([cls, text]) => h('li', {}, h('span', { class: `swatch ${cls}` }), text))),
      h('details', {}, h('summary', {}, 'Show the numbers'), dataTable)));
}

function section(id, title, ...content) {
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...content);
}

function render(st, label, longWindow, urls) {
  const c = st.counts;
  const series = st.series;
  const when = (b) => time(b.start);
  const outcomes = figure(`Outcomes per ${st.bucket}, last ${label}`,
    outcomesChart(`Outcomes per ${st.bucket}, last ${label}`, series, longWindow),
    [['bar-succeeded', 'succeeded attempts'], ['bar-failed', 'failed attempts'], ['bar-dead', 'deliveries gone dead (beside)']],
    table(`Outcomes per ${st.bucket}`, ['Bucket', 'Succeeded', 'Failed', 'Dead'],
      series.map((b) => [when(b), String(b.succeeded), String(b.failed), String(b.dead)])));
  const latency = figure(`Latency per ${st.bucket}, last ${label}`,
    latencyChart(`Latency per ${st.bucket}, last ${label}`, series, longWindow),
    PERCENTILES.map((p) => [`line-${p}`, p]),
    table(`Latency per ${st.bucket}`, ['Bucket', 'p50', 'p95', 'p99'],
      series.map((b) => [when(b), ms(b.latency_ms.p50), ms(b.latency_ms.p95), ms(b.latency_ms.p99)])));

  const errors = st.errors.length
    ? table(`Failures by cause, last ${label}`, ['Cause', 'Failed attempts', 'Last seen', 'Examples'],
      st.errors.map((g) => [
        causeName(g.cause),
        String(g.count),
        time(g.last_seen),
        h('span', {}, g.example_delivery_ids.map((id, i) => [i ? ', ' : '', deliveryLink(id)])),
      ]))
    : h('p', { class: 'empty' }, `No failures in the last ${label}.`);

  const perEndpoint = st.webhooks
    ? section('db-endpoints', 'Per endpoint', st.webhooks.length
      ? table(`Outcomes per endpoint, last ${label}`, ['Endpoint', 'Succeeded', 'Failed', 'Dead', 'Success rate'],
        st.webhooks.map((w) => [
          urls.has(w.webhook_id)
            ? h('a', { href: `#/endpoints/${seg(w.webhook_id)}` }, urls.get(w.webhook_id))
            : `${w.webhook_id}${urls.loaded ? ' (deleted)' : ''}`,
          String(w.succeeded), String(w.failed), String(w.dead), percent(w.success_rate)]))
      : h('p', { class: 'empty' }, `No attempts in the last ${label}.`))
    : null;

  return [
    section('db-deliveries', 'Deliveries',
      h('p', { class: 'big' }, `${st.total} ${st.total === 1 ? 'attempt' : 'attempts'} in the last ${label}`),
      h('p', {}, `${c.succeeded} succeeded, ${c.failed} failed, ${c.dead} dead.`),
      outcomes),
    section('db-success', 'Success rate',
      h('p', { class: 'big' }, percent(st.success_rate)),
      h('p', {}, st.total ? `${c.succeeded} of ${st.total} attempts succeeded.` : 'No attempt in this window.')),
    section('db-latency', 'Latency',
      h('p', {}, `p50 ${ms(st.latency_ms.p50)}, p95 ${ms(st.latency_ms.p95)}, p99 ${ms(st.latency_ms.p99)} over the window.`),
      latency),
    section('db-errors', 'Error analysis', errors),
    perEndpoint,
  ];
}

export async function dashboardPage(root, endpointId) {
  const windowSelect = h('select', { name: 'window' },
    WINDOWS.map(([value, label]) => option(value, label, value === '24h')));
  const endpointSelect = h('select', { name: 'endpoint' }, option('', 'All endpoints', !endpointId));
  const content = h('div', { 'aria-busy': 'false', 'aria-live': 'polite' });
  const refresh = h('button', { type: 'button' }, 'Refresh');
  let urls = new Map();
  let generation = 0;
  async function load() {
    const gen = ++generation;
    const [key, label, bucket] = WINDOWS.find((w) => w[0] === windowSelect.value);
    const id = endpointSelect.value;
    const path = id ? acct(`/webhooks/${seg(id)}/stats`) : acct('/stats');
    content.setAttribute('aria-busy', 'true');
    try {
      const st = await get(path + query({ window: key, bucket }));
      if (gen === generation) content.replaceChildren(...render(st, label, key === '7d', urls).filter(Boolean));
    } catch (err) {
      if (gen === generation) content.replaceChildren(errorBox(err));
    } finally {
      if (gen === generation) content.setAttribute('aria-busy', 'false');
    }
  }
  windowSelect.addEventListener('change', load);
  endpointSelect.addEventListener('change', load);
  refresh.addEventListener('click', load);
  root.append(h('h1', {}, 'Dashboard'),
    h('div', { class: 'inline' }, field('Window', windowSelect), field('Endpoint', endpointSelect), refresh),
    content);
  content.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  try {
    const subs = await endpoints();
    urls = new Map(subs.map((sub) => [sub.id, sub.url]));
    urls.loaded = true;
    endpointSelect.append(...subs.map((sub) => option(sub.id, sub.url, sub.id === endpointId)));
  } catch {
    // The account-wide view works without the list; the per-endpoint rows show ids.
  }
  await load();
}
