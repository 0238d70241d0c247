// Calls to the node's API with the session cookie; every change carries the CSRF token.

let csrf = null;
let onSignedOut = () => {};

export function setCsrf(token) { csrf = token; }
// For requests made outside `api` (file uploads, which report their progress).
export const csrfToken = () => csrf;
export function whenSignedOut(f) { onSignedOut = f; }

export class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail || `request failed (${status})`);
    this.status = status;
    this.code = code;
    // Seconds to wait before trying again (429), from the Retry-After header.
    this.retryAfter = retryAfter;
  }
}

// method, path under /api/v1, optional JSON body (or {text, type} for raw text).
export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = {};
  let payload;
  if (body && body.text !== undefined) {
    headers['Content-Type'] = body.type || 'text/plain';
    payload = body.text;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let r;
  try {
    r = await fetch('/api/v1' + path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (e) {
    window.dispatchEvent(new Event('parley:offline'));
    throw new ApiError(0, 'offline', 'The node did not answer. Is it running? Nothing was changed; try again when it is back.');
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text }; }
  }
  if (!r.ok) {
    if (r.status === 401 && !quiet401) onSignedOut();
    const wait = parseInt(r.headers.get('Retry-After') || '', 10);
    throw new ApiError(r.status, data && data.error, data && data.detail, Number.isFinite(wait) ? wait : undefined);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, v);
  }
  const s = p.toString();
  return s ? '?' + s : '';
}
