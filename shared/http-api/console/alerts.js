// Alert e-mail of the account: the addresses, the operational events e-mailed, and the
// account's own failure threshold.

import { acct, get, put } from './api.js';
import {
  h, field, checkbox, alertRegion, statusRegion, showError, showStatus, clear, errorBox,
} from './dom.js';

// What each operational event means, as the form explains it.
const EVENTS = [
  ['webhook.failing', 'An endpoint failed the threshold number of times in a row'],
  ['delivery.dead', "A delivery's attempts ran out (it is in the dead letters)"],
  ['webhook.disabled', 'An endpoint was disabled (410 Gone, or failing for days)'],
  ['webhook.recovered', 'A failing endpoint answered again'],
];

export async function alertsPage(root) {
  const alert = alertRegion();
  const outcome = statusRegion();
  const body = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  root.append(h('h1', {}, 'Alerts'), alert, outcome, body);

  let settings;
  try {
    settings = await get(acct('/alerts'));
  } catch (err) {
    body.replaceChildren(errorBox(err));
    return;
  }

  const emails = h('textarea', { rows: 3, autocomplete: 'off', spellcheck: 'false' });
  emails.value = settings.emails.join('\n');
  const boxes = EVENTS.map(([type, meaning]) => {
    const box = checkbox(type, settings.events.includes(type), { value: type });
    return { type, box, meaning };
  });
  const threshold = h('input', {
    type: 'number', min: '1', max: '1000', inputmode: 'numeric',
    placeholder: String(settings.default_failing_after_failures),
  });
  if (settings.failing_after_failures != null) threshold.value = String(settings.failing_after_failures);
  const save = h('button', { type: 'submit' }, 'Save alerts');
  const form = h('form', { novalidate: true },
    field('E-mail addresses', emails, 'One per line (at most 10). Empty: no alert e-mail.'),
    h('fieldset', {},
      h('legend', {}, 'E-mail me about'),
      h('ul', { class: 'checks' }, boxes.map(({ box, meaning }) =>
        h('li', {}, box.wrap, h('span', { class: 'hint' }, ` — ${meaning}`))))),
    field('Failing after (failures in a row)', threshold,
      `Empty: the deployment's threshold, ${settings.default_failing_after_failures}.`),
    save);

  const note = settings.email_sending
    ? `At most one e-mail per endpoint and cause every ${Math.round(settings.throttle_seconds / 60)} minutes; a digest counts the rest. The same events also reach your endpoints that subscribe to them.`
    : 'This deployment sends no e-mail (no mail server is configured): your settings are kept, and the events still reach your endpoints that subscribe to them.';

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(alert);
    clear(outcome);
    const text = threshold.value.trim();
    const number = text === '' ? null : Number(text);
    if (number !== null && !(Number.isInteger(number) && number >= 1 && number <= 1000)) {
      showError(alert, 'Failing after must be a whole number from 1 to 1000, or empty.');
      return;
    }
    const request = {
      emails: emails.value.split(/[\n,;]+/).map((x) => x.trim()).filter(Boolean),
      events: boxes.filter(({ box }) => box.input.checked).map(({ type }) => type),
      failing_after_failures: number,
    };
    save.disabled = true;
    try {
      const saved = await put(acct('/alerts'), request);
      emails.value = saved.emails.join('\n');
      showStatus(outcome, saved.emails.length
        ? `Alerts saved: ${saved.events.length} event types to ${saved.emails.length} address${saved.emails.length === 1 ? '' : 'es'}.`
        : 'Alerts saved: no address, so no alert e-mail.');
    } catch (err) {
      showError(alert, err);
    } finally {
      save.disabled = false;
    }
  });

  body.replaceChildren(h('p', {}, note), form);
}
