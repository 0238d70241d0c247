// Settings page: where and about what the signed-in user is mailed.

import { api, get } from './api.js';
import { h, clear, toast } from './dom.js';
import { app } from './app.js';

const MODES = [
  ['immediate', 'Immediately'],
  ['digest', 'In the daily digest'],
  ['never', 'Never'],
];

// An admin may open any user's settings (`?user=NAME`); everyone else sees their own.
export async function renderSettings(main, params) {
  app.page = { name: 'settings', refresh: () => {} };
  const admin = app.session && app.session.admin;
  const who = admin && params && params.get('user');
  const path = who ? `/users/${encodeURIComponent(who)}/notifications` : '/me/notifications';
  const s = await get(path);
  const mine = s.user === app.session.user;
  const err = h('p', { class: 'error', id: 'settings-error', role: 'alert' });
  const email = h('input', {
    id: 'settings-email', type: 'email', autocomplete: 'email', value: s.email || '',
    'aria-describedby': 'settings-email-help', maxlength: '254',
  });
  const rows = s.kinds.map((k) => {
    const sel = h('select', { id: `mode-${k.kind}`, name: k.kind, 'aria-label': k.label },
      ...MODES.map(([v, label]) => h('option', { value: v, selected: v === k.mode ? '' : undefined },
        v === k.default ? `${label} (default)` : label)));
    return h('tr', {}, h('th', { scope: 'row' }, h('label', { for: sel.id }, k.label)), h('td', {}, sel));
  });
  const save = h('button', { type: 'submit', id: 'settings-save', class: 'primary' }, 'Save');
  // The server's own check speaks for every refused address, in words (no browser bubble).
  const form = h('form', { id: 'settings-form', novalidate: '', onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = '';
    const preferences = {};
    for (const k of s.kinds) preferences[k.kind] = document.getElementById(`mode-${k.kind}`).value;
    save.disabled = true;
    try {
      await api('PUT', path, { email: email.value.trim(), preferences });
      toast('Notification settings saved');
    } catch (ex) {
      err.textContent = ex.message;
      email.focus();
    } finally {
      save.disabled = false;
    }
  } },
    h('label', { for: 'settings-email' }, 'Email address'),
    email,
    h('p', { class: 'help', id: 'settings-email-help' }, mine
      ? 'Leave it empty to get no mail. You are never mailed about what you did yourself.'
      : `Leave it empty and ${s.user} gets no mail. Nobody is mailed about what they did themselves.`),
    h('table', { class: 'settings' },
      h('caption', {}, 'Mail me when'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'What happens'), h('th', { scope: 'col' }, 'How'))),
      h('tbody', {}, ...rows)),
    err,
    save);
  const picker = admin ? await userPicker(s.user) : '';
  clear(main).append(h('h1', {}, 'Settings'), picker,
    h('h2', {}, mine ? 'Notifications' : `Notifications of ${s.user}`), form);
}

// For an admin: whose settings to show.
async function userPicker(current) {
  let users = [];
  try { users = (await get('/users')).filter((u) => u.kind !== 'integration'); } catch { return ''; }
  const sel = h('select', { id: 'settings-user', onchange: () => {
    const q = sel.value === app.session.user ? '' : `?user=${encodeURIComponent(sel.value)}`;
    history.pushState(null, '', `/settings${q}`);
    window.dispatchEvent(new PopStateEvent('popstate'));
  } }, ...users.map((u) => h('option', { value: u.name, selected: u.name === current ? '' : undefined }, u.name)));
  return h('p', { class: 'settings-user' }, h('label', { for: 'settings-user' }, 'Settings of '), sel);
}
