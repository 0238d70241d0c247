// Partners page: paired nodes, their sync status, and pairing.

import { api, get } from './api.js';
import { h, clear, toast } from './dom.js';
import { app } from './app.js';

function when(t) {
  return t ? new Date(t).toLocaleString() : 'never';
}

function status(p) {
  if (!p.connected) return 'Not connected';
  if (!p.caught_up) {
    const left = (p.incoming || 0) + (p.pending || 0);
    return `Syncing — ${left} conversation${left === 1 ? '' : 's'} to go`;
  }
  return p.pending ? `Connected — ${p.pending} waiting to send` : 'Connected, up to date';
}

export async function renderPeers(main) {
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'list', id: 'peers' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Org'), h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Last sync'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
    body));
  const admin = app.session && app.session.admin;
  const codeOut = h('output', { id: 'invite-code', class: 'code' });
  const invite = h('button', { type: 'button', id: 'make-invite', onclick: async () => {
    try {
      const inv = await api('POST', '/peers/invites', {});
      codeOut.textContent = inv.code;
      toast('Invite made: give the code to the other node. It works once, for 24 hours.');
    } catch (e) { toast(e.message); }
  } }, 'Make an invite code');
  const codeIn = h('input', { id: 'pair-code', name: 'code', required: true, autocomplete: 'off' });
  const pairForm = h('form', { class: 'pair', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const p = await api('POST', '/peers', { code: codeIn.value.trim() });
      codeIn.value = '';
      toast(`Paired with ${p.org_name}`);
      await load();
    } catch (ex) { toast(ex.message); }
  } }, h('label', { for: 'pair-code' }, 'Invite code from the other node'), codeIn, h('button', { type: 'submit', class: 'primary' }, 'Pair'));

  // How this node reaches the peer: over TLS (pinned to the invite's certificate) or plain.
  function link(p) {
    if (!p.url) return '';
    const text = p.url.startsWith('https://') ? (p.tls ? 'TLS, pinned certificate' : 'TLS') : 'plain HTTP';
    return h('span', { class: 'sub link-kind' }, ` · ${text}`);
  }

  async function load() {
    const peers = await get('/peers');
    clear(body);
    if (!peers.length) body.append(h('tr', {}, h('td', { colspan: 5 }, 'No paired nodes yet.')));
    for (const p of peers) {
      const remove = admin && h('button', { type: 'button', class: 'link', onclick: async () => {
        if (!confirm(`Stop syncing with ${p.org_name} (${p.node_id})? Its key stops working at once.`)) return;
        try { await api('DELETE', `/peers/${p.node_id}`); await load(); } catch (e) { toast(e.message); }
      } }, 'Remove');
      body.append(h('tr', { dataset: { node: p.node_id } },
        h('td', {}, `${p.org_name} (${p.own_org ? 'our site' : p.role})`),
        h('td', {}, h('code', {}, p.node_id.slice(0, 8)), link(p)),
        h('td', { class: 'status' }, status(p)),
        h('td', {}, when(p.last_sync_at)),
        h('td', {}, remove || '')));
    }
  }
  clear(main).append(
    h('h1', {}, 'Partners'),
    h('p', {}, 'The nodes this one syncs with: partners\u2019 nodes and the other sites of your org.'),
    table,
    admin ? h('section', { 'aria-labelledby': 'pair-h' }, h('h2', { id: 'pair-h' }, 'Pair with another node'), invite, codeOut, pairForm) : '');
  await load();
  const timer = setInterval(() => { if (app.page && app.page.name === 'peers') load().catch(() => {}); else clearInterval(timer); }, 2000);
  app.page = { name: 'peers', refresh: () => {} };
}
