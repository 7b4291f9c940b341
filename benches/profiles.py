#!/usr/bin/env python3
"""What each release-profile setting costs: clean build time and memory, stripped size, and the agent's CPU.

`python3 benches/profiles.py [VARIANT ...]` (benches/run --profiles runs it). Each variant is the shipped
`release` profile with one setting changed back to Cargo's default (plus one with all of them: Cargo's own
release profile), built clean for x86_64-unknown-linux-musl as a custom profile in its own directory, so the
shipped build is not touched. Symbols are kept (strip = false) so that a variant can be profiled with perf;
the size reported is that of a copy stripped by binutils' strip, which matches what `strip = true` ships.
After the builds, every variant built so far is measured on no-op runs against the simulated instance inside
`unshare --net`, all variants interleaved (`--measure-only` does just that). Results go to benches/profiles.json,
one entry per variant, written as each build finishes; compare.py renders them.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = "x86_64-unknown-linux-musl"
# Overrides on top of the shipped [profile.release]; None: the shipped settings.
VARIANTS = {
    "shipped": {},
    "cargo-release-defaults": {"opt-level": 3, "lto": False, "codegen-units": 16, "panic": "unwind"},
    "opt-level-3": {"opt-level": 3},
    "opt-level-s": {"opt-level": "s"},
    "codegen-units-16": {"codegen-units": 16},
    "lto-off": {"lto": False},
    "panic-unwind": {"panic": "unwind"},
}
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "profiles.json")


def toml(value):
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def build(name, overrides, target_dir):
    profile = f"study-{name}"
    settings = {"inherits": "release", "strip": False, **overrides}
    config = [arg for key, value in settings.items() for arg in ("--config", f"profile.{profile}.{key}={toml(value)}")]
    # Clean: the target's own directory and the host's (build scripts, proc macros).
    for directory in (os.path.join(target_dir, TARGET, profile), os.path.join(target_dir, profile)):
        shutil.rmtree(directory, ignore_errors=True)
    with tempfile.NamedTemporaryFile("r") as out:
        env = dict(os.environ, CC_x86_64_unknown_linux_musl="musl-gcc")
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", out.name, "cargo", "build", "--locked", "--offline",
                        *config, "--profile", profile, "--target", TARGET, "--bin", "imds-hop-limit"],
                       cwd=ROOT, env=env, check=True)
        wall, rss_kib = out.read().split()[-2:]
    binary = os.path.join(target_dir, TARGET, profile, "imds-hop-limit")
    subprocess.run(["strip", "-o", stripped(target_dir, name), binary], check=True)
    return {"build_s": float(wall), "build_peak_rss_gib": int(rss_kib) / 2**20,
            "size": os.path.getsize(stripped(target_dir, name))}


def stripped(target_dir, name):
    return os.path.join(target_dir, TARGET, f"study-{name}", "imds-hop-limit.stripped")


def measure(binaries, simulator, runs):
    """No-op runs of every binary, interleaved so that the machine's drift hits them all, against one simulated
    instance; run inside unshare --net. Median (min, max) CPU (user+sys) and median peak RSS per binary."""
    from compare import Simulator, timed

    sim = Simulator(simulator, 2, 1000)
    env = dict(os.environ, HOME=tempfile.mkdtemp(), **sim.env)
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):  # as on a stock instance
        env.pop(var, None)
    runs_of = {b: [] for b in binaries}
    try:
        for i in range(runs + 3):
            for binary in binaries:
                m = timed([binary, "-q"], env)
                if i >= 3:
                    runs_of[binary].append(m)
    finally:
        sim.close()
    results = []
    for binary in binaries:
        cpu = [m["cpu"] * 1000 for m in runs_of[binary]]
        results.append({"cpu_ms": statistics.median(cpu), "cpu_ms_min": min(cpu), "cpu_ms_max": max(cpu),
                        "rss_mib": statistics.median(m["rss_mib"] for m in runs_of[binary]), "runs": runs})
    return results


def save(results):
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


def main():
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(measure(sys.argv[4:], sys.argv[2], int(sys.argv[3]))))
        return
    args = sys.argv[1:]
    measure_only = "--measure-only" in args
    names = [a for a in args if a != "--measure-only"] or list(VARIANTS)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    simulator = os.path.join(target_dir, "debug", "examples", "simulated-instance")
    results = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    machine = f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB"
    if not measure_only:
        for name in names:
            entry = {"settings": VARIANTS[name], "date": time.strftime("%Y-%m-%d"), "machine": machine}
            entry.update(build(name, VARIANTS[name], target_dir))
            results[name] = entry
            save(results)
            print(name, json.dumps(entry), flush=True)
    # Every variant built so far, measured together, interleaved.
    present = [name for name in VARIANTS if name in results and os.path.exists(stripped(target_dir, name))]
    out = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable,
                          __file__, "measure", simulator, "30", *(stripped(target_dir, n) for n in present)],
                         check=True, capture_output=True, text=True).stdout
    for name, m in zip(present, json.loads(out)):
        results[name].update(m, measured=time.strftime("%Y-%m-%d"))
        print(name, json.dumps(m), flush=True)
    save(results)


if __name__ == "__main__":
    main()
