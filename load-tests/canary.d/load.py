#!/usr/bin/env python3
"""The steady load of load-tests/canary: GET at a constant rate for a bounded time, each request
from one of --clients client addresses (X-Forwarded-For; Seawall trusts 127.0.0.1), each answer
recorded with its status, the side that served it (X-Served-By) and its latency. At --flip-at
seconds it calls --flip-url once (the canary upstream's /__mode) and records when the switch took
effect.

Open loop: request i is due at t0 + i/rate whatever became of the earlier ones, and its latency
is counted from that due time, so a stall shows up as latency rather than as fewer requests
(no coordinated omission). A pool of --workers threads, each with its own keep-alive connection,
sends them; the send lag (how late a request left) is recorded too, so a generator that could
not keep up is visible in the report. Bounded: rate x duration requests, --timeout each.

Output (--out): one CSV line per request: due (epoch s), lag_ms, status (0: no answer),
served_by, latency_ms, client. --meta: a JSON object with t0, the flip's time and the settings.
"""

import argparse
import http.client
import json
import queue
import random
import threading
import time
import urllib.request
from urllib.parse import urlsplit


def client_ip(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True, help="http://127.0.0.1:PORT/path")
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--duration", type=float, default=40)
    p.add_argument("--flip-at", type=float, default=None)
    p.add_argument("--flip-url", default=None)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--meta", required=True)
    a = p.parse_args()

    url = urlsplit(a.target)
    path = url.path or "/"
    rng = random.Random(a.seed)
    n = int(a.rate * a.duration)
    clients = [rng.randrange(1, a.clients + 1) for _ in range(n)]
    due_q = queue.Queue()
    rows = [None] * n
    meta = {"rate": a.rate, "duration": a.duration, "clients": a.clients, "flip_at": a.flip_at}

    def worker():
        conn = None
        while True:
            item = due_q.get()
            if item is None:
                return
            i, due = item
            sent = time.time()
            status, served_by = 0, ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=a.timeout)
                conn.request("GET", path, headers={"X-Forwarded-For": client_ip(clients[i])})
                r = conn.getresponse()
                r.read()
                status, served_by = r.status, r.getheader("X-Served-By", "")
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            done = time.time()
            rows[i] = (due, (sent - due) * 1000, status, served_by, (done - due) * 1000, clients[i])

    def flip():
        try:
            with urllib.request.urlopen(a.flip_url, timeout=5) as r:
                meta["flipped_at"] = json.load(r)["at"]
        except (OSError, ValueError, KeyError) as e:
            meta["flip_error"] = str(e)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.workers)]
    for t in threads:
        t.start()
    t0_mono, t0 = time.monotonic(), time.time()
    meta["t0"] = t0
    flipper = None
    for i in range(n):
        off = i / a.rate
        if flipper is None and a.flip_url and a.flip_at is not None and off >= a.flip_at:
            flipper = threading.Thread(target=flip, daemon=True)
            flipper.start()
        wait = t0_mono + off - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        due_q.put((i, t0 + off))
    for _ in threads:
        due_q.put(None)
    for t in threads:
        t.join(a.timeout + 5)
    if flipper is not None:
        flipper.join(6)
    with open(a.out, "w") as f:
        for r in rows:
            if r is not None:
                f.write("%.6f,%.3f,%d,%s,%.3f,%d\n" % r)
    meta["unfinished"] = sum(r is None for r in rows)
    with open(a.meta, "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    main()
