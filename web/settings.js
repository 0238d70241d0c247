// Settings page: where and about what the signed-in user is mailed.

import { api, get } from './api.js';
import { h, clear, toast } from './dom.js';
import { app } from './app.js';

const MODES = [
  ['immediate', 'Immediately'],
  ['digest', 'In the daily digest'],
  ['never', 'Never'],
];

export async function renderSettings(main) {
  app.page = { name: 'settings', refresh: () => {} };
  const s = await get('/me/notifications');
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
      await api('PUT', '/me/notifications', { email: email.value.trim(), preferences });
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
    h('p', { class: 'help', id: 'settings-email-help' },
      'Leave it empty to get no mail. You are never mailed about what you did yourself.'),
    h('table', { class: 'settings' },
      h('caption', {}, 'Mail me when'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'What happens'), h('th', { scope: 'col' }, 'How'))),
      h('tbody', {}, ...rows)),
    err,
    save);
  clear(main).append(h('h1', {}, 'Settings'), h('h2', {}, 'Notifications'), form);
}
