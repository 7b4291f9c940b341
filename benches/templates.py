#!/usr/bin/env python3
"""Launch templates at account scale (issue 36): one `imds-hop-limit templates` process (the static x86_64 release
binary) against a simulated account of 1,000 launch templates in one region, every other one at hop limit 1
(HttpTokens required, an image, user data and a root volume from a snapshot, as EC2 documents a template's
inheritance). Measured: `templates check`, `templates apply`, and `templates apply` again: wall time, peak RSS,
EC2 calls by action. Not throttled: the simulator's buckets are off, so the figures are the tool's own cost
(EC2's budget for the mutating calls, shared with the account, bounds a real run).

Measures into benches/templates.json; `--report` renders the "Launch templates" section of BENCHMARKS.md from it.
Talks only to the simulator on loopback (benches/run puts it in a network namespace with only loopback); bounded
in count (at most 5,000 templates) and time (a hard stop)."""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "templates.json")
sys.path.insert(0, HERE)
from fleet import fleet_env, run_child_rss  # noqa: E402
from storm import Simulator, machine, publish, save  # noqa: E402


def run_once(agent, sim, args, hard_stop_s):
    env = {**fleet_env(sim), "AWS_ENDPOINT_URL_AUTO_SCALING": sim.env.get("AWS_ENDPOINT_URL_AUTO_SCALING",
                                                                         sim.env["AWS_ENDPOINT_URL_EC2"])}
    r = run_child_rss(agent, sim, args, hard_stop_s, command="templates", env=env)
    r["summary"].pop("region_failures", None)
    r["summary"].pop("account_failures", None)
    return r


def measure(agent, simulator, n):
    sim = Simulator(simulator, "--templates", str(n))
    try:
        runs = [run_once(agent, sim, [act], 600) for act in ("check", "apply", "apply")]
    finally:
        sim.close()
    return {"templates": n, "runs": runs}


def report(results):
    m = results["measured"]
    n = m["templates"]
    lines = ["## Launch templates", "",
             f"From `bash benches/run --templates` ({results['date']}; {results['machine']}). One `imds-hop-limit "
             f"templates` process (the static x86_64 release binary) against a simulated account of {n:,} launch "
             f"templates in one region, every other one at hop limit 1 (so {n // 2:,} to change), each with an "
             "image, user data and a root volume from a snapshot. The simulator's buckets are off: these are the "
             "tool's own calls and time, not EC2's budget for them.", "",
             "| run | exit | wall | peak RSS | templates | compliant | changed | EC2 calls by action |", "|---|---|---|---|---|---|---|---|"]
    for name, r in zip(("check", "apply", "apply again"), m["runs"]):
        s = r["summary"]
        calls = ", ".join(f"{k}: {v}" for k, v in r["calls"].items())
        lines.append(f"| {name} | {r['exit']} | {r['wall_s']} s | {r['peak_rss_mib']} MiB | {s.get('templates')} | "
                     f"{s.get('compliant')} | {s.get('changed')} | {calls} |")
    check, apply, again = m["runs"]
    pages = -(-n // 200)
    reads = lambda r: r["calls"].get("DescribeLaunchTemplateVersions 200", 0)
    writes = lambda r: sum(v for k, v in r["calls"].items() if k.startswith(("CreateLaunchTemplateVersion", "ModifyLaunchTemplate")))
    ok = lambda met: "yes" if met else "**no**"
    lines += ["", "### Launch templates targets", "", "| target | measured | met |", "|---|---|---|",
              f"| a check reads each default version once, in pages of 200 | {reads(check)} DescribeLaunchTemplateVersions "
              f"for {n:,} templates ({pages} pages) | {ok(reads(check) == pages)} |",
              f"| a change is one CreateLaunchTemplateVersion and one ModifyLaunchTemplate (and one read back) | "
              f"{apply['calls'].get('CreateLaunchTemplateVersion 200', 0)} created, "
              f"{apply['calls'].get('ModifyLaunchTemplate 200', 0)} made default, for {apply['summary'].get('changed')} "
              f"changed | {ok(apply['calls'].get('CreateLaunchTemplateVersion 200', 0) == apply['summary'].get('changed') == apply['calls'].get('ModifyLaunchTemplate 200', 0))} |",
              f"| a second apply writes nothing | {writes(again)} writes, exit {again['exit']} | "
              f"{ok(writes(again) == 0 and again['exit'] == 0)} |", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent")
    ap.add_argument("--simulator")
    ap.add_argument("--templates", type=int, default=1000)
    ap.add_argument("--report", action="store_true", help="only render BENCHMARKS.md's section from templates.json")
    args = ap.parse_args()
    if not args.report:
        if not 2 <= args.templates <= 5000:
            sys.exit("templates.py: 2 to 5,000 templates")
        results = {**machine(), "measured": measure(args.agent, args.simulator, args.templates)}
        print(json.dumps(results["measured"], indent=1), file=sys.stderr)
        save(RESULTS, results)
    publish(RESULTS, "## Launch templates", report)


if __name__ == "__main__":
    main()
