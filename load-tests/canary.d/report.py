#!/usr/bin/env python3
"""The report of one load-tests/canary variant, from what the client saw (load.py's answers), what
Seawall says (/-/config, /metrics, its log, its access log) and what each upstream counted.
Prints the figures and the targets; exit 0 when every target is met, 3 when one is missed.

Times are seconds after the canary started to misbehave (the switch), all on this machine's
wall clock, which every process here shares.
"""

import argparse
import csv
import json
import re
import sys
from datetime import datetime, timezone


def ts(s):
    """An RFC 3339 UTC timestamp (jiff's, or tracing's) to epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", s)
    if not m:
        return None
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return base.timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)


def metric(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    p = argparse.ArgumentParser()
    for k in ("variant", "answers", "meta", "config", "metrics", "log", "access_log",
              "stable_stats", "canary_stats"):
        p.add_argument("--" + k.replace("_", "-"), required=True)
    p.add_argument("--route", default="signup")
    p.add_argument("--weight", type=float, required=True)
    p.add_argument("--window-s", type=float, required=True)
    p.add_argument("--bad-windows", type=int, required=True)
    p.add_argument("--max-error-rate", type=float, required=True)
    p.add_argument("--max-p99-ms", type=float, required=True)
    a = p.parse_args()

    meta = json.load(open(a.meta))
    cfg = json.load(open(a.config))
    metrics = open(a.metrics).read()
    log = open(a.log).read().splitlines()
    stable_up, canary_up = json.load(open(a.stable_stats)), json.load(open(a.canary_stats))
    rows = []
    for due, lag, status, side, lat, client in csv.reader(open(a.answers)):
        rows.append((float(due), float(lag), int(status), side, float(lat), int(client)))
    canary = next((c for c in cfg.get("canaries", []) if c["route"] == a.route), None)
    failing = a.variant != "healthy"
    t0 = meta["t0"]
    flip = meta.get("flipped_at")
    if failing and flip is None:
        print(f"the switch of the canary failed: {meta.get('flip_error')}", file=sys.stderr)
        return 1
    origin = flip if failing else t0
    rel = lambda t: t - origin  # noqa: E731
    at = lambda t: f"{rel(t):+.2f} s"  # noqa: E731

    targets = []

    def target(ok, text):
        targets.append(("met   " if ok else "MISSED") + " " + text)

    err = lambda r: r[2] == 0 or r[2] >= 500  # noqa: E731
    slow = lambda r: r[4] > a.max_p99_ms  # noqa: E731
    on = lambda side: [r for r in rows if r[3] == side]  # noqa: E731
    before = [r for r in rows if not failing or r[0] < flip]
    before_s = (flip - t0) if failing else meta["duration"]
    canary_before = sum(r[3] == "canary" for r in before)
    canary_rate = canary_before / before_s if before_s > 0 else 0.0
    share = 100.0 * canary_before / max(1, len(before))
    lags = sorted(r[1] for r in rows)
    lag99 = lags[int(0.99 * (len(lags) - 1))] if lags else 0.0

    what = {"fail": "answers 500", "slow": "answers slowly", "down": "goes down (exits)",
            "healthy": "stays healthy"}[a.variant]
    when = f" from t = {flip - t0:.1f} s" if failing else f" for {meta['duration']:.0f} s"
    print(f"-- {a.variant}: the canary {what}{when}")
    print(f"requests: {len(rows)} answered of {int(meta['rate'] * meta['duration'])} due "
          f"({meta['rate']:.0f} r/s, {meta['clients']} clients); send lag p99 {lag99:.1f} ms, "
          f"max {lags[-1] if lags else 0:.1f} ms")
    print(f"canary share {'before the switch ' if failing else ''}{share:.1f}% of requests "
          f"(weight {a.weight:g}), {canary_rate:.1f} r/s")
    if lag99 > 50:
        print(f"  WARNING: the generator itself sent late (send lag p99 {lag99:.0f} ms): the "
              f"machine was busy, latencies (Seawall's included) are not clean")

    state = canary["state"] if canary else "absent"
    rb = canary.get("rolled_back") if canary else None
    rb_at = ts(rb["at"]) if rb else None
    warn = next((l for l in log if "canary rolled back" in l), None)
    warn_at = ts(warn.split()[0]) if warn else None
    weight_now = metric(metrics, "seawall_canary_weight", route=a.route)
    judged = metric(metrics, "seawall_canary_rollbacks_total", route=a.route, trigger="judge") or 0
    print(f"Seawall at the end: state {state}, weight_in_force "
          f"{canary['weight_in_force'] if canary else '?'}, windows judged "
          f"{canary['windows_closed'] if canary else '?'}, seawall_canary_weight {weight_now}, "
          f"seawall_canary_rollbacks_total{{trigger=\"judge\"}} {judged:g}")
    last_w = canary.get("last_window") if canary else None
    if last_w:
        s, c = last_w["stable"], last_w["canary"]
        p99 = lambda x: "-" if x["p99_ms"] is None else f"~{x['p99_ms']:.0f} ms"  # noqa: E731
        print(f"last window judged ({last_w['verdict']}): canary {c['requests']} requests, "
              f"{c['errors']} errors, p99 {p99(c)}; stable {s['requests']} requests, "
              f"{s['errors']} errors, p99 {p99(s)}")

    stable_errors = sum(err(r) for r in on("stable"))
    unanswered = sum(r[2] == 0 for r in rows)
    if not failing:
        errors = sum(err(r) for r in rows)
        print(f"errors users saw: {errors} ({unanswered} without an answer); canary answers "
              f"slower than max_p99 {a.max_p99_ms:g} ms: {sum(slow(r) for r in on('canary'))}")
        target(rb is None and state == "active", f"never rolled back (state {state})")
        target(bool(last_w) and last_w["verdict"] == "good" and canary["windows_closed"] >= 3,
               "at least 3 windows judged, the last one good")
        target(errors == 0, f"no errors ({errors})")
        target(abs(share - a.weight) <= max(3.0, a.weight * 0.35),
               f"canary share {share:.1f}% near the weight {a.weight:g}%")
    else:
        if rb:
            print(f"rolled back ({rb['trigger']}) at {at(rb_at)} by /-/config "
                  f"rolled_back.at; WARN line at "
                  f"{at(warn_at) if warn_at else 'missing'}")
            print(f"  reason: {rb['reason']}")
            bad = [ts(l.split()[0]) for l in log if "canary window bad" in l]
            bad = [t for t in bad if t is not None and t >= flip]
            first = bad[0] if bad else rb_at
            if rb_at < flip:
                print("  BEFORE the switch, while the canary was healthy: see the reason")
            else:
                print(f"  the first bad window closed at {at(first)} (the switch fell "
                      f"{rel(first):.2f} s before that close; windows of {a.window_s:g} s, "
                      f"closed by a 1 s tick), {a.bad_windows} bad windows in a row roll back")
        else:
            print("NOT rolled back")
        to_canary = on("canary")
        after_flip = [r for r in to_canary if r[0] >= flip]
        last_sent = max((r[0] + r[1] / 1000 for r in to_canary), default=None)
        cutoff = rb_at if rb_at else float("inf")
        late = [r for r in to_canary if r[0] + r[1] / 1000 > cutoff + 0.05]
        if last_sent is not None:
            print(f"client's view: last request answered by the canary sent at "
                  f"{at(last_sent)}; {len(late)} sent after the rollback")
        failed = [r[0] + r[1] / 1000 for r in rows if err(r) and r[0] >= flip]
        if failed:
            print(f"client's view: last failed answer sent at {at(max(failed))}")
        # Seawall's own record of each request routed to the canary: its start and end.
        acc_last, acc_late = None, 0
        for line in open(a.access_log):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("upstream") == "canary":
                end = ts(j["ts"])
                acc_last = end if acc_last is None or end > acc_last else acc_last
                if end - j.get("duration_ms", 0) / 1000 > cutoff + 0.05:
                    acc_late += 1
        if acc_last:
            print(f"Seawall's view (access log): last request to the canary ended at "
                  f"{at(acc_last)}; {acc_late} started after the rollback")
        if canary_up:
            print(f"the canary upstream counted {canary_up['requests']} requests "
                  f"({canary_up['by_mode']}), last at "
                  f"{at(canary_up['last_at']) if canary_up['last_at'] else '-'}; "
                  f"stable {stable_up['requests']}")
        if a.variant in ("fail", "down"):
            spent = sum(err(r) for r in rows if r[0] >= flip)
            kind = "failed answers (5xx)"
        else:
            spent = sum(slow(r) for r in after_flip)
            kind = f"answers slower than max_p99 {a.max_p99_ms:g} ms"
        exposure = a.bad_windows * a.window_s + 1.0
        allowed = canary_rate * exposure
        print(f"error budget spent: {spent} {kind} after the switch, "
              f"{100.0 * spent / max(1, len(rows)):.2f}% of the run's answers "
              f"({len(after_flip)} requests reached the canary after the switch; "
              f"{stable_errors} errors on stable)")
        print(f"the thresholds allow at most ~{allowed:.0f}: the canary's {canary_rate:.1f} r/s "
              f"x ({a.bad_windows} windows x {a.window_s:g} s + 1 s tick); a canary under "
              f"max_error_rate {a.max_error_rate:g} ({a.max_error_rate * canary_rate:.1f} "
              f"errors/s) is never rolled back by the threshold")
        target(rb is not None and rb["trigger"] == "judge", "rolled back by the judge")
        target(rb_at is None or rb_at >= flip, "not rolled back before the switch (while healthy)")
        if rb and rb_at >= flip:
            bound = exposure + 1.0
            target(rel(rb_at) <= bound, f"rolled back {rel(rb_at):.2f} s after the switch, "
                   f"within {a.bad_windows} windows + ticks ({bound:g} s)")
        target(not late and not acc_late, f"no request sent to the canary after the rollback "
               f"(client: {len(late)}, access log: {acc_late})")
        target(weight_now == 0, "seawall_canary_weight is 0")
        target(warn is not None, "a WARN line says why")
        target(spent <= allowed * 1.1 + 5, f"budget spent {spent} within what the thresholds "
               f"allow (~{allowed:.0f})")
        target(stable_errors == 0, f"no errors on the stable side ({stable_errors})")
    print("targets:")
    for t in targets:
        print("  " + t)
    return 0 if all(t.startswith("met") for t in targets) else 3


if __name__ == "__main__":
    sys.exit(main())
