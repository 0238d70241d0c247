// Parley web UI: sign-in, routing between pages, the header's unread count, and live updates.

import { api, get, setCsrf, whenSignedOut, qs } from './api.js';
import { h, clear } from './dom.js';
import { renderInbox } from './inbox.js';
import { renderConversation } from './conversation.js';
import { renderTopicList, renderTopicDetail } from './topics.js';
import { openCompose, composeFromQuery } from './compose.js';
import { renderPeers } from './peers.js';
import { renderWebhooks } from './webhooks.js';
import { renderSettings } from './settings.js';
import { installShortcuts } from './keys.js';
import { notifyNew } from './notify.js';
import { clearAllDrafts } from './drafts.js';

export const app = {
  session: null,
  partners: [],
  // People of our org ({name, display_name}): assignees and who wrote what.
  colleagues: [],
  // The page shown: { name, refresh(event) } so live events can update it.
  page: null,
};

const main = document.getElementById('main');

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

// Links inside the page navigate without reloading.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  // Downloads (files, exports) are the browser's to fetch, not pages of this UI.
  if (a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => route());

let lastPath = null;
async function route() {
  if (!app.session) return renderLogin();
  const path = location.pathname;
  // Changing a filter re-renders the same page: keep the keyboard focus where it was.
  const keep = path === lastPath && document.activeElement ? document.activeElement.id : null;
  lastPath = path;
  const params = new URLSearchParams(location.search);
  markNav(path);
  let m;
  try {
    if (path === '/' || path === '/inbox') {
      await renderInbox(main, params);
    } else if (path === '/new') {
      await renderInbox(main, new URLSearchParams());
      openCompose(await composeFromQuery(params), { onClose: () => history.replaceState(null, '', '/') });
    } else if (path === '/peers') {
      await renderPeers(main);
    } else if (path === '/webhooks') {
      await renderWebhooks(main);
    } else if (path === '/settings') {
      await renderSettings(main, params);
    } else if ((m = path.match(/^\/c\/([0-9a-f-]{36})$/i))) {
      await renderConversation(main, m[1]);
    } else if ((m = path.match(/^\/topics\/([a-z]+)\/(.+)$/))) {
      await renderTopicDetail(main, m[1], decodeURIComponent(m[2]));
    } else if ((m = path.match(/^\/topics\/([a-z]+)\/?$/))) {
      await renderTopicList(main, m[1], params);
    } else {
      app.page = null;
      clear(main).append(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/' }, 'Go to the Inbox')));
    }
  } catch (e) {
    if (e.status === 401) return;
    app.page = null;
    clear(main).append(h('h1', {}, 'Something went wrong'), h('p', { role: 'alert' }, e.message));
  }
  const again = keep && document.getElementById(keep);
  if (again && !document.querySelector('dialog[open]')) again.focus();
  else if (!document.querySelector('dialog[open]')) focusHeading();
  if (!(app.page && app.page.name === 'inbox')) refreshUnread();
}

function markNav(path) {
  const section = path.startsWith('/topics/') ? path.split('/')[2]
    : path === '/peers' ? 'peers'
    : path === '/webhooks' ? 'webhooks'
    : path === '/settings' ? 'settings'
    : (path === '/' || path === '/new' || path.startsWith('/c/') ? 'inbox' : '');
  for (const a of document.querySelectorAll('.mainnav a')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

export function focusHeading() {
  const h1 = main.querySelector('h1');
  if (h1) { h1.tabIndex = -1; h1.focus({ preventScroll: true }); }
}

// The dot and count on the Inbox icon.
export async function refreshUnread(known) {
  let n = known;
  if (n === undefined) {
    try { n = (await get('/conversations' + qs({ limit: 1 }))).unread; } catch { return; }
  }
  const dot = document.getElementById('unread-dot');
  const count = document.getElementById('unread-count');
  const icon = document.getElementById('inbox-icon');
  dot.hidden = count.hidden = n === 0;
  count.textContent = n > 99 ? '99+' : String(n);
  icon.setAttribute('aria-label', n ? `Inbox, ${n} unread` : 'Inbox, nothing unread');
  icon.title = icon.getAttribute('aria-label');
  // The Unread folder's count and the tab title show the same number as the header.
  const folderCount = document.getElementById('count-unread');
  if (folderCount) folderCount.textContent = n ? `${n > 99 ? '99+' : n}` : '';
  document.title = n ? `(${n > 99 ? '99+' : n}) Parley` : 'Parley';
  notifyNew(n);
}

function renderLogin(message) {
  app.page = null;
  document.getElementById('top').hidden = true;
  const err = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message || '');
  const name = h('input', { id: 'login-name', name: 'name', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const pw = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  // Shown while the node refuses sign-ins for this name or address: a spinner and the wait.
  // The button stays usable: another user name may well be let in.
  const slowed = h('p', { class: 'slowed', id: 'login-slowed', role: 'status', hidden: true });
  let timer = null;
  const waitOut = (secs) => {
    clearInterval(timer);
    const until = Date.now() + Math.max(1, secs) * 1000;
    const show = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(timer);
        slowed.hidden = true;
        return;
      }
      const wait = left >= 120 ? `${Math.ceil(left / 60)} minutes` : `${left} s`;
      clear(slowed).append(h('span', { class: 'spinner', 'aria-hidden': 'true' }),
        `Sign-in is slowed down after failed attempts for this user name or from this address. Try again in ${wait}.`);
    };
    slowed.hidden = false;
    show();
    timer = setInterval(show, 1000);
  };
  const form = h('form', { class: 'login', 'aria-describedby': 'login-error login-slowed', onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    err.textContent = '';
    try {
      const s = await api('POST', '/session', { name: name.value, password: pw.value }, { quiet401: true });
      clearInterval(timer);
      await signedIn(s);
    } catch (ex) {
      if (ex.status === 429) {
        waitOut(ex.retryAfter || 60);
      } else {
        clearInterval(timer);
        slowed.hidden = true;
        err.textContent = ex.status === 401
          ? 'Wrong user name or password. Check both and try again; after several failed attempts sign-in is slowed down.'
          : ex.message;
      }
      pw.value = '';
      pw.focus();
    } finally {
      button.disabled = false;
    }
  } },
    h('h1', {}, 'Sign in to Parley'),
    h('label', { for: 'login-name' }, 'User name'), name,
    h('label', { for: 'login-password' }, 'Password'), pw,
    err, slowed, button);
  clear(main).append(form);
  name.focus();
}

async function signedIn(s) {
  app.session = s;
  setCsrf(s.csrf_token);
  document.getElementById('top').hidden = false;
  document.getElementById('whoami').textContent = `${s.user} · ${s.org_name}`;
  // Webhooks are managed by admins only: the link is shown to them alone.
  document.getElementById('nav-webhooks').hidden = !s.admin;
  try { app.partners = await get('/partners'); } catch { app.partners = []; }
  try { app.colleagues = await get('/colleagues'); } catch { app.colleagues = []; }
  startLive();
  installShortcuts();
  if (location.pathname === '/login') history.replaceState(null, '', '/');
  await route();
}

document.getElementById('logout').addEventListener('click', async () => {
  clearAllDrafts();
  try { await api('DELETE', '/session'); } catch { /* signed out either way */ }
  signedOut();
});

function signedOut() {
  app.session = null;
  setCsrf(null);
  stopLive();
  renderLogin();
}
whenSignedOut(() => { if (app.session) signedOut(); });

// Live updates: server-sent events for every change of a conversation.
let source = null;
let pending = null;
function startLive() {
  stopLive();
  source = new EventSource('/api/v1/events');
  // The stream drops the moment the node stops: say so at once, then watch for its return.
  source.onerror = () => { if (app.session) nodeDown(); };
  // A change made between the page's first read and the stream's opening sends no event this
  // page hears, so every opening (the first and each reconnect) reads the page once more.
  source.onopen = () => { nodeUp(); changed('*'); };
  source.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    changed(ev.conversation || '*');
  };
}
// Several changes in a burst cause one refresh.
function changed(id) {
  pending = pending || new Set();
  pending.add(id);
  setTimeout(flush, 150);
}
function flush() {
  if (!pending) return;
  const ids = pending;
  pending = null;
  refreshPage(ids);
  refreshUnread();
}
// A refresh that finds the node gone has already raised the banner; nothing more to say.
function refreshPage(ids) {
  if (app.page && app.page.refresh) Promise.resolve(app.page.refresh(ids)).catch(() => {});
}
function stopLive() {
  if (source) { source.close(); source = null; }
}

// The banner shown while the node does not answer. A probe every 2 s (and the event stream's
// own reconnects) notice when it is back; then the page refreshes itself.
let down = false;
let probe = null;
const banner = document.getElementById('offline-banner');
export function nodeDown() {
  if (!down) {
    down = true;
    banner.hidden = false;
  }
  if (!probe) probe = setInterval(check, 2000);
}
// Whether the node answers within 5 s; a hung node counts as down as much as a stopped one.
async function check() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    const r = await fetch('/api/v1/session', { credentials: 'same-origin', cache: 'no-store', signal: ctl.signal });
    if (r.ok || r.status === 401) nodeUp(); else nodeDown();
  } catch {
    nodeDown();
  } finally {
    clearTimeout(timer);
  }
}
function nodeUp() {
  clearInterval(probe);
  probe = null;
  if (!down) return;
  down = false;
  banner.hidden = true;
  if (source && source.readyState === EventSource.CLOSED) startLive();
  refreshPage(new Set(['*']));
  refreshUnread();
}
// A request that finds no node shows the banner too (e.g. the stream had not noticed yet).
window.addEventListener('parley:offline', () => { if (app.session) nodeDown(); });
// A node that hangs rather than closing the stream: check now and then while visible.
setInterval(() => { if (app.session && !down && !document.hidden) check(); }, 10000);
window.addEventListener('pagehide', stopLive);

async function boot() {
  let status;
  try {
    status = await api('GET', '/session', undefined, { quiet401: true });
  } catch (e) {
    clear(main).append(h('h1', {}, 'Parley'), h('p', { role: 'alert' }, e.message));
    return;
  }
  if (status.signed_in) await signedIn(status.session);
  else renderLogin();
}

boot();
