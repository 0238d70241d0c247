// One conversation: thread, reply, Update Conversation, resolve/reopen, task progress,
// history and mark as unread. Updates live when someone else changes it.

import { api, get, post } from './api.js';
import { h, clear, toast, topicLink, stateLabel, progressLabel, badge, when, ask, confirmDialog, today, KIND_LABEL, PROGRESS_LABEL } from './dom.js';
import { app, navigate, refreshUnread } from './app.js';
import { partnerName, orgName, personName, authorLabel } from './inbox.js';
import { loadDraft, saveDraft, clearDraft } from './drafts.js';
import { filePicker, messageFiles } from './files.js';

const ACTION_TEXT = {
  created: 'started the conversation',
  resolved: 'resolved it',
  reopened: 'reopened it',
  progress: 'changed progress',
  subject: 'changed the subject',
  reference_id: 'changed the Reference ID',
  due_date: 'changed the due date',
};

function show(action, v) {
  if (v === null || v === undefined) return '(none)';
  return action === 'progress' ? (PROGRESS_LABEL[v] || v) : v;
}

function updateDialog(c, onDone) {
  const err = h('p', { class: 'error', role: 'alert' });
  const subject = h('input', { id: 'update-subject', value: c.subject, required: true, maxlength: 200 });
  const refCheck = h('input', { type: 'checkbox', id: 'update-has-reference', checked: !!c.reference_id });
  const ref = h('input', { id: 'update-reference-id', value: c.reference_id || '', maxlength: 100 });
  const refRow = h('div', { class: 'row' }, h('label', { for: 'update-reference-id' }, 'Reference ID'), ref);
  const dueCheck = h('input', { type: 'checkbox', id: 'update-has-due', checked: !!c.due_date });
  const due = h('input', { id: 'update-due-date', type: 'date', value: c.due_date || '', 'aria-describedby': 'update-due-warning' });
  const dueWarning = h('p', { class: 'warning', id: 'update-due-warning', role: 'status' });
  const checkDue = () => {
    const past = !!due.value && due.value < today() && due.value !== c.due_date;
    dueWarning.textContent = past ? 'This due date is in the past: the task will be overdue at once.' : '';
    return past;
  };
  due.addEventListener('input', checkDue);
  due.addEventListener('change', checkDue);
  let pastAccepted = '';
  const dueRow = h('div', { class: 'row' }, h('label', { for: 'update-due-date' }, 'Due date'), due, dueWarning);
  const sync = () => { refRow.hidden = !refCheck.checked; dueRow.hidden = !dueCheck.checked; };
  refCheck.addEventListener('change', sync);
  dueCheck.addEventListener('change', sync);
  const d = h('dialog', { id: 'update', 'aria-labelledby': 'update-title' },
    h('form', { onsubmit: async (e) => {
      e.preventDefault();
      const patch = { subject: subject.value.trim() };
      patch.reference_id = refCheck.checked && ref.value.trim() ? ref.value.trim() : null;
      if (c.kind === 'task') patch.due_date = dueCheck.checked && due.value ? due.value : null;
      if (patch.due_date && checkDue() && pastAccepted !== patch.due_date) {
        const go = await ask('Save a due date in the past?', `The due date ${patch.due_date} has passed: the task will show as overdue at once.`,
          [['change', 'Change the date'], ['send', 'Save anyway', true]]);
        if (go !== 'send') { due.focus(); return; }
        pastAccepted = patch.due_date;
      }
      try {
        const out = await api('PATCH', `/conversations/${c.id}`, patch);
        d.close();
        toast('Conversation updated.');
        onDone(out);
      } catch (ex) { err.textContent = ex.message; }
    } },
    h('h2', { id: 'update-title' }, 'Update Conversation'),
    h('div', { class: 'row' }, h('label', { for: 'update-subject' }, 'Subject'), subject),
    h('label', { class: 'check', for: 'update-has-reference' }, refCheck, 'Reference ID'), refRow,
    c.kind === 'task' ? [h('label', { class: 'check', for: 'update-has-due' }, dueCheck, 'Due Date'), dueRow] : '',
    err,
    h('div', { class: 'dialog-foot' }, h('span', { class: 'spacer' }),
      h('button', { type: 'button', onclick: () => d.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary', id: 'update-save' }, 'Save'))));
  d.addEventListener('close', () => d.remove());
  sync();
  document.body.append(d);
  d.showModal();
  subject.focus();
}

const FIELD_TEXT = { subject: 'the subject', state: 'open or resolved', progress: 'the task\u2019s progress', due_date: 'the due date', reference_id: 'the Reference ID' };

function showValue(field, v) {
  if (v === null || v === undefined) return '(none)';
  if (field === 'progress') return PROGRESS_LABEL[v] || v;
  if (field === 'state') return v === 'resolved' ? 'Resolved' : 'Open';
  return v;
}

// Two nodes changed the same thing while apart: say so, and which change stands.
function crossed(c) {
  const list = c.conflicts || [];
  if (!list.length) return '';
  const who = (a) => (a ? ` (${a.user}, ${a.org})` : '');
  return h('div', { class: 'notice crossed', id: 'crossed', role: 'note' },
    h('strong', {}, 'Changes crossed.'),
    h('ul', {}, list.map((x) => h('li', {},
      `While the nodes were apart, ${FIELD_TEXT[x.field] || x.field} was changed on both sides: `,
      h('strong', {}, showValue(x.field, x.standing)), who(x.standing_by), ' stands; ',
      (x.others || []).map((o, i) => [i ? ', ' : '', showValue(x.field, o), who((x.others_by || [])[i])]),
      ' was set too. Change it again to settle it.'))));
}

export async function renderConversation(main, id) {
  let c = await get(`/conversations/${id}`);
  const me = app.session.org_id;
  const head = h('div');
  const thread = h('ol', { class: 'thread', id: 'thread', 'aria-label': 'Messages' });
  const history = h('ol', { class: 'history', id: 'history' });
  const err = h('p', { class: 'error', role: 'alert', id: 'reply-error' });
  const replyBox = h('textarea', { id: 'reply-body', rows: 4, 'aria-keyshortcuts': 'Control+Enter' });
  // The reply being written is kept as a draft per conversation until it is sent.
  const draftKey = `reply.${id}`;
  replyBox.value = (loadDraft(draftKey) || {}).body || '';
  replyBox.addEventListener('input', () => saveDraft(draftKey, replyBox.value.trim() ? { body: replyBox.value } : null));
  replyBox.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); replyForm.requestSubmit(); }
  });
  const replyButton = h('button', { type: 'submit', class: 'primary', id: 'reply-send' }, 'Send reply');
  // Files upload as they are chosen; Send waits until every upload has ended.
  const files = filePicker('reply', { onchange: () => { replyButton.disabled = files.busy(); } });

  async function act(f, done) {
    err.textContent = '';
    const focused = document.activeElement && document.activeElement.id;
    try {
      c = await f();
      draw();
      const again = focused && document.getElementById(focused);
      if (again) again.focus();
      if (done) toast(done);
    } catch (ex) { err.textContent = ex.message; }
  }

  // Completing a task offers to resolve the conversation in the same step.
  async function completeTask() {
    const also = h('label', { class: 'check', for: 'complete-resolve' }, h('input', { type: 'checkbox', id: 'complete-resolve', checked: true }), 'Also resolve the conversation');
    const a = await ask('Mark this task completed?', 'The task leaves the Tasks and Action required views.', [['no', 'Cancel'], ['yes', 'Mark completed', true]], also);
    if (a !== 'yes') return;
    const resolve = also.querySelector('input').checked;
    await act(async () => {
      const out = await api('PUT', `/conversations/${id}/progress`, { progress: 'completed' });
      return resolve && out.state === 'open' ? post(`/conversations/${id}/resolve`) : out;
    }, resolve ? 'Task completed and resolved.' : 'Task marked completed.');
  }
  // Cancelling asks first, with an optional reason that is sent to the partner as a message.
  async function cancelTask() {
    const reason = h('textarea', { id: 'cancel-reason', rows: 3, maxlength: 5000 });
    const extra = h('div', { class: 'row' }, h('label', { for: 'cancel-reason' }, 'Reason (optional, sent to the partner)'), reason);
    const a = await ask('Cancel this task?', 'A cancelled task stays in the conversation; you can reopen the task later.', [['no', 'Keep the task'], ['yes', 'Cancel task', true]], extra);
    if (a !== 'yes') return;
    const why = reason.value.trim();
    await act(async () => {
      if (why) await post(`/conversations/${id}/messages`, { body: `Task cancelled: ${why}` });
      return api('PUT', `/conversations/${id}/progress`, { progress: 'cancelled' });
    }, 'Task cancelled.');
  }

  const internalLabel = () => `Internal \u2014 not visible to ${partnerName(c.partner)}`;

  // Who handles it: any person of our org, or nobody. Internal, like the notes.
  function assignControl() {
    const sel = h('select', { id: 'assignee-select', 'aria-label': 'Assigned to', onchange: (e) => act(async () => {
      await api('PUT', `/conversations/${id}/assignee`, { assignee: e.target.value || null });
      return get(`/conversations/${id}`);
    }, e.target.value ? `Assigned to ${personName(e.target.value)}.` : 'Unassigned.') },
    h('option', { value: '', selected: !c.assignee }, 'Nobody'),
    app.colleagues.map((p) => h('option', { value: p.name, selected: p.name === c.assignee }, personName(p.name))),
    c.assignee && !app.colleagues.some((p) => p.name === c.assignee) ? h('option', { value: c.assignee, selected: true }, c.assignee) : '');
    return [sel, ' ', h('span', { class: 'internal-hint' }, '(internal)')];
  }

  function noteItem(n) {
    const own = app.session && n.author === app.session.user;
    const body = h('div', { class: 'body' }, n.body);
    const tools = own ? h('span', { class: 'note-tools' },
      h('button', { type: 'button', class: 'link note-edit', onclick: () => editNote(n, body) }, 'Edit'), ' ',
      h('button', { type: 'button', class: 'link note-delete', onclick: async () => {
        if (await confirmDialog('Delete this internal note?', 'Your colleagues will no longer see it.', 'Delete')) {
          act(async () => { await api('DELETE', `/conversations/${id}/notes/${n.id}`); return get(`/conversations/${id}`); }, 'Note deleted.');
        }
      } }, 'Delete')) : '';
    return h('li', { class: 'note internal', dataset: { id: n.id, at: n.created_at }, 'aria-label': 'Internal note' },
      h('div', { class: 'note-label' }, internalLabel()),
      h('div', { class: 'meta' }, h('strong', {}, personName(n.author)), ' · ', h('time', { datetime: n.created_at }, when(n.created_at)),
        n.edited_at ? ' (edited)' : '', ' ', tools),
      body);
  }

  function editNote(n, body) {
    const box = h('textarea', { class: 'note-edit-body', rows: 3 });
    box.value = n.body;
    const form = h('form', { class: 'note-edit-form', onsubmit: (e) => {
      e.preventDefault();
      act(async () => { await api('PATCH', `/conversations/${id}/notes/${n.id}`, { body: box.value }); return get(`/conversations/${id}`); }, 'Note saved.');
    } }, h('label', { class: 'sr-only' }, 'Edit the note', box), h('button', { type: 'submit' }, 'Save note'),
    h('button', { type: 'button', onclick: () => draw() }, 'Cancel'));
    body.replaceWith(form);
    box.focus();
  }

  function draw() {
    const mine = c.created_by.org === me;
    const actions = [];
    if (mine) actions.push(h('button', { type: 'button', id: 'update-button', onclick: () => updateDialog(c, (out) => { c = out; draw(); }) }, 'Update Conversation'));
    if (c.kind === 'task' && c.state === 'open') {
      if (c.progress === 'open') actions.push(h('button', { type: 'button', id: 'progress-start', onclick: () => act(() => api('PUT', `/conversations/${id}/progress`, { progress: 'in_progress' }), 'Task started.') }, 'Start'));
      if (c.progress !== 'completed' && c.progress !== 'cancelled') {
        actions.push(h('button', { type: 'button', id: 'progress-complete', onclick: completeTask }, 'Mark completed'));
        actions.push(h('button', { type: 'button', id: 'progress-cancel', onclick: cancelTask }, 'Cancel task'));
      } else {
        actions.push(h('button', { type: 'button', id: 'progress-reopen', onclick: () => act(() => api('PUT', `/conversations/${id}/progress`, { progress: 'open' }), 'Task open again.') }, 'Reopen task'));
      }
    }
    if (c.state === 'open') {
      actions.push(h('button', { type: 'button', id: 'resolve-button', 'aria-keyshortcuts': 'e', onclick: async () => {
        if (await confirmDialog('Resolve this conversation?', 'It moves to the Resolved folder. You can reopen it from there.', 'Resolve')) {
          act(() => post(`/conversations/${id}/resolve`), 'Resolved: moved to the Resolved folder.');
        }
      } }, 'Resolve'));
    } else {
      actions.push(h('button', { type: 'button', id: 'reopen-button', onclick: () => act(() => post(`/conversations/${id}/reopen`), 'Reopened: back in the Inbox.') }, 'Reopen'));
    }
    actions.push(h('button', { type: 'button', id: 'mark-unread', onclick: async () => {
      try { await post(`/conversations/${id}/unread`); toast('Marked as unread.'); navigate('/'); } catch (ex) { err.textContent = ex.message; }
    } }, 'Mark as unread'));

    const facts = [
      ['Kind', KIND_LABEL[c.kind]],
      ['Partner', h('span', { title: c.partner }, partnerName(c.partner))],
      ['Topic', c.topic ? topicLink(c.topic) : '—'],
      ['Reference ID', c.reference_id || '—'],
      c.kind === 'task' ? ['Due date', [c.due_date || '—', c.overdue ? [' ', badge('Overdue', 'overdue')] : '']] : null,
      c.kind === 'task' ? ['Progress', h('span', { id: 'conversation-progress' }, progressLabel(c))] : null,
      ['State', h('span', { id: 'conversation-state' }, stateLabel(c))],
      ['Started', `${when(c.created_at)} by ${authorLabel(c.created_by)}`],
      ['Assigned to', assignControl()],
    ].filter(Boolean);
    clear(head).append(
      h('p', { class: 'back' }, h('a', { href: c.state === 'resolved' ? '/?folder=resolved' : '/' }, '← Inbox')),
      h('h1', { id: 'conversation-subject' }, c.subject),
      c.undelivered ? h('p', { class: 'notice undelivered', id: 'undelivered' }, badge('Not yet delivered', 'undelivered'),
        ` The latest changes here have not reached ${partnerName(c.partner)}\u2019s node yet. They are sent when it can be reached.`) : '',
      crossed(c),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Conversation actions' }, actions));
    clear(thread).append(...(c.messages.length ? c.messages.map((m) => h('li', { class: m.author.org === me ? 'mine' : 'theirs', dataset: { id: m.id, at: m.sent_at } },
      h('div', { class: 'meta' }, h('strong', {}, m.author.org === me ? personName(m.author.user) : m.author.user), ` (${orgName(m.author.org)}) · `, h('time', { datetime: m.sent_at }, when(m.sent_at)),
        m.delivered === false ? [' ', badge('Not yet delivered', 'undelivered')] : ''),
      m.body ? h('div', { class: 'body' }, m.body) : '',
      messageFiles(m.attachments))) : [h('li', { class: 'empty' }, 'No messages yet.')]));
    // Internal notes in the thread by time, unmistakably apart from what the partner reads.
    for (const n of c.notes || []) {
      const li = noteItem(n);
      const after = [...thread.children].find((x) => x.dataset.at && Date.parse(x.dataset.at) > Date.parse(n.created_at));
      thread.insertBefore(li, after || null);
    }
    clear(history).append(...c.history.map((e) => h('li', {},
      h('time', { datetime: e.at }, new Date(e.at).toLocaleString()), ' ',
      `${authorLabel(e.by)} ${ACTION_TEXT[e.action] || e.action}`,
      e.action === 'created' || e.action === 'resolved' || e.action === 'reopened' ? '' : `: ${show(e.action, e.from)} → ${show(e.action, e.to)}`)));
  }

  const replyForm = h('form', { class: 'reply', onsubmit: async (e) => {
    e.preventDefault();
    if (files.busy()) { err.textContent = 'Wait until the files have uploaded, or remove them.'; return; }
    const attachments = files.hashes();
    // A reply with files may have no words; one without files needs some.
    if (!replyBox.value.trim() && !attachments.length) { err.textContent = 'Write a reply or attach a file first.'; replyBox.focus(); return; }
    replyButton.disabled = true;
    await act(async () => {
      const body = replyBox.value.trim() ? replyBox.value : '';
      const out = await post(`/conversations/${id}/messages`, attachments.length ? { body, attachments } : { body });
      replyBox.value = '';
      clearDraft(draftKey);
      files.reset();
      return out;
    }, 'Reply sent.');
    replyButton.disabled = files.busy();
    replyBox.focus();
  } },
  h('label', { for: 'reply-body' }, 'Reply'), replyBox, files.el, err, h('div', { class: 'dialog-foot' }, h('span', { class: 'spacer' }), replyButton));
  files.dropOn(replyForm);

  const noteBox = h('textarea', { id: 'note-body', rows: 3, required: true });
  const noteErr = h('p', { class: 'error', role: 'alert', id: 'note-error' });
  const noteLegend = h('p', { class: 'note-label', id: 'note-visibility' });
  const noteForm = h('form', { class: 'note-form internal', 'aria-describedby': 'note-visibility', onsubmit: async (e) => {
    e.preventDefault();
    noteErr.textContent = '';
    if (!noteBox.value.trim()) { noteErr.textContent = 'Write the note first.'; noteBox.focus(); return; }
    try {
      await post(`/conversations/${id}/notes`, { body: noteBox.value });
      noteBox.value = '';
      c = await get(`/conversations/${id}`);
      draw();
      toast('Internal note added.');
    } catch (ex) { noteErr.textContent = ex.message; }
  } },
  h('label', { for: 'note-body' }, 'Internal note'), noteLegend, noteBox, noteErr,
  h('div', { class: 'dialog-foot' }, h('span', { class: 'spacer' }), h('button', { type: 'submit', id: 'note-send' }, 'Add internal note')));

  draw();
  noteLegend.textContent = `${internalLabel()}: only people of ${app.session.org_name || 'your org'} see it.`;
  clear(main).append(head,
    h('section', { 'aria-labelledby': 'thread-title' }, h('h2', { id: 'thread-title', class: 'sr-only' }, 'Messages'), thread),
    replyForm, noteForm,
    h('details', { class: 'history-box' }, h('summary', {}, 'History of changes'), history));
  await post(`/conversations/${id}/read`).catch(() => {});
  // "Not yet delivered" clears by itself: the node sends an event when the partner's node
  // has the change, like for any other change of this conversation.
  const page = {
    name: 'conversation',
    refresh: async (ids) => {
      if (!ids.has(id) && !ids.has('*')) return;
      const fresh = await get(`/conversations/${id}`);
      // Our own changes come back as events too; redraw only what is new, so buttons do not
      // move under the pointer.
      if (JSON.stringify(fresh) === JSON.stringify(c)) return;
      c = fresh;
      draw();
      await post(`/conversations/${id}/read`).catch(() => {});
      refreshUnread();
    },
  };
  app.page = page;
}
