// Keyboard shortcuts, listed on `?`: c compose, / search, j/k next/previous conversation,
// Enter open, e resolve. They act only when no field has the focus and no window is open.

import { h, confirmDialog, toast } from './dom.js';
import { post } from './api.js';
import { app } from './app.js';

const SHORTCUTS = [
  ['c', 'New conversation'],
  ['/', 'Search'],
  ['j', 'Next conversation in the list'],
  ['k', 'Previous conversation in the list'],
  ['Enter', 'Open the selected conversation'],
  ['e', 'Resolve the open or selected conversation'],
  ['Ctrl+Enter', 'Send, in a reply or New Conversation'],
  ['?', 'This list'],
];

function typing(t) {
  return t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
}

function rows() {
  return [...document.querySelectorAll('#inbox-list tbody tr a[href^="/c/"], #topic-conversations tbody tr a[href^="/c/"]')];
}

function move(by) {
  const links = rows();
  if (!links.length) return;
  const at = links.indexOf(document.activeElement);
  const next = at < 0 ? (by > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + by));
  for (const tr of document.querySelectorAll('tr.selected')) tr.classList.remove('selected');
  links[next].closest('tr').classList.add('selected');
  links[next].focus();
}

export function showShortcuts() {
  if (document.getElementById('shortcuts')) return;
  const d = h('dialog', { id: 'shortcuts', 'aria-labelledby': 'shortcuts-title' },
    h('form', { method: 'dialog' },
      h('h2', { id: 'shortcuts-title' }, 'Keyboard shortcuts'),
      h('dl', { class: 'shortcuts' }, SHORTCUTS.map(([k, t]) => [h('dt', {}, h('kbd', {}, k)), h('dd', {}, t)])),
      h('div', { class: 'dialog-foot' }, h('span', { class: 'spacer' }), h('button', { class: 'primary', id: 'shortcuts-close' }, 'Close'))));
  d.addEventListener('close', () => d.remove());
  document.body.append(d);
  d.showModal();
  d.querySelector('#shortcuts-close').focus();
}

async function resolveRow(tr) {
  const subject = tr.querySelector('td.subject a').textContent.replace(/^Unread: /, '');
  if (!(await confirmDialog('Resolve this conversation?', `“${subject}” moves to the Resolved folder. You can reopen it from there.`, 'Resolve'))) return;
  try {
    await post(`/conversations/${tr.dataset.id}/resolve`);
    toast(`Resolved: ${subject}`);
    if (app.page && app.page.refresh) app.page.refresh(new Set([tr.dataset.id]));
  } catch (ex) { toast(ex.message); }
}

let installed = false;
export function installShortcuts() {
  if (installed) return;
  installed = true;
  document.getElementById('shortcuts-button').addEventListener('click', showShortcuts);
  // The skip link goes straight to the first conversation of a list when there is one.
  document.getElementById('skip').addEventListener('click', (e) => {
    const first = rows()[0];
    if (first) { e.preventDefault(); first.focus(); }
  });
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (typing(e.target) || document.querySelector('dialog[open]')) return;
    const click = (sel) => { const el = document.querySelector(sel); if (el && !el.disabled) { e.preventDefault(); el.click(); } };
    switch (e.key) {
      case 'c': click('#compose-button'); if (!document.getElementById('compose-button')) click('#menu-start-conversation'); break;
      case '/': { const s = document.getElementById('search') || document.getElementById('topic-search'); if (s) { e.preventDefault(); s.focus(); s.select(); } break; }
      case 'j': e.preventDefault(); move(1); break;
      case 'k': e.preventDefault(); move(-1); break;
      case 'e': {
        if (document.getElementById('resolve-button')) { click('#resolve-button'); break; }
        // In a list: the selected (focused) conversation.
        const tr = document.activeElement && document.activeElement.closest && document.activeElement.closest('tr[data-id]');
        if (tr) { e.preventDefault(); resolveRow(tr); }
        break;
      }
      case '?': e.preventDefault(); showShortcuts(); break;
      default:
    }
  });
}
