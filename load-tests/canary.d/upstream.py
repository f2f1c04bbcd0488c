#!/usr/bin/env python3
"""One side of load-tests/canary: a small HTTP/1.1 app that answers 200 with its name, and can be
told to start failing (500) or to answer slowly, at a moment the load generator chooses.

    upstream.py --name canary              # binds 127.0.0.1:0, prints "port N" on stdout

    GET /__mode?set=ok|fail|slow[&ms=400]  switch (answers {"at": wall time of the switch})
    GET /__mode?set=down                   the process exits 50 ms later, as a crashed release:
                                           its port refuses connections from then on
    GET /__stats                           {"requests", "by_mode", "mode", "switched_at", "last_at"}
    GET /healthz                           200, whatever the mode (never part of the judged traffic)
    anything else                          the app: 200 (or 500, or 200 after ms) with
                                           X-Served-By: NAME, counted

The switch is in the app itself rather than in a second process behind the same port, so the
moment it took effect is known exactly (one clock, this machine's, for every process).
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.mode = "ok"
        self.slow_ms = 400
        self.switched_at = None
        self.requests = 0
        self.by_mode = {"ok": 0, "fail": 0, "slow": 0}
        self.last_at = None


def handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: Seawall reuses its upstream connections

        def log_message(self, *_):
            pass

        def reply(self, status, body, ctype="text/plain"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Served-By", state.name)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            url = urlsplit(self.path)
            if url.path == "/__mode":
                q = parse_qs(url.query)
                mode = q.get("set", ["ok"])[0]
                if mode == "down":
                    at = time.time() + 0.05
                    threading.Timer(0.05, os._exit, (0,)).start()
                    return self.reply(200, json.dumps({"at": at}) + "\n", "application/json")
                if mode not in state.by_mode:
                    return self.reply(400, f"mode {mode!r}: ok, fail, slow or down\n")
                with state.lock:
                    state.mode = mode
                    state.slow_ms = int(q.get("ms", [state.slow_ms])[0])
                    state.switched_at = time.time()
                    at = state.switched_at
                return self.reply(200, json.dumps({"at": at}) + "\n", "application/json")
            if url.path == "/__stats":
                with state.lock:
                    s = {
                        "name": state.name,
                        "requests": state.requests,
                        "by_mode": dict(state.by_mode),
                        "mode": state.mode,
                        "switched_at": state.switched_at,
                        "last_at": state.last_at,
                    }
                return self.reply(200, json.dumps(s) + "\n", "application/json")
            if url.path == "/healthz":
                return self.reply(200, "ok\n")
            with state.lock:
                mode, slow_ms = state.mode, state.slow_ms
                state.requests += 1
                state.by_mode[mode] += 1
                state.last_at = time.time()
            if mode == "fail":
                return self.reply(500, f"{state.name} failing\n")
            if mode == "slow":
                time.sleep(slow_ms / 1000)
            self.reply(200, f"{state.name}\n")

        do_POST = do_GET

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), handler(State(a.name)))
    server.daemon_threads = True
    server.request_queue_size = 256
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
