"""A fake Twilio REST API on 127.0.0.1 that records when each outbound SMS arrives.

    python bench/fake_twilio.py --port 8123 --log /tmp/pages.jsonl

``POST /2010-04-01/Accounts/<sid>/Messages.json`` answers 201 ``{"sid": "SM<unique>",
"status": "queued", ...}`` and appends one JSON line to the log: arrival time (``time.time()``,
taken before the body is read), To, From, Body. ``GET /_count`` answers the number recorded.
The app is pointed here with ``HELPLINE_TWILIO_API_URL=http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the twilio SDK's session expects
    # Without TCP_NODELAY, the reply's second segment waits for the client's delayed ACK
    # (~40 ms on Linux): that would be the fake's latency, not the app's.
    disable_nagle_algorithm = True
    server: FakeTwilio

    def do_POST(self):
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
        if not (self.path.startswith("/2010-04-01/Accounts/") and self.path.endswith("/Messages.json")):
            self._send(404, {"code": 20404, "message": "not found", "status": 404})
            return
        sid = f"SM{next(self.server.counter):032d}"
        first = {k: v[0] for k, v in form.items()}
        self.server.record({"t": arrived, "sid": sid, "to": first.get("To"), "from": first.get("From"),
                            "body": first.get("Body")})
        self._send(201, {"sid": sid, "status": "queued", "to": first.get("To"), "from": first.get("From"),
                         "body": first.get("Body"), "account_sid": self.path.split("/")[3],
                         "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01"})

    def do_GET(self):
        if self.path == "/_count":
            self._send(200, {"count": self.server.count})
        else:
            self._send(404, {"code": 20404, "message": "not found", "status": 404})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


class FakeTwilio(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, log_path: str):
        super().__init__(("127.0.0.1", port), _Handler)
        self.counter = itertools.count(1)
        self.count = 0
        self._lock = threading.Lock()
        self._log = open(log_path, "a", encoding="utf-8")

    def record(self, entry: dict) -> None:
        with self._lock:
            self._log.write(json.dumps(entry) + "\n")
            self._log.flush()
            self.count += 1

    def server_close(self):
        super().server_close()
        self._log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True, help="JSON lines, one per message received")
    ap.add_argument("--max-seconds", type=float, default=600, help="exit after this long whatever happens")
    args = ap.parse_args()
    server = FakeTwilio(args.port, args.log)
    timer = threading.Timer(args.max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
