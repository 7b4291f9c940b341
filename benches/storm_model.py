#!/usr/bin/env python3
"""An event model of the boot storm (benches/storm.py), for choosing the throttling backoff without a
four-minute run per candidate: N agents start over 1.5 s; each sends DescribeInstances, then
ModifyInstanceMetadataOptions, then polls once 2.0 to 2.5 s later (the change applies after 2 s); every call
spends a token from EC2's documented per-account buckets (describe 100 burst / 20 per s, modify 100 / 5) or is
throttled and retried after a full-jitter wait, uniform in [0, min(cap, base * 2^attempt)). Prints EC2 calls per
instance and the last change's time against the floor (N - 100) / 5 s, averaged over seeds. It models neither
process start-up nor network time. benches/storm.py's report runs it for the backoffs it compares, beside
what was measured."""
import heapq
import random


def run(n, base, cap, seed=1, base_d=None):
    random.seed(seed)
    base_d = base_d or base
    tok = {'d': [100.0, 20.0, 0.0], 'm': [100.0, 5.0, 0.0]}
    def take(k, t):
        b = tok[k]; b[0] = min(100.0, b[0] + (t - b[2]) * b[1]); b[2] = t
        if b[0] >= 1: b[0] -= 1; return True
        return False
    ev = []
    for i in range(n):
        heapq.heappush(ev, (random.uniform(0, 1.5), i, 'd0', 0))
    calls = 0; done = {}; last = 0
    while ev:
        t, i, st, att = heapq.heappop(ev)
        calls += 1
        kind = 'm' if st == 'm' else 'd'
        if take(kind, t):
            if st == 'd0': heapq.heappush(ev, (t + 0.01, i, 'm', 0))
            elif st == 'm': heapq.heappush(ev, (t + random.uniform(2.0, 2.5), i, 'p', 0)); done[i] = t + 2
            else: last = max(last, t)
        else:
            b = base_d if kind == 'd' else base
            heapq.heappush(ev, (t + random.uniform(0, min(cap, b * 2 ** att)), i, st, att + 1))
    floor = (n - 100) / 5
    return calls / n, last, last / floor if floor else 0


def mean(n, base, cap, seeds=5):
    """Calls per instance and last applied / floor, averaged over `seeds` seeds."""
    r = [run(n, base, cap, s) for s in range(seeds)]
    return sum(x[0] for x in r) / seeds, sum(x[2] for x in r) / seeds


if __name__ == "__main__":
    for base, cap, bd in [(2, 32, None), (4, 32, None), (8, 32, None), (10, 30, None), (8, 64, None), (8, 32, 16),
                          (16, 32, None), (4, 64, None)]:
        r = [run(500, base, cap, s, bd) for s in range(5)]
        print(base, cap, bd, "calls/inst %.2f" % (sum(x[0] for x in r) / 5), "last %.1f" % (sum(x[1] for x in r) / 5),
              "ratio %.2f" % (sum(x[2] for x in r) / 5))
    print("---")
    for base, cap in [(4, 32), (8, 32), (12, 32), (16, 32), (16, 48), (24, 32)]:
        out = []
        for n in (150, 300, 500):
            r = [run(n, base, cap, s) for s in range(4)]
            out.append("N=%d %.2f calls %.1fs %.2fx" % (n, sum(x[0] for x in r) / 4, sum(x[1] for x in r) / 4,
                                                       sum(x[2] for x in r) / 4))
        print(base, cap, " | ".join(out))
