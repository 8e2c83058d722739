// Dead letters: deliveries whose attempts ran out; redrive some or all, or recover a
// time window of an endpoint's failed and dead deliveries.

import { acct, seg, get, post, query, endpoints } from './api.js';
import {
  h, button, field, option, time, alertRegion, statusRegion, showError, showStatus, clear, pagedTable,
} from './dom.js';
import { deliveryLink } from './endpoints.js';

/** A datetime-local value (local time) for a Date. */
function localValue(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`;
}

/** RFC 3339 (UTC) from a datetime-local value, or null when empty or unreadable. */
function rfc3339(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export async function deadLettersPage(root) {
  const alert = alertRegion();
  const outcome = statusRegion();
  const urls = new Map();
  const selectAll = h('input', { type: 'checkbox', 'aria-label': 'Select all' });
  const list = pagedTable({
    caption: 'Dead letters, most recently dead first',
    headers: [selectAll, 'Delivery', 'Endpoint', 'Event type', 'Attempts', 'Dead since', 'Last error'],
    load: (cursor) => get(acct('/dead-letters') + query({ limit: 50, cursor })),
    row: (d) => [
      h('input', { type: 'checkbox', class: 'pick', value: d.id, 'aria-label': d.id }),
      deliveryLink(d.id),
      h('a', { href: `#/endpoints/${seg(d.webhook_id)}` }, urls.get(d.webhook_id) || d.webhook_id),
      d.event_type,
      String(d.attempt_count),
      time(d.updated_at),
      d.last_error || '—',
    ],
    empty: 'No dead letters. Every delivery either succeeded or is still being retried.',
    more: 'Load more dead letters',
  });
  selectAll.addEventListener('change', () => {
    for (const box of list.querySelectorAll('input.pick')) box.checked = selectAll.checked;
  });

  async function redrive(body, what) {
    clear(alert);
    try {
      const res = await post(acct('/dead-letters/redrive'), body);
      showStatus(outcome, `Redriven ${what}: ${res.redriven} ${res.redriven === 1 ? 'delivery' : 'deliveries'} sent again.`);
      selectAll.checked = false;
      await list.reload();
    } catch (err) {
      showError(alert, err);
    }
  }
  const redriveSelected = button('Redrive selected', async () => {
    const ids = [...list.querySelectorAll('input.pick:checked')].map((b) => b.value);
    if (!ids.length) {
      showError(alert, 'Select at least one dead letter to redrive.');
      return;
    }
    redriveSelected.disabled = true;
    await redrive({ ids }, 'selected');
    redriveSelected.disabled = false;
  });
  const redriveAll = button('Redrive all', async () => {
    redriveAll.disabled = true;
    await redrive({}, 'all');
    redriveAll.disabled = false;
  });

  // Recover: per endpoint in the API, so "All endpoints" asks each in turn.
  const recoverAlert = alertRegion();
  const recoverOutcome = statusRegion();
  const endpointSelect = h('select', { name: 'endpoint' }, option('', 'All endpoints', true));
  const from = h('input', { type: 'datetime-local', value: localValue(new Date(Date.now() - 86400000)) });
  const until = h('input', { type: 'datetime-local' });
  const recover = h('button', { type: 'submit' }, 'Recover');
  const recoverForm = h('form', { novalidate: true },
    recoverAlert,
    field('Endpoint', endpointSelect),
    field('From', from, 'Your local time.'),
    field('Until', until, 'Optional; now when empty.'),
    h('div', { class: 'actions' }, recover),
    recoverOutcome);
  recoverForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(recoverAlert);
    const since = rfc3339(from.value);
    const end = rfc3339(until.value);
    if (!since) {
      showError(recoverAlert, 'Fill in From with the start of the window.');
      from.focus();
      return;
    }
    if (until.value && !end) {
      showError(recoverAlert, 'Until is not a date and time.');
      until.focus();
      return;
    }
    const ids = endpointSelect.value ? [endpointSelect.value] : [...urls.keys()];
    if (!ids.length) {
      showError(recoverAlert, 'There is no endpoint to recover.');
      return;
    }
    recover.disabled = true;
    try {
      let requeued = 0;
      for (const id of ids) {
        const body = end ? { since, until: end } : { since };
        const res = await post(acct(`/webhooks/${seg(id)}/recover`), body);
        requeued += res.requeued;
      }
      showStatus(recoverOutcome, `Recovered: ${requeued} failed or dead ${requeued === 1 ? 'delivery' : 'deliveries'} sent again.`);
      await list.reload();
    } catch (err) {
      showError(recoverAlert, err);
    } finally {
      recover.disabled = false;
    }
  });

  root.append(
    h('h1', {}, 'Dead letters'),
    h('p', {}, 'Deliveries whose attempts ran out. Redriven, each is sent again with a fresh attempt budget and the same webhook-id.'),
    alert, outcome,
    h('div', { class: 'actions' }, redriveSelected, redriveAll),
    list,
    h('section', { 'aria-labelledby': 'dl-recover' },
      h('h2', { id: 'dl-recover' }, 'Recover'),
      h('p', {}, 'Sends again the failed and dead deliveries created in a time window, for example after an outage of your endpoint.'),
      recoverForm));

  try {
    for (const sub of await endpoints()) {
      urls.set(sub.id, sub.url);
      endpointSelect.append(option(sub.id, sub.url));
    }
  } catch (err) {
    showError(recoverAlert, err);
  }
  await list.reload();
}
