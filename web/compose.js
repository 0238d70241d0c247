// The New Conversation window: opened by Compose, by "Start a conversation" on list and
// detail views, and by the deep link /new?kind=task&topic=item:SKU-1&subject=…

import { api, get, ApiError } from './api.js';
import { h, clear, toast, ask, today, topicHref, TOPIC_KINDS, TOPIC_LABEL } from './dom.js';
import { app } from './app.js';
import { loadDraft, saveDraft, clearDraft } from './drafts.js';
import { filePicker } from './files.js';

// Reads a deep link's query into compose options. `topic` is KIND:REF.
export async function composeFromQuery(p) {
  const opts = {
    kind: p.get('kind') === 'task' ? 'task' : 'message',
    partner: p.get('partner') || '',
    subject: p.get('subject') || '',
    body: p.get('body') || p.get('message') || '',
    reference_id: p.get('reference_id') || '',
    due_date: p.get('due_date') || '',
    topics: [],
  };
  const t = p.get('topic');
  if (t && t.includes(':')) {
    const i = t.indexOf(':');
    const kind = t.slice(0, i).toLowerCase();
    const ref = t.slice(i + 1).trim();
    if (TOPIC_KINDS.includes(kind) && ref) {
      let label = p.get('topic_label') || null;
      if (!label) {
        try { label = (await get(`/topics/${kind}/${encodeURIComponent(ref)}`)).title; } catch { /* not described yet */ }
      }
      opts.topics = [{ kind, ref, label }];
    }
  }
  return opts;
}

// A topic as stored in the conversation: a link to its detail page.
function asTopic(t) {
  return { kind: t.kind, ref: t.ref, label: t.label || null, url: topicHref(t.kind, t.ref) };
}

let dialog = null;

// `draft`: the plain Compose window, which restores and keeps a draft. Windows opened with
// something filled in (a deep link, a record) start from that instead.
export function openCompose(opts = {}, { onSent, onClose, draft = false } = {}) {
  if (dialog) dialog.remove();
  if (draft) {
    const d = loadDraft('compose');
    if (d) opts = { ...d, topics: [] };
  }
  let topics = opts.topics || [];
  const err = h('div', { class: 'error', role: 'alert', id: 'compose-error' });

  const kindRadio = (v, label) => h('label', { class: 'radio' },
    h('input', { type: 'radio', name: 'kind', value: v, checked: (opts.kind || 'message') === v, onchange: syncKind }), label);
  const partner = h('select', { id: 'compose-partner', name: 'partner', required: true },
    h('option', { value: '' }, 'Choose a partner…'),
    app.partners.map((p) => h('option', { value: p.id, selected: p.id === opts.partner }, `${p.name} (${p.id})`)));
  if (!opts.partner && app.partners.length === 1) partner.value = app.partners[0].id;
  const subject = h('input', { id: 'compose-subject', name: 'subject', required: true, maxlength: 200, value: opts.subject || '' });
  const body = h('textarea', { id: 'compose-body', name: 'body', rows: 6 });
  body.value = opts.body || '';

  // Topic: a filled-in link (from a list or detail view) or a kind and ref typed in.
  const topicBox = h('div', { class: 'topic-box', id: 'compose-topic' });
  const topicKind = h('select', { id: 'compose-topic-kind', 'aria-label': 'Topic kind' },
    h('option', { value: '' }, 'No topic'), TOPIC_KINDS.map((k) => h('option', { value: k }, TOPIC_LABEL[k])));
  const topicRef = h('input', { id: 'compose-topic-ref', 'aria-label': 'Topic reference, e.g. SKU-12345', placeholder: 'e.g. SKU-12345', maxlength: 100 });
  function renderTopic() {
    clear(topicBox);
    if (topics.length) {
      topicBox.append(h('ul', { class: 'chips' }, topics.map((t) => h('li', {},
        h('a', { href: topicHref(t.kind, t.ref), class: 'topic', target: '_blank' },
          `${TOPIC_LABEL[t.kind]} ${t.ref}${t.label && t.label !== t.ref ? ' — ' + t.label : ''}`),
        h('button', { type: 'button', class: 'link', 'aria-label': `Remove topic ${t.ref}`, onclick: () => { topics = topics.filter((x) => x !== t); renderTopic(); } }, 'Remove')))));
      if (topics.length > 1) topicBox.append(h('p', { class: 'hint' }, `One conversation is started for each of these ${topics.length} topics.`));
    } else {
      topicBox.append(h('span', { class: 'inline' }, topicKind, topicRef));
    }
  }
  renderTopic();

  // Options menu: Reference ID, and Due Date for tasks.
  // A choice closes the menu and moves to the field it shows.
  const choose = (input) => () => { syncOptions(); closeMenu(); if (input.checked) (input === refCheck ? refInput : dueInput).focus(); else optionsButton.focus(); };
  const refCheck = h('input', { type: 'checkbox', id: 'opt-reference-id', checked: !!opts.reference_id });
  const dueCheck = h('input', { type: 'checkbox', id: 'opt-due-date', checked: !!opts.due_date });
  refCheck.addEventListener('change', choose(refCheck));
  dueCheck.addEventListener('change', choose(dueCheck));
  const dueOption = h('label', { for: 'opt-due-date', class: 'check' }, dueCheck, 'Due Date');
  const menu = h('div', { class: 'options-menu', id: 'compose-options-menu', hidden: true, role: 'group', 'aria-label': 'Options' },
    h('label', { for: 'opt-reference-id', class: 'check' }, refCheck, 'Reference ID'), dueOption);
  const optionsButton = h('button', { type: 'button', id: 'compose-options', 'aria-expanded': 'false', 'aria-controls': 'compose-options-menu',
    onclick: () => { if (menu.hidden) openMenu(); else closeMenu(); } }, 'Options ▾');
  function openMenu() { menu.hidden = false; optionsButton.setAttribute('aria-expanded', 'true'); refCheck.focus(); }
  function closeMenu() { menu.hidden = true; optionsButton.setAttribute('aria-expanded', 'false'); }
  const refInput = h('input', { id: 'compose-reference-id', name: 'reference_id', maxlength: 100, value: opts.reference_id || '' });
  const dueInput = h('input', { id: 'compose-due-date', name: 'due_date', type: 'date', value: opts.due_date || '', 'aria-describedby': 'compose-due-warning' });
  const dueWarning = h('p', { class: 'warning', id: 'compose-due-warning', role: 'status' });
  // A due date in the past is allowed (the task is overdue at once) but asked about first.
  let pastDueAccepted = '';
  const checkDue = () => {
    const past = dueInput.value && dueInput.value < today();
    dueWarning.textContent = past ? 'This due date is in the past: the task will be overdue as soon as it is sent.' : '';
    return past;
  };
  dueInput.addEventListener('input', checkDue);
  dueInput.addEventListener('change', checkDue);
  const refRow = h('div', { class: 'row', id: 'row-reference-id' }, h('label', { for: 'compose-reference-id' }, 'Reference ID'), refInput);
  const dueRow = h('div', { class: 'row', id: 'row-due-date' }, h('label', { for: 'compose-due-date' }, 'Due date'), dueInput, dueWarning);

  const kind = () => form.querySelector('input[name=kind]:checked').value;
  function syncKind() {
    dueOption.hidden = kind() !== 'task';
    syncOptions();
  }
  function syncOptions() {
    refRow.hidden = !refCheck.checked;
    dueRow.hidden = !(dueCheck.checked && kind() === 'task');
  }

  const send = h('button', { type: 'submit', class: 'primary', id: 'compose-send' }, 'Send');
  // Files upload as they are chosen; Send waits until every upload has ended.
  const files = filePicker('compose', { onchange: () => { send.disabled = files.busy(); } });
  const form = h('form', { id: 'compose-form', onsubmit: submit },
    h('h2', { id: 'compose-title' }, 'New Conversation'),
    h('fieldset', { class: 'kind-choice' }, h('legend', {}, 'Type'), kindRadio('message', 'Message'), kindRadio('task', 'Task')),
    h('div', { class: 'row' }, h('label', { for: 'compose-partner' }, 'Partner'), partner),
    h('div', { class: 'row' }, h('label', { for: 'compose-subject' }, 'Subject'), subject),
    h('div', { class: 'row' }, h('span', { class: 'label', id: 'compose-topic-label' }, 'Topic (optional)'), topicBox),
    refRow, dueRow,
    h('div', { class: 'row' }, h('label', { for: 'compose-body' }, 'Message'), body),
    files.el,
    err,
    menu,
    h('div', { class: 'dialog-foot' },
      h('div', { class: 'options' }, optionsButton),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', id: 'compose-cancel', onclick: () => leave() }, 'Cancel'),
      send));
  files.dropOn(form);
  topicBox.setAttribute('aria-labelledby', 'compose-topic-label');
  topicBox.setAttribute('role', 'group');
  syncKind();

  async function submit(e) {
    e.preventDefault();
    err.textContent = '';
    const k = kind();
    const base = {
      kind: k,
      partner: partner.value,
      subject: subject.value.trim(),
      body: body.value.trim() ? body.value : undefined,
      reference_id: refCheck.checked && refInput.value.trim() ? refInput.value.trim() : undefined,
      due_date: k === 'task' && dueCheck.checked && dueInput.value ? dueInput.value : undefined,
    };
    if (files.busy()) { err.textContent = 'Wait until the files have uploaded, or remove them.'; return; }
    const attachments = files.hashes();
    // Files go with the first message, which may then have no words.
    if (attachments.length) { base.attachments = attachments; base.body = base.body || ''; }
    if (!base.partner) { err.textContent = 'Choose a partner.'; partner.focus(); return; }
    if (!base.subject) { err.textContent = 'Write a subject.'; subject.focus(); return; }
    if (refCheck.checked && !base.reference_id) { err.textContent = 'Fill in the Reference ID, or untick it in Options.'; refInput.focus(); return; }
    if (k === 'task' && dueCheck.checked && !base.due_date) { err.textContent = 'Pick a due date, or untick it in Options.'; dueInput.focus(); return; }
    if (base.due_date && checkDue() && pastDueAccepted !== base.due_date) {
      const go = await ask('Send with a due date in the past?', `The due date ${base.due_date} has passed: the task will show as overdue at once.`,
        [['change', 'Change the date'], ['send', 'Send anyway', true]]);
      if (go !== 'send') { dueInput.focus(); return; }
      pastDueAccepted = base.due_date;
    }
    let list = topics.map(asTopic);
    if (!list.length && topicKind.value && topicRef.value.trim()) {
      list = [asTopic({ kind: topicKind.value, ref: topicRef.value.trim() })];
    }
    send.disabled = true;
    try {
      const made = [];
      for (const t of (list.length ? list : [undefined])) {
        made.push(await api('POST', '/conversations', { ...base, topic: t }));
      }
      const what = k === 'task' ? 'Task' : 'Message';
      toast(made.length > 1 ? `${made.length} conversations started.` : `${what} sent: ${base.subject}`);
      if (draft) clearDraft('compose');
      sent = true;
      dialog.close();
      if (onSent) onSent(made);
    } catch (ex) {
      err.textContent = ex instanceof ApiError ? ex.message : String(ex);
    } finally {
      send.disabled = files.busy();
    }
  }

  // What is typed is kept as a draft as it is typed (plain Compose only). `sent`: sent or
  // discarded, so closing keeps nothing.
  let sent = false;
  const filled = () => !!(subject.value.trim() || body.value.trim() || refInput.value.trim() || (topicRef && topicRef.value.trim()) || files.hashes().length || files.busy());
  const snapshot = () => (filled() ? {
    kind: kind(), partner: partner.value, subject: subject.value, body: body.value,
    reference_id: refCheck.checked ? refInput.value : '', due_date: dueCheck.checked ? dueInput.value : '',
  } : null);
  if (draft) form.addEventListener('input', () => saveDraft('compose', snapshot()));
  if (draft) form.addEventListener('change', () => saveDraft('compose', snapshot()));
  // Cancel or Esc on a filled form asks first; nothing typed is lost without saying so.
  let asking = false;
  async function leave() {
    if (!filled() || asking) { if (!asking) dialog.close(); return; }
    asking = true;
    const keep = draft ? [['keep', 'Keep as draft', true]] : [];
    const a = await ask('Close New Conversation?', draft ? 'What you wrote is kept as a draft for the next Compose, unless you discard it.' : 'What you wrote here is not sent.',
      [['back', 'Continue writing'], ...keep, ['discard', 'Discard']]);
    asking = false;
    if (a === 'keep') { saveDraft('compose', snapshot()); dialog.close(); } else if (a === 'discard') {
      if (draft) clearDraft('compose');
      sent = true; // nothing to keep on close
      dialog.close();
    } else subject.focus();
  }

  dialog = h('dialog', { id: 'compose', class: 'compose', 'aria-labelledby': 'compose-title' }, form);
  dialog.addEventListener('cancel', (e) => {
    // Esc closes the open Options menu first, and a filled form only after asking.
    e.preventDefault();
    if (!menu.hidden) { closeMenu(); optionsButton.focus(); return; }
    leave();
  });
  dialog.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    if (e.key === 'Escape' && !e.defaultPrevented) {
      e.preventDefault();
      if (!menu.hidden) { closeMenu(); optionsButton.focus(); } else leave();
    }
  });
  dialog.addEventListener('click', (e) => {
    if (!menu.hidden && !e.target.closest('#compose-options-menu, #compose-options')) closeMenu();
  });
  dialog.addEventListener('close', () => {
    if (draft && !sent) saveDraft('compose', snapshot());
    // Files are not kept with a draft: uploads still running stop here.
    files.reset();
    if (onClose) onClose();
    const d = dialog;
    setTimeout(() => d && d.remove(), 0);
    if (dialog === d) dialog = null;
  });
  document.body.append(dialog);
  dialog.showModal();
  (partner.value ? subject : partner).focus();
  return dialog;
}
