"""A webhook receiver for the tests: verifies each request with the independent
`standardwebhooks` library and logs it as one JSON line.

    webhook_receiver.py --secrets FILE --log FILE [--script 500,500,200]

Prints the port it listens on (127.0.0.1) on stdout. FILE of secrets: one `whsec_` secret a
line, read again for every request (so a test can add a rotated one). Each log line:
{"n", "path", "headers", "body", "verified": [index of each secret that verifies], "answer"}.
The script answers the requests in turn, then 200 for every later one; an entry is a status
(`500`, `410`, `301` with a Location), `STATUS/ra=SECS` for a Retry-After header, or
`sleep=SECS` (waits that long, then 200).
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
state = {"n": 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secrets", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--script", default="")
    args = ap.parse_args()
    script = [s for s in args.script.split(",") if s]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with open(args.secrets) as f:
                secrets = [l.strip() for l in f if l.strip()]
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = []
            for i, s in enumerate(secrets):
                try:
                    Webhook(s).verify(body, headers)
                    verified.append(i)
                except Exception:
                    pass
            with lock:
                n = state["n"]
                state["n"] += 1
                answer = script[n] if n < len(script) else "200"
                line = {
                    "n": n,
                    "path": self.path,
                    "headers": headers,
                    "body": body.decode("utf-8", "replace"),
                    "verified": verified,
                    "answer": answer,
                }
                with open(args.log, "a") as f:
                    f.write(json.dumps(line) + "\n")
            status, extra = 200, {}
            if answer.startswith("sleep="):
                time.sleep(float(answer[len("sleep="):]))
            else:
                code, _, opt = answer.partition("/")
                status = int(code)
                if opt.startswith("ra="):
                    extra["Retry-After"] = opt[3:]
                if 300 <= status < 400:
                    extra["Location"] = "http://127.0.0.1:1/elsewhere"
            try:
                payload = b"scripted answer"
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
