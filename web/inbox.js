// The Inbox: folders, filters, sort, search across folders and paging over GET /conversations.

import { api, get, qs } from './api.js';
import { h, clear, toast, when, stateLabel, progressLabel, badge, topicLink, folderOf, KIND_LABEL, PROGRESS_LABEL, TOPIC_KINDS, TOPIC_LABEL } from './dom.js';
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
  // Open conversations by who handles them (assignment is internal to our org).
  { id: 'mine', label: 'Assigned to me', api: { folder: 'inbox', assignee: 'me' }, empty: 'Nothing open is assigned to you.' },
  { id: 'unassigned', label: 'Unassigned', api: { folder: 'inbox', assignee: 'none' }, empty: 'Every open conversation has someone handling it.' },
];
// What a folder asks the node for.
const folderQuery = (f) => f.api || { folder: f.id };
const FILTERS = ['kind', 'progress', 'overdue', 'partner', 'topic_kind', 'q'];
const SORTS = { activity: 'Last activity', due: 'Due date' };
const PAGE = 50;

export function partnerName(id) {
  const p = app.partners.find((x) => x.id === id);
  return p ? p.name : id;
}

// An org's name: ours from the session, a partner's from the partner list, else its id.
export function orgName(id) {
  if (app.session && id === app.session.org_id) return app.session.org_name || id;
  return partnerName(id);
}

// A user of our org by display name when one is set.
export function personName(user) {
  const c = app.colleagues.find((x) => x.name === user);
  return c && c.display_name ? c.display_name : user;
}

// Who wrote something: a colleague by name, anyone by their org's name.
export function authorLabel(a) {
  const mine = app.session && a.org === app.session.org_id;
  return `${mine ? personName(a.user) : a.user} (${orgName(a.org)})`;
}

// One row per conversation; used by the Inbox and by topic detail pages. `withFolder` marks
// each row with the folder it is in (search results span every folder).
export function conversationTable(items, caption, { withFolder = false, sort = null, onSort = null, selected = null, onSelect = null } = {}) {
  const rows = items.map((c) => h('tr', { class: c.unread ? 'unread' : '', dataset: { id: c.id } },
    selected ? h('td', { class: 'col-select' }, h('input', { type: 'checkbox', class: 'row-select', 'aria-label': `Select ${c.subject}`, checked: selected.has(c.id),
      onchange: (e) => { if (e.target.checked) selected.add(c.id); else selected.delete(c.id); if (onSelect) onSelect(); } })) : '',
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
    h('td', { class: 'col-assignee' }, c.assignee ? personName(c.assignee) : ''),
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
      selected ? h('th', { scope: 'col', class: 'col-select' }, h('span', { class: 'sr-only' }, 'Select')) : '',
      head('Partner', 'col-partner'), head('Subject'), head('Topic', 'col-topic'), head('Reference ID', 'col-ref'),
      head('Due', 'due', 'due'), head('Progress', 'col-progress'), head('State', 'col-state'), head('Assigned', 'col-assignee'), head('Last activity', 'col-when', 'activity'))),
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
  // `in`: a search narrowed to one folder; without it a search spans them all.
  const scope = searching ? FOLDERS.find((f) => f.id === params.get('in')) || null : null;
  const folder = searching ? null : (FOLDERS.find((f) => f.id === params.get('folder')) || FOLDERS[0]);
  const selected = new Set();
  let lastQuery = null;
  let lastTotal = 0;
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
      f.label, f.id === 'unread' ? h('span', { class: 'folder-count', id: 'count-unread' }) : h('span', { class: 'folder-count', id: `folder-count-${f.id}` })));
  };

  const search = h('input', { type: 'search', id: 'search', name: 'q', value: filters.q, placeholder: 'Words of messages, notes, subject, reference ID or topic', autocomplete: 'off', 'aria-keyshortcuts': '/' });
  const scopeSelect = h('select', { id: 'search-scope', 'aria-label': 'Search in', onchange: (e) => setParam('in', e.target.value) },
    h('option', { value: '', selected: !scope }, 'All folders'),
    FOLDERS.filter((f) => f.id !== 'unread').map((f) => h('option', { value: f.id, selected: scope === f }, `Only ${f.label}`)));
  const searchForm = h('form', { role: 'search', class: 'search', onsubmit: (e) => { e.preventDefault(); setParam('q', search.value.trim()); } },
    h('label', { for: 'search', class: 'sr-only' }, 'Search conversations in every folder'), search, scopeSelect,
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
  const exportLink = h('a', { id: 'export-csv', class: 'button', href: '/api/v1/conversations/export.csv', download: '' }, 'Export CSV');
  const compose = h('button', { type: 'button', class: 'primary', id: 'compose-button', 'aria-keyshortcuts': 'c', onclick: () => openCompose({}, { onSent: () => load(), draft: true }) }, 'Compose');

  let nextCursor = null;
  let shown = null;
  const me = { name: 'inbox', refresh: () => { if (cursors.length === 0) load(); } };
  older.addEventListener('click', () => { cursors.push(cursor); cursor = nextCursor; load(); });

  async function load() {
    const base = searching ? (scope ? folderQuery(scope) : { folder: 'all' }) : folderQuery(folder);
    const q = { ...base, sort: sort === 'activity' ? undefined : sort };
    for (const [k, v] of Object.entries(filters)) if (v) q[k] = v;
    lastQuery = { ...q };
    q.limit = PAGE;
    q.cursor = cursor;
    exportLink.href = '/api/v1/conversations/export.csv' + qs(lastQuery);
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
        withFolder: searching, sort, onSort: (k) => setParam('sort', k === 'activity' ? '' : k), selected, onSelect: drawBulk,
      })
      : h('p', { class: 'empty' }, searching ? 'No conversation in any folder matches this search. Try part of the subject, a reference ID or a topic ref.' : folder.empty));
    if (focusedId) {
      const again = listBox.querySelector(`tr[data-id='${focusedId.dataset.id}'] a[href^='/c/']`);
      if (again) again.focus();
    }
    const first = cursors.length * PAGE + (page.items.length ? 1 : 0);
    status.textContent = page.total
      ? `${first}–${cursors.length * PAGE + page.items.length} of ${page.total}${searching ? (scope ? ` in ${scope.label}` : ' in all folders') : ''}`
      : '';
    newer.disabled = cursors.length === 0;
    older.disabled = !nextCursor;
    newer.hidden = older.hidden = !nextCursor && cursors.length === 0;
    lastTotal = page.total;
    drawBulk();
    loadCounts();
  }

  async function loadCounts() {
    try {
      for (const c of await get('/folders')) {
        const el = document.getElementById(`folder-count-${c.folder}`);
        if (el) el.textContent = String(c.total);
      }
    } catch { /* the counts are a convenience; the list stands */ }
  }

  // Bulk actions: on the rows ticked, or on every conversation matching this view.
  let allMatching = false;
  const bulkBar = h('div', { class: 'bulk', id: 'bulk-bar', role: 'group', 'aria-label': 'Bulk actions' });
  const assignSel = h('select', { id: 'bulk-assignee', 'aria-label': 'Assign to' },
    h('option', { value: '' }, 'Assign to…'), h('option', { value: '-' }, 'Nobody'),
    app.colleagues.map((p) => h('option', { value: p.name }, personName(p.name))));
  const progressSel = h('select', { id: 'bulk-progress', 'aria-label': 'Set task progress' },
    h('option', { value: '' }, 'Set progress…'), Object.entries(PROGRESS_LABEL).map(([v, t]) => h('option', { value: v }, t)));
  async function runBulk(action, extra = {}) {
    const body = { action, ...extra };
    if (allMatching) body.filter = lastQuery; else body.ids = [...selected];
    try {
      const r = await api('POST', '/conversations/bulk', body);
      const failed = r.results.filter((x) => x.outcome === 'failed');
      toast(`${r.changed} changed, ${r.unchanged} unchanged${r.failed ? `, ${r.failed} failed: ${failed.slice(0, 3).map((x) => x.detail).join('; ')}` : ''}.`);
      selected.clear();
      allMatching = false;
      shown = null;
      await load();
    } catch (ex) { toast(ex.message); }
  }
  function drawBulk() {
    const n = allMatching ? lastTotal : selected.size;
    bulkBar.hidden = n === 0 && lastTotal === 0;
    clear(bulkBar).append(
      h('span', { id: 'bulk-count', 'aria-live': 'polite' }, allMatching ? `All ${n} matching selected` : `${n} selected`),
      !allMatching && lastTotal > 0 ? h('button', { type: 'button', id: 'bulk-all', onclick: () => { allMatching = true; drawBulk(); } }, `Select all ${lastTotal} matching`) : '',
      allMatching || selected.size ? h('button', { type: 'button', id: 'bulk-none', onclick: () => { allMatching = false; selected.clear(); shown = null; load(); } }, 'Clear selection') : '',
      ...(n ? [
        h('button', { type: 'button', id: 'bulk-resolve', onclick: () => runBulk('resolve') }, 'Resolve'),
        h('button', { type: 'button', id: 'bulk-reopen', onclick: () => runBulk('reopen') }, 'Reopen'),
        h('button', { type: 'button', id: 'bulk-read', onclick: () => runBulk('mark_read') }, 'Mark read'),
        h('button', { type: 'button', id: 'bulk-unread', onclick: () => runBulk('mark_unread') }, 'Mark unread'),
        assignSel, h('button', { type: 'button', id: 'bulk-assign', onclick: () => {
          if (!assignSel.value) { toast('Choose whom to assign them to.'); return; }
          runBulk('assign', { assignee: assignSel.value === '-' ? null : assignSel.value });
        } }, 'Assign'),
        progressSel, h('button', { type: 'button', id: 'bulk-set-progress', onclick: () => {
          if (!progressSel.value) { toast('Choose the progress to set.'); return; }
          runBulk('set_progress', { progress: progressSel.value });
        } }, 'Set progress'),
      ] : []));
  }

  const title = searching ? `Search: ${filters.q}${scope ? ` in ${scope.label}` : ''}` : folder.label;
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
    h('div', { class: 'page-head' }, h('h1', {}, title), skipList, h('div', { class: 'head-actions' }, desktop, exportLink, compose)),
    h('div', { class: 'inbox' },
      h('nav', { class: 'folders', 'aria-label': 'Folders' }, h('ul', {}, FOLDERS.map(folderLink))),
      h('section', { class: 'inbox-main', 'aria-label': 'Conversations' },
        searchForm, filterBar, status, bulkBar, listBox,
        h('div', { class: 'pager' }, newer, older))));
  app.page = me;
  await load();
}
