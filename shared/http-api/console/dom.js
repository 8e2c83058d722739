// DOM helpers. Text is only ever inserted as text nodes; attributes only through
// setAttribute, and never an event handler or inline style attribute.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttributes(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (/^on/i.test(name) || name.toLowerCase() === 'style') {
      throw new Error(`refusing the attribute ${name}`);
    }
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    if (child instanceof Node) {
      el.append(child);
    } else {
      const text = document.createTextNode('');
      text.textContent = String(child);
      el.append(text);
    }
  }
}

/** An HTML element: h('a', {href: '#/x'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  appendChildren(el, children);
  return el;
}

/** An SVG element, built the same way. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttributes(el, attrs);
  appendChildren(el, children);
  return el;
}

// A message for the next page shown (after a delete, say).
let flash = null;
export function flashNext(message) { flash = message; }
export function takeFlash() {
  const message = flash;
  flash = null;
  return message;
}

let counter = 0;
/** A fresh id for label/for and aria-describedby pairs. */
export function uid(prefix = 'c') {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A <button type=button> with a click handler. */
export function button(text, onClick, attrs = {}) {
  const b = h('button', { type: 'button', ...attrs }, text);
  if (onClick) b.addEventListener('click', onClick);
  return b;
}

/** A labelled field: <div><label for>…</label><input id>…<p hint></div>. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid('f');
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id }, label));
  if (hint) {
    const hintId = uid('hint');
    control.setAttribute('aria-describedby', hintId);
    wrap.append(control, h('p', { class: 'hint', id: hintId }, hint));
  } else {
    wrap.append(control);
  }
  return wrap;
}

/** A labelled checkbox: the label text is its accessible name. */
export function checkbox(label, checked, attrs = {}) {
  const input = h('input', { type: 'checkbox', id: uid('cb'), ...attrs });
  input.checked = Boolean(checked);
  const wrap = h('span', { class: 'check' }, input, h('label', { for: input.id }, label));
  return { input, wrap };
}

export function option(value, label, selected) {
  const o = h('option', { value }, label);
  if (selected) o.selected = true;
  return o;
}

/** A <time> element for an RFC 3339 string, or a dash. */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: iso }, d.toLocaleString());
}

export function ms(n) {
  return n === null || n === undefined ? '—' : `${n} ms`;
}

export function percent(rate) {
  if (rate === null || rate === undefined) return '—';
  return `${(rate * 100).toFixed(1).replace(/\.0$/, '')} %`;
}

/** Pretty JSON when it is JSON (or an object), else the text as it is. */
export function pretty(body) {
  if (body === null || body === undefined) return '';
  if (typeof body !== 'string') return JSON.stringify(body, null, 2);
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

/** A <pre> whose content is text. */
export function pre(text, attrs = {}) {
  return h('pre', { tabindex: '0', ...attrs }, text);
}

/** A definition list from [term, value] pairs; values may be nodes. */
export function dl(pairs) {
  return h('dl', { class: 'details' },
    pairs.filter(Boolean).map(([term, value]) => [h('dt', {}, term), h('dd', {}, value ?? '—')]));
}

/** A table with a caption, header cells and rows of cells (text or nodes). */
export function table(caption, headers, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))));
}

// Field names of the API's JSON pointers, as the forms label them.
const POINTER_NAMES = {
  url: 'URL',
  description: 'Description',
  event_types: 'Event types',
  auth: 'Authentication',
  headers: 'Custom headers',
  timeout_seconds: 'Timeout (seconds)',
  max_attempts: 'Max attempts',
  rate_limit_per_second: 'Rate limit (per second)',
  retry_schedule: 'Retry schedule',
  since: 'From',
  until: 'Until',
  expires_at: 'Expires',
  account_id: 'Account',
  emails: 'E-mail addresses',
  events: 'E-mail me about',
  failing_after_failures: 'Failing after',
};

function pointerName(pointer) {
  const [first, ...rest] = String(pointer || '').replace(/^\//, '').split('/');
  const name = POINTER_NAMES[first] || first;
  return rest.length ? `${name} (${rest.join('/')})` : name;
}

/** An empty live region for errors; fill it with showError. */
export function alertRegion() {
  return h('div', { role: 'alert', class: 'alert', hidden: true });
}

/** An empty live region for outcomes; fill it with showStatus. */
export function statusRegion() {
  return h('div', { role: 'status', class: 'status', hidden: true });
}

/** Shows an error (ApiError, Error or text) in an alert region, as text. */
export function showError(region, err) {
  if (err && err.signedOut) return; // the sign-in screen says why
  const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
  const details = (err && Array.isArray(err.details)) ? err.details : [];
  region.replaceChildren(h('p', {}, message));
  if (details.length) {
    region.append(h('ul', {},
      details.map((d) => h('li', {}, `${pointerName(d.pointer)}: ${d.message}`))));
  }
  region.hidden = false;
}

export function showStatus(region, ...content) {
  region.replaceChildren(...content.map((c) => (c instanceof Node ? c : h('p', {}, c))));
  region.hidden = false;
}

export function clear(region) {
  region.replaceChildren();
  region.hidden = true;
}

/** A page-level error: an alert that says what failed. */
export function errorBox(err) {
  const region = alertRegion();
  showError(region, err);
  return region;
}

/** A secret or key shown once, beside a Copy button. */
export function shownOnce(label, value) {
  const codeId = uid('secret');
  const note = h('span', { class: 'copied', role: 'status' });
  const copy = button('Copy', async () => {
    try {
      await navigator.clipboard.writeText(value);
      note.textContent = 'Copied.';
    } catch {
      note.textContent = 'Could not copy; select the text and copy it.';
    }
  }, { 'aria-describedby': codeId });
  return h('div', { class: 'once' },
    h('p', {}, label, ' ', h('strong', {}, 'It is shown only now.')),
    h('p', { class: 'once-value' }, h('code', { id: codeId }, value), ' ', copy, ' ', note));
}

// The failure causes the stats API names, as a person reads them.
const CAUSES = {
  timeout: 'Timeout',
  connection_refused: 'Connection refused',
  tls: 'TLS',
  dns: 'DNS',
  blocked_address: 'Blocked by the address guard',
  connection: 'Connection failed',
};
export const causeName = (c) => CAUSES[c] || (/^http_(\d{3})$/.exec(c) ? `HTTP ${c.slice(5)}` : c);

/**
 * A table filled page by page from a cursor-paginated listing, with a "Load more" button.
 * `load(cursor)` answers `{data, next_cursor}`; `row(item)` gives the cells. Call
 * `.reload()` on the element to (re)load the first page.
 */
export function pagedTable({ caption, headers, load, row, empty, more = 'Load more' }) {
  const alert = alertRegion();
  const tbody = h('tbody');
  const tbl = h('table', { hidden: true },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    tbody);
  const none = h('p', { class: 'empty', hidden: true }, empty);
  const loading = h('p', { class: 'loading' }, 'Loading…');
  let cursor = null;
  let generation = 0;
  const moreButton = button(more, () => fetchPage(false), { hidden: true });

  async function fetchPage(reset) {
    if (reset) {
      generation += 1;
      cursor = null;
    }
    const gen = generation;
    moreButton.disabled = true;
    clear(alert);
    try {
      const res = await load(cursor);
      if (gen !== generation) return;
      if (reset) tbody.replaceChildren();
      for (const item of res.data || []) {
        tbody.append(h('tr', {}, row(item).map((cell) => h('td', {}, cell))));
      }
      cursor = res.next_cursor || null;
      moreButton.hidden = !cursor;
      const isEmpty = tbody.children.length === 0;
      none.hidden = !isEmpty;
      tbl.hidden = isEmpty;
    } catch (err) {
      if (gen === generation) showError(alert, err);
    } finally {
      loading.hidden = true;
      moreButton.disabled = false;
    }
  }

  const wrap = h('div', { class: 'paged' }, alert, loading, tbl, none, moreButton);
  wrap.reload = () => fetchPage(true);
  return wrap;
}

/** A delivery's status as a small badge (text, so it reads out). */
export function badge(status) {
  return h('span', { class: `badge badge-${String(status).replace(/[^a-z_]/g, '')}` }, status);
}
