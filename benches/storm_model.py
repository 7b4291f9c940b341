#!/usr/bin/env python3
"""An event model of the boot storms (benches/storm.py, and sensing.py's storm), for choosing the throttling
backoff without a four-minute run per candidate: N agents start over 1.5 s; without sensing each sends
DescribeInstances, then ModifyInstanceMetadataOptions, then polls once 2.0 to 2.5 s later (the change applies
after 2 s); with sensing it sends only the modify, and sees the change applied on its own IMDS 2 s later. Every call
spends a token from EC2's documented per-account buckets (describe 100 burst / 20 per s, modify 100 / 5) or is
throttled and retried after a jittered wait in the top `1 - rest` share of the window min(cap, base * 2^attempt)
(`rest` 0: full jitter; 1/2: equal jitter, the agent's). Prints EC2 calls per instance and the last change's time
against the floor (N - 100) / 5 s, averaged over seeds. It models neither process start-up nor network time.
benches/storm.py's and sensing.py's reports run it for the backoffs they compare, beside what was measured."""
import heapq
import random


def run(n, base, cap, seed=1, base_d=None, rest=0.0, sensing=False):
    random.seed(seed)
    base_d = base_d or base
    tok = {'d': [100.0, 20.0, 0.0], 'm': [100.0, 5.0, 0.0]}
    def take(k, t):
        b = tok[k]; b[0] = min(100.0, b[0] + (t - b[2]) * b[1]); b[2] = t
        if b[0] >= 1: b[0] -= 1; return True
        return False
    ev = []
    for i in range(n):
        heapq.heappush(ev, (random.uniform(0, 1.5), i, 'm' if sensing else 'd0', 0))
    calls = 0; done = {}; last = 0
    while ev:
        t, i, st, att = heapq.heappop(ev)
        calls += 1
        kind = 'm' if st == 'm' else 'd'
        if take(kind, t):
            if st == 'd0': heapq.heappush(ev, (t + 0.01, i, 'm', 0))
            elif st == 'm' and sensing: last = max(last, t + 2)
            elif st == 'm': heapq.heappush(ev, (t + random.uniform(2.0, 2.5), i, 'p', 0)); done[i] = t + 2
            else: last = max(last, t)
        else:
            b = base_d if kind == 'd' else base
            window = min(cap, b * 2 ** att)
            heapq.heappush(ev, (t + window * (rest + (1 - rest) * random.random()), i, st, att + 1))
    floor = (n - 100) / 5
    return calls / n, last, last / floor if floor else 0


def mean(n, base, cap, seeds=5, rest=0.0, sensing=False):
    """Calls per instance and last applied / floor, averaged over `seeds` seeds."""
    r = [run(n, base, cap, s, rest=rest, sensing=sensing) for s in range(seeds)]
    return sum(x[0] for x in r) / seeds, sum(x[2] for x in r) / seeds


# The backoffs the reports compare: the agent's (equal jitter, windows of 10, 20 and then 24 s) and the full
# jitter it replaced (windows of 8, 16 and then 32 s): (label, base, cap, rest).
CURRENT = ("equal jitter, windows 10/20/24 s (the agent's)", 10, 24, 0.5)
BEFORE = ("full jitter, windows 8/16/32 s (before)", 8, 32, 0.0)


if __name__ == "__main__":
    for sensing in (False, True):
        print("with sensing" if sensing else "without sensing")
        for label, base, cap, rest in [BEFORE, CURRENT, ("full jitter 2/32", 2, 32, 0.0),
                                       ("equal jitter 12/32", 12, 32, 0.5), ("equal jitter 20/20", 20, 20, 0.5)]:
            out = []
            for n in (150, 300, 500, 1000):
                c, r = mean(n, base, cap, 4, rest, sensing)
                out.append("N=%d %.2f calls %.2fx" % (n, c, r))
            print("  %-48s" % label, " | ".join(out))
