// The New Conversation window: opened by Compose, by "Start a conversation" on list and
// detail views, and by the deep link /new?kind=task&topic=item:SKU-1&subject=…

import { api, get, ApiError } from './api.js';
import { h, clear, toast, topicHref, TOPIC_KINDS, TOPIC_LABEL } from './dom.js';
import { app } from './app.js';

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

export function openCompose(opts = {}, { onSent, onClose } = {}) {
  if (dialog) dialog.remove();
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
  const refCheck = h('input', { type: 'checkbox', id: 'opt-reference-id', checked: !!opts.reference_id, onchange: syncOptions });
  const dueCheck = h('input', { type: 'checkbox', id: 'opt-due-date', checked: !!opts.due_date, onchange: syncOptions });
  const dueOption = h('label', { for: 'opt-due-date', class: 'check' }, dueCheck, 'Due Date');
  const menu = h('div', { class: 'options-menu', id: 'compose-options-menu', hidden: true, role: 'group', 'aria-label': 'Options' },
    h('label', { for: 'opt-reference-id', class: 'check' }, refCheck, 'Reference ID'), dueOption);
  const optionsButton = h('button', { type: 'button', id: 'compose-options', 'aria-expanded': 'false', 'aria-controls': 'compose-options-menu',
    onclick: () => { menu.hidden = !menu.hidden; optionsButton.setAttribute('aria-expanded', String(!menu.hidden)); if (!menu.hidden) refCheck.focus(); } }, 'Options ▾');
  const refInput = h('input', { id: 'compose-reference-id', name: 'reference_id', maxlength: 100, value: opts.reference_id || '' });
  const dueInput = h('input', { id: 'compose-due-date', name: 'due_date', type: 'date', value: opts.due_date || '' });
  const refRow = h('div', { class: 'row', id: 'row-reference-id' }, h('label', { for: 'compose-reference-id' }, 'Reference ID'), refInput);
  const dueRow = h('div', { class: 'row', id: 'row-due-date' }, h('label', { for: 'compose-due-date' }, 'Due date'), dueInput);

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
  const form = h('form', { id: 'compose-form', onsubmit: submit },
    h('h2', { id: 'compose-title' }, 'New Conversation'),
    h('fieldset', { class: 'kind-choice' }, h('legend', {}, 'Type'), kindRadio('message', 'Message'), kindRadio('task', 'Task')),
    h('div', { class: 'row' }, h('label', { for: 'compose-partner' }, 'Partner'), partner),
    h('div', { class: 'row' }, h('label', { for: 'compose-subject' }, 'Subject'), subject),
    h('div', { class: 'row' }, h('span', { class: 'label', id: 'compose-topic-label' }, 'Topic (optional)'), topicBox),
    refRow, dueRow,
    h('div', { class: 'row' }, h('label', { for: 'compose-body' }, 'Message'), body),
    err,
    h('div', { class: 'dialog-foot' },
      h('div', { class: 'options' }, optionsButton, menu),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', id: 'compose-cancel', onclick: () => dialog.close() }, 'Cancel'),
      send));
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
    if (!base.partner) { err.textContent = 'Choose a partner.'; partner.focus(); return; }
    if (!base.subject) { err.textContent = 'Write a subject.'; subject.focus(); return; }
    if (refCheck.checked && !base.reference_id) { err.textContent = 'Fill in the Reference ID, or untick it in Options.'; refInput.focus(); return; }
    if (k === 'task' && dueCheck.checked && !base.due_date) { err.textContent = 'Pick a due date, or untick it in Options.'; dueInput.focus(); return; }
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
      dialog.close();
      if (onSent) onSent(made);
    } catch (ex) {
      err.textContent = ex instanceof ApiError ? ex.message : String(ex);
    } finally {
      send.disabled = false;
    }
  }

  dialog = h('dialog', { id: 'compose', class: 'compose', 'aria-labelledby': 'compose-title' }, form);
  dialog.addEventListener('close', () => {
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
