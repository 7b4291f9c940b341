#!/usr/bin/env python3
"""Fleet at account scale: one `imds-hop-limit fleet` process (the static x86_64 release binary) against one
simulated account of 10,000 instances in us-west-2 with EC2's documented buckets, time-scaled. Half of them,
tagged team=web, are at hop limit 1; the others (untagged) at 2. Measured: `fleet apply --tag team=web` (5,000
changes), then `fleet check` over all 10,000 and `fleet check --tag team=web` once compliant.

Time scale F: the simulator refills its buckets F times faster and applies a change F times sooner, and the
fleet process is told the account's ModifyInstanceMetadataOptions rate is 5 x F a second (--modify-rate, the
flag for accounts with raised limits); the burst (100) and every wait inside the agent (the poll schedule, the
throttling backoff) are not scaled, so a scaled run is harder on the wall-time ratio than a real one.

Measures into benches/fleet.json; `--report` renders the "Fleet" section of BENCHMARKS.md from it. Talks only to
the simulator on loopback (benches/run puts it in a network namespace with only loopback); bounded in count
(at most 20,000 instances) and time (a hard stop per run)."""

import argparse
import json
import os
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "fleet.json")
sys.path.insert(0, HERE)
from storm import Simulator, agent_env, machine, publish, save  # noqa: E402


def fleet_env(sim):
    # The storm agents' environment, with no IMDS at all: a fleet run takes its region from AWS_REGION.
    env = {**agent_env(sim), "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-west-2"}
    del env["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
    return env


def run_measured(argv, env, out_path, hard_stop_s):
    """Runs `argv` once, its stdout into `out_path`, under GNU time: (wall seconds, exit code, peak RSS in MiB).
    The peak is GNU time's own count of its child, a process forked from that small process: a process forked
    (or vfork-spawned) from this Python process would start its peak RSS count at this process's size, which
    grows with every report it parses. Past `hard_stop_s` the whole process group is killed."""
    rss_path = out_path + ".rss"
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(os.devnull, "wb") as devnull:
        pid = os.posix_spawn("/usr/bin/time", ["/usr/bin/time", "-f", "%M", "-o", rss_path, "--", *argv], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, devnull.fileno(), 2)], setsid=True)
        deadline = t0 + hard_stop_s
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.killpg(pid, 9)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.05)
    wall = time.monotonic() - t0
    lines = [line.strip() for line in open(rss_path).read().splitlines() if line.strip().isdigit()]
    os.unlink(rss_path)
    peak_mib = round(int(lines[-1]) / 1024, 1) if lines else None
    return wall, os.waitstatus_to_exitcode(status), peak_mib


def run_child_rss(agent, sim, args, hard_stop_s, command="fleet", env=None):
    """Runs the `command` process (fleet, templates) once: wall seconds, exit code, peak RSS (MiB, `run_measured`),
    its JSON summary, and the EC2 calls by action and status. `env`: the process's environment, the fleet's by
    default."""
    sim.ask("reset-log")
    out_path = f"/tmp/{command}-bench-{os.getpid()}.json"
    wall, code, peak = run_measured([agent, command, *args, "--output", "json", "-q"], env or fleet_env(sim),
                                    out_path, hard_stop_s)
    calls = Counter()
    for r in sim.requests():
        if r[1] == "ec2":
            calls[f"{r[4]} {r[5]}"] += 1
    text = open(out_path).read()
    os.unlink(out_path)
    summary = json.loads(text)["summary"] if text.strip() else {}
    return {"args": args, "wall_s": round(wall, 2), "exit": code, "peak_rss_mib": peak,
            "summary": summary, "calls": dict(sorted(calls.items()))}


def measure(agent, simulator, n, scale):
    rate = 5 * scale
    sim = Simulator(simulator, "--fleet", str(n - 1), "--documented-buckets", "--time-scale", str(scale),
                    "--pending-ms", "2000")
    try:
        rate_args = ["--modify-rate", str(rate)]
        apply = run_child_rss(agent, sim, ["apply", "--tag", "team=web", *rate_args], 600)
        changes = apply["summary"].get("changed", 0)
        floor = max(changes - 100, 0) / rate
        apply["floor_s"] = round(floor, 2)
        apply["ratio"] = round(apply["wall_s"] / floor, 3) if floor else None
        check_all = run_child_rss(agent, sim, ["check", *rate_args], 300)
        check_tagged = run_child_rss(agent, sim, ["check", "--tag", "team=web", *rate_args], 300)
    finally:
        sim.close()
    return {"instances": n, "tagged": n // 2, "time_scale": scale, "modify_rate": rate,
            "apply": apply, "check_all": check_all, "check_tagged": check_tagged}


def describes(run):
    return sum(v for k, v in run["calls"].items() if k.startswith("DescribeInstances"))


def report(results):
    r = results["runs"][-1]
    a, c, t = r["apply"], r["check_all"], r["check_tagged"]
    scale = r["time_scale"]
    n = r["instances"]
    lines = ["## Fleet", "",
             f"From `bash benches/run --fleet` ({results['date']}; {results['machine']}). One `imds-hop-limit fleet` "
             f"process (the static x86_64 release binary) against one simulated account of {n:,} instances in "
             f"us-west-2 with EC2's documented buckets; the {r['tagged']:,} tagged team=web are at hop limit 1, the "
             f"others at 2. Time-scaled by {scale}: the simulator refills its buckets {scale} times faster and "
             f"applies a change {scale} times sooner (2 s becomes {2000 // scale} ms), and the fleet is told the "
             f"account's ModifyInstanceMetadataOptions rate is {r['modify_rate']} a second (`--modify-rate`); the "
             "burst (100) and the agent's own waits (poll schedule, throttling backoff) are not scaled. The floor is "
             "what EC2's budget allows whatever the client does: (changes - 100) / rate. Calls are every EC2 request "
             "the simulator answered, by action and HTTP status (503 = throttled).", "",
             "| run | exit | wall | floor | / floor | selected | changed | applied | DescribeInstances | Modify | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name, run, floor=None):
        s = run["summary"]
        modify = sum(v for k, v in run["calls"].items() if k.startswith("ModifyInstanceMetadataOptions"))
        ratio = f"{run['wall_s'] / floor:.2f}x" if floor else "-"
        return (f"| {name} | {run['exit']} | {run['wall_s']} s | {f'{floor:.1f} s' if floor else '-'} | {ratio} | "
                f"{s.get('selected')} | {s.get('changed')} | {s.get('applied')} | {describes(run)} | {modify} | "
                f"{run['peak_rss_mib']} MiB |")

    lines += [row("`fleet apply --tag team=web`", a, a["floor_s"]), row("`fleet check` (all)", c),
              row("`fleet check --tag team=web` (after)", t), ""]
    for name, run in [("apply", a), ("check (all)", c), ("check (tagged, after)", t)]:
        lines.append(f"- {name}, calls by action and status: " + ", ".join(f"{k}: {v}" for k, v in run["calls"].items()))
    real = a["floor_s"] * scale
    lines += ["", f"On a real account the same change is bounded by the same budget: {a['summary'].get('changed')} "
              f"changes at 5 a second after the burst take {real / 60:.0f} minutes whatever the tool does; the scaled "
              f"run shows the tool stays within {a['ratio']}x of that floor while spending one "
              "ModifyInstanceMetadataOptions per instance and verifying in batches.", ""]
    ok = lambda met: "yes" if met else "**no**"
    selection_pages = -(-n // 1000)
    verify_calls = describes(a) - (-(-r["tagged"] // 1000))
    lines += ["### Fleet targets", "", "| target | measured | met |", "|---|---|---|",
              f"| apply: wall within 1.2x the ModifyInstanceMetadataOptions floor | {a['ratio']}x | "
              f"{ok(a['ratio'] is not None and a['ratio'] <= 1.2)} |",
              f"| apply: every tagged instance changed and applied | {a['summary'].get('applied')} of {r['tagged']}, "
              f"exit {a['exit']}; the check after: {t['summary'].get('not_compliant')} left to change, exit {t['exit']} | "
              f"{ok(a['summary'].get('applied') == r['tagged'] and a['exit'] == 0 and t['exit'] == 0)} |",
              f"| DescribeInstances: at most N/1000 for the selection plus the verification batches | check (all): "
              f"{describes(c)} for {n:,} (N/1000 = {selection_pages}); apply: {describes(a)} = "
              f"{-(-r['tagged'] // 1000)} selection pages + {verify_calls} verification batches | "
              f"{ok(describes(c) <= selection_pages)} |",
              f"| peak RSS under 64 MiB at {n:,} instances | apply {a['peak_rss_mib']} MiB, check {c['peak_rss_mib']} MiB | "
              f"{ok(max(a['peak_rss_mib'], c['peak_rss_mib']) < 64)} |", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent")
    ap.add_argument("--simulator")
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--time-scale", type=int, default=20)
    ap.add_argument("--report", action="store_true", help="only render BENCHMARKS.md's section from fleet.json")
    args = ap.parse_args()
    if not args.report:
        if not 2 <= args.instances <= 20_000:
            sys.exit("fleet.py: from 2 to 20,000 instances")
        results = {**machine(), "runs": []}
        results["runs"].append(measure(args.agent, args.simulator, args.instances, args.time_scale))
        print(json.dumps(results["runs"][-1], indent=1), file=sys.stderr)
        save(RESULTS, results)
    publish(RESULTS, "## Fleet", report)


if __name__ == "__main__":
    main()
