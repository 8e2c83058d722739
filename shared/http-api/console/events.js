// Events: the account's event history, newest first, each with its deliveries.

import { acct, seg, get, query, eventTypes } from './api.js';
import { h, button, field, option, time, pretty, pre, pagedTable, badge } from './dom.js';
import { deliveryLink } from './endpoints.js';

function deliveriesCell(eventId) {
  const cell = h('div', {}, 'Loading…');
  get(acct(`/events/${seg(eventId)}`)).then((ev) => {
    const list = ev.deliveries || [];
    cell.replaceChildren(list.length
      ? h('ul', { class: 'plain' }, list.map((d) => h('li', {},
        deliveryLink(d.id), ' ', badge(d.status),
        ' to ', h('a', { href: `#/endpoints/${seg(d.webhook_id)}` }, d.webhook_id))))
      : 'None: no endpoint wanted it.');
  }, (err) => {
    if (!err.signedOut) cell.replaceChildren(`Could not load: ${err.message}`);
  });
  return cell;
}

export async function eventsPage(root) {
  root.append(h('h1', {}, 'Events'));
  const filter = h('select', { name: 'type' }, option('', 'All types', true));
  const list = pagedTable({
    caption: 'Events, newest first',
    headers: ['Event', 'Type', 'Occurred', 'Deliveries', 'Data'],
    load: (cursor) => get(acct('/events') + query({ type: filter.value, limit: 20, cursor })),
    row: (ev) => [
      h('code', {}, ev.id),
      ev.type,
      time(ev.occurred_at),
      deliveriesCell(ev.id),
      h('details', {}, h('summary', {}, 'Data'), pre(pretty(ev.data))),
    ],
    empty: 'No events yet.',
    more: 'Load more events',
  });
  filter.addEventListener('change', () => list.reload());
  root.append(
    h('div', { class: 'inline' }, field('Event type', filter), button('Refresh', () => list.reload())),
    list);
  try {
    for (const t of await eventTypes()) filter.append(option(t.type, t.type));
  } catch {
    // The filter still offers "All types"; the list below says what failed, if anything.
  }
  await list.reload();
}
