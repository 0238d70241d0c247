// Partners page: paired nodes, their sync status, and pairing.

import { api, get } from './api.js';
import { h, clear, toast } from './dom.js';
import { app } from './app.js';

function when(t) {
  return t ? new Date(t).toLocaleString() : 'never';
}

// How long ago, in words: "3 minutes", "2 hours", "4 days".
export function ago(t) {
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  const n = (v, unit) => `${v} ${unit}${v === 1 ? '' : 's'}`;
  if (s < 60) return 'less than a minute';
  if (s < 90 * 60) return n(Math.round(s / 60), 'minute');
  if (s < 36 * 3600) return n(Math.round(s / 3600), 'hour');
  return n(Math.round(s / 86400), 'day');
}

// What waits to go to a partner that is away, and since when it has been away.
function away(p) {
  const since = p.disconnected_since || p.last_sync_at;
  const parts = [];
  if (since) parts.push(`away for ${ago(since)}`);
  else parts.push('not reached since this node started');
  if (p.pending) parts.push(`${p.pending} conversation${p.pending === 1 ? '' : 's'} waiting to go to it`);
  else if (p.pending === 0) parts.push('nothing waiting to go to it');
  return parts.join(' · ');
}

function status(p) {
  const why = p.last_error ? h('span', { class: 'sub error-detail' }, `Last error: ${p.last_error}`) : '';
  if (p.stopped) return [`Stopped — ${away(p)}`, why];
  if (!p.connected) return [`Not connected — ${away(p)}`, why];
  if (p.waiting_turn) {
    // Restart storms: this node runs a few first syncs at a time ([sync] first_syncs).
    const place = p.waiting_place ? ` (${p.waiting_place === 1 ? 'next' : `number ${p.waiting_place} in line`})` : '';
    return `Connected — first sync waiting its turn${place}`;
  }
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
      h('th', { scope: 'col' }, 'Partner'), h('th', { scope: 'col' }, 'Node'), h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Last sync'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
    body));
  const admin = app.session && app.session.admin;
  const codeOut = h('output', { id: 'invite-code', class: 'code' });
  const copy = h('button', { type: 'button', id: 'copy-invite', hidden: true, onclick: async () => {
    const code = codeOut.textContent;
    let ok = false;
    try { await navigator.clipboard.writeText(code); ok = true; } catch {
      // Without the clipboard API (plain HTTP on another host): select it for Ctrl+C.
      const r = document.createRange(); r.selectNodeContents(codeOut);
      const sel = getSelection(); sel.removeAllRanges(); sel.addRange(r);
      try { ok = document.execCommand('copy'); } catch { ok = false; }
    }
    toast(ok ? 'Invite code copied.' : 'The code is selected: press Ctrl+C to copy it.');
  } }, 'Copy code');
  // An invite names whom it is for: a partner org's node, or another site of this org.
  const forOrg = h('input', { id: 'invite-org', name: 'org_id', autocomplete: 'off', placeholder: 'e.g. bolt-supply' });
  const forName = h('input', { id: 'invite-name', name: 'org_name', autocomplete: 'off' });
  const forRole = h('select', { id: 'invite-role', name: 'role' },
    h('option', { value: '' }, '(as recorded)'), h('option', { value: 'supplier' }, 'Supplier'), h('option', { value: 'retailer' }, 'Retailer'));
  const ownSite = h('input', { id: 'invite-own-site', type: 'checkbox', name: 'own_site', onchange: () => {
    for (const el of [forOrg, forName, forRole]) el.disabled = ownSite.checked;
  } });
  const inviteForm = h('form', { class: 'invite', onsubmit: async (e) => {
    e.preventDefault();
    const body = ownSite.checked ? { own_site: true } : {
      org_id: forOrg.value.trim(),
      org_name: forName.value.trim() || undefined,
      role: forRole.value || undefined,
    };
    try {
      const inv = await api('POST', '/peers/invites', body);
      codeOut.textContent = inv.code;
      copy.hidden = false;
      const who = ownSite.checked ? 'another site of this org' : `a node of ${body.org_id}`;
      toast(`Invite made for ${who}: give the code to that node. It works once, for 24 hours, and only there.`);
    } catch (ex) { toast(ex.message); }
  } },
    h('div', { class: 'row' }, h('label', { for: 'invite-org' }, 'Partner org id'), forOrg),
    h('div', { class: 'row' }, h('label', { for: 'invite-name' }, 'Its name (new partners)'), forName),
    h('div', { class: 'row' }, h('label', { for: 'invite-role' }, 'Its role (new partners)'), forRole),
    h('label', { for: 'invite-own-site' }, ownSite, ' For another site of our own org'),
    h('button', { type: 'submit', id: 'make-invite' }, 'Make an invite code'));
  const codeIn = h('input', { id: 'pair-code', name: 'code', required: true, autocomplete: 'off' });
  const preview = h('p', { id: 'pair-preview', class: 'preview', 'aria-live': 'polite' });
  // What the code pairs this node as, and with whom, shown before pairing.
  let previewFor = '';
  async function showPreview() {
    const code = codeIn.value.trim();
    if (code === previewFor) return;
    previewFor = code;
    if (!code) { preview.textContent = ''; return; }
    try {
      const p = await api('POST', '/peers/invites/inspect', { code });
      if (previewFor !== code) return;
      const as = p.own_site ? `another site of ${p.inviter_org}` : `${p.for_org} (${p.for_name}, ${p.for_role})`;
      preview.textContent = p.problem
        ? `This invite cannot be used here: ${p.problem}`
        : `This invite pairs this node as ${as} with ${p.inviter_name} (${p.inviter_org}, ${p.inviter_role}).`;
      preview.className = p.problem ? 'error' : 'preview';
    } catch (ex) { if (previewFor === code) { preview.textContent = ex.message; preview.className = 'error'; } }
  }
  // Ask the node only about a whole code (one that decodes), not about every keystroke.
  function whole(code) {
    const b64 = code.startsWith('parley-invite:') && code.slice('parley-invite:'.length).replace(/-/g, '+').replace(/_/g, '/');
    if (!b64) return false;
    try { return typeof JSON.parse(atob(b64 + '='.repeat((4 - b64.length % 4) % 4))) === 'object'; } catch { return false; }
  }
  let previewTimer;
  codeIn.addEventListener('input', () => {
    clearTimeout(previewTimer);
    const code = codeIn.value.trim();
    if (!whole(code)) { preview.textContent = code ? 'Paste the whole code.' : ''; preview.className = 'preview'; previewFor = ''; return; }
    previewTimer = setTimeout(() => { showPreview().catch(() => {}); }, 150);
  });
  const pairForm = h('form', { class: 'pair', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const p = await api('POST', '/peers', { code: codeIn.value.trim() });
      codeIn.value = '';
      preview.textContent = '';
      previewFor = '';
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
    if (!peers.length) {
      body.append(h('tr', {}, h('td', { colspan: 5 }, admin
        ? 'No paired nodes yet. Make an invite code below for a partner, or paste the code a partner gave you.'
        : 'No paired nodes yet. An administrator of this node pairs it with partners.')));
    }
    for (const p of peers) {
      const remove = admin && h('button', { type: 'button', class: 'link', onclick: async () => {
        if (!confirm(`Stop syncing with ${p.org_name} (${p.node_id})? Its key stops working at once.`)) return;
        try { await api('DELETE', `/peers/${p.node_id}`); await load(); } catch (e) { toast(e.message); }
      } }, 'Remove');
      body.append(h('tr', { dataset: { node: p.node_id } },
        h('td', {}, h('strong', {}, p.org_name), h('span', { class: 'sub' }, ` ${p.org_id} · ${p.own_org ? 'our site' : p.role}`)),
        h('td', {}, h('code', { title: `Node ${p.node_id}`, class: 'node-id' }, p.node_id.slice(0, 8)), link(p)),
        h('td', { class: 'status' }, status(p)),
        h('td', {}, when(p.last_sync_at)),
        h('td', {}, remove || '')));
    }
  }
  clear(main).append(
    h('h1', {}, 'Partners'),
    h('p', {}, 'The nodes this one syncs with: partners\u2019 nodes and the other sites of your org.'),
    table,
    admin ? h('section', { 'aria-labelledby': 'pair-h' }, h('h2', { id: 'pair-h' }, 'Pair with another node'),
      h('p', { class: 'hint' }, 'An invite is for one org: a partner\u2019s node, or another site of your own org. Only a node of that org can use it.'),
      inviteForm, h('div', { class: 'code-row' }, codeOut, copy), pairForm, preview) : '');
  await load();
  const timer = setInterval(() => { if (app.page && app.page.name === 'peers') load().catch(() => {}); else clearInterval(timer); }, 2000);
  app.page = { name: 'peers', refresh: () => {} };
}
