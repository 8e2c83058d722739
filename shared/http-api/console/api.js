// The JSON API: one fetch wrapper that adds the bearer key, parses error bodies and
// sends the console back to sign-in on a 401. The key lives in sessionStorage only.

const KEY = 'webhooks-console.key';
const ACCOUNT = 'webhooks-console.account';

export const REFUSED = 'Your key was refused (revoked or wrong). Sign in again.';

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  get account() { return sessionStorage.getItem(ACCOUNT); },
  start(key, account) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ACCOUNT, account);
  },
  end() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ACCOUNT);
    catalog = null;
  },
};

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let unauthorized = () => {};
/** What to do when the API refuses the session's key (show sign-in with a message). */
export function onUnauthorized(fn) { unauthorized = fn; }

/**
 * Calls the API. `key` overrides the session's key (sign-in checks a key before keeping
 * it); a 401 then is the caller's to report, not the end of the session.
 */
export async function request(method, path, { body, key } = {}) {
  const bearer = key ?? session.key;
  if (!bearer) {
    const err = new ApiError(401, 'unauthorized', REFUSED);
    err.signedOut = true;
    unauthorized(REFUSED);
    throw err;
  }
  const headers = { Authorization: `Bearer ${bearer}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    throw new ApiError(0, 'network', 'The API could not be reached. Check the connection and try again.');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.ok) return data;
  const e = data && typeof data.error === 'object' && data.error ? data.error : {};
  const err = new ApiError(
    res.status,
    typeof e.code === 'string' ? e.code : `http_${res.status}`,
    typeof e.message === 'string' ? e.message : `The API answered ${res.status}.`,
    Array.isArray(e.details) ? e.details : [],
  );
  if (res.status === 401 && key === undefined) {
    session.end();
    err.signedOut = true;
    unauthorized(REFUSED);
  }
  throw err;
}

export const get = (path) => request('GET', path);
export const post = (path, body = {}) => request('POST', path, { body });
export const patch = (path, body) => request('PATCH', path, { body });
export const put = (path, body) => request('PUT', path, { body });
export const del = (path) => request('DELETE', path);

/** A path under the session's account: acct('/webhooks') → /v1/accounts/acct_1/webhooks. */
export function acct(path) {
  return `/v1/accounts/${encodeURIComponent(session.account || '')}${path}`;
}

/** A path segment from an id. */
export const seg = (id) => encodeURIComponent(id);

/** A query string from the parameters that have a value. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Every item of a cursor-paginated listing, up to `max` pages of 100. */
export async function listAll(path, params = {}, max = 10) {
  const items = [];
  let cursor;
  for (let page = 0; page < max; page += 1) {
    const res = await get(path + query({ ...params, limit: 100, cursor }));
    items.push(...(res.data || []));
    cursor = res.next_cursor;
    if (!cursor) break;
  }
  return items;
}

let catalog = null;
/** The event type catalog (`GET /v1/event-types`), fetched once per session. */
export async function eventTypes() {
  if (!catalog) {
    const res = await get('/v1/event-types');
    catalog = res.data || [];
  }
  return catalog;
}

/** The account's endpoints, oldest first. */
export const endpoints = () => listAll(acct('/webhooks'));
