// Small DOM helpers. Text always goes in as text nodes, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

let toastTimer;
export function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 4000);
}

export const KIND_LABEL = { message: 'Message', task: 'Task' };
export const PROGRESS_LABEL = { open: 'Open', in_progress: 'In progress', completed: 'Completed', cancelled: 'Cancelled' };
export const TOPIC_KINDS = ['order', 'item', 'return', 'shipment', 'invoice', 'account', 'other'];
export const TOPIC_LABEL = { order: 'Order', item: 'Item', return: 'Return', shipment: 'Shipment', invoice: 'Invoice', account: 'Account', other: 'Other' };
export const TOPIC_PLURAL = { order: 'Orders', item: 'Items', return: 'Returns', shipment: 'Shipments', invoice: 'Invoices', account: 'Accounts', other: 'Other topics' };

export function topicHref(kind, ref) {
  return `/topics/${encodeURIComponent(kind)}/${encodeURIComponent(ref)}`;
}

// A link to a topic's detail page; `short` leaves the label to the tooltip (for tables).
export function topicLink(t, { short = false } = {}) {
  if (!t) return '';
  const name = `${TOPIC_LABEL[t.kind] || t.kind} ${t.ref}`;
  const label = t.label && t.label !== t.ref ? t.label : null;
  const text = label && !short ? `${name} — ${label}` : name;
  return h('a', { href: topicHref(t.kind, t.ref), class: 'topic', title: label }, text);
}

export function when(iso) {
  const d = new Date(iso);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' });
}

// Open or resolved: the conversation's state, never mixed with a task's progress.
export function stateLabel(c) {
  return c.state === 'resolved' ? 'Resolved' : 'Open';
}

// A task's progress; empty for a message.
export function progressLabel(c) {
  return c.kind === 'task' ? (PROGRESS_LABEL[c.progress] || 'Open') : '';
}

export const finished = (c) => c.kind === 'task' && (c.progress === 'completed' || c.progress === 'cancelled');

// The folder a conversation is listed in, for search results across folders.
const FOLDER_NAME = { action: 'Action required', tasks: 'Tasks', inbox: 'Inbox', resolved: 'Resolved' };
// The folder a row is listed in, as the node says (`folder`).
export function folderOf(c) {
  if (c.folder && FOLDER_NAME[c.folder]) return FOLDER_NAME[c.folder];
  if (c.state === 'resolved') return 'Resolved';
  return 'Inbox';
}

// A field name from a CSV header or an integration (`unit_price`, `leadTime`) as a label.
export function fieldLabel(name) {
  const words = String(name).replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_\-.]+/g, ' ').trim().toLowerCase();
  return words ? words[0].toUpperCase() + words.slice(1) : String(name);
}

// Today as YYYY-MM-DD in local time, as a date input gives it.
export function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

// A small modal asking to confirm; resolves to the value of the button pressed ('' on Esc).
// `buttons` are [value, label, primary?]; the first is focused. `extra` goes above them.
export function ask(title, text, buttons, extra) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'confirm', id: 'confirm', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, title),
        h('p', { id: 'confirm-text' }, text),
        extra || '',
        h('div', { class: 'dialog-foot' }, h('span', { class: 'spacer' }),
          buttons.map(([v, label, primary]) => h('button', { value: v, id: `confirm-${v}`, class: primary ? 'primary' : '' }, label)))));
    d.addEventListener('close', () => { resolve(d.returnValue || ''); d.remove(); });
    document.body.append(d);
    d.showModal();
    d.querySelector(`#confirm-${buttons[0][0]}`).focus();
  });
}

export async function confirmDialog(title, text, yes) {
  return (await ask(title, text, [['no', 'Cancel'], ['yes', yes, true]])) === 'yes';
}

export function badge(text, cls) { return h('span', { class: `badge ${cls || ''}` }, text); }
