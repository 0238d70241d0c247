// Optional desktop notifications: when switched on (Inbox page, per browser), a rise of the
// unread count while the tab is in the background shows one notification.

let last = null;
const KEY = 'parley.desktop-notifications';

export const desktopOn = () => {
  try { return localStorage.getItem(KEY) === 'on' && 'Notification' in window && Notification.permission === 'granted'; } catch { return false; }
};

export async function setDesktop(on) {
  try {
    if (on && 'Notification' in window && Notification.permission !== 'granted') {
      if ((await Notification.requestPermission()) !== 'granted') return false;
    }
    localStorage.setItem(KEY, on ? 'on' : 'off');
    return on;
  } catch { return false; }
}

export function notifyNew(n) {
  const before = last;
  last = n;
  if (before === null || n <= before || !document.hidden || !desktopOn()) return;
  try {
    const note = new Notification('Parley', { body: `${n} unread conversation${n === 1 ? '' : 's'}`, tag: 'parley-unread' });
    note.onclick = () => { window.focus(); note.close(); };
  } catch { /* not supported here */ }
}
