// The Inbox: folders, filters, search and paging over GET /conversations.

import { get, qs } from './api.js';
import { h, clear, when, stateLabel, badge, topicLink, KIND_LABEL, PROGRESS_LABEL, TOPIC_KINDS, TOPIC_LABEL } from './dom.js';
import { app, navigate, refreshUnread } from './app.js';
import { openCompose } from './compose.js';

export const FOLDERS = [
  { id: 'inbox', label: 'Inbox', params: { state: 'open' } },
  { id: 'tasks', label: 'Tasks', params: { kind: 'task', state: 'open' } },
  { id: 'action', label: 'Action required', params: { action_required: 'true' } },
  { id: 'resolved', label: 'Resolved', params: { state: 'resolved' } },
];
const FILTERS = ['kind', 'progress', 'overdue', 'partner', 'topic_kind', 'q'];
const PAGE = 50;

// One row per conversation; used by the Inbox and by topic detail pages.
export function conversationTable(items, caption) {
  const rows = items.map((c) => h('tr', { class: c.unread ? 'unread' : '', dataset: { id: c.id } },
    h('td', { class: 'col-kind' }, KIND_LABEL[c.kind]),
    h('td', {}, c.partner),
    h('td', { class: 'subject' },
      h('span', { class: 'kind-inline', 'aria-hidden': 'true' }, KIND_LABEL[c.kind]),
      h('a', { href: `/c/${c.id}` }, c.unread ? h('span', { class: 'sr-only' }, 'Unread: ') : '', c.subject),
      c.last_message_preview ? h('span', { class: 'preview' }, c.last_message_preview) : ''),
    h('td', { class: 'col-topic' }, topicLink(c.topic, { short: true })),
    h('td', { class: 'col-ref' }, c.reference_id || ''),
    h('td', { class: 'due' }, c.due_date || '', c.overdue ? [' ', badge('Overdue', 'overdue')] : ''),
    h('td', {}, stateLabel(c)),
    h('td', { class: 'col-when' }, when(c.last_activity_at))));
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list conversations' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, ['Kind', 'Partner', 'Subject', 'Topic', 'Reference ID', 'Due', 'State', 'Last activity']
      .map((t, i) => h('th', { scope: 'col', class: ['col-kind', '', '', 'col-topic', 'col-ref', '', '', 'col-when'][i] }, t)))),
    h('tbody', {}, rows)));
}

function select(name, label, options, value, onchange) {
  const id = `filter-${name}`;
  return h('span', { class: 'field' },
    h('label', { for: id }, label),
    h('select', { id, name, onchange },
      options.map(([v, t]) => h('option', { value: v, selected: v === (value || '') }, t))));
}

export async function renderInbox(main, params) {
  const folder = FOLDERS.find((f) => f.id === params.get('folder')) || FOLDERS[0];
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || '']));
  // Cursors of the pages before this one, for "Newer".
  const cursors = [];
  let cursor = null;

  const setParam = (k, v) => {
    const p = new URLSearchParams(location.search);
    if (v) p.set(k, v); else p.delete(k);
    navigate('/' + (p.toString() ? '?' + p : ''), { replace: true });
  };
  const folderLink = (f) => {
    const p = new URLSearchParams(location.search);
    if (f.id === 'inbox') p.delete('folder'); else p.set('folder', f.id);
    const cnt = h('span', { class: 'folder-count', id: `count-${f.id}` });
    return h('li', {}, h('a', { href: '/' + (p.toString() ? '?' + p : ''), 'aria-current': f === folder ? 'page' : null }, f.label, cnt));
  };

  const search = h('input', { type: 'search', id: 'search', name: 'q', value: filters.q, placeholder: 'Subject, reference ID or topic', autocomplete: 'off' });
  const searchForm = h('form', { role: 'search', class: 'search', onsubmit: (e) => { e.preventDefault(); setParam('q', search.value.trim()); } },
    h('label', { for: 'search', class: 'sr-only' }, 'Search conversations'), search,
    h('button', { type: 'submit' }, 'Search'));
  const partnerOpts = [['', 'Any partner'], ...app.partners.map((p) => [p.id, p.name])];
  const filterBar = h('div', { class: 'filters', role: 'group', 'aria-label': 'Filters' },
    select('kind', 'Kind', [['', 'Any kind'], ['message', 'Messages'], ['task', 'Tasks']], filters.kind, (e) => setParam('kind', e.target.value)),
    select('progress', 'Progress', [['', 'Any progress'], ...Object.entries(PROGRESS_LABEL)], filters.progress, (e) => setParam('progress', e.target.value)),
    select('overdue', 'Overdue', [['', 'Overdue or not'], ['true', 'Overdue only'], ['false', 'Not overdue']], filters.overdue, (e) => setParam('overdue', e.target.value)),
    select('partner', 'Partner', partnerOpts, filters.partner, (e) => setParam('partner', e.target.value)),
    select('topic_kind', 'Topic', [['', 'Any topic'], ...TOPIC_KINDS.map((k) => [k, TOPIC_LABEL[k]])], filters.topic_kind, (e) => setParam('topic_kind', e.target.value)));

  const status = h('p', { class: 'status', id: 'inbox-status', 'aria-live': 'polite' });
  const listBox = h('div', { id: 'inbox-list' });
  const newer = h('button', { type: 'button', id: 'page-newer', onclick: () => { cursor = cursors.pop() || null; load(); } }, 'Newer');
  const older = h('button', { type: 'button', id: 'page-older' }, 'Older');
  const compose = h('button', { type: 'button', class: 'primary', id: 'compose-button', onclick: () => openCompose({}, { onSent: () => load() }) }, 'Compose');

  let nextCursor = null;
  let shown = null;
  older.addEventListener('click', () => { cursors.push(cursor); cursor = nextCursor; load(); });

  async function load() {
    const q = { ...folder.params, limit: PAGE, cursor };
    for (const [k, v] of Object.entries(filters)) if (v) q[k] = v;
    const page = await get('/conversations' + qs(q));
    nextCursor = page.next_cursor || null;
    refreshUnread(page.unread);
    // A live refresh that changes nothing leaves the list alone.
    const key = JSON.stringify([cursor, page]);
    if (key === shown) return;
    shown = key;
    clear(listBox).append(page.items.length
      ? conversationTable(page.items, `${folder.label}: conversations, newest activity first`)
      : h('p', { class: 'empty' }, filters.q ? 'No conversations match this search.' : 'Nothing here.'));
    const first = cursors.length * PAGE + (page.items.length ? 1 : 0);
    status.textContent = page.total
      ? `${first}–${cursors.length * PAGE + page.items.length} of ${page.total}`
      : '';
    newer.disabled = cursors.length === 0;
    older.disabled = !nextCursor;
  }

  clear(main).append(
    h('div', { class: 'page-head' }, h('h1', {}, folder.label), compose),
    h('div', { class: 'inbox' },
      h('nav', { class: 'folders', 'aria-label': 'Folders' }, h('ul', {}, FOLDERS.map(folderLink))),
      h('section', { class: 'inbox-main', 'aria-label': 'Conversations' },
        searchForm, filterBar, status, listBox,
        h('div', { class: 'pager' }, newer, older))));
  await load();
  app.page = { name: 'inbox', refresh: () => { if (cursors.length === 0) load(); } };
}
