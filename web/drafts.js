// Drafts of New Conversation and of replies, kept in the browser's local storage per user so
// that they survive closing the window, a reload and a lost connection. Cleared once sent.

import { app } from './app.js';

// Keyed by org and user, each encoded, with `|` between: no user's prefix is another's.
const key = (what) => {
  const who = app.session ? `${encodeURIComponent(app.session.org_id)}|${encodeURIComponent(app.session.user)}` : '-';
  return `parley.draft|${who}|${what}`;
};

export function loadDraft(what) {
  try {
    const v = JSON.parse(localStorage.getItem(key(what)) || 'null');
    return v && typeof v === 'object' ? v : null;
  } catch { return null; }
}

export function saveDraft(what, value) {
  try {
    if (value) localStorage.setItem(key(what), JSON.stringify(value));
    else localStorage.removeItem(key(what));
  } catch { /* storage full or disabled: the draft lives as long as the page */ }
}

export const clearDraft = (what) => saveDraft(what, null);

// Signing out on purpose removes this user's drafts from the browser (it may be shared);
// a session that merely expires keeps them for the next sign-in.
export function clearAllDrafts() {
  try {
    const prefix = key('');
    for (const k of Object.keys(localStorage)) if (k.startsWith(prefix)) localStorage.removeItem(k);
  } catch { /* nothing stored */ }
}
