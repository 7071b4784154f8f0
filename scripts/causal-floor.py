#!/usr/bin/env python3
"""What a causal autoscaler could at best buy on a log: the "causal floor".

No policy knows of a mailing before its send arrives, so the replicas a new
campaign needs in its first `startup` seconds can only come from slack held
in advance. This script measures that floor for a log of floodgate events
(one target: every click counts), with the backtest's capacity model:

- the **oracle**: each minute ceil(requests / 60 / capacity) replicas
  (within min/max), as in `floodgate backtest --sweep`;
- the **clairvoyant-on-sends** policy: each minute exactly the replicas the
  clicks of the campaigns whose send is at least `startup` before the
  minute's middle need -- the whole future of every started campaign known
  without error, nothing of younger ones -- times (1 + h), for a range of
  uniform headrooms h; and with, in addition, a slack of `a` replicas per
  send seen in the hour before (a slack that follows the rate of sends).

Its overload at a given cost is below what any forecast of started
campaigns can reach (a forecast has errors; this one has none), so the
cost at which it first reaches an overload target is a reference for what
a causal policy must pay there. Requests are counted per minute: clicks x
requests_per_click, no baseline.

With `--backtest FILE` (the `--json` of `floodgate backtest` on the same
log) each target is measured on its own, with its requests per minute and
capacity per replica from that file, and the sums over targets printed;
otherwise every click is one target's, with the capacity model of the
flags.

usage: scripts/causal-floor.py EVENTS.ndjson [--backtest BT.json] [--startup 90]
           [--requests-per-click 135] [--capacity 50] [--min 2] [--max 200]
"""
import argparse
import bisect
import collections
import json
import math
from datetime import datetime


def ts_ms(v):
    if isinstance(v, (int, float)):
        return int(v)
    return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("events")
    ap.add_argument("--backtest", help="floodgate backtest --json of the same log: per-target requests and capacity")
    ap.add_argument("--startup", type=float, default=90.0, help="replica start-up, seconds (90)")
    ap.add_argument("--requests-per-click", type=float, default=135.0, help="(135, the Twitter backtest's)")
    ap.add_argument("--capacity", type=float, default=50.0, help="requests/s per replica (50)")
    ap.add_argument("--min", type=int, default=2, help="min replicas (2)")
    ap.add_argument("--max", type=int, default=200, help="max replicas (200)")
    a = ap.parse_args()

    bt = None
    if a.backtest:
        with open(a.backtest) as f:
            bt = json.load(f)
    t0 = bt["start_ms"] if bt else None
    sends, target_of = {}, {}
    clicks = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
    with open(a.events) as f:
        for n, line in enumerate(f, 1):
            try:
                e = json.loads(line)
                ts = ts_ms(e["ts"])
                campaign = e["campaign"]
            except (ValueError, KeyError, TypeError) as err:
                raise SystemExit(f"{a.events}:{n}: not an event with a campaign and a ts ({err})")
            if t0 is None:
                t0 = ts - ts % 60000
            if e.get("type") == "send":
                sends.setdefault(campaign, ts)
                target_of.setdefault(campaign, e.get("target", ""))
            elif e.get("type") == "click":
                t = e.get("target") or target_of.get(campaign, "") if bt else ""
                clicks[t][(ts - t0) // 60000][campaign] += 1
    targets = {t["target"]: t for t in bt["targets"]} if bt else {"": None}
    sums = collections.Counter()
    for name, bt_target in targets.items():
        if bt_target:
            rpm = bt_target["requests_per_minute"]
            cap = bt_target["capacity_per_replica"]
        else:
            minutes = max(clicks[name]) + 1
            rpm = [sum(clicks[name][m].values()) * a.requests_per_click for m in range(minutes)]
            cap = a.capacity
        measure(a, name, rpm, cap, clicks[name], sends, t0, sums)
    if len(targets) > 1:
        print(f"\nall targets: oracle {sums['oracle']:.0f} replica-minutes")
        for key in sorted(k for k in sums if k != "oracle" and not k.startswith("req")):
            label, _, what = key.partition("|")
            if what == "over":
                over = 100 * sums[key] / sums["req"]
                cost = sums[label + "|cost"] / sums["oracle"]
                print(f"  {label:<22} {over:7.3f} %  {cost:5.2f}x")


def measure(a, name, total, cap, clicks, sends, t0, sums):
    minutes = len(total)
    known = [0.0] * minutes
    for m in range(minutes):
        mid = t0 + m * 60000 + 30000
        n_all = sum(clicks[m].values()) if m in clicks else 0
        if n_all == 0:
            known[m] = total[m]
            continue
        n_known = sum(n for c, n in clicks[m].items() if sends.get(c, mid) <= mid - a.startup * 1000)
        known[m] = total[m] * n_known / n_all
    req = sum(total)

    def replicas(x):
        return min(a.max, max(a.min, math.ceil(x)))

    oracle = sum(replicas(x / 60 / cap) for x in total)
    sums["oracle"] += oracle
    sums["req"] += req
    print(f"{name or 'all clicks'}: start-up {a.startup:g} s, {minutes} minutes, {req:.0f} requests, oracle {oracle} replica-minutes;")
    print(f"  requests of campaigns younger than the start-up: {100 * (1 - sum(known) / max(req, 1)):.2f} %")

    def run(label, slack):
        cost = over = 0.0
        for m in range(minutes):
            n = replicas(slack(m))
            cost += n
            over += max(0.0, total[m] - n * cap * 60)
        sums[label + "|cost"] += cost
        sums[label + "|over"] += over
        return 100 * over / max(req, 1), cost / max(oracle, 1)

    print("  clairvoyant on sends, uniform headroom h: over capacity %, cost / oracle")
    for h in [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0]:
        o, c = run(f"h {h}", lambda m: known[m] * (1 + h) / 60 / cap)
        print(f"    h {h:<4}  {o:7.3f} %  {c:5.2f}x")
    st = sorted(sends.values())

    def sends_last_hour(m):
        edge = t0 + m * 60000 + 30000 - a.startup * 1000
        return bisect.bisect_right(st, edge) - bisect.bisect_right(st, edge - 3600000)

    recent = [sends_last_hour(m) for m in range(minutes)]
    print("  clairvoyant on sends, headroom h + a replicas per send of the last hour")
    for h in [0.1, 0.2, 0.3]:
        for per_send in [0.025, 0.05, 0.1]:
            o, c = run(f"h {h} a {per_send}", lambda m: known[m] * (1 + h) / 60 / cap + per_send * recent[m])
            print(f"    h {h:<4} a {per_send:<5}  {o:7.3f} %  {c:5.2f}x")


if __name__ == "__main__":
    main()
