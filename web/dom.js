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

export function stateLabel(c) {
  if (c.state === 'resolved') return 'Resolved';
  if (c.kind === 'task') return PROGRESS_LABEL[c.progress] || 'Open';
  return 'Open';
}

export function badge(text, cls) { return h('span', { class: `badge ${cls || ''}` }, text); }
