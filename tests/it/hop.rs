//! The cure on real Linux networking. Three network namespaces made by the test: `imds` holds
//! 169.254.169.254 and fd00:ec2::254 and sets the TTL of each answer to the hop limit, as IMDS does;
//! `host` routes to it and forwards for `container`, which sits behind a bridge as docker's containers do.
//! At hop limit 1 the token answer dies at the host; the agent run on the host (with no metadata endpoint
//! override) raises it to 2, and the container gets its token. Nothing links to the machine's own namespace.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EC2: &str = "http://198.18.0.2:8080";

struct Topology {
    imds: String,
    host: String,
    container: String,
    /// A container inside the container (Docker-in-Docker, or a second bridge as Cilium adds): two routed
    /// hops further than the host.
    nested: String,
    made: Vec<String>,
    simulator: Option<Child>,
    /// The simulator's stdout, where it answers the commands written to its stdin.
    answers: Option<BufReader<ChildStdout>>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop_simulator();
        for ns in &self.made {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(ns: &str, args: &str) -> Output {
    run(Command::new("ip").arg("-n").arg(ns).args(args.split_whitespace()))
}

fn links(ns: &str) -> Vec<String> {
    let out = String::from_utf8(ip(ns, "-o link show").stdout).unwrap();
    out.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap().to_string()).collect()
}

/// `program` in namespace `ns`, with only `env` for an environment.
fn in_ns(ns: &str, env: &[String], program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "env", "-i", "HOME=/nonexistent"]).args(env).arg(program);
    cmd
}

impl Topology {
    fn build() -> Topology {
        // Unique per topology: the tests that build one run side by side in one process.
        static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!("{}-{}", std::process::id(), BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut t = Topology {
            imds: format!("ihl-imds-{id}"),
            host: format!("ihl-host-{id}"),
            container: format!("ihl-ctr-{id}"),
            nested: format!("ihl-nest-{id}"),
            made: Vec::new(),
            simulator: None,
            answers: None,
        };
        for ns in [t.imds.clone(), t.host.clone(), t.container.clone(), t.nested.clone()] {
            let status = Command::new("ip").args(["netns", "add", &ns]).stderr(Stdio::piped()).output();
            match status {
                Ok(o) if o.status.success() => t.made.push(ns),
                Ok(o) => panic!(
                    "the hop-limit proof needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to make network namespaces; \
                     run the suite as root through scripts/test. `ip netns add` said: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => panic!("the hop-limit proof needs iproute2's `ip`: {e}"),
            }
        }
        let (i, h, c, n) = (t.imds.clone(), t.host.clone(), t.container.clone(), t.nested.clone());
        // Links are made inside the namespaces themselves, never in this process's own.
        ip(&h, &format!("link add hi type veth peer name vi netns {i}"));
        ip(&h, &format!("link add hc type veth peer name vc netns {c}"));
        ip(&h, "link add br0 type bridge");
        ip(&h, "link set hc master br0");
        ip(&c, &format!("link add cn type veth peer name vn netns {n}"));
        ip(&c, "link add br1 type bridge");
        ip(&c, "link set cn master br1");
        for (ns, dev) in
            [(&i, "lo"), (&i, "vi"), (&h, "lo"), (&h, "hi"), (&h, "hc"), (&h, "br0"), (&c, "lo"), (&c, "vc")]
                .into_iter()
                .chain([(&c, "cn"), (&c, "br1"), (&n, "lo"), (&n, "vn")])
        {
            ip(ns, &format!("link set {dev} up"));
        }
        // The metadata service.
        ip(&i, "addr add 169.254.169.254/32 dev lo");
        ip(&i, "addr add fd00:ec2::254/128 dev lo nodad");
        ip(&i, "addr add 198.18.0.2/30 dev vi");
        ip(&i, "addr add 2001:db8:1::2/64 dev vi nodad");
        ip(&i, "route add default via 198.18.0.1");
        ip(&i, "-6 route add default via 2001:db8:1::1");
        // The instance: routes to IMDS, forwards for the container.
        ip(&h, "addr add 198.18.0.1/30 dev hi");
        ip(&h, "addr add 2001:db8:1::1/64 dev hi nodad");
        ip(&h, "addr add 198.18.1.1/24 dev br0");
        ip(&h, "addr add 2001:db8:2::1/64 dev br0 nodad");
        ip(&h, "route add 169.254.169.254/32 via 198.18.0.2");
        ip(&h, "-6 route add fd00:ec2::254/128 via 2001:db8:1::2");
        run(Command::new("ip").args(["netns", "exec", &h, "sysctl", "-qw", "net.ipv4.ip_forward=1"]));
        run(Command::new("ip").args(["netns", "exec", &h, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]));
        // The container, one routed hop further.
        ip(&c, "addr add 198.18.1.2/24 dev vc");
        ip(&c, "addr add 2001:db8:2::2/64 dev vc nodad");
        ip(&c, "route add default via 198.18.1.1");
        ip(&c, "-6 route add default via 2001:db8:2::1");
        // The nested container, behind a bridge in the container, which forwards for it (IPv4).
        ip(&c, "addr add 198.18.3.1/24 dev br1");
        run(Command::new("ip").args(["netns", "exec", &c, "sysctl", "-qw", "net.ipv4.ip_forward=1"]));
        ip(&h, "route add 198.18.3.0/24 via 198.18.1.2");
        ip(&n, "addr add 198.18.3.2/24 dev vn");
        ip(&n, "route add default via 198.18.3.1");
        t.check_isolated();
        t
    }

    /// Before any traffic: each namespace holds only the links the test made, and each veth's peer is in
    /// one of the test's namespaces, so nothing reaches the machine's own network.
    fn check_isolated(&self) {
        let sorted = |ns: &str| {
            let mut l = links(ns);
            l.sort();
            l
        };
        assert_eq!(sorted(&self.imds), ["lo", "vi"]);
        assert_eq!(sorted(&self.host), ["br0", "hc", "hi", "lo"]);
        assert_eq!(sorted(&self.container), ["br1", "cn", "lo", "vc"]);
        assert_eq!(sorted(&self.nested), ["lo", "vn"]);
        for (ns, dev, peer_ns) in [
            (&self.container, "cn", &self.nested),
            (&self.nested, "vn", &self.container),
            (&self.host, "hi", &self.imds),
            (&self.host, "hc", &self.container),
            (&self.imds, "vi", &self.host),
            (&self.container, "vc", &self.host),
        ] {
            let detail = String::from_utf8(ip(ns, &format!("-d link show {dev}")).stdout).unwrap();
            assert!(
                detail.contains(&format!("link-netns {peer_ns}")),
                "{dev} in {ns} must pair with {peer_ns}: {detail}"
            );
        }
    }

    fn start_simulator(&mut self) {
        self.start_simulator_at(1);
    }

    fn start_simulator_at(&mut self, hop_limit: u8) {
        self.stop_simulator();
        let sim = crate::support::bin().parent().unwrap().join("examples/simulated-instance");
        assert!(sim.exists(), "{} is built by `cargo test` (or `cargo build --examples`)", sim.display());
        let mut child = in_ns(&self.imds, &[], sim.to_str().unwrap())
            .args(["--imds", "169.254.169.254:80", "--also-imds", "[fd00:ec2::254]:80", "--ec2", "198.18.0.2:8080"])
            .args(["--ttl-is-hop-limit", "--hop-limit", &hop_limit.to_string(), "--pending-ms", "300"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        answers.read_line(&mut first).unwrap();
        assert!(first.contains("169.254.169.254"), "simulator started: {first}");
        self.simulator = Some(child);
        self.answers = Some(answers);
    }

    /// The lines the simulator answers `command` with, up to its `end` (or its one line).
    fn ask(&mut self, command: &str) -> Vec<String> {
        let stdin = self.simulator.as_mut().and_then(|c| c.stdin.as_mut()).expect("the simulator runs");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let answers = self.answers.as_mut().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(answers.read_line(&mut line).unwrap() > 0, "the simulator answers {command}");
            let line = line.trim().to_string();
            if line == "end" || line == "ok" {
                return lines;
            }
            lines.push(line);
        }
    }

    /// The EC2 actions the simulator was asked, in order, since its start or the last call; the log is then
    /// emptied.
    fn ec2_actions(&mut self) -> Vec<String> {
        // Each line: ms server method path action status instance token-ttl.
        let lines = self.ask("requests");
        self.ask("reset-log");
        lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.get(1) == Some(&"ec2"))
            .map(|f| f[4].to_string())
            .collect()
    }

    fn stop_simulator(&mut self) {
        self.answers = None;
        if let Some(mut child) = self.simulator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A token request from the container with curl, a client that is not ours. The token stays here.
    fn container_gets_token(&self, url: &str) -> bool {
        let out = in_ns(&self.container, &[], "curl")
            .args(["-sS", "-m", "3", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"])
            .arg(format!("{url}/latest/api/token"))
            .output()
            .expect("curl is installed (.ci/run installs it)");
        out.status.success() && !out.stdout.is_empty()
    }

    /// doctor, in the container with the variable that an ECS task has, as a sign of where it runs.
    fn doctor(&self, ns: &str, mode: &str) -> (Output, Duration) {
        let sign = if ns == self.container || ns == self.nested {
            vec!["ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/task".to_string()]
        } else {
            vec![]
        };
        self.agent_with(ns, mode, &["doctor"], &sign)
    }

    fn agent(&self, ns: &str, mode: &str) -> (Output, Duration) {
        self.agent_with(ns, mode, &[], &[])
    }

    fn agent_with(&self, ns: &str, mode: &str, args: &[&str], extra_env: &[String]) -> (Output, Duration) {
        let bin = crate::support::bin();
        let start = Instant::now();
        // No metadata endpoint override: the agent uses its default, 169.254.169.254 or fd00:ec2::254.
        let mut env =
            vec![format!("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE={mode}"), format!("AWS_ENDPOINT_URL_EC2={EC2}")];
        env.extend_from_slice(extra_env);
        let out = in_ns(ns, &env, bin.to_str().unwrap()).args(args).output().unwrap();
        (out, start.elapsed())
    }
}

#[test]
fn the_container_gets_a_token_only_after_the_agent_ran_on_the_host() {
    let mut t = Topology::build();
    for (mode, url) in [("IPv4", "http://169.254.169.254"), ("IPv6", "http://[fd00:ec2::254]")] {
        t.start_simulator();
        assert!(!t.container_gets_token(url), "{mode}: at hop limit 1 the container gets no token");

        let (out, took) = t.agent(&t.container, mode);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{mode}: the agent in the container names the symptom: {stderr}");
        assert!(stderr.contains("not in the container"), "{mode}: {stderr}");
        assert!(took < Duration::from_secs(10), "{mode}: and does not hang: {took:?}");

        let (out, _) = t.agent(&t.host, mode);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode}: the agent on the host: {stderr}");
        // Verified where a container gets its token: the token answer arrives at TTL 2 (issue 21).
        assert!(stderr.contains("hop limit 1 -> 2") && stderr.contains("in effect"), "{mode}: {stderr}");

        assert!(t.container_gets_token(url), "{mode}: after the agent ran, the container gets its token");

        // doctor: in the container at hop limit 1 it names the hop limit; on the host it passes.
        if mode == "IPv4" {
            t.start_simulator();
            let (out, _) = t.doctor(&t.container, mode);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(4), "doctor in the container: {stdout}");
            assert!(stdout.contains("hop-limit symptom") && stdout.contains("raise the hop limit to 2"), "{stdout}");
            assert!(stdout.contains("this process is 2 hops from IMDS; the instance's hop limit must be at least 2"));
            // Behind a second bridge: three hops, and the advice says 3, not 2.
            let (out, _) = t.doctor(&t.nested, mode);
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!("doctor behind two bridges:\n{stdout}");
            assert_eq!(out.status.code(), Some(4), "doctor behind two bridges: {stdout}");
            assert!(stdout.contains("this process is 3 hops from IMDS; the instance's hop limit must be at least 3"));
            assert!(stdout.contains("raise the hop limit to 3"), "{stdout}");
            let (out, _) = t.doctor(&t.host, mode);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "doctor on the host: {stdout}");
            assert!(stdout.contains("[ok]   metadata service"), "{stdout}");
            assert!(stdout.contains("this process is 1 hop from IMDS"), "{stdout}");
        }
    }
}

/// Sensing across real hops (issue 21). At hop limit 3 the token answer reaches a container one bridge away
/// with TTL 2: compliant at W = 2 by IMDS's own answer, with no EC2 call. Behind a second bridge it arrives
/// with TTL 1: not proof, so EC2 is asked, says 3, and nothing is lowered.
#[test]
fn sensing_proves_compliance_two_hops_away_and_never_lowers_three_hops_away() {
    let mut t = Topology::build();
    t.start_simulator_at(3);
    let (out, _) = t.agent(&t.container, "IPv4");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("compliant by IMDS itself: the token answer reaches this process with TTL >= 2"),
        "{stderr}"
    );

    let (out, _) = t.agent(&t.nested, "IPv4");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("compliant by IMDS itself"), "TTL 1 at W = 2 is no proof: {stderr}");
    assert!(stderr.contains("hop limit 3") && stderr.contains("already compliant, nothing changed"), "{stderr}");

    let (out, _) = t.agent_with(&t.host, "IPv4", &["check", "--evidence", "ec2", "--output", "json"], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["after"]["hop_limit"], 3, "EC2 still says 3: {doc}");
}

/// The one-call change (issue 29) on real networking. On the host no router stands between the agent and IMDS
/// (a SYN sent with TTL 1 is answered), so the token answer's TTL is the hop limit itself: hop limit 1 -> 2 is
/// one ModifyInstanceMetadataOptions and no DescribeInstances, over IPv4 and IPv6, and a second run costs
/// nothing. In a container one routed hop away the TTL-1 SYN dies at the host: the answer's TTL is the hop limit
/// less the hop, so EC2 is read first, as before (hop limit 2 -> 3 there).
#[test]
fn a_change_costs_one_ec2_call_on_the_host_and_a_container_reads_ec2_first() {
    let mut t = Topology::build();
    for mode in ["IPv4", "IPv6"] {
        t.start_simulator_at(1);
        let (out, _) = t.agent_with(&t.host, mode, &["--output", "json"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode}: {stderr}");
        assert_eq!(t.ec2_actions(), ["ModifyInstanceMetadataOptions"], "{mode}: {stderr}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((doc["before"]["hop_limit"].as_i64(), doc["evidence"].as_str()), (Some(1), Some("imds")), "{doc}");
        assert!(stderr.contains("hop limit 1 -> 2") && stderr.contains("in effect"), "{mode}: {stderr}");
        let (out, _) = t.agent(&t.host, mode);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(t.ec2_actions().is_empty(), "{mode}: the second run makes no EC2 call");
    }
    t.start_simulator_at(2);
    let (out, _) = t.agent_with(&t.container, "IPv4", &["--hop-limit", "3", "--verbose"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("a router stands between"), "the TTL-1 SYN did not reach IMDS: {stderr}");
    let actions = t.ec2_actions();
    assert_eq!(actions[..2], ["DescribeInstances", "ModifyInstanceMetadataOptions"], "{stderr}");
    // Verified by EC2's `applied`: from behind a router the answer would arrive at TTL 2, never at 3. (Before,
    // the run waited for it on the data plane until --wait-timeout, and failed with 6.)
    assert!(actions[2..].iter().all(|a| a == "DescribeInstances") && actions.len() > 2, "{actions:?}");
    assert!(stderr.contains("hop limit 2 -> 3") && stderr.contains("applied"), "{stderr}");
}
