// API keys of the account: list, create (shown once), revoke.

import { acct, seg, get, post, del, session } from './api.js';
import {
  h, button, field, time, alertRegion, statusRegion, showError, showStatus, clear, errorBox, shownOnce,
} from './dom.js';

export async function apiKeysPage(root) {
  const alert = alertRegion();
  const outcome = statusRegion();
  const created = h('div');
  const list = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));

  async function load() {
    try {
      const res = await get(acct('/api-keys'));
      const keys = res.data || [];
      if (!keys.length) {
        list.replaceChildren(h('p', { class: 'empty' }, 'No account keys yet.'));
        return;
      }
      list.replaceChildren(h('table', {},
        h('caption', {}, 'Keys of this account, newest first'),
        h('thead', {}, h('tr', {}, ['Key', 'Status', 'Created', 'Last used', 'Expires', 'Revoked', 'Actions']
          .map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, keys.map(keyRow))));
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }

  function keyRow(k) {
    const mine = k.prefix && session.key && session.key.startsWith(k.prefix);
    const nameId = `key-${k.id}`;
    const revoke = k.status === 'revoked' ? '—' : button('Revoke', async () => {
      clear(alert);
      revoke.disabled = true;
      try {
        await del(acct(`/api-keys/${seg(k.id)}`));
        showStatus(outcome, `Key ${k.prefix || k.id} revoked: it is refused from now on.`);
      } catch (err) {
        showError(alert, err);
      } finally {
        revoke.disabled = false;
      }
      // Revoking the key of this session ends it here: the next call answers 401.
      await load();
    }, { 'aria-describedby': nameId });
    return h('tr', {},
      h('th', { scope: 'row', id: nameId }, h('code', {}, k.prefix ? `${k.prefix}…` : k.id),
        mine ? ' (this session)' : null),
      h('td', {}, k.status),
      h('td', {}, time(k.created_at)),
      h('td', {}, k.last_used_at ? time(k.last_used_at) : 'never'),
      h('td', {}, k.expires_at ? time(k.expires_at) : 'never'),
      h('td', {}, time(k.revoked_at)),
      h('td', {}, revoke));
  }

  const expires = h('input', { type: 'datetime-local' });
  const create = h('button', { type: 'submit' }, 'Create key');
  const form = h('form', { class: 'inline', novalidate: true },
    field('Expires (optional)', expires), create);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(alert);
    let body = {};
    if (expires.value) {
      const at = new Date(expires.value);
      if (Number.isNaN(at.getTime())) {
        showError(alert, 'Expires is not a date and time.');
        return;
      }
      body = { expires_at: at.toISOString() };
    }
    create.disabled = true;
    try {
      const key = await post(acct('/api-keys'), body);
      created.replaceChildren(shownOnce(
        `New key ${key.prefix || key.id}. Only its hash is kept: copy it now.`, key.key));
      created.querySelector('button')?.focus();
      await load();
    } catch (err) {
      showError(alert, err.status === 403
        ? `${err.message}: only the platform key creates account keys.`
        : err);
    } finally {
      create.disabled = false;
    }
  });

  root.append(
    h('h1', {}, 'API keys'),
    h('p', {}, 'Account keys manage this account only. A key is shown once, when it is created.'),
    alert, outcome, form, created, list);
  await load();
}
