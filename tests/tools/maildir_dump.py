"""Prints every mail of a Maildir (as aiosmtpd's Mailbox handler writes it) as one JSON line:
headers (repeated ones joined by newlines), the decoded text/plain and text/html parts, and
the file name. Used by the notification tests to read what a real SMTP server received."""
import email
import email.policy
import json
import mailbox
import os
import sys

box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in sorted(box.keys()):
    raw = box.get_bytes(key)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {}
    for k, v in msg.items():
        headers.setdefault(k.lower(), []).append(str(v))
    text = html = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and text is None:
            text = part.get_content()
        elif ctype == "text/html" and html is None:
            html = part.get_content()
    # The order received: the file's time to the nanosecond (a key's microseconds are not
    # zero-padded, so keys do not sort in time order within a second).
    path = os.path.join(sys.argv[1], box._lookup(key))
    print(json.dumps({
        "key": key,
        "order": os.stat(path).st_mtime_ns,
        "headers": {k: "\n".join(v) for k, v in headers.items()},
        "text": text,
        "html": html,
    }))
