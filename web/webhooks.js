// Webhooks page (admins): endpoints that get Standard Webhooks deliveries, their state, the
// secret shown once after adding or rotating, test/rotate/enable/remove, and the delivery log.

import { api, get, qs } from './api.js';
import { h, clear, toast, confirmDialog } from './dom.js';
import { app } from './app.js';

// The event types an endpoint can ask for (the API refuses any other).
const EVENTS = [
  ['conversation.created', 'A conversation is created'],
  ['message.created', 'A message is written (by us or a partner)'],
  ['conversation.resolved', 'A conversation is resolved'],
  ['conversation.reopened', 'A conversation is reopened'],
  ['conversation.updated', 'Subject, reference or topic changed'],
  ['task.progress_changed', 'A task\u2019s progress changed'],
  ['task.due_date_changed', 'A task\u2019s due date changed'],
  ['task.due_soon', 'A task is due soon'],
  ['task.overdue', 'A task is overdue'],
];

function when(t) {
  return t ? new Date(t).toLocaleString() : '';
}

function state(w) {
  if (w.disabled) {
    return [h('strong', { class: 'error' }, 'Disabled'), h('span', { class: 'sub error-detail' }, ` since ${when(w.disabled.at)}: ${w.disabled.reason}`)];
  }
  if (w.failing_since) return [h('strong', {}, 'Failing'), h('span', { class: 'sub' }, ` since ${when(w.failing_since)}; retrying`)];
  return 'Active';
}

// Copies the text of `out`, or selects it for Ctrl+C where the clipboard API is missing.
async function copyFrom(out) {
  let ok = false;
  try { await navigator.clipboard.writeText(out.textContent); ok = true; } catch {
    const r = document.createRange(); r.selectNodeContents(out);
    const sel = getSelection(); sel.removeAllRanges(); sel.addRange(r);
    try { ok = document.execCommand('copy'); } catch { ok = false; }
  }
  toast(ok ? 'Secret copied.' : 'The secret is selected: press Ctrl+C to copy it.');
}

let pollTimer = null;

export async function renderWebhooks(main) {
  if (!(app.session && app.session.admin)) {
    app.page = null;
    clear(main).append(h('h1', {}, 'Webhooks'), h('p', {}, 'Only an administrator of this node manages webhooks.'));
    return;
  }
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'list', id: 'webhooks' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Endpoint'), h('th', { scope: 'col' }, 'Events'), h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col' }, 'Waiting'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
    body));

  // The secret, shown once after adding or rotating.
  const secretOut = h('output', { id: 'webhook-secret', class: 'code' });
  const secretNote = h('p', { id: 'webhook-secret-note', class: 'hint' });
  const secretBox = h('section', { id: 'webhook-secret-box', 'aria-live': 'polite', hidden: true },
    secretNote, h('div', { class: 'code-row' }, secretOut,
      h('button', { type: 'button', id: 'copy-secret', onclick: () => copyFrom(secretOut) }, 'Copy secret')));
  function showSecret(secret, note) {
    secretOut.textContent = secret;
    secretNote.textContent = note;
    secretBox.hidden = false;
  }

  // The delivery log of one endpoint.
  const logBody = h('tbody');
  const logTitle = h('h2', { id: 'log-h' }, 'Deliveries');
  const logBox = h('section', { 'aria-labelledby': 'log-h', id: 'webhook-log', hidden: true }, logTitle,
    h('div', { class: 'table-wrap' }, h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Queued'), h('th', { scope: 'col' }, 'Event'),
        h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Attempts'), h('th', { scope: 'col' }, 'Last answer'))),
      logBody)));
  async function showLog(w) {
    const { deliveries } = await get(`/webhooks/${w.id}/deliveries` + qs({ limit: 50 }));
    logTitle.textContent = `Deliveries to ${w.url}`;
    clear(logBody);
    if (!deliveries.length) logBody.append(h('tr', {}, h('td', { colspan: 5 }, 'Nothing sent yet.')));
    for (const d of deliveries) {
      const answer = [d.last_status_code ? `HTTP ${d.last_status_code}` : '', d.last_error || ''].filter(Boolean).join(' — ');
      const next = d.next_attempt_at ? h('span', { class: 'sub' }, ` next try ${when(d.next_attempt_at)}`) : '';
      logBody.append(h('tr', {},
        h('td', {}, when(d.created_at)),
        h('td', {}, d.event_type, h('span', { class: 'sub' }, ` ${d.msg_id}`)),
        h('td', {}, d.status, next),
        h('td', {}, String(d.attempts)),
        h('td', {}, answer || (d.status === 'pending' ? 'not tried yet' : ''))));
    }
    logBox.hidden = false;
  }

  const act = (label, id, f) => h('button', { type: 'button', class: 'link', id, onclick: async () => {
    try { await f(); } catch (e) { toast(e.message); }
  } }, label);

  async function load() {
    const { webhooks } = await get('/webhooks');
    clear(body);
    if (!webhooks.length) body.append(h('tr', {}, h('td', { colspan: 5 }, 'No webhooks yet. Add one below.')));
    for (const w of webhooks) {
      const actions = [
        act('Send test event', `test-${w.id}`, async () => {
          const r = await api('POST', `/webhooks/${w.id}/test`);
          toast(`Test event ${r.msg_id} queued.`);
          await showLog(w);
        }),
        act('Rotate secret', `rotate-${w.id}`, async () => {
          if (!(await confirmDialog('Rotate the secret?', `A new secret signs deliveries to ${w.url} from now on. The old one keeps signing beside it for a while, so the receiver can switch over.`, 'Rotate'))) return;
          const r = await api('POST', `/webhooks/${w.id}/rotate`);
          const until = r.previous_expires_at ? ` The previous secret also signs until ${when(r.previous_expires_at)}.` : '';
          showSecret(r.secret, `The new secret for ${w.url}. Store it now: it is not shown again.${until}`);
        }),
        w.disabled && act('Enable', `enable-${w.id}`, async () => {
          await api('POST', `/webhooks/${w.id}/enable`);
          toast('Enabled: new events are delivered again.');
          await load();
        }),
        act('Deliveries', `log-${w.id}`, () => showLog(w)),
        act('Remove', `remove-${w.id}`, async () => {
          if (!(await confirmDialog('Remove the webhook?', `Nothing more is sent to ${w.url}; what waits for it and its log go too.`, 'Remove'))) return;
          await api('DELETE', `/webhooks/${w.id}`);
          logBox.hidden = true;
          await load();
        }),
      ];
      body.append(h('tr', { dataset: { webhook: w.id } },
        h('td', {}, h('code', {}, w.url), w.description ? h('span', { class: 'sub' }, ` ${w.description}`) : ''),
        h('td', {}, w.events.join(', ')),
        h('td', { class: 'status' }, state(w)),
        h('td', {}, String(w.pending)),
        h('td', { class: 'actions' }, actions.filter(Boolean).map((a) => [a, ' ']))));
    }
  }

  const url = h('input', { id: 'webhook-url', name: 'url', type: 'url', required: true, autocomplete: 'off', placeholder: 'http://erp.lan:8080/parley' });
  const desc = h('input', { id: 'webhook-description', name: 'description', autocomplete: 'off' });
  const boxes = EVENTS.map(([value, label]) => {
    const id = `event-${value.replace('.', '-')}`;
    return h('div', { class: 'check' }, h('input', { type: 'checkbox', id, name: 'events', value }), h('label', { for: id }, ` ${value} `, h('span', { class: 'sub' }, label)));
  });
  const addForm = h('form', { class: 'webhook-add', id: 'webhook-add', onsubmit: async (e) => {
    e.preventDefault();
    const events = [...addForm.querySelectorAll('input[name=events]:checked')].map((b) => b.value);
    if (!events.length) { toast('Choose at least one event.'); return; }
    try {
      const w = await api('POST', '/webhooks', { url: url.value.trim(), events, description: desc.value.trim() || undefined });
      showSecret(w.secret, `The secret for ${w.url}: the receiver verifies signatures with it. Store it now: it is not shown again.`);
      addForm.reset();
      await load();
    } catch (ex) { toast(ex.message); }
  } },
    h('div', { class: 'row' }, h('label', { for: 'webhook-url' }, 'Receiver URL'), url),
    h('div', { class: 'row' }, h('label', { for: 'webhook-description' }, 'Description (optional)'), desc),
    h('fieldset', {}, h('legend', {}, 'Events to send'), boxes),
    h('button', { type: 'submit', class: 'primary', id: 'webhook-add-button' }, 'Add webhook'));

  clear(main).append(
    h('h1', {}, 'Webhooks'),
    h('p', {}, 'Systems that get an HTTP request, signed per the Standard Webhooks spec, when something happens in a conversation. Failed deliveries are retried for about three days; an endpoint that keeps failing is disabled, and says why here.'),
    table, secretBox,
    h('section', { 'aria-labelledby': 'add-h' }, h('h2', { id: 'add-h' }, 'Add a webhook'), addForm),
    logBox);
  await load();
  // One refresh timer, however often the page is opened.
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = setInterval(() => {
    if (app.page && app.page.name === 'webhooks') load().catch(() => {});
    else { clearInterval(pollTimer); pollTimer = null; }
  }, 5000);
  app.page = { name: 'webhooks', refresh: () => {} };
}
