// List views (select rows → Start a conversation, CSV import) and detail views (More actions →
// Start a conversation, and every conversation about the record).

import { api, get, qs } from './api.js';
import { h, clear, topicHref, fieldLabel, TOPIC_LABEL, TOPIC_PLURAL } from './dom.js';
import { app, navigate } from './app.js';
import { openCompose } from './compose.js';
import { conversationTable } from './inbox.js';

const PAGE = 50;

function startConversation(records, after) {
  openCompose({
    kind: 'message',
    topics: records.map((r) => ({ kind: r.kind, ref: r.ref, label: r.title })),
  }, { onSent: after });
}

export async function renderTopicList(main, kind, params) {
  if (!TOPIC_LABEL[kind]) throw new Error(`There is no list of ${kind}.`);
  const title = TOPIC_PLURAL[kind];
  const prefix = params.get('prefix') || '';
  const afters = [];
  let after = null;
  let next = null;
  let records = [];
  const selected = new Map();

  const status = h('p', { class: 'status', 'aria-live': 'polite', id: 'selection-status' });
  const box = h('div', { id: 'topic-list' });
  // The result of starting conversations stays on the page (a notice, not a passing toast)
  // and the rows they were started for are cleared.
  const started = h('p', { class: 'ok', id: 'started-status', role: 'status' });
  const start = h('button', { type: 'button', class: 'primary', id: 'start-conversation', disabled: true,
    onclick: () => startConversation([...selected.values()], (made) => {
      const n = made.length;
      clear(started).append(`${n === 1 ? 'One conversation' : `${n} conversations`} started, one per selected record. `,
        h('a', { href: '/' }, 'See them in the Inbox'), '.');
      selected.clear();
      for (const cb of box.querySelectorAll('input[type=checkbox]')) cb.checked = false;
      syncSelection();
    }) }, 'Start a conversation');
  const prev = h('button', { type: 'button', id: 'topics-prev', onclick: () => { after = afters.pop() || null; load(); } }, 'Previous');
  const more = h('button', { type: 'button', id: 'topics-next', onclick: () => { afters.push(after); after = next; load(); } }, 'Next');

  function syncSelection() {
    start.disabled = selected.size === 0;
    status.textContent = selected.size ? `${selected.size} selected` : '';
  }

  async function load() {
    const page = await get('/topics' + qs({ kind, prefix, after, limit: PAGE }));
    records = page.items;
    next = page.next || null;
    const fieldNames = [...new Set(records.flatMap((r) => Object.keys(r.fields)))].slice(0, 4);
    const all = h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select all on this page', onchange: (e) => {
      for (const r of records) { if (e.target.checked) selected.set(r.ref, r); else selected.delete(r.ref); }
      for (const cb of box.querySelectorAll('tbody input[type=checkbox]')) cb.checked = e.target.checked;
      syncSelection();
    } });
    clear(box).append(records.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'list topics' },
      h('caption', { class: 'sr-only' }, title),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'select' }, all), h('th', { scope: 'col' }, 'Ref'), h('th', { scope: 'col' }, 'Title'),
        fieldNames.map((f) => h('th', { scope: 'col', title: f }, fieldLabel(f))), h('th', { scope: 'col', class: 'col-when' }, 'Updated'))),
      h('tbody', {}, records.map((r) => h('tr', { dataset: { ref: r.ref } },
        h('td', { class: 'select' }, h('input', { type: 'checkbox', 'aria-label': `Select ${r.ref}`, checked: selected.has(r.ref), onchange: (e) => {
          if (e.target.checked) selected.set(r.ref, r); else selected.delete(r.ref);
          syncSelection();
        } })),
        h('td', {}, h('a', { href: topicHref(kind, r.ref) }, r.ref)),
        h('td', {}, r.title),
        fieldNames.map((f) => h('td', {}, r.fields[f] || '')),
        h('td', { class: 'col-when' }, new Date(r.updated_at).toLocaleDateString())))))) :
      h('p', { class: 'empty' }, prefix
        ? 'No record starts with that ref. Check the spelling, or clear the search.'
        : `No ${title.toLowerCase()} yet. Import a CSV file of them with “Import CSV…”, or ask whoever runs your ERP to send them to Parley. A conversation about one can be started from the Inbox with Compose.`));
    prev.disabled = afters.length === 0;
    more.disabled = !next;
  }

  const search = h('input', { type: 'search', id: 'topic-search', value: prefix, placeholder: 'Ref starts with… (any case)' });
  const importResult = h('div', { id: 'import-result', role: 'status' });
  const file = h('input', { type: 'file', id: 'import-file', accept: '.csv,text/csv', onchange: async () => {
    const f = file.files[0];
    if (!f) return;
    clear(importResult);
    try {
      const r = await api('POST', '/topics/import', { text: await f.text(), type: 'text/csv' });
      importResult.append(h('p', { class: 'ok' }, `Imported ${r.created + r.updated} records (${r.created} new, ${r.updated} updated).`));
      after = null; afters.length = 0;
      await load();
    } catch (ex) {
      importResult.append(h('pre', { class: 'error', role: 'alert' }, ex.message));
    }
    file.value = '';
  } });

  clear(main).append(
    h('div', { class: 'page-head' }, h('h1', {}, title), start),
    h('div', { class: 'toolbar' },
      h('form', { role: 'search', class: 'search', onsubmit: (e) => {
        e.preventDefault();
        navigate(`/topics/${kind}` + qs({ prefix: search.value.trim() }), { replace: true });
      } }, h('label', { for: 'topic-search', class: 'sr-only' }, `Search ${title.toLowerCase()} by ref`), search, h('button', { type: 'submit' }, 'Search')),
      h('span', { class: 'spacer' }),
      file, h('label', { for: 'import-file', class: 'button' }, 'Import CSV…')),
    importResult, started, status, box, h('div', { class: 'pager' }, prev, more));
  await load();
  syncSelection();
  app.page = { name: 'topics' };
}

export async function renderTopicDetail(main, kind, ref) {
  let r;
  try {
    r = await get(`/topics/${kind}/${encodeURIComponent(ref)}`);
  } catch (e) {
    if (e.status !== 404) throw e;
    r = { kind, ref, title: ref, fields: {}, url: null, missing: true };
  }
  const convBox = h('div', { id: 'topic-conversations' });
  let shown = [];
  // `more` appends the next page to the rows shown; otherwise the list starts again.
  async function loadConversations(more = false) {
    const cursor = more ? convBox.dataset.cursor : undefined;
    const page = await get('/conversations' + qs({ topic_kind: kind, topic_ref: ref, limit: PAGE, cursor }));
    shown = more ? shown.concat(page.items) : page.items;
    convBox.dataset.cursor = page.next_cursor || '';
    clear(convBox).append(shown.length
      ? conversationTable(shown, `Conversations about ${ref}`)
      : h('p', { class: 'empty' }, 'No conversations about this yet. Use More actions → Start a conversation to ask your partner about it.'),
    page.next_cursor
      ? h('div', { class: 'pager' }, h('button', { type: 'button', id: 'topic-conversations-more', onclick: () => loadConversations(true) },
        `Show more (${shown.length} of ${page.total})`))
      : '');
  }
  const menu = h('ul', { class: 'menu', id: 'more-actions-menu', role: 'menu', hidden: true },
    h('li', { role: 'none' }, h('button', { type: 'button', role: 'menuitem', id: 'menu-start-conversation', onclick: () => {
      closeMenu();
      startConversation([r], () => loadConversations());
    } }, 'Start a conversation')));
  const moreButton = h('button', { type: 'button', id: 'more-actions', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': 'more-actions-menu',
    onclick: () => (menu.hidden ? openMenu() : closeMenu()) }, 'More actions ▾');
  function openMenu() { menu.hidden = false; moreButton.setAttribute('aria-expanded', 'true'); menu.querySelector('button').focus(); }
  function closeMenu() { menu.hidden = true; moreButton.setAttribute('aria-expanded', 'false'); }
  menu.addEventListener('keydown', (e) => { if (e.key === 'Escape') { closeMenu(); moreButton.focus(); } });
  const outside = (e) => {
    if (!main.contains(menu)) return document.removeEventListener('click', outside);
    if (!menu.hidden && !e.target.closest('.menu-wrap')) closeMenu();
  };
  document.addEventListener('click', outside);

  const fields = Object.entries(r.fields);
  clear(main).append(
    h('p', { class: 'back' }, h('a', { href: `/topics/${kind}` }, `← ${TOPIC_PLURAL[kind] || kind}`)),
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { id: 'topic-title' }, r.title), h('p', { class: 'sub' }, `${TOPIC_LABEL[kind] || kind} ${ref}`)),
      h('div', { class: 'menu-wrap' }, moreButton, menu)),
    r.missing ? h('p', { class: 'hint' }, 'No record describes this yet; conversations about it are listed below.') : '',
    fields.length || r.url ? h('dl', { class: 'facts' },
      fields.map(([k, v]) => [h('dt', { title: k }, fieldLabel(k)), h('dd', {}, v)]),
      r.url ? [h('dt', {}, 'Link'), h('dd', {}, safeLink(r.url))] : '') : '',
    h('h2', {}, 'Conversations'),
    convBox);
  await loadConversations();
  app.page = { name: 'topic', refresh: () => loadConversations() };
}

// A record's link as a link only when it is a web or mail address; anything else (a
// `javascript:` URL stored before the node checked schemes, say) is shown as plain text.
function safeLink(url) {
  let ok = false;
  try { ok = ['http:', 'https:', 'mailto:'].includes(new URL(url).protocol); } catch { ok = false; }
  return ok && !/\s/.test(url)
    ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, url)
    : h('span', { class: 'unlinked' }, url);
}
