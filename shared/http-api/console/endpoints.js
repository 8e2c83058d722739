// Endpoints: the list, the add/edit form, and one endpoint's page.

import { acct, seg, get, post, patch, del, query, eventTypes, endpoints } from './api.js';
import {
  h, uid, button, field, checkbox, option, time, ms, percent, pretty, pre, dl,
  alertRegion, statusRegion, showError, showStatus, clear, errorBox, shownOnce,
  pagedTable, badge, flashNext, causeName,
} from './dom.js';

const MASK = '********'; // what reads show for a stored credential; sent back, it keeps it

export function stateOf(sub) {
  if (sub.enabled) return 'Enabled';
  if (sub.disabled_reason) return `Disabled: ${sub.disabled_reason}`;
  return sub.disabled_at ? 'Disabled' : 'Paused';
}

const endpointLink = (sub) => h('a', { href: `#/endpoints/${seg(sub.id)}` }, sub.url);

// ---------------------------------------------------------------------------
// The list

export async function endpointsPage(root) {
  const formId = uid('add');
  const add = button('Add endpoint', null, { 'aria-expanded': 'false', 'aria-controls': formId });
  const formSlot = h('section', { id: formId, class: 'panel', hidden: true, 'aria-label': 'New endpoint' });
  const created = h('div');
  const list = h('div');
  root.append(h('h1', {}, 'Endpoints'), h('div', { class: 'actions' }, add), created, formSlot, list);

  async function loadList() {
    list.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
    try {
      // The 24 h success rate of every endpoint, from one account-wide stats call; the list
      // shows without it when that call fails.
      const [subs, rates] = await Promise.all([
        endpoints(),
        get(acct('/stats') + query({ window: '24h', bucket: '1d' })).then(
          (st) => new Map(st.webhooks.map((w) => [w.webhook_id, w.success_rate])),
          () => new Map()),
      ]);
      if (!subs.length) {
        list.replaceChildren(h('p', { class: 'empty' }, 'No endpoints yet. Add one to start receiving events.'));
        return;
      }
      list.replaceChildren(h('table', {},
        h('caption', {}, 'Your endpoints'),
        h('thead', {}, h('tr', {}, ['URL', 'Description', 'Event types', 'State', 'Success (24 h)', 'Failing since']
          .map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, subs.map((sub) => h('tr', {},
          h('th', { scope: 'row' }, endpointLink(sub)),
          h('td', {}, sub.description || '—'),
          h('td', {}, sub.event_types.join(', ')),
          h('td', {}, stateOf(sub)),
          h('td', {}, percent(rates.get(sub.id))),
          h('td', {}, time(sub.failing_since)))))));
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }

  function closeForm() {
    formSlot.hidden = true;
    formSlot.replaceChildren();
    add.setAttribute('aria-expanded', 'false');
  }

  add.addEventListener('click', async () => {
    if (!formSlot.hidden) {
      closeForm();
      return;
    }
    formSlot.hidden = false;
    add.setAttribute('aria-expanded', 'true');
    formSlot.replaceChildren(h('h2', {}, 'New endpoint'), h('p', { class: 'loading' }, 'Loading event types…'));
    let catalog;
    try {
      catalog = await eventTypes();
    } catch (err) {
      formSlot.replaceChildren(h('h2', {}, 'New endpoint'), errorBox(err));
      return;
    }
    const form = endpointForm(catalog, null, async (body) => {
      const sub = await post(acct('/webhooks'), body);
      closeForm();
      created.replaceChildren(h('div', { class: 'panel done', role: 'status' },
        h('p', {}, 'Endpoint created: ', endpointLink(sub)),
        sub.secret && !sub.secret.includes(MASK)
          ? shownOnce('Its signing secret (verify each delivery\'s webhook-signature with it).', sub.secret)
          : null,
        sub.public_key
          ? shownOnce('Its public key (verify each delivery\'s v1a webhook-signature with it; the private key never leaves the service).', sub.public_key)
          : null));
      created.querySelector('button')?.focus();
      loadList();
    }, closeForm);
    formSlot.replaceChildren(h('h2', {}, 'New endpoint'), form);
    form.querySelector('input')?.focus();
  });

  await loadList();
}

// ---------------------------------------------------------------------------
// The form, for a new endpoint (sub = null) or an existing one

/** Whole number from a text field, or null when empty; throws with the label when not. */
function wholeNumber(input, label) {
  const text = input.value.trim();
  if (!text) return null;
  if (!/^\d+$/.test(text)) {
    input.setAttribute('aria-invalid', 'true');
    throw new Error(`${label} must be a whole number.`);
  }
  return Number(text);
}

function numberInput(value) {
  return h('input', {
    type: 'text', inputmode: 'numeric', autocomplete: 'off',
    value: value === null || value === undefined ? '' : String(value),
  });
}

export function endpointForm(catalog, sub, onSave, onCancel) {
  const editing = Boolean(sub);
  const alert = alertRegion();
  const url = h('input', { type: 'url', name: 'url', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'https://example.com/webhooks', value: sub?.url ?? '' });
  const description = h('input', { type: 'text', name: 'description', value: sub?.description ?? '' });
  const types = eventTypePicker(catalog, sub?.event_types ?? []);
  const auth = authFields(sub?.auth ?? null);
  const headers = headerRows(sub?.headers ?? {});
  const timeout = numberInput(sub?.timeout_seconds);
  const attempts = numberInput(sub?.max_attempts);
  const rate = numberInput(sub?.rate_limit_per_second);
  const retry = h('input', { type: 'text', autocomplete: 'off', value: (sub?.retry_schedule ?? []).join(', ') });
  // Chosen when the endpoint is created: a new scheme needs new keys.
  const signature = editing ? null : h('select', {},
    option('hmac', 'HMAC-SHA256 with a shared secret (v1)', true),
    option('ed25519', 'Ed25519 with a public key (v1a)', false));
  const save = h('button', { type: 'submit' }, 'Save');

  const form = h('form', { class: 'endpoint-form', novalidate: true },
    alert,
    field('URL', url),
    field('Description', description),
    types.element,
    signature ? field('Signature', signature, 'How deliveries are signed; Ed25519 receivers need only the public key.') : null,
    auth.element,
    headers.element,
    h('fieldset', {}, h('legend', {}, 'Delivery settings'),
      field('Timeout (seconds)', timeout, 'From 1 to 30; 10 when empty.'),
      field('Max attempts', attempts, 'Empty: the default retry schedule decides.'),
      field('Rate limit (per second)', rate, 'Empty: no limit.'),
      field('Retry schedule', retry, 'Optional: seconds between attempts, comma-separated, such as 5, 300, 1800.')),
    h('div', { class: 'actions' }, save, onCancel ? button('Cancel', onCancel) : null));

  function collect() {
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    const body = { url: url.value.trim(), event_types: types.value() };
    if (signature && signature.value !== 'hmac') body.signature = signature.value;
    // Empty clears a setting on edit (null) and is left out on create; undefined is left out.
    const nullable = (name, value) => {
      if (value === undefined) return;
      if (value !== null) body[name] = value;
      else if (editing) body[name] = null;
    };
    nullable('description', description.value.trim() || null);
    nullable('auth', auth.value());
    const hdrs = headers.value();
    if (editing || Object.keys(hdrs).length) body.headers = hdrs;
    const t = wholeNumber(timeout, 'Timeout (seconds)');
    if (t !== null) body.timeout_seconds = t;
    nullable('max_attempts', wholeNumber(attempts, 'Max attempts'));
    nullable('rate_limit_per_second', wholeNumber(rate, 'Rate limit (per second)'));
    const steps = retry.value.split(',').map((x) => x.trim()).filter(Boolean);
    if (steps.some((x) => !/^\d+$/.test(x))) {
      retry.setAttribute('aria-invalid', 'true');
      throw new Error('Retry schedule must be whole numbers of seconds, separated by commas.');
    }
    nullable('retry_schedule', steps.length ? steps.map(Number) : null);
    return body;
  }

  const FIELDS = { url, description, timeout_seconds: timeout, max_attempts: attempts,
    rate_limit_per_second: rate, retry_schedule: retry };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(alert);
    let body;
    try {
      body = collect();
    } catch (err) {
      showError(alert, err);
      return;
    }
    save.disabled = true;
    try {
      await onSave(body);
    } catch (err) {
      for (const d of err.details || []) {
        const name = String(d.pointer || '').split('/')[1];
        FIELDS[name]?.setAttribute('aria-invalid', 'true');
      }
      showError(alert, err);
    } finally {
      save.disabled = false;
    }
  });
  return form;
}

/** Event type checkboxes: All events, one per family (`call.*`) and one per type. */
function eventTypePicker(catalog, selected) {
  const chosen = new Set(selected);
  const families = new Map();
  for (const t of catalog) {
    const family = t.type.split('.')[0];
    if (!families.has(family)) families.set(family, []);
    families.get(family).push(t);
  }
  const known = new Set(['*']);
  const all = checkbox('All events', chosen.has('*'), { value: '*' });
  const groups = [];
  for (const [family, list] of families) {
    const filter = `${family}.*`;
    known.add(filter);
    const famOn = chosen.has('*') || chosen.has(filter);
    const fam = checkbox(filter, famOn, { value: filter });
    const items = list.map((t) => {
      known.add(t.type);
      const descId = uid('desc');
      const box = checkbox(t.type, famOn || chosen.has(t.type), { value: t.type, 'aria-describedby': descId });
      return { box, li: h('li', {}, box.wrap, h('span', { class: 'desc', id: descId }, t.description)) };
    });
    groups.push({ family, filter, fam, items });
  }
  const other = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false',
    value: selected.filter((x) => !known.has(x)).join(', ') });

  all.input.addEventListener('change', () => {
    for (const g of groups) {
      g.fam.input.checked = all.input.checked;
      for (const i of g.items) i.box.input.checked = all.input.checked;
    }
  });
  for (const g of groups) {
    g.fam.input.addEventListener('change', () => {
      for (const i of g.items) i.box.input.checked = g.fam.input.checked;
      if (!g.fam.input.checked) all.input.checked = false;
    });
    for (const i of g.items) {
      i.box.input.addEventListener('change', () => {
        if (!i.box.input.checked) {
          g.fam.input.checked = false;
          all.input.checked = false;
        }
      });
    }
  }

  const element = h('fieldset', { class: 'types' },
    h('legend', {}, 'Event types'),
    h('div', { class: 'all' }, all.wrap),
    groups.map((g) => h('div', { class: 'family', role: 'group', 'aria-label': `${g.family} events` },
      g.fam.wrap, h('ul', {}, g.items.map((i) => i.li)))),
    field('Other filters', other, 'Optional, comma-separated: more exact types or prefixes such as call.transcript.*'));

  function value() {
    if (all.input.checked) return ['*'];
    const out = [];
    for (const g of groups) {
      if (g.fam.input.checked) out.push(g.filter);
      else for (const i of g.items) if (i.box.input.checked) out.push(i.box.input.value);
    }
    for (const x of other.value.split(',').map((y) => y.trim()).filter(Boolean)) {
      if (!out.includes(x)) out.push(x);
    }
    return out;
  }
  return { element, value };
}

/** The Authentication select and the fields of the chosen kind. */
function authFields(current) {
  const kind = current?.type ?? 'none';
  const KINDS = {
    none: 'None', api_key: 'API key header', basic: 'Basic', bearer: 'Bearer',
    oauth2_client_credentials: 'OAuth 2.0 client credentials', jwt: 'JWT (ES256, per delivery)',
  };
  const select = h('select', { name: 'auth' },
    Object.entries(KINDS).map(([value, label]) => option(value, label, kind === value)),
    // A kind this form cannot edit is kept as it is stored.
    KINDS[kind] ? null : option(kind, `${kind} (kept as stored)`, true));
  const secretInput = (value) => h('input', { type: 'password', autocomplete: 'new-password', value: value ?? '' });
  const textInput = (value, placeholder) => h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false',
    value: value ?? '', placeholder });
  const keyHeader = textInput(kind === 'api_key' ? current.header : '', 'X-Api-Key');
  const keyValue = secretInput(kind === 'api_key' ? MASK : '');
  const username = textInput(kind === 'basic' ? current.username : '');
  const password = secretInput(kind === 'basic' ? MASK : '');
  const token = secretInput(kind === 'bearer' ? MASK : '');
  const oauth = kind === 'oauth2_client_credentials' ? current : {};
  const tokenUrl = textInput(oauth.token_url, 'https://idp.example.com/oauth/token');
  const clientId = textInput(oauth.client_id);
  const clientSecret = secretInput(oauth.client_id ? MASK : '');
  const scope = textInput(oauth.scope, 'optional');
  const audience = textInput(oauth.audience, 'optional');
  const clientAuth = h('select', {},
    option('client_secret_basic', 'HTTP Basic (client_secret_basic)', oauth.client_auth !== 'client_secret_post'),
    option('client_secret_post', 'In the form body (client_secret_post)', oauth.client_auth === 'client_secret_post'));
  const jwtAudience = textInput(kind === 'jwt' ? current.audience : '', 'the endpoint URL');
  const jwks = new URL('/v1/.well-known/jwks.json', location.href).href;
  const kept = editingHint(current);
  // A stored secret is kept only for the same token URL and client: once either changes,
  // the mask would be refused, so the secret must be typed again.
  for (const input of [tokenUrl, clientId]) {
    input.addEventListener('input', () => {
      if (clientSecret.value === MASK) clientSecret.value = '';
    });
  }
  const parts = {
    api_key: h('div', { class: 'sub' }, field('Header', keyHeader), field('Value', keyValue, kept)),
    basic: h('div', { class: 'sub' }, field('Username', username), field('Password', password, kept)),
    bearer: h('div', { class: 'sub' }, field('Token', token, kept)),
    oauth2_client_credentials: h('div', { class: 'sub' },
      field('Token URL', tokenUrl, 'Fetched through the same address guard as the endpoint; the token is kept until a minute before it expires, and fetched again on a 401.'),
      field('Client ID', clientId), field('Client secret', clientSecret, kept),
      field('Scope', scope), field('Audience', audience, 'Sent as the audience parameter (Auth0 and others need it).'),
      field('Client authentication', clientAuth)),
    jwt: h('div', { class: 'sub' },
      field('Audience', jwtAudience, `The aud claim: a URL of the endpoint's own origin; empty: the endpoint URL. Receivers verify each token with the keys at ${jwks}, and check that its sub is this endpoint's ID.`)),
  };
  const sync = () => {
    for (const [k, el] of Object.entries(parts)) el.hidden = select.value !== k;
  };
  select.addEventListener('change', sync);
  sync();
  const element = h('fieldset', {}, h('legend', {}, 'Authentication'),
    field('Authentication', select, 'Credentials added to every delivery.'),
    Object.values(parts));

  function value() {
    switch (select.value) {
      case 'api_key': return { type: 'api_key', header: keyHeader.value.trim(), value: keyValue.value };
      case 'basic': return { type: 'basic', username: username.value, password: password.value };
      case 'bearer': return { type: 'bearer', token: token.value };
      case 'oauth2_client_credentials': return {
        type: 'oauth2_client_credentials', token_url: tokenUrl.value.trim(), client_id: clientId.value,
        client_secret: clientSecret.value, scope: scope.value.trim() || undefined,
        audience: audience.value.trim() || undefined, client_auth: clientAuth.value,
      };
      case 'jwt': return { type: 'jwt', audience: jwtAudience.value.trim() || undefined };
      case 'none': return null;
      default: return undefined;
    }
  }
  return { element, value };
}

/** What the endpoint page says of a subscription's credentials (never their secret). */
function authSummary(auth) {
  switch (auth?.type) {
    case undefined: return 'none';
    case 'oauth2_client_credentials':
      return h('span', {}, 'OAuth 2.0 client credentials from ', h('code', {}, auth.token_url),
        ` as ${auth.client_id}`);
    case 'jwt': return `JWT (ES256), audience ${auth.audience || 'the endpoint URL'}`;
    default: return auth.type;
  }
}

function editingHint(current) {
  return current ? 'Stored values show as ********; leave them to keep what is stored.' : undefined;
}

/** Custom header rows (name, value), added and removed by the user. */
function headerRows(initial) {
  const list = h('ul', { class: 'headers' });
  let n = 0;
  function addRow(name = '', value = '') {
    n += 1;
    const nameInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: name,
      'aria-label': `Custom header ${n} name` });
    const valueInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value,
      'aria-label': `Custom header ${n} value` });
    const li = h('li', {}, nameInput, valueInput);
    li.append(button('Remove', () => { li.remove(); addButton.focus(); },
      { 'aria-label': `Remove custom header ${n}` }));
    list.append(li);
    return nameInput;
  }
  const addButton = button('Add header', () => addRow().focus());
  for (const [name, value] of Object.entries(initial)) addRow(name, value);
  const element = h('fieldset', {}, h('legend', {}, 'Custom headers'),
    h('p', { class: 'hint' }, 'Sent with every delivery. Stored values show as ********; leave them to keep them.'),
    list, addButton);
  function value() {
    const out = {};
    for (const li of list.children) {
      const [name, val] = li.querySelectorAll('input');
      if (name.value.trim()) out[name.value.trim()] = val.value;
    }
    return out;
  }
  return { element, value };
}

// ---------------------------------------------------------------------------
// One endpoint

export async function endpointPage(root, id) {
  const base = acct(`/webhooks/${seg(id)}`);
  const heading = h('h1', { class: 'url' }, 'Endpoint');
  root.append(heading);
  const [sub, catalog] = await Promise.all([get(base), eventTypes()]);
  heading.textContent = sub.url;
  let current = sub;

  const alert = alertRegion();
  const outcome = statusRegion();
  const details = h('div');
  const renderDetails = () => details.replaceChildren(dl([
    ['ID', h('code', {}, current.id)],
    ['Description', current.description || '—'],
    ['State', stateOf(current)],
    current.failing_since ? ['Failing since', time(current.failing_since)] : null,
    current.disabled_at ? ['Disabled at', time(current.disabled_at)] : null,
    ['Event types', current.event_types.join(', ')],
    ['Signature', current.signature === 'ed25519' ? 'Ed25519 (v1a)' : 'HMAC-SHA256 (v1)'],
    current.public_key ? ['Public key', h('code', {}, current.public_key)] : null,
    ['Authentication', authSummary(current.auth)],
    ['Custom headers', Object.keys(current.headers || {}).join(', ') || '—'],
    ['Timeout', `${current.timeout_seconds} s`],
    ['Max attempts', current.max_attempts ?? 'default'],
    ['Retry schedule', current.retry_schedule ? `${current.retry_schedule.join(', ')} s` : 'default'],
    ['Rate limit', current.rate_limit_per_second ? `${current.rate_limit_per_second} per second` : 'none'],
    ['Created', time(current.created_at)],
    ['Updated', time(current.updated_at)],
  ]));
  renderDetails();

  // Pause / Resume, Rotate secret, Delete (with a second, confirming button)
  const toggle = button(current.enabled ? 'Pause' : 'Resume', async () => {
    clear(alert);
    toggle.disabled = true;
    try {
      current = await patch(base, { enabled: !current.enabled });
      toggle.textContent = current.enabled ? 'Pause' : 'Resume';
      showStatus(outcome, current.enabled
        ? 'Resumed: deliveries go out again.'
        : 'Paused: events that arrive meanwhile are recorded as skipped.');
      renderDetails();
    } catch (err) {
      showError(alert, err);
    } finally {
      toggle.disabled = false;
    }
  });
  const secretSlot = h('div');
  const rotate = button('Rotate secret', async () => {
    clear(alert);
    rotate.disabled = true;
    try {
      const res = await post(`${base}/rotate-secret`);
      secretSlot.replaceChildren(res.public_key
        ? shownOnce('New public key. The previous key keeps signing beside it for 24 hours.', res.public_key)
        : shownOnce('New signing secret. The previous one keeps signing beside it for 24 hours.', res.secret));
    } catch (err) {
      showError(alert, err);
    } finally {
      rotate.disabled = false;
    }
  });
  const remove = button('Delete');
  const confirmBox = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm delete', hidden: true });
  const confirm = button('Confirm delete', async () => {
    clear(alert);
    confirm.disabled = true;
    try {
      await del(base);
      flashNext(`Endpoint ${current.url} deleted.`);
      location.hash = '#/endpoints';
    } catch (err) {
      showError(alert, err);
      confirm.disabled = false;
    }
  }, { class: 'danger' });
  const cancel = button('Cancel', () => {
    confirmBox.hidden = true;
    remove.hidden = false;
    remove.focus();
  });
  confirmBox.append(h('p', {}, 'Delete this endpoint? Deliveries still queued for it are skipped. This cannot be undone.'),
    confirm, ' ', cancel);
  remove.addEventListener('click', () => {
    remove.hidden = true;
    confirmBox.hidden = false;
    confirm.focus();
  });

  // Send test
  const testType = h('select', { name: 'event-type' },
    option('webhook.test', 'webhook.test', true),
    catalog.filter((t) => t.type !== 'webhook.test').map((t) => option(t.type, t.type)));
  const testResult = h('div', { role: 'status', class: 'result' });
  const sendTest = button('Send test', async () => {
    clear(alert);
    sendTest.disabled = true;
    testResult.replaceChildren(h('p', {}, 'Sending…'));
    try {
      const type = testType.value;
      const res = await post(`${base}/test`, type === 'webhook.test' ? {} : { event_type: type });
      testResult.replaceChildren(testOutcome(res));
      deliveries.reload();
      loadStats();
    } catch (err) {
      testResult.replaceChildren();
      showError(alert, err);
    } finally {
      sendTest.disabled = false;
    }
  });

  // Diagnose
  const diagnosis = h('div', { role: 'status', class: 'result' });
  const runDiagnosis = button('Diagnose', async () => {
    clear(alert);
    runDiagnosis.disabled = true;
    diagnosis.replaceChildren(h('p', {}, 'Diagnosing…'));
    try {
      diagnosis.replaceChildren(diagnosisView(await post(`${base}/diagnose`)));
    } catch (err) {
      diagnosis.replaceChildren();
      showError(alert, err);
    } finally {
      runDiagnosis.disabled = false;
    }
  });

  // Stats
  const stats = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  const loadStats = () => get(`${base}/stats${query({ window: '24h' })}`).then(
    (st) => stats.replaceChildren(statsView(st, current.id)),
    (err) => stats.replaceChildren(errorBox(err)));
  loadStats();

  // Deliveries
  const statusFilter = h('select', { name: 'status' },
    option('', 'All', true),
    ['pending', 'succeeded', 'failed', 'dead', 'skipped'].map((x) => option(x, x)));
  const deliveries = pagedTable({
    caption: 'Deliveries to this endpoint, newest first',
    headers: ['Delivery', 'Event type', 'Status', 'Attempts', 'Created', 'Latency', 'Last error'],
    load: (cursor) => get(`${base}/deliveries${query({ status: statusFilter.value, limit: 20, cursor })}`),
    row: (d) => [deliveryLink(d.id), d.event_type, badge(d.status), String(d.attempt_count),
      time(d.created_at), ms(d.last_latency_ms), d.last_error || '—'],
    empty: 'No deliveries yet.',
    more: 'Load more deliveries',
  });
  statusFilter.addEventListener('change', () => deliveries.reload());

  // Edit
  const saved = statusRegion();
  const form = endpointForm(catalog, current, async (body) => {
    current = await patch(base, body);
    heading.textContent = current.url;
    toggle.textContent = current.enabled ? 'Pause' : 'Resume';
    renderDetails();
    showStatus(saved, 'Saved.');
  });

  root.append(
    alert, outcome,
    h('div', { class: 'actions' }, toggle, rotate, remove),
    confirmBox, secretSlot,
    h('section', { 'aria-labelledby': 'ep-details' }, h('h2', { id: 'ep-details' }, 'Details'), details),
    h('section', { 'aria-labelledby': 'ep-test' }, h('h2', { id: 'ep-test' }, 'Test'),
      h('div', { class: 'inline' }, field('Event type', testType), sendTest),
      h('p', { class: 'hint' }, 'Sends one signed event now, even while paused, and logs it as a delivery.'),
      testResult),
    h('section', { 'aria-labelledby': 'ep-diagnose' }, h('h2', { id: 'ep-diagnose' }, 'Diagnose'),
      runDiagnosis,
      h('p', { class: 'hint' }, 'Follows the path a delivery takes (DNS, address guard, TCP, TLS, HTTP) and times each step. Sends one signed webhook.test; nothing is logged.'),
      diagnosis),
    h('section', { 'aria-labelledby': 'ep-stats' }, h('h2', { id: 'ep-stats' }, 'Last 24 hours'), stats),
    h('section', { 'aria-labelledby': 'ep-deliveries' }, h('h2', { id: 'ep-deliveries' }, 'Deliveries'),
      field('Status', statusFilter), deliveries),
    h('section', { 'aria-labelledby': 'ep-edit' }, h('h2', { id: 'ep-edit' }, 'Edit endpoint'), saved, form));
  await deliveries.reload();
}

/** A diagnosis, phase by phase; everything in it is text. */
function diagnosisView(d) {
  const mark = (failed) => (failed ? '✗ ' : '✓ ');
  const phase = (name, failed, rows) => h('li', {},
    h('h3', {}, mark(failed), name),
    dl(rows));
  const phases = [];
  if (d.dns) {
    phases.push(phase('DNS', Boolean(d.dns.error), [
      ['Time', ms(d.dns.duration_ms)],
      ['Addresses', d.dns.addresses.join(', ') || '—'],
      d.dns.error ? ['Error', d.dns.error] : null]));
  }
  if (d.address_guard.length) {
    phases.push(phase('Address guard', d.failed_phase === 'address_guard',
      d.address_guard.map((v) => [v.address, `${v.allowed ? 'allowed' : 'refused'}: ${v.reason}`])));
  }
  if (d.connect) {
    phases.push(phase('TCP connect', Boolean(d.connect.error), [
      ['Address', d.connect.address], ['Time', ms(d.connect.duration_ms)],
      d.connect.error ? ['Error', d.connect.error] : null]));
  }
  if (d.tls) {
    const c = d.tls.certificate;
    phases.push(phase('TLS', Boolean(d.tls.error), [
      ['Time', ms(d.tls.duration_ms)],
      ['Protocol', d.tls.protocol || '—'],
      c ? ['Certificate', `${c.subject}, issued by ${c.issuer}`] : null,
      c ? ['Valid for', c.dns_names.join(', ') || '—'] : null,
      c ? ['Expires', `${c.not_after} (${c.days_left} days left)`] : null,
      d.tls.error ? ['Error', d.tls.error] : null]));
  }
  if (d.http) {
    phases.push(phase('HTTP', d.failed_phase === 'http', [
      ['Status', d.http.status_code ? `HTTP ${d.http.status_code}` : 'no answer'],
      ['Time to first byte', ms(d.http.time_to_first_byte_ms)],
      d.http.error ? ['Error', d.http.error] : null]));
  }
  return h('div', { class: d.ok ? 'panel done' : 'panel failed' },
    h('p', {}, h('strong', {}, d.ok ? 'Every step passed.' : `Failed at: ${d.failed_phase}.`)),
    d.hint ? h('p', {}, d.hint) : null,
    h('ol', { class: 'plain' }, phases),
    d.egress_ips.length ? h('p', {}, `Deliveries leave from ${d.egress_ips.join(', ')}.`) : null);
}

export const deliveryLink = (id) => h('a', { href: `#/deliveries/${seg(id)}` }, id);

function testOutcome(res) {
  return h('div', { class: res.success ? 'panel done' : 'panel failed' },
    h('p', {}, h('strong', {}, res.success ? 'Test delivered.' : 'Test failed.')),
    dl([
      ['Status', res.status_code ? `HTTP ${res.status_code}` : 'no response'],
      ['Latency', ms(res.latency_ms)],
      res.error ? ['Error', res.error] : null,
      res.delivery_id ? ['Delivery', deliveryLink(res.delivery_id)] : null,
    ]),
    h('p', { class: 'label' }, 'Response body'),
    pre(res.response_body ? pretty(res.response_body) : '(empty)'));
}

export function statsView(st, id) {
  const c = st.counts;
  return h('div', {},
    dl([
      ['Attempts', `${st.total}: ${c.succeeded} succeeded, ${c.failed} failed`],
      ['Dead deliveries', String(c.dead)],
      ['Success rate', percent(st.success_rate)],
      ['Latency', `p50 ${ms(st.latency_ms.p50)}, p95 ${ms(st.latency_ms.p95)}, p99 ${ms(st.latency_ms.p99)}`],
      ['Failures by cause', st.errors.length
        ? st.errors.map((g) => `${causeName(g.cause)}: ${g.count}`).join(', ')
        : 'none'],
    ]),
    h('p', {}, h('a', { href: `#/dashboard/${seg(id)}` }, 'Charts and error analysis in the dashboard')));
}
