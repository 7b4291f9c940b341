#!/usr/bin/env python3
"""Sensing the hop limit from IMDS itself (issue 21), measured against the simulator on loopback, whose IMDS
sends its answers with TTL = the hop limit in effect (--ttl-is-hop-limit), as IMDS does:

- the no-op run on a compliant instance: CPU (user + sys, whole process) of the agent against the seed script
  (curl + the AWS CLI, over plain HTTP and over HTTPS as on EC2), and the EC2 calls each makes;
- a change EC2 applies 2 s after taking it: EC2 calls, and how soon after the flip the run ends (the agent ends
  when its token probe at TTL 2 gets the answer, so this bounds how soon the flip is seen);
- boot storms of N agents, each with an IMDS of its own (--imds-per-instance) and no --instance-id, as on EC2:
  needing the change (hop limit 1), and already compliant (a redeploy).

Writes benches/sensing.json and the "Sensing from IMDS" section of BENCHMARKS.md. Runs only against the
simulator on loopback (benches/run puts it in a network namespace with only loopback); storms are bounded in
count (at most 1000) and time (each agent's --timeout, and a hard stop)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (the seed script, GNU-time measurement, the test CA)
import storm  # noqa: E402  (the simulator driver, BENCHMARKS.md sections)

RESULTS = os.path.join(HERE, "sensing.json")


def timed(cmd, env):
    """CPU (user + sys) of the process and every descendant it waited for (the seed script's curl and aws), from
    wait4's rusage on the process itself, with nothing in between: compare.py puts GNU time in between for peak
    RSS, whose own millisecond or two is most of a run that costs the agent under two."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd} exited {os.waitstatus_to_exitcode(status)}: {err[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall}


def ec2_calls(sim):
    return [r for r in sim.requests() if r[1] == "ec2"]


def noop(agent, simulator, runs, work):
    """CPU per no-op run: the agent (compliant by IMDS) against the seed script, over HTTP and over HTTPS."""
    seed = os.path.join(work, "seed.sh")
    with open(seed, "w") as f:
        f.write(compare.SEED)
    ca, cert, key = compare.test_ca(work)
    out = {}
    for label, tls, extra in [("http", [], {}), ("https", ["--tls", cert, key], {"AWS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca})]:
        sim = storm.Simulator(simulator, "--hop-limit", "2", "--ttl-is-hop-limit", *tls)
        try:
            env = dict(os.environ, HOME=work, **sim.env, **extra)
            env["IMDS"] = sim.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
            env["EC2"] = sim.env["AWS_ENDPOINT_URL_EC2"]
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
                env.pop(var, None)
            rows = {"agent": [], "seed": [], "true": []}
            for i in range(runs + 1):
                for name, cmd in [("agent", [agent, "-q"]), ("seed", ["bash", seed]), ("true", ["true"])]:
                    sim.ask("reset")
                    m = timed(cmd, env)
                    m["ec2"] = len(ec2_calls(sim))
                    if i > 0:
                        rows[name].append(m)
            out[label] = rows
        finally:
            sim.close()
    return out


def change(agent, simulator, runs):
    """A change EC2 applies 2 s after taking it, on a quiet account."""
    sim = storm.Simulator(simulator, "--hop-limit", "1", "--ttl-is-hop-limit", "--pending-ms", "2000")
    out = []
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **{k: v for k, v in sim.env.items()
                                                                   if k.startswith("AWS_")}}
        for _ in range(runs):
            sim.ask("reset")
            p = subprocess.run([agent, "-q"], env=env, capture_output=True, text=True, timeout=60)
            exited = int(sim.ask("now"))
            applied = int(sim.ask("applied-at"))
            calls = ec2_calls(sim)
            out.append({"exit": p.returncode, "ec2_calls": len(calls),
                        "actions": [r[4] for r in calls], "ended_after_flip_ms": exited - applied})
    finally:
        sim.close()
    return out


def sense_storm(agent, simulator, n, hop, timeout_s):
    """N agents started over one second, each sensing its own instance through its own IMDS."""
    sim = storm.Simulator(simulator, "--more-instances", str(n - 1), "--documented-buckets", "--pending-ms", "2000",
                          "--hop-limit", str(hop), "--ttl-is-hop-limit", "--imds-per-instance")
    try:
        urls = dict(line.split(" ", 1) for line in sim.ask("imds-urls", lines=True))
        ids = sim.ask("ids", lines=True)[:n]
        base = storm.agent_env(sim)
        start_ms = int(sim.ask("now"))
        t0, procs = storm.start_over_a_second([
            ([agent, "--timeout", f"{timeout_s}s", "-q"], dict(base, AWS_EC2_METADATA_SERVICE_ENDPOINT=urls[instance]))
            for instance in ids])
        exits, walls, messages = storm.wait_all(procs, t0 + timeout_s + 60)
        log = ec2_calls(sim)
        by_action = {}
        for r in log:
            key = f"{r[4]} {'throttled' if r[5] == '503' else 'answered'}"
            by_action[key] = by_action.get(key, 0) + 1
        last_applied = sim.ask("all-applied-at 2")
        floor_s = max(0, (n - 100) / 5) if hop < 2 else 0
        return {
            "n": n, "hop_limit": hop,
            "exit_codes": {str(k): v for k, v in sorted(exits.items())},
            "failures": {str(k): v for k, v in messages.items()},
            "instances_at_2": int(sim.ask("applied-count 2")),
            "last_applied_s": None if last_applied in ("none", "0") else (int(last_applied) - start_ms) / 1000,
            "floor_s": floor_s,
            "ec2_calls": len(log),
            "calls_per_instance": round(len(log) / n, 2),
            "throttled": sum(1 for r in log if r[5] == "503"),
            "by_action": dict(sorted(by_action.items())),
            "slowest_agent_s": round(max(walls), 2),
            "median_agent_s": round(statistics.median(walls), 2),
        }
    finally:
        sim.close()


def proc_cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def watch_run(agent, simulator, seconds, interval_ms):
    """`watch` at a short interval for `seconds` (time-scaled: at 100 ms, a minute is 600 looks, ten hours of the
    default 60 s): CPU and EC2 calls per look, and RSS sampled every second (growth = a leak)."""
    sim = storm.Simulator(simulator, "--hop-limit", "2", "--ttl-is-hop-limit")
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
               **{k: v for k, v in sim.env.items() if k.startswith("AWS_")}}
        p = subprocess.Popen([agent, "watch", "--interval", f"{interval_ms}ms", "-q"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        sim.ask("reset-log")
        cpu0, t0 = proc_cpu_s(p.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            rss.append(proc_rss_kib(p.pid))
        cpu1 = proc_cpu_s(p.pid)
        log = sim.requests()
        probes = sum(1 for r in log if r[1] == "imds" and r[2] == "PUT")
        ec2 = sum(1 for r in log if r[1] == "ec2")
        p.terminate()
        p.wait(timeout=10)
        looks = probes / 2
        third = max(1, len(rss) // 3)
        return {"seconds": seconds, "interval_ms": interval_ms, "looks": looks, "ec2_calls": ec2,
                "cpu_per_look_ms": round((cpu1 - cpu0) * 1000 / max(looks, 1), 3),
                "rss_first_third_kib": max(rss[:third]), "rss_last_third_kib": max(rss[-third:]),
                "rss_peak_kib": max(rss), "exit": p.returncode}
    finally:
        sim.close()


def image_sizes(archive):
    """The compressed layer of each architecture in the OCI archive."""
    import tarfile
    with tarfile.open(archive) as t:
        read = lambda name: t.extractfile(name).read()
        blob = lambda d: read("blobs/sha256/" + d.split(":", 1)[1])
        top = json.loads(read("index.json"))["manifests"][0]["digest"]
        out = {}
        for m in json.loads(blob(top))["manifests"]:
            manifest = json.loads(blob(m["digest"]))
            out[m["platform"]["architecture"]] = manifest["layers"][0]["size"]
        return out


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def report(r):
    n = r["noop"]
    ratio = {k: med(v["seed"], "cpu") / max(med(v["agent"], "cpu"), 1e-9) for k, v in n.items()}
    ms = lambda s: f"{s * 1000:.1f} ms"
    ch = r["change"]
    calls = [c["ec2_calls"] for c in ch]
    ended = [c["ended_after_flip_ms"] for c in ch]
    lines = ["## Sensing from IMDS", "",
             f"From `bash benches/run --sensing` ({r['date']}; {r['machine']}). The simulator's IMDS sends its answers "
             "with TTL = the hop limit in effect, as IMDS sends the token answer; the agent proves the hop limit with "
             "IP_MINTTL probes (README, \"How it knows\"). CPU is user + sys of each process and the children it waited "
             "for (the seed script's curl and aws), from wait4 on the process itself with nothing in between, median "
             f"of {len(n['http']['agent'])} runs, the agent, the seed script and `true` interleaved. (compare.py's "
             "table below puts GNU time in between, for peak RSS: its own millisecond or two is added to each run "
             "there.)", "",
             "| no-op on a compliant instance | agent (sensing) | seed script | seed / agent | `true` (floor) | agent's EC2 calls |",
             "|---|---|---|---|---|---|"]
    for k, label in [("http", "EC2 over plain HTTP"), ("https", "EC2 over HTTPS (as on EC2)")]:
        lines.append(f"| {label} | {ms(med(n[k]['agent'], 'cpu'))} CPU, {med(n[k]['agent'], 'wall') * 1000:.1f} ms wall | "
                     f"{ms(med(n[k]['seed'], 'cpu'))} CPU | {ratio[k]:.0f}x | {ms(med(n[k]['true'], 'cpu'))} | "
                     f"{sorted({m['ec2'] for m in n[k]['agent']})} |")
    lines += ["", f"A change that EC2 applies 2 s after taking it ({len(ch)} runs): EC2 calls {sorted(set(calls))} "
              f"({', '.join(ch[0]['actions'])}); the run ended {min(ended)} to {max(ended)} ms after the simulator "
              f"flipped the hop limit (median {statistics.median(ended)} ms): the token probe at TTL 2 runs every "
              "200 to 300 ms, so this is when the flip was seen, plus the process's exit.", "",
              "| storm | exit codes | EC2 calls per instance | throttled | last at hop limit 2 | floor | / floor | slowest agent |",
              "|---|---|---|---|---|---|---|---|"]
    for s in r["storms"]:
        kind = "needing the change (1 -> 2)" if s["hop_limit"] < 2 else "already compliant (a redeploy)"
        last = f"{s['last_applied_s']} s" if s["last_applied_s"] is not None else "-"
        ratio_floor = f"{s['last_applied_s'] / s['floor_s']:.2f}x" if s["floor_s"] and s["last_applied_s"] else "-"
        codes = ", ".join(f"{v} x {k}" for k, v in s["exit_codes"].items())
        lines.append(f"| {s['n']} {kind} | {codes} | {s['calls_per_instance']} | {s['throttled']} | {last} | "
                     f"{s['floor_s']:.0f} s | {ratio_floor} | {s['slowest_agent_s']} s |")
    lines.append("")
    for s in r["storms"]:
        lines.append(f"- N = {s['n']} at hop limit {s['hop_limit']}, calls by action: "
                     + (", ".join(f"{k} {v}" for k, v in s["by_action"].items()) or "none"))
    change_storm = next((s for s in r["storms"] if s["hop_limit"] < 2), None)
    if change_storm:
        # The model's figures, computed by this report for the storm measured.
        import storm_model
        n_storm = change_storm["n"]
        modelled = [(label, storm_model.mean(n_storm, base, cap, 5, rest, sensing=True))
                    for label, base, cap, rest in (storm_model.BEFORE, storm_model.CURRENT)]
        lines += ["", f"The throttling backoff against benches/storm_model.py's model of this storm (N = {n_storm}, "
                  "every agent sending only its modify and seeing the change on its own IMDS): "
                  + "; ".join(f"{label}: {c:.2f} calls per instance at {q:.2f}x the floor" for label, (c, q) in modelled)
                  + ". The storm without sensing is in \"Boot storm\" above."]
    noop_storm = next((s for s in r["storms"] if s["hop_limit"] >= 2), None)
    ok = lambda met: "yes" if met else "**no**"
    lines += ["", "### Sensing targets", "", "| target | measured | met |", "|---|---|---|",
              f"| no-op: at least 200x less CPU than the seed script (HTTPS, as on EC2) | {ratio['https']:.0f}x "
              f"(plain HTTP: {ratio['http']:.0f}x) | {ok(ratio['https'] >= 200)} |",
              f"| no-op: 0 EC2 calls | {sorted({m['ec2'] for k in n for m in n[k]['agent']})} | "
              f"{ok(all(m['ec2'] == 0 for k in n for m in n[k]['agent']))} |",
              f"| change applied after 2 s: 1 EC2 call (one ModifyInstanceMetadataOptions, issue 29) | "
              f"{max(calls)} at most | {ok(max(calls) <= 1)} |",
              f"| change applied after 2 s: the flip seen within 300 ms | run ended {max(ended)} ms after it at worst "
              f"(median {statistics.median(ended)} ms) | {ok(max(ended) <= 300)} |"]
    if change_storm:
        describes = sum(v for k, v in change_storm["by_action"].items() if k.startswith("DescribeInstances"))
        ratio_floor = (change_storm["last_applied_s"] / change_storm["floor_s"]
                       if change_storm["last_applied_s"] and change_storm["floor_s"] else None)
        lines += [f"| storm of {change_storm['n']} needing the change: within 1.2x the floor | "
                  f"{f'{ratio_floor:.2f}x' if ratio_floor else 'not all applied'} | {ok(ratio_floor is not None and ratio_floor <= 1.2)} |",
                  f"| storm of {change_storm['n']} needing the change: at most 3.5 EC2 calls per instance | "
                  f"{change_storm['calls_per_instance']} | {ok(change_storm['calls_per_instance'] <= 3.5)} |",
                  f"| storm of {change_storm['n']} needing the change: 3 EC2 calls per instance (the goal: one modify "
                  f"plus throttled retries) | {change_storm['calls_per_instance']} | "
                  f"{ok(change_storm['calls_per_instance'] <= 3)} |",
                  f"| storm of {change_storm['n']} needing the change: at most 5 DescribeInstances | {describes} | "
                  f"{ok(describes <= 5)} |",
                  f"| storm of {change_storm['n']} needing the change: every agent exit 0 | "
                  f"{change_storm['exit_codes']} | {ok(set(change_storm['exit_codes']) == {'0'})} |"]
    if noop_storm:
        lines += [f"| storm of {noop_storm['n']} already compliant: 0 EC2 calls, every agent done within seconds | "
                  f"{noop_storm['ec2_calls']} calls; slowest agent {noop_storm['slowest_agent_s']} s | "
                  f"{ok(noop_storm['ec2_calls'] == 0 and noop_storm['slowest_agent_s'] < 10)} |"]
    w = r.get("watch")
    if w:
        lines += [f"| watch: 0 EC2 calls per look while compliant | {w['ec2_calls']} calls in {w['looks']:.0f} looks | "
                  f"{ok(w['ec2_calls'] == 0)} |",
                  f"| watch: peak RSS at most 8 MiB, no growth | {w['rss_peak_kib'] / 1024:.1f} MiB peak; "
                  f"{w['rss_first_third_kib'] / 1024:.1f} MiB in the first third, {w['rss_last_third_kib'] / 1024:.1f} "
                  f"in the last | {ok(w['rss_peak_kib'] <= 8192 and w['rss_last_third_kib'] <= w['rss_first_third_kib'] + 256)} |"]
        lines += ["", f"watch, time-scaled: --interval {w['interval_ms']} ms for {w['seconds']} s, {w['looks']:.0f} looks "
                  f"(at the default 60 s, {w['looks'] / 60:.0f} hours of looks): {w['cpu_per_look_ms']} ms of CPU per "
                  f"look, {w['ec2_calls']} EC2 calls, RSS sampled every second."]
    images = r.get("images")
    if images:
        lines += ["", "The image, compressed layer per architecture: "
                  + ", ".join(f"{arch} {size / 2**20:.2f} MiB" for arch, size in images.items())
                  + " (goal: at most 4 MiB each)."]
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent")
    ap.add_argument("--simulator")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--storms", default="500")
    ap.add_argument("--timeout", type=int, default=240)
    ap.add_argument("--watch-seconds", type=int, default=60)
    ap.add_argument("--image", help="dist/'s OCI archive, for its layers' sizes")
    ap.add_argument("--report", action="store_true", help="only render BENCHMARKS.md's section from sensing.json")
    a = ap.parse_args()
    if not a.report:
        sizes = [int(x) for x in a.storms.split(",") if x]
        if any(x < 1 or x > 1000 for x in sizes):
            sys.exit("sensing.py: storm sizes from 1 to 1000")
        work = tempfile.mkdtemp()
        results = storm.machine()
        print("sensing.py: no-op runs", file=sys.stderr)
        results["noop"] = noop(a.agent, a.simulator, a.runs, work)
        print("sensing.py: change runs", file=sys.stderr)
        results["change"] = change(a.agent, a.simulator, a.runs)
        print("sensing.py: watch", file=sys.stderr)
        results["watch"] = watch_run(a.agent, a.simulator, a.watch_seconds, 100)
        if a.image:
            results["images"] = image_sizes(a.image)
        results["storms"] = []
        for n in sizes:
            for hop in (1, 2):
                print(f"sensing.py: storm of {n} at hop limit {hop}", file=sys.stderr)
                results["storms"].append(sense_storm(a.agent, a.simulator, n, hop, a.timeout))
                print(json.dumps(results["storms"][-1]), file=sys.stderr)
        storm.save(RESULTS, results)
    storm.publish(RESULTS, "## Sensing from IMDS", report)


if __name__ == "__main__":
    main()
