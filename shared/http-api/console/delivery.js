// The payload inspector: one delivery, the request as sent and every attempt.

import { acct, seg, get, post } from './api.js';
import {
  h, button, time, ms, pretty, pre, dl, table, alertRegion, statusRegion, showError, showStatus,
  clear, badge,
} from './dom.js';

function headerTable(caption, headers) {
  const entries = Array.isArray(headers) ? headers : Object.entries(headers || {});
  if (!entries.length) return h('p', { class: 'empty' }, 'None recorded.');
  return table(caption, ['Name', 'Value'], entries.map(([k, v]) => [h('code', {}, k), h('code', {}, v)]));
}

function attemptView(a) {
  return h('li', { class: 'attempt' },
    h('h3', {}, `Attempt ${a.attempt}`),
    dl([
      ['Time', time(a.at)],
      ['Status', a.status_code ? `HTTP ${a.status_code}` : 'no response'],
      ['Latency', ms(a.latency_ms)],
      a.error ? ['Error', a.error] : null,
    ]),
    a.status_code ? [h('h4', {}, 'Response headers'), headerTable(`Response headers of attempt ${a.attempt}`, a.response_headers)] : null,
    h('h4', {}, 'Response body'),
    a.response_body ? pre(a.response_body) : h('p', { class: 'empty' }, '(empty)'));
}

function deliveryView(d) {
  const req = d.request || {};
  const attempts = d.attempts || [];
  return [
    dl([
      ['Status', badge(d.status)],
      ['Event', [h('code', {}, d.event_id), ` (${d.event_type})`]],
      ['Endpoint', h('a', { href: `#/endpoints/${seg(d.webhook_id)}` }, d.webhook_id)],
      ['Attempts', String(d.attempt_count)],
      ['Created', time(d.created_at)],
      ['Updated', time(d.updated_at)],
      d.next_attempt_at ? ['Next attempt', time(d.next_attempt_at)] : null,
      d.last_error ? ['Last error', d.last_error] : null,
    ]),
    h('section', { 'aria-labelledby': 'dl-request' },
      h('h2', { id: 'dl-request' }, 'Request'),
      dl([['Method', 'POST'], ['URL', req.url ? h('code', {}, req.url) : '—']]),
      h('h3', {}, 'Headers'),
      h('p', { class: 'hint' }, 'As sent on the last attempt; credentials masked.'),
      headerTable('Request headers', req.headers),
      h('h3', {}, 'Body'),
      req.body === null || req.body === undefined
        ? h('p', { class: 'empty' }, 'The event is no longer stored.')
        : pre(pretty(req.body))),
    h('section', { 'aria-labelledby': 'dl-attempts' },
      h('h2', { id: 'dl-attempts' }, 'Attempts'),
      attempts.length
        ? h('ol', { class: 'attempts' }, attempts.map(attemptView))
        : h('p', { class: 'empty' }, 'No attempt yet.')),
  ];
}

export async function deliveryPage(root, id) {
  const path = acct(`/deliveries/${seg(id)}`);
  const alert = alertRegion();
  const outcome = statusRegion();
  const content = h('div');
  const load = async () => {
    const d = await get(path);
    content.replaceChildren(...deliveryView(d));
  };
  const retry = button('Retry', async () => {
    clear(alert);
    retry.disabled = true;
    try {
      const res = await post(`${path}/retry`);
      showStatus(outcome, `Retry queued: the delivery is ${res.status} again, with a fresh attempt budget and the same webhook-id.`);
      await load();
      // The attempt usually lands within a moment; show it without a reload.
      setTimeout(() => { if (root.isConnected) load().catch(() => {}); }, 2000);
    } catch (err) {
      showError(alert, err);
    } finally {
      retry.disabled = false;
    }
  });
  root.append(
    h('h1', {}, 'Delivery ', h('code', {}, id)),
    alert,
    h('div', { class: 'actions' }, retry, button('Refresh', () => load().catch((err) => showError(alert, err)))),
    outcome,
    content);
  await load();
}
