#!/usr/bin/env python3
"""Org-wide at organization scale: one `imds-hop-limit fleet apply --organization` process (the static x86_64
release binary) against a simulated organization of 50 accounts (the management account and 49 members), each
with 200 instances in each of 4 regions, half of them at hop limit 1 (to change) and half at 2, with EC2's
documented buckets per account and region. Not time-scaled: EC2 applies each change 2 s after taking it.

The floor is what EC2 allows whatever the client does, accounts side by side at the bound (`--accounts-at-once`):
each account's slowest region needs (changes - burst) / rate seconds of its ModifyInstanceMetadataOptions bucket
(here 0: 100 changes fit the burst of 100) and then EC2's 2 s to apply them, and the accounts go
ceil(accounts / bound) at a time. Measured: wall time against that floor, peak RSS (GNU time's count of the process), EC2 and STS calls by action.

Two shapes by default (`--shapes`): 50 x 4 x 200 (about 100 changes per account and region: the Modify burst) at
each bound of `--at-once`, and 50 x 4 x 20 (about 10 changes per account and region: most of an account's time is
entering it and waiting for EC2's 2 s, not sending) at the default bound.

Measures into benches/org.json; `--report` renders the "Organizations" section of BENCHMARKS.md from it. Talks
only to the simulator on loopback (benches/run puts it in a network namespace with only loopback); bounded in
count (at most 100 accounts x 4 regions x 500 instances) and time (a hard stop)."""

import argparse
import json
import math
import os
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "org.json")
sys.path.insert(0, HERE)
from fleet import fleet_env, run_measured  # noqa: E402
from storm import Simulator, machine, publish, save  # noqa: E402

REGIONS = ["us-west-2", "us-east-1", "eu-west-1", "ap-southeast-2"]
PENDING_S = 2.0


def measure(agent, simulator, accounts, per_region, at_once, hard_stop_s):
    # Each account holds the simulator's own instance (us-west-2, to change) and `per_region` in each region.
    sim = Simulator(simulator, "--organization", str(accounts - 1), "--fleet-in", f"{','.join(REGIONS)}:{per_region}",
                    "--documented-buckets", "--pending-ms", str(int(PENDING_S * 1000)))
    try:
        env = {**fleet_env(sim)}
        for k in ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_ORGANIZATIONS"):
            env[k] = sim.env.get(k, env["AWS_ENDPOINT_URL_EC2"])
        sim.ask("reset-log")
        args = [agent, "fleet", "apply", "--organization", "--role-name", "imds-hop-limit",
                "--region", ",".join(REGIONS), "--accounts-at-once", str(at_once), "--output", "json", "-q"]
        out_path = f"/tmp/org-bench-{os.getpid()}.json"
        wall, code, peak = run_measured(args, env, out_path, hard_stop_s)
        doc = json.loads(open(out_path).read() or "{}")
        os.unlink(out_path)
        calls = Counter()
        for r in sim.requests():
            if r[1] == "ec2":
                calls[f"{r[4]} {r[5]}"] += 1
        per_account_region = per_region // 2 + 1  # the fleet's half at hop limit 1, and the simulator's own instance
        modify_floor = max(per_account_region - 100, 0) / 5
        floor = math.ceil(accounts / at_once) * (modify_floor + PENDING_S)
        applied_at_2 = int(sim.ask("applied-count 2"))
    finally:
        sim.close()
    summary = doc.get("summary", {})
    return {"accounts": accounts, "regions": len(REGIONS), "per_region": per_region, "at_once": at_once,
            "wall_s": round(wall, 2), "exit": code, "peak_rss_mib": peak, "floor_s": round(floor, 2),
            "ratio": round(wall / floor, 3), "summary": summary,
            "accounts_reported": len(doc.get("accounts", [])), "instances_at_2": applied_at_2,
            "calls": dict(sorted(calls.items()))}


def report(results):
    r = results["runs"][0]
    s = r["summary"]
    total = r["accounts"] * (r["regions"] * r["per_region"] + 1)
    lines = ["## Organizations", "",
             f"From `bash benches/run --org` ({results['date']}; {results['machine']}). One `imds-hop-limit fleet apply "
             f"--organization` process (the static x86_64 release binary) against a simulated organization of "
             f"{r['accounts']} accounts (the management account, worked with its own credentials, and "
             f"{r['accounts'] - 1} members, each entered through sts:AssumeRole), each with {r['per_region']} instances "
             f"in each of {r['regions']} regions, half at hop limit 1, plus the simulator's own instance "
             f"({total:,} instances in all), EC2's documented buckets per account and region, changes applied "
             f"{PENDING_S:.0f} s after EC2 takes them; not time-scaled. The floor is what EC2 allows whatever the "
             "client does: each account's slowest region needs (changes - burst) / rate seconds of its Modify bucket "
             f"(0 in both shapes: {r['per_region'] // 2 + 1} changes fit the burst of 100) and then EC2's {PENDING_S:.0f} s to "
             f"apply them, and the accounts go {r['at_once']} at a time (`--accounts-at-once`, the default). That "
             "floor holds an account's turn until its changes are applied, as the runner did before issue 35; the "
             "runner now gives an account's turn to the next one once its changes are sent, and verifies them beside "
             "the next accounts (at most four times the bound alive), so a run can end below it: what bounds it "
             "then is the one thread's CPU (signing and answering 20,000 calls, with the simulator on the same 2 "
             "cores) and the sockets, 16 calls in flight per region.", "",
             "| accounts x regions x instances | accounts at once | exit | wall | floor | / floor | changed | applied | accounts reported | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in results["runs"]:
        lines.append(f"| {x['accounts']} x {x['regions']} x {x['per_region']} | {x['at_once']} | {x['exit']} | {x['wall_s']} s | "
                     f"{x['floor_s']} s | {x['ratio']:.2f}x | {x['summary'].get('changed')} | {x['summary'].get('applied')} | "
                     f"{x['accounts_reported']} | {x['peak_rss_mib']} MiB |")
    lines += ["", "- calls by action and status (the default bound): " + ", ".join(f"{k}: {v}" for k, v in r["calls"].items()), ""]
    ok = lambda met: "yes" if met else "**no**"
    lines += ["### Organizations targets", "", "| target | measured | met |", "|---|---|---|",
              f"| {r['accounts']} accounts x {r['regions']} regions x {r['per_region']}: within 1.2x the floor | "
              f"{r['ratio']:.2f}x | {ok(r['ratio'] <= 1.2)} |",
              f"| every instance to change changed and applied, exit 0 | {s.get('applied')} applied of "
              f"{s.get('to_change')} to change, exit {r['exit']} | "
              f"{ok(r['exit'] == 0 and s.get('applied') == s.get('to_change'))} |",
              f"| one AssumeRole per member account | {r['calls'].get('AssumeRole 200', 0)} for {r['accounts'] - 1} | "
              f"{ok(r['calls'].get('AssumeRole 200', 0) == r['accounts'] - 1)} |",
              f"| peak RSS at most 64 MiB at the default bound | {r['peak_rss_mib']} MiB | {ok(r['peak_rss_mib'] <= 64)} |"]
    for x in results["runs"][1:]:
        if (x["accounts"], x["per_region"]) == (r["accounts"], r["per_region"]) or x["at_once"] != r["at_once"]:
            continue
        xs = x["summary"]
        lines += [f"| {x['accounts']} accounts x {x['regions']} regions x {x['per_region']} (another shape: about "
                  f"{x['per_region'] // 2} changes per account and region): within 1.2x the floor, every change applied, "
                  f"exit 0 | {x['ratio']:.2f}x; {xs.get('applied')} applied of {xs.get('to_change')}, exit {x['exit']} | "
                  f"{ok(x['ratio'] <= 1.2 and x['exit'] == 0 and xs.get('applied') == xs.get('to_change'))} |"]
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent")
    ap.add_argument("--simulator")
    ap.add_argument("--shapes", default="50x200,50x20",
                    help="ACCOUNTSxINSTANCES_PER_REGION, several: the first at every bound, the others at the default")
    ap.add_argument("--at-once", default="4,16", help="the bounds to measure, the default first")
    ap.add_argument("--report", action="store_true", help="only render BENCHMARKS.md's section from org.json")
    args = ap.parse_args()
    if not args.report:
        shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
        if not all(2 <= accounts <= 100 and 2 <= per_region <= 500 for accounts, per_region in shapes):
            sys.exit("org.py: 2 to 100 accounts, 2 to 500 instances a region")
        bounds = [int(x) for x in args.at_once.split(",")]
        runs = [(*shapes[0], b) for b in bounds] + [(*shape, bounds[0]) for shape in shapes[1:]]
        results = {**machine(), "runs": []}
        for accounts, per_region, at_once in runs:
            results["runs"].append(measure(args.agent, args.simulator, accounts, per_region, at_once, 900))
            print(json.dumps(results["runs"][-1], indent=1), file=sys.stderr)
        save(RESULTS, results)
    publish(RESULTS, "## Organizations", report)


if __name__ == "__main__":
    main()
