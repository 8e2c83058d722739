// The console's shell: sign-in, navigation and hash routing.

import { session, request, onUnauthorized, REFUSED } from './api.js';
import { h, field, alertRegion, statusRegion, showError, showStatus, errorBox, takeFlash } from './dom.js';
import { endpointsPage, endpointPage } from './endpoints.js';
import { deliveryPage } from './delivery.js';
import { eventsPage } from './events.js';
import { deadLettersPage } from './dead-letters.js';
import { apiKeysPage } from './api-keys.js';
import { dashboardPage } from './dashboard.js';
import { alertsPage } from './alerts.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const whoAccount = document.getElementById('who-account');

// [pattern, page, title, the nav link it belongs to]
const ROUTES = [
  [/^#\/endpoints$/, endpointsPage, 'Endpoints', '#/endpoints'],
  [/^#\/endpoints\/([^/]+)$/, endpointPage, 'Endpoint', '#/endpoints'],
  [/^#\/deliveries\/([^/]+)$/, deliveryPage, 'Delivery', '#/endpoints'],
  [/^#\/events$/, eventsPage, 'Events', '#/events'],
  [/^#\/dead-letters$/, deadLettersPage, 'Dead letters', '#/dead-letters'],
  [/^#\/api-keys$/, apiKeysPage, 'API keys', '#/api-keys'],
  [/^#\/dashboard$/, dashboardPage, 'Dashboard', '#/dashboard'],
  [/^#\/dashboard\/([^/]+)$/, dashboardPage, 'Dashboard', '#/dashboard'],
  [/^#\/alerts$/, alertsPage, 'Alerts', '#/alerts'],
];

function route(hash) {
  for (const [pattern, page, title, link] of ROUTES) {
    const m = pattern.exec(hash);
    if (m) {
      let params;
      try { params = m.slice(1).map(decodeURIComponent); } catch { return null; }
      return { page, title, link, params };
    }
  }
  return null;
}

// The sign-in form's alert while it is shown: later 401s update it rather than
// rebuilding the form under the user's typing.
let signInAlert = null;

function showShell(signedIn) {
  nav.hidden = !signedIn;
  who.hidden = !signedIn;
  whoAccount.textContent = signedIn ? `Account: ${session.account}` : '';
}

function signInPage({ error, info } = {}) {
  if (signInAlert && signInAlert.isConnected) {
    if (error) showError(signInAlert, error);
    return;
  }
  showShell(false);
  document.title = 'Sign in · Webhooks console';
  const alert = alertRegion();
  const note = statusRegion();
  signInAlert = alert;
  if (error) showError(alert, error);
  if (info) showStatus(note, info);

  const key = h('input', { type: 'password', name: 'api-key', autocomplete: 'off', spellcheck: 'false' });
  const account = h('input', { type: 'text', name: 'account', autocomplete: 'off', spellcheck: 'false' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'signin', novalidate: true },
    field('API key', key),
    field('Account', account,
      'Needed with the platform key: the account to manage, such as acct_123. An account key knows its own account.'),
    h('div', { class: 'actions' }, submit));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const k = key.value.trim();
    const a = account.value.trim();
    if (!k) {
      showError(alert, 'Enter an API key.');
      key.focus();
      return;
    }
    submit.disabled = true;
    try {
      let whoami = null;
      try {
        whoami = await request('GET', '/v1/whoami', { key: k });
      } catch (err) {
        // Until every deployment has /v1/whoami, the Account field decides.
        if (err.code !== 'route_not_found') throw err;
      }
      let accountId = a;
      if (whoami && whoami.kind === 'account' && whoami.account_id) {
        accountId = whoami.account_id;
      } else if (!accountId) {
        showError(alert, whoami && whoami.kind === 'platform'
          ? 'This is the platform key: fill in Account with the account to manage.'
          : 'Fill in Account with the account to manage.');
        account.focus();
        return;
      }
      // One read proves the key may manage that account before the console keeps it.
      await request('GET', `/v1/accounts/${encodeURIComponent(accountId)}/webhooks?limit=1`, { key: k });
      session.start(k, accountId);
      signInAlert = null;
      if (route(location.hash)) render();
      else location.hash = '#/endpoints';
    } catch (err) {
      showError(alert, err.status === 401 ? REFUSED : err);
    } finally {
      submit.disabled = false;
    }
  });

  main.replaceChildren(
    h('h1', { tabindex: '-1' }, 'Sign in'),
    h('p', {}, 'Sign in with an API key. It is kept in this browser tab only, until you sign out or close the tab.'),
    alert, note, form);
  key.focus();
}

async function render() {
  if (!session.key) {
    signInPage();
    return;
  }
  const r = route(location.hash);
  if (!r) {
    location.replace('#/endpoints');
    return;
  }
  signInAlert = null;
  showShell(true);
  document.title = `${r.title} · Webhooks console`;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === r.link) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = h('div', { class: 'page' });
  const flash = takeFlash();
  const banner = flash ? statusRegion() : null;
  if (banner) showStatus(banner, flash);
  main.replaceChildren(...[banner, root].filter(Boolean));
  const done = r.page(root, ...r.params);
  // Each page puts its heading first, before it waits for anything.
  const heading = root.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }
  try {
    await done;
  } catch (err) {
    if (!err.signedOut) root.append(errorBox(err));
  }
}

onUnauthorized((message) => signInPage({ error: message || REFUSED }));

document.getElementById('sign-out').addEventListener('click', () => {
  session.end();
  signInPage({ info: 'You are signed out.' });
});

window.addEventListener('hashchange', render);
render();
