#!/usr/bin/env python3
"""imds-hop-limit against the shell script it replaces, on the same simulated instance.

Runs inside a network namespace that has only loopback (benches/run sets it up). Times whole-process runs
under GNU time (wall clock; user+sys CPU of the process tree from the kernel's rusage, without GNU time's
10 ms rounding; peak RSS from GNU time), interleaved A B C A B C so that the machine's drift hits every variant,
counts each run's requests from the simulator's log, cross-checks the no-op CPU with hyperfine and
/usr/bin/time -v, and writes BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SEED = r"""#!/bin/bash
# The seed's script (../shared/seeds), pointed at the simulator: same calls, without `bash -x` and `|| true`
# (which change what is printed and hidden, not the work done).
TOKEN=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds:60' "$IMDS/latest/api/token")
INSTANCE_ID=$(curl -s -H "X-aws-ec2-metadata-token:$TOKEN" "$IMDS/latest/meta-data/instance-id")
aws ec2 modify-instance-metadata-options --region us-west-2 --instance-id "$INSTANCE_ID" \
    --http-put-response-hop-limit 2 --http-endpoint enabled --endpoint-url "$EC2" > /dev/null
"""

FAIR = r"""#!/bin/bash
# The "fair" variant: also reads the options first (no call when compliant) and polls until applied,
# as the agent does.
set -e
TOKEN=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds:60' "$IMDS/latest/api/token")
INSTANCE_ID=$(curl -s -H "X-aws-ec2-metadata-token:$TOKEN" "$IMDS/latest/meta-data/instance-id")
REGION=$(curl -s -H "X-aws-ec2-metadata-token:$TOKEN" "$IMDS/latest/meta-data/placement/region")
q='Reservations[0].Instances[0].MetadataOptions.[HttpPutResponseHopLimit,HttpEndpoint,State]'
# A command substitution, not `< <(...)`: bash waits for it, so its CPU is counted.
options=$(aws ec2 describe-instances --region "$REGION" --instance-ids "$INSTANCE_ID" \
    --endpoint-url "$EC2" --query "$q" --output text)
read -r hop endpoint state <<< "$options"
if [ "$hop" -ge 2 ] && [ "$endpoint" = enabled ] && [ "$state" = applied ]; then exit 0; fi
aws ec2 modify-instance-metadata-options --region "$REGION" --instance-id "$INSTANCE_ID" \
    --http-put-response-hop-limit 2 --http-endpoint enabled --endpoint-url "$EC2" > /dev/null
until [ "$(aws ec2 describe-instances --region "$REGION" --instance-ids "$INSTANCE_ID" --endpoint-url "$EC2" \
        --query 'Reservations[0].Instances[0].MetadataOptions.State' --output text)" = applied ]; do
    sleep 0.1
done
"""


HTTPS_NOOP = "no-op over HTTPS (EC2 served with a test CA, as on EC2)"

# The agent with no CA certificates to load (rustls-native-certs reads these two variables): not a way to run
# it (EC2 needs HTTPS), but the measure of what loading the system's trust store costs each run.
NO_ROOTS = "imds-hop-limit, no CA certificates loaded (decomposition)"


class Simulator:
    def __init__(self, binary, hop_limit, pending_ms, tls=()):
        self.proc = subprocess.Popen(
            [binary, "--hop-limit", str(hop_limit), "--pending-ms", str(pending_ms), *tls],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        exports = self.proc.stdout.readline().strip()
        self.env = dict(part.split(" ", 1)[1].split("=", 1) for part in exports.split("; "))

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        if command == "requests":
            lines = []
            while (line := self.proc.stdout.readline().strip()) != "end":
                lines.append(line.split())
            return lines
        return self.proc.stdout.readline().strip()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def timed(cmd, env):
    """One whole-process run under GNU time: wall clock around it; user+sys CPU from wait4's rusage (the
    process tree, GNU time's own small share included) in microseconds, where GNU time prints 10 ms steps;
    peak RSS of the largest process from GNU time (%M). A child forked by Python itself would carry Python's
    own peak RSS across exec, hence GNU time in between."""
    with tempfile.NamedTemporaryFile("r") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            sys.exit(f"{cmd} exited {proc.returncode}: {stderr[-2000:]}")
        rss_kib = int(out.read().split()[-1])
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": rss_kib / 1024}


def run_scenario(name, sim, variants, runs, warmup):
    results = {v: [] for v in variants}
    for i in range(warmup + runs):
        for variant, cmd, env in variants_list(variants, sim):
            sim.ask("reset")
            m = timed(cmd, env)
            exited_ms = int(sim.ask("now"))
            log = sim.ask("requests")
            m["imds"] = sum(1 for r in log if r[1] == "imds")
            m["tokens"] = sum(1 for r in log if r[1] == "imds" and r[2] == "PUT")
            # The agent's sensing probes ask for 60 s tokens, used once and only sent back to IMDS; its SDK client
            # asks for one session token, which the identity and the role's credentials share.
            m["session_tokens"] = sum(1 for r in log if r[1] == "imds" and r[2] == "PUT" and r[7:8] != ["60"])
            m["ec2"] = sum(1 for r in log if r[1] == "ec2")
            m["modify"] = sum(1 for r in log if r[1] == "ec2" and r[4] == "ModifyInstanceMetadataOptions")
            applied = sim.ask("applied-at")
            if applied != "none":
                describes = [int(r[0]) for r in log if r[4] == "DescribeInstances" and r[5] == "200"]
                seen = [t for t in describes if t >= int(applied)]
                m["seen_after_ms"] = (min(seen) - int(applied)) if seen else None
                m["exit_after_ms"] = (exited_ms - int(applied)) if seen else None
            if i >= warmup:
                results[variant].append(m)
    return results


def variants_list(variants, sim):
    for name, cmd in variants.items():
        env = dict(os.environ)
        if isinstance(cmd, tuple):
            cmd, extra = cmd
            env.update(extra)
        env.update(sim.env)
        env["IMDS"] = sim.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
        env["EC2"] = sim.env["AWS_ENDPOINT_URL_EC2"]
        yield name, cmd, env


def stat(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "does not wait"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def count(values):
    values = [v for v in values if v is not None]
    lo, hi = min(values), max(values)
    return f"{statistics.median(values):g}" if lo == hi else f"{statistics.median(values):g} ({lo:g}–{hi:g})"


def table(results, change):
    head = "| variant | wall ms | CPU ms (user+sys) | peak RSS MiB | IMDS requests (tokens) | EC2 requests (modify) |"
    if change:
        head += " applied seen after, ms | exit after applied, ms |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for variant, ms in results.items():
        row = (f"| {variant} | {stat([m['wall'] * 1000 for m in ms], lambda v: f'{v:.0f}')} "
               f"| {stat([m['cpu'] * 1000 for m in ms], lambda v: f'{v:.1f}')} "
               f"| {stat([m['rss_mib'] for m in ms], lambda v: f'{v:.1f}')} "
               f"| {count([m['imds'] for m in ms])} ({count([m['tokens'] for m in ms])}) "
               f"| {count([m['ec2'] for m in ms])} ({count([m['modify'] for m in ms])}) |")
        if change:
            row += (f" {stat([m.get('seen_after_ms') for m in ms], lambda v: f'{v:.0f}')} "
                    f"| {stat([m.get('exit_after_ms') for m in ms], lambda v: f'{v:.0f}')} |")
        rows.append(row)
    return "\n".join(rows)


def crosscheck(agent, seed, env, runs):
    """The no-op CPU again, by public tools: hyperfine (not interleaved) and GNU time -v."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out.name,
                        "--style", "none", agent, f"bash {seed}"], env=env, capture_output=True, check=True)
        results = json.load(out)["results"]
    verbose = subprocess.run(["/usr/bin/time", "-v", agent], env=env, capture_output=True, text=True, check=True).stderr
    rss = next(l.split(":")[1].strip() for l in verbose.splitlines() if "Maximum resident set size" in l)
    return results, int(rss)


def profiles_section():
    """The release-profile study (benches/profiles.py, slow: one clean release build per variant)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles.json")
    if not os.path.exists(path):
        return ["## Release profile", "", "Not measured yet: `bash benches/run --profiles`.", ""]
    study = json.load(open(path))
    dates = sorted({e["date"] for e in study.values()})
    lines = [
        "## Release profile: what each setting costs",
        "",
        f"From `bash benches/run --profiles` ({', '.join(dates)}; {next(iter(study.values()))['machine']}): the "
        "shipped profile (fat LTO, codegen-units = 1, opt-level = \"z\", panic = \"abort\", strip) and variants "
        "with one setting put back to Cargo's default, plus Cargo's release defaults, each built clean for "
        "x86_64-unknown-linux-musl, one after the other. Size: stripped. CPU: median "
        f"(min–max) of {next(iter(study.values()))['runs']} no-op runs of each against the simulator, all variants "
        "interleaved, GNU time's floor included.",
        "",
        "| variant | settings changed | clean build | build peak RSS | stripped size | no-op CPU ms | no-op peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in study.items():
        settings = ", ".join(f"{k} = {json.dumps(v)}" for k, v in e["settings"].items()) or "(as shipped)"
        lines.append(f"| {name} | {settings} | {e['build_s'] / 60:.1f} min | {e['build_peak_rss_gib']:.1f} GiB "
                     f"| {e['size'] / 2**20:.2f} MiB | {e['cpu_ms']:.1f} ({e['cpu_ms_min']:.1f}–{e['cpu_ms_max']:.1f}) "
                     f"| {e['rss_mib']:.1f} MiB |")
    lines.append("")
    return lines


def missed_cpu(noop, ratio, https, https_ratio):
    """What the no-op run's CPU goes to, from this run's own figures, for the target's verdict."""
    agent = median(noop, "imds-hop-limit", "cpu") * 1000
    bare = median(noop, NO_ROOTS, "cpu") * 1000
    floor = median(noop, "`true` (the harness's floor)", "cpu") * 1000
    seed = median(noop, "seed script (curl + AWS CLI)", "cpu") * 1000
    tls_agent = median(https, "imds-hop-limit", "cpu") * 1000
    tls_seed = median(https, "seed script (curl + AWS CLI)", "cpu") * 1000
    return [
        "### Where the no-op run's CPU goes",
        "",
        f"Over HTTPS, the fair comparison, the agent uses {tls_agent:.1f} ms of CPU against the seed script's "
        f"{tls_seed:.0f} ms: {https_ratio:.0f}x (100x needs at most {tls_seed / 100:.1f} ms). Both are told to trust "
        "the test CA alone, so neither loads the system's trust store; the agent pays for the TLS handshake instead. "
        "Its random generator is seeded from the kernel's getrandom(): aws-lc's CPU jitter entropy, which before "
        "this was turned off (.cargo/config.toml, AWS_LC_SYS_NO_JITTER_ENTROPY) took about 60% of the HTTPS run's "
        "instructions under callgrind and 38.6 ms of CPU per run, is not gathered.",
        "",
        f"Over plain HTTP the agent uses {agent:.1f} ms against {seed:.0f} ms: {ratio:.0f}x. There the SDK's HTTPS "
        "client still loads the system's CA certificates (rustls-native-certs reads the bundle and then every file of "
        "/etc/ssl/certs: on Debian the same certificates again, one file each) when it builds a connector, before "
        f"the first request, even a plain-HTTP one: {agent - bare:.1f} ms of the {agent:.1f}. The decomposition row "
        f"runs the same binary with nothing to load: {bare:.1f} ms, {seed / max(bare, 1e-9):.0f}x less than the "
        f"script ({floor:.1f} ms of which is the harness's floor), while the AWS CLI reads no bundle at all for "
        "plain HTTP. On EC2 both load a trust store: the system's.",
        "",
    ]


def median(results, variant, key):
    return statistics.median(m[key] for m in results[variant])


def test_ca(work):
    """A throwaway CA and a certificate for 127.0.0.1 that it signed, made with openssl: the simulated EC2 is then
    served over HTTPS as EC2 is, and both the agent (SSL_CERT_FILE) and the AWS CLI (AWS_CA_BUNDLE) trust it."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=imds-hop-limit benchmark CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.ext", "-out", "server.pem")
    return [os.path.join(work, f) for f in ("ca.pem", "server.pem", "server.key")]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    aws = subprocess.run(["aws", "--version"], capture_output=True, text=True)
    return (f"{os.cpu_count()} × {cpu}, {int(mem) // 1024 // 1024} GiB, Linux {platform.release()}, "
            f"{(aws.stdout or aws.stderr).strip()}, curl {subprocess.run(['curl', '--version'], capture_output=True, text=True).stdout.split()[1]}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--agent", required=True)
    p.add_argument("--simulator", required=True)
    p.add_argument("--binaries", nargs="*", default=[], help="release binaries whose size to report")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    # EC2 applies a change about 2 s after taking it (the storm issue's figure); the poll schedule is built for it.
    p.add_argument("--pending-ms", type=int, default=2000)
    p.add_argument("--out", default="BENCHMARKS.md")
    a = p.parse_args()

    work = tempfile.mkdtemp()
    scripts = {}
    for name, text in [("seed.sh", SEED), ("fair.sh", FAIR)]:
        path = os.path.join(work, name)
        with open(path, "w") as f:
            f.write(text)
        scripts[name] = path
    os.environ["HOME"] = work  # no ~/.aws of this machine may stand in for the instance role
    # As on a stock instance: no credentials, profile or region from this machine, no CA-bundle overrides.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                "SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(var, None)
    variants = {
        "imds-hop-limit": [a.agent],
        NO_ROOTS: ([a.agent], {"SSL_CERT_FILE": "/dev/null", "SSL_CERT_DIR": "/nonexistent"}),
        "seed script (curl + AWS CLI)": ["bash", scripts["seed.sh"]],
        "fair script (reads, changes, polls)": ["bash", scripts["fair.sh"]],
        "`true` (the harness's floor)": ["true"],
    }
    # On EC2 both the agent and the AWS CLI talk HTTPS to the EC2 endpoint: the same runs with the simulated EC2
    # served over HTTPS by a test CA that each is told to trust (and nothing else: one certificate to load).
    ca, cert, key = test_ca(work)
    https_variants = {
        "imds-hop-limit": ([a.agent], {"SSL_CERT_FILE": ca}),
        "seed script (curl + AWS CLI)": (["bash", scripts["seed.sh"]], {"AWS_CA_BUNDLE": ca}),
        "fair script (reads, changes, polls)": (["bash", scripts["fair.sh"]], {"AWS_CA_BUNDLE": ca}),
        "`true` (the harness's floor)": ["true"],
    }
    report = {}
    check = None
    for scenario, hop, tls, these in [
        ("no-op (already compliant)", 2, (), variants),
        (f"change 1 -> 2, applied after {a.pending_ms} ms", 1, (), variants),
        (HTTPS_NOOP, 2, ("--tls", cert, key), https_variants),
    ]:
        sim = Simulator(a.simulator, hop, a.pending_ms, tls)
        try:
            report[scenario] = run_scenario(scenario, sim, these, a.runs, a.warmup)
            if scenario == "no-op (already compliant)":
                env = next(variants_list({"": []}, sim))[2]
                check = crosscheck(a.agent, scripts["seed.sh"], env, 2 * a.runs)
        finally:
            sim.close()

    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", "50", "--export-json", out.name,
                        "--style", "none", f"{a.agent} --version"], capture_output=True, check=True)
        version = json.load(out)["results"][0]
    sizes = [(b, os.path.getsize(b)) for b in a.binaries if os.path.exists(b)]

    noop = report["no-op (already compliant)"]
    change = next(v for k, v in report.items() if k.startswith("change"))
    cpu_ratio = median(noop, "seed script (curl + AWS CLI)", "cpu") / max(median(noop, "imds-hop-limit", "cpu"), 1e-9)
    https = report[HTTPS_NOOP]
    https_ratio = median(https, "seed script (curl + AWS CLI)", "cpu") / max(median(https, "imds-hop-limit", "cpu"), 1e-9)
    https_fair = median(https, "fair script (reads, changes, polls)", "cpu") / max(median(https, "imds-hop-limit", "cpu"), 1e-9)
    fair_ratio = median(noop, "fair script (reads, changes, polls)", "cpu") / max(median(noop, "imds-hop-limit", "cpu"), 1e-9)
    rss = median(noop, "imds-hop-limit", "rss_mib")
    seen = max((m["seen_after_ms"] for m in change["imds-hop-limit"] if m.get("seen_after_ms") is not None), default=None)
    tokens = {m["session_tokens"] for s in report.values() for m in s["imds-hop-limit"]}
    probes = {m["tokens"] - m["session_tokens"] for s in report.values() for m in s["imds-hop-limit"]}
    noop_ec2 = {m["ec2"] for m in noop["imds-hop-limit"]}
    change_ec2 = {m["ec2"] for m in change["imds-hop-limit"]}
    static = [s for b, s in sizes if "musl" in b]
    targets = [
        ("no-op run over HTTPS (the fair comparison): at least 100x less CPU than the seed script",
         f"{https_ratio:.0f}x (fair script: {https_fair:.0f}x)", https_ratio >= 100),
        ("no-op run over plain HTTP: at least 100x less CPU than the seed script", f"{cpu_ratio:.0f}x (fair script: {fair_ratio:.0f}x)", cpu_ratio >= 100),
        ("no-op run: peak RSS at most 12 MiB", f"{rss:.1f} MiB (median)", rss <= 12),
        ("one IMDS session token per run, shared by the identity and the credentials (sensing's probes apart)",
         f"session tokens per run: {sorted(tokens)}; probe tokens: {sorted(probes)}", tokens == {1}),
        ("no-op run: exactly one EC2 call", f"EC2 calls per no-op run: {sorted(noop_ec2)}", noop_ec2 == {1}),
        (f"change applied after {a.pending_ms} ms: `applied` noticed within 1 s of the flip", f"worst of {a.runs} runs: {seen} ms",
         seen is not None and seen <= 1000),
        (f"change applied after {a.pending_ms} ms: at most 4 EC2 calls", f"EC2 calls per change: {sorted(change_ec2)}",
         bool(change_ec2) and max(change_ec2) <= 4),
        ("static binary at most 6 MiB stripped", ", ".join(f"{os.path.basename(os.path.dirname(os.path.dirname(b)))}: {s / 2**20:.2f} MiB" for b, s in sizes) or "not measured",
         bool(static) and max(static) <= 6 * 2**20),
    ]

    lines = [
        "# Benchmarks",
        "",
        f"Written by `bash benches/run` on {time.strftime('%Y-%m-%d')}; machine: {machine()}.",
        "",
        f"Each figure is the median (min–max) of {a.runs} whole-process runs after {a.warmup} warm-up, the variants "
        "interleaved (agent, seed, fair, agent, ...) against the project's simulated instance on loopback, inside a "
        "network namespace with only loopback. Each run is started under GNU time: wall clock around it, CPU "
        "(user+sys of the whole process tree) from the kernel's rusage in microseconds (GNU time's own share "
        "included: the `true` row is that floor), peak RSS (the largest process of the tree) from GNU time's %M; "
        "requests from the simulator's log. The agent is the static "
        "x86_64 release binary. The seed script is the write-up's curl + `aws ec2 modify-instance-metadata-options` "
        "(the AWS CLI v1 from PyPI), pointed at the same simulator; the fair script also reads the options first "
        "and polls until `applied`, as the agent does.",
        "",
    ]
    for scenario, results in report.items():
        lines += [f"## {scenario}", "", table(results, scenario.startswith("change")), ""]
        agent_cpu = median(results, "imds-hop-limit", "cpu")
        agent_wall = median(results, "imds-hop-limit", "wall")
        for variant in results:
            if variant not in ("imds-hop-limit", NO_ROOTS) and not variant.startswith("`true`"):
                lines.append(f"- {variant} / agent: CPU {median(results, variant, 'cpu') / max(agent_cpu, 1e-9):.0f}x, "
                             f"wall {median(results, variant, 'wall') / max(agent_wall, 1e-9):.1f}x")
        lines.append("")
    lines += [
        "In the change scenario, \"applied seen after\" is the time from the simulator's flip to `applied` to the first "
        "DescribeInstances answered after it; \"exit after applied\" adds the process's exit and the benchmark's "
        "round trip to the simulator. The seed script does not wait for `applied` at all.",
        "",
        "## Cross-check of the no-op run by public tools",
        "",
        f"hyperfine ({2 * a.runs} runs each after 3 warm-up, one variant after the other):",
        "",
        "| command | wall ms | user ms | sys ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{os.path.basename(r['command'])}` | {r['mean'] * 1000:.1f} ± {r['stddev'] * 1000:.1f} "
              f"| {r['user'] * 1000:.1f} | {r['system'] * 1000:.1f} |" for r in check[0]]
    lines += [
        "",
        f"`/usr/bin/time -v imds-hop-limit`: maximum resident set size {check[1]:,} KiB.",
        "",
        "## Binary",
        "",
        "| binary | size |",
        "|---|---|",
    ]
    lines += [f"| `{os.path.relpath(b, os.path.dirname(os.path.dirname(os.path.dirname(b))))}` | {s:,} bytes "
              f"({s / 2**20:.2f} MiB) |" for b, s in sizes]
    lines += [
        "",
        f"`imds-hop-limit --version`: {version['mean'] * 1000:.2f} ms mean ± {version['stddev'] * 1000:.2f} ms "
        f"(hyperfine, 50 runs, min {version['min'] * 1000:.2f} ms).",
        "",
        *profiles_section(),
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets]
    lines.append("")
    lines += missed_cpu(noop, cpu_ratio, https, https_ratio)
    # The boot storm's section is benches/storm.py's: kept as it is.
    if os.path.exists(a.out):
        old = open(a.out).read()
        if "## Boot storm" in old:
            lines += [old[old.index("## Boot storm"):].rstrip("\n")]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
