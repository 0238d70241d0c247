// Files on messages: the picker and drop zone of the reply box and of New Conversation, and
// the files listed under each message of a thread.
//
// A chosen file is uploaded at once (`POST /api/v1/attachments`, the file as the raw body, its
// name in X-Filename), so that sending the message only names files the node already holds:
// a send never waits on bytes, and a refused file is told at once, in place, in the node's
// own words. What a send carries is the SHA-256 of each file that was taken.

import { csrfToken } from './api.js';
import { h, clear } from './dom.js';

// 1 KB = 1024 bytes, as the node's limit (`attachments.max_mb`) counts.
export function humanSize(n) {
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1024) return n === 1 ? '1 byte' : `${n} bytes`;
  const kb = n / 1024;
  if (kb < 1024) return `${kb < 10 ? kb.toFixed(1) : Math.round(kb)} KB`;
  const mb = kb / 1024;
  return `${mb < 10 ? mb.toFixed(1) : Math.round(mb)} MB`;
}

export function fileUrl(f) {
  return `/api/v1/attachments/${encodeURIComponent(f.sha256)}?name=${encodeURIComponent(f.name)}`;
}

// The files of one message as the thread shows them; '' when it has none. A file that has
// not reached this node yet is named, never linked: a link would only lead to an error.
export function messageFiles(list) {
  if (!list || !list.length) return '';
  return h('ul', { class: 'files', 'aria-label': 'Files' }, list.map((f) => {
    const size = h('span', { class: 'file-size' }, humanSize(f.size));
    if (f.state === 'arriving') {
      return h('li', { class: 'file arriving', dataset: { sha: f.sha256, state: f.state } },
        h('span', { class: 'file-name' }, f.name), ' ', size, ' ',
        h('span', { class: 'badge arriving' }, 'Arriving\u2026'));
    }
    if (f.state === 'refused') {
      return h('li', { class: 'file too-large', dataset: { sha: f.sha256, state: f.state } },
        h('span', { class: 'file-name' }, f.name), ' ', size, ' ',
        h('span', { class: 'badge too-large' }, 'Not a kind of file this node takes'));
    }
    if (f.state === 'too_large') {
      return h('li', { class: 'file too-large', dataset: { sha: f.sha256, state: f.state } },
        h('span', { class: 'file-name' }, f.name), ' ', size, ' ',
        h('span', { class: 'badge too-large' }, 'Too large for this node'));
    }
    const url = fileUrl(f);
    return h('li', { class: f.preview ? 'file picture' : 'file', dataset: { sha: f.sha256, state: f.state } },
      f.preview ? h('img', { class: 'file-thumb', src: url, alt: f.name, loading: 'lazy', decoding: 'async' }) : '',
      h('span', { class: 'file-line' },
        h('a', { class: 'file-link', href: url, download: f.name }, f.name), ' ', size));
  }));
}

// Uploads one file; `progress(loaded, total)` as it goes. Resolves to the node's answer
// ({sha256, size, name, type}); rejects with an Error whose message is what to tell the user.
function upload(file, progress, onXhr) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    onXhr(x);
    x.open('POST', '/api/v1/attachments');
    x.withCredentials = true;
    // The node tells a file's kind by its content, so the browser's guess is not sent.
    x.setRequestHeader('Content-Type', 'application/octet-stream');
    x.setRequestHeader('X-Filename', encodeURIComponent(file.name));
    const csrf = csrfToken();
    if (csrf) x.setRequestHeader('X-CSRF-Token', csrf);
    x.upload.addEventListener('progress', (e) => { if (e.lengthComputable) progress(e.loaded, e.total); });
    x.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(x.responseText); } catch { /* not JSON: said below */ }
      if (x.status === 201 && data && data.sha256) { resolve(data); return; }
      const detail = data && (data.detail || data.error);
      reject(new Error(detail || `The node refused the file (${x.status}).`));
    });
    x.addEventListener('error', () => reject(new Error(
      'The upload was cut off. The node may have stopped it (a file over its size limit is refused as it arrives) or stopped answering; nothing of it was kept. Try again, or pick a smaller file.')));
    x.addEventListener('abort', () => reject(new Error('aborted')));
    x.send(file);
  });
}

// A file picker with drag-and-drop onto `dropTarget` (set later with `dropOn`). `prefix` names
// the ids (`${prefix}-files`, `${prefix}-uploads`). `onchange` runs whenever an upload starts,
// ends or is removed, so the form can disable its Send button while `busy()`.
export function filePicker(prefix, { onchange = () => {} } = {}) {
  const items = [];
  const input = h('input', { type: 'file', id: `${prefix}-files`, multiple: true, 'aria-describedby': `${prefix}-files-hint` });
  const list = h('ul', { class: 'uploads', id: `${prefix}-uploads`, 'aria-label': 'Files to send' });
  const hint = h('span', { class: 'hint', id: `${prefix}-files-hint` }, 'or drop files here');
  const el = h('div', { class: 'attach' },
    h('div', { class: 'attach-row' }, input, h('label', { for: `${prefix}-files`, class: 'button' }, 'Attach files'), hint),
    list);
  list.hidden = true;

  function changed() {
    list.hidden = items.length === 0;
    onchange();
  }

  function add(file) {
    const item = { file, state: 'uploading', result: null, xhr: null };
    const bar = h('progress', { max: 100, value: 0, 'aria-label': `Uploading ${file.name}` });
    const pct = h('span', { class: 'upload-pct' }, '0%');
    const error = h('span', { class: 'error upload-error', role: 'alert' });
    const remove = h('button', { type: 'button', class: 'link upload-remove', 'aria-label': `Remove ${file.name}`, onclick: () => {
      if (item.xhr && item.state === 'uploading') item.xhr.abort();
      items.splice(items.indexOf(item), 1);
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      // Focus stays in the list (or goes back to the picker) instead of falling to the page.
      const target = next ? next.querySelector('.upload-remove') : input;
      target.focus();
      changed();
    } }, 'Remove');
    const li = h('li', { class: 'upload', dataset: { state: 'uploading' } },
      h('span', { class: 'upload-name' }, file.name), ' ',
      h('span', { class: 'file-size' }, humanSize(file.size)), ' ',
      bar, pct, ' ', remove, error);
    const set = (state) => { item.state = state; li.dataset.state = state; };
    items.push(item);
    list.append(li);
    changed();
    upload(file, (loaded, total) => {
      const p = total ? Math.floor((loaded / total) * 100) : 0;
      bar.value = p;
      pct.textContent = `${p}%`;
    }, (x) => { item.xhr = x; }).then((r) => {
      item.result = r;
      set('done');
      bar.remove();
      pct.textContent = 'Attached';
      changed();
    }, (e) => {
      if (!items.includes(item)) return; // removed while uploading
      set('refused');
      bar.remove();
      pct.textContent = '';
      error.textContent = `Not attached: ${e.message}`;
      changed();
    });
  }

  function addAll(files) { for (const f of files) add(f); }

  input.addEventListener('change', () => {
    addAll([...input.files]);
    // Cleared so that the same file can be picked again after a removal.
    input.value = '';
  });

  // Drop files anywhere on the form; other drags (text, links) are left to the browser.
  function dropOn(target) {
    const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    let depth = 0;
    target.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth += 1;
      target.classList.add('dropping');
    });
    target.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    target.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) target.classList.remove('dropping');
    });
    target.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      target.classList.remove('dropping');
      addAll([...e.dataTransfer.files]);
    });
  }

  return {
    el,
    dropOn,
    // Uploads still running: the message must not be sent without them.
    busy: () => items.some((i) => i.state === 'uploading'),
    // The files the node took, in the order chosen.
    hashes: () => items.filter((i) => i.state === 'done').map((i) => i.result.sha256),
    // After a send: the list starts empty again.
    reset: () => {
      for (const i of items) if (i.xhr && i.state === 'uploading') i.xhr.abort();
      items.length = 0;
      clear(list);
      changed();
    },
  };
}
