// The Inbox: folders, filters, sort, search across folders and paging over GET /conversations.

import { get, qs } from './api.js';
import { h, clear, when, stateLabel, progressLabel, badge, topicLink, folderOf, KIND_LABEL, PROGRESS_LABEL, TOPIC_KINDS, TOPIC_LABEL } from './dom.js';
import { app, navigate, refreshUnread } from './app.js';
import { openCompose } from './compose.js';
import { desktopOn, setDesktop } from './notify.js';

// Which conversations each folder lists is decided by the node (`folder=`): finished tasks
// leave Tasks and Action required, and Unread lists exactly what the header counts.
export const FOLDERS = [
  { id: 'inbox', label: 'Inbox', empty: 'Nothing open. New conversations and replies from your partners appear here.' },
  { id: 'unread', label: 'Unread', empty: 'You have read everything.' },
  { id: 'tasks', label: 'Tasks', empty: 'No tasks to work on. Tasks that are completed or cancelled are in the Inbox until resolved.' },
  { id: 'action', label: 'Action required', empty: 'Nothing waits for you: no partner is waiting for a reply and no task is overdue.' },
  { id: 'resolved', label: 'Resolved', empty: 'No resolved conversations yet.' },
];
const FILTERS = ['kind', 'progress', 'overdue', 'partner', 'topic_kind', 'q'];
const SORTS = { activity: 'Last activity', due: 'Due date' };
const PAGE = 50;

export function partnerName(id) {
  const p = app.partners.find((x) => x.id === id);
  return p ? p.name : id;
}

// One row per conversation; used by the Inbox and by topic detail pages. `withFolder` marks
// each row with the folder it is in (search results span every folder).
export function conversationTable(items, caption, { withFolder = false, sort = null, onSort = null } = {}) {
  const rows = items.map((c) => h('tr', { class: c.unread ? 'unread' : '', dataset: { id: c.id } },
    h('td', { class: 'col-partner', title: c.partner }, partnerName(c.partner)),
    h('td', { class: 'subject' },
      h('span', { class: 'kind-inline' }, KIND_LABEL[c.kind]),
      h('a', { href: `/c/${c.id}` }, c.unread ? h('span', { class: 'sr-only' }, 'Unread: ') : '', c.subject),
      withFolder ? [' ', badge(folderOf(c), 'folder')] : (c.state === 'resolved' ? [' ', h('span', { class: 'badge state-inline' }, 'Resolved')] : ''),
      c.undelivered ? [' ', badge('Not yet delivered', 'undelivered')] : '',
      c.last_message_preview ? h('span', { class: 'preview' }, c.last_message_preview) : ''),
    h('td', { class: 'col-topic clip', title: c.topic ? `${TOPIC_LABEL[c.topic.kind] || c.topic.kind} ${c.topic.ref}${c.topic.label ? ' — ' + c.topic.label : ''}` : null },
      topicLink(c.topic, { short: true })),
    h('td', { class: 'col-ref clip', title: c.reference_id || null }, c.reference_id || ''),
    h('td', { class: 'due' }, c.due_date || '', c.overdue ? [' ', badge('Overdue', 'overdue')] : ''),
    h('td', { class: 'col-progress' }, progressLabel(c)),
    h('td', { class: 'col-state' }, stateLabel(c)),
    h('td', { class: 'col-when' }, h('time', { datetime: c.last_activity_at, title: new Date(c.last_activity_at).toLocaleString() }, when(c.last_activity_at)))));
  // Due and Last activity are sort buttons when the list can be sorted.
  const head = (label, cls, key) => {
    if (!onSort || !key) return h('th', { scope: 'col', class: cls }, label);
    const on = sort === key;
    return h('th', { scope: 'col', class: cls, 'aria-sort': on ? (key === 'due' ? 'ascending' : 'descending') : 'none' },
      h('button', { type: 'button', class: 'sort', id: `sort-${key}`, 'aria-pressed': String(on), onclick: () => onSort(key) },
        label, h('span', { 'aria-hidden': 'true' }, on ? (key === 'due' ? ' ↑' : ' ↓') : '')));
  };
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list conversations' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {},
      head('Partner', 'col-partner'), head('Subject'), head('Topic', 'col-topic'), head('Reference ID', 'col-ref'),
      head('Due', 'due', 'due'), head('Progress', 'col-progress'), head('State', 'col-state'), head('Last activity', 'col-when', 'activity'))),
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
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || '']));
  // A search looks in every folder, and says so.
  const searching = !!filters.q;
  const folder = searching ? null : (FOLDERS.find((f) => f.id === params.get('folder')) || FOLDERS[0]);
  const sort = SORTS[params.get('sort')] ? params.get('sort') : 'activity';
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
    p.delete('q');
    if (f.id === 'inbox') p.delete('folder'); else p.set('folder', f.id);
    return h('li', {}, h('a', { href: '/' + (p.toString() ? '?' + p : ''), id: `folder-${f.id}`, 'aria-current': f === folder ? 'page' : null },
      f.label, f.id === 'unread' ? h('span', { class: 'folder-count', id: 'count-unread' }) : ''));
  };

  const search = h('input', { type: 'search', id: 'search', name: 'q', value: filters.q, placeholder: 'Subject, reference ID or topic, in every folder', autocomplete: 'off', 'aria-keyshortcuts': '/' });
  const searchForm = h('form', { role: 'search', class: 'search', onsubmit: (e) => { e.preventDefault(); setParam('q', search.value.trim()); } },
    h('label', { for: 'search', class: 'sr-only' }, 'Search conversations in every folder'), search,
    h('button', { type: 'submit' }, 'Search'),
    searching ? h('button', { type: 'button', id: 'search-clear', onclick: () => setParam('q', '') }, 'Clear') : '');
  const partnerOpts = [['', 'Any partner'], ...app.partners.map((p) => [p.id, p.name])];
  const filterBar = h('div', { class: 'filters', role: 'group', 'aria-label': 'Filters' },
    select('kind', 'Kind', [['', 'Any kind'], ['message', 'Messages'], ['task', 'Tasks']], filters.kind, (e) => setParam('kind', e.target.value)),
    select('progress', 'Progress', [['', 'Any progress'], ...Object.entries(PROGRESS_LABEL)], filters.progress, (e) => setParam('progress', e.target.value)),
    select('overdue', 'Overdue', [['', 'Overdue or not'], ['true', 'Overdue only'], ['false', 'Not overdue']], filters.overdue, (e) => setParam('overdue', e.target.value)),
    select('partner', 'Partner', partnerOpts, filters.partner, (e) => setParam('partner', e.target.value)),
    select('topic_kind', 'Topic', [['', 'Any topic'], ...TOPIC_KINDS.map((k) => [k, TOPIC_LABEL[k]])], filters.topic_kind, (e) => setParam('topic_kind', e.target.value)),
    select('sort', 'Sort by', Object.entries(SORTS), sort, (e) => setParam('sort', e.target.value === 'activity' ? '' : e.target.value)));

  const status = h('p', { class: 'status', id: 'inbox-status', 'aria-live': 'polite' });
  const listBox = h('div', { id: 'inbox-list' });
  const newer = h('button', { type: 'button', id: 'page-newer', onclick: () => { cursor = cursors.pop() || null; load(); } }, 'Newer');
  const older = h('button', { type: 'button', id: 'page-older' }, 'Older');
  const compose = h('button', { type: 'button', class: 'primary', id: 'compose-button', 'aria-keyshortcuts': 'c', onclick: () => openCompose({}, { onSent: () => load(), draft: true }) }, 'Compose');

  let nextCursor = null;
  let shown = null;
  const me = { name: 'inbox', refresh: () => { if (cursors.length === 0) load(); } };
  older.addEventListener('click', () => { cursors.push(cursor); cursor = nextCursor; load(); });

  async function load() {
    const q = { folder: searching ? 'all' : folder.id, sort: sort === 'activity' ? undefined : sort, limit: PAGE, cursor };
    for (const [k, v] of Object.entries(filters)) if (v) q[k] = v;
    const page = await get('/conversations' + qs(q));
    nextCursor = page.next_cursor || null;
    refreshUnread(page.unread);
    // A live refresh that changes nothing leaves the list alone (and the keyboard focus in it).
    const key = JSON.stringify([cursor, page]);
    if (key === shown) return;
    shown = key;
    const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest('#inbox-list tr');
    const order = sort === 'due' ? 'soonest due first' : 'newest activity first';
    clear(listBox).append(page.items.length
      ? conversationTable(page.items, `${searching ? 'Search results' : folder.label}: conversations, ${order}`, {
        withFolder: searching, sort, onSort: (k) => setParam('sort', k === 'activity' ? '' : k),
      })
      : h('p', { class: 'empty' }, searching ? 'No conversation in any folder matches this search. Try part of the subject, a reference ID or a topic ref.' : folder.empty));
    if (focusedId) {
      const again = listBox.querySelector(`tr[data-id='${focusedId.dataset.id}'] a[href^='/c/']`);
      if (again) again.focus();
    }
    const first = cursors.length * PAGE + (page.items.length ? 1 : 0);
    status.textContent = page.total
      ? `${first}–${cursors.length * PAGE + page.items.length} of ${page.total}${searching ? ' in all folders' : ''}`
      : '';
    newer.disabled = cursors.length === 0;
    older.disabled = !nextCursor;
    newer.hidden = older.hidden = !nextCursor && cursors.length === 0;
  }

  const title = searching ? `Search: ${filters.q}` : folder.label;
  const desktop = 'Notification' in window
    ? h('label', { class: 'check desktop', for: 'desktop-notifications' },
      h('input', { type: 'checkbox', id: 'desktop-notifications', checked: desktopOn(), onchange: async (e) => { e.target.checked = await setDesktop(e.target.checked); } }),
      'Desktop notifications')
    : '';
  // The page opens with the focus on its heading; the next Tab reaches this link, which goes
  // straight to the first conversation (past the folders and filters).
  const skipList = h('a', { class: 'skip', id: 'skip-list', href: '#inbox-list', onclick: (e) => {
    const first = listBox.querySelector('a[href^="/c/"]');
    if (first) { e.preventDefault(); first.focus(); }
  } }, 'Skip to the conversations');
  clear(main).append(
    h('div', { class: 'page-head' }, h('h1', {}, title), skipList, h('div', { class: 'head-actions' }, desktop, compose)),
    h('div', { class: 'inbox' },
      h('nav', { class: 'folders', 'aria-label': 'Folders' }, h('ul', {}, FOLDERS.map(folderLink))),
      h('section', { class: 'inbox-main', 'aria-label': 'Conversations' },
        searchForm, filterBar, status, listBox,
        h('div', { class: 'pager' }, newer, older))));
  app.page = me;
  await load();
}
