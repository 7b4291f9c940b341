//! `imds-hop-limit watch` (issue 22), black-box against the simulator: it applies at start, makes no EC2 call
//! while IMDS proves compliance, repairs a drift within one interval, logs per change and not per look, backs
//! off without exiting while EC2 fails, and exits 0 at once on SIGTERM.

use crate::simulator::{Options, Scenario, Simulator};
use crate::support::{ec2_calls, lines_at, modifies, no_secret, scenario};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn imds_like(hop: i64) -> Scenario {
    scenario(|s| {
        s.ttl_is_hop_limit = true;
        s.options = Options { hop_limit: Some(hop), ..Options::default() };
    })
}

fn watch(sim: &Simulator, args: &[&str]) -> Child {
    crate::support::process(sim, crate::support::bin())
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then the exit code and stderr; the stop must be prompt (a kubelet waits 30 s, then kills).
fn stop(child: Child) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    no_secret(&stderr);
    (out.status.code(), stderr, start.elapsed())
}

#[test]
fn watch_applies_stays_quiet_and_cheap_while_compliant_and_repairs_a_drift() {
    let sim = Simulator::start(imds_like(1));
    let child = watch(&sim, &["--interval", "300ms"]);
    until("the first change", Duration::from_secs(30), || sim.effective_hop_limit() == 2);
    // Several compliant looks: no EC2 call at all.
    std::thread::sleep(Duration::from_millis(500));
    sim.reset_log();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ec2_calls(&sim), 0, "compliant looks cost no EC2 call: {:?}", sim.requests());
    assert!(sim.probe_requests() >= 4, "it kept looking: {} probes", sim.probe_requests());
    // Somebody lowers it: repaired within an interval (plus the change itself).
    sim.set_hop_limit(1);
    until("the drift repaired", Duration::from_secs(10), || sim.effective_hop_limit() == 2);
    assert_eq!(modifies(&sim).len(), 1, "one change for the drift");
    // The change is seen on the data plane within a probe or two; then the next looks.
    std::thread::sleep(Duration::from_millis(1000));
    let (code, stderr, took) = stop(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_secs(30), "ended by the signal, not by a look: {took:?}");
    let info = lines_at(&stderr, "INFO");
    let changes = info.iter().filter(|l| l.contains("changed (hop limit 1 -> 2)")).count();
    assert_eq!(changes, 2, "one line per change, none per look: {stderr}");
    assert_eq!(info.len(), 3, "two changes and the stop, for about ten looks: {stderr}");
}

#[test]
fn watch_backs_off_without_exiting_while_ec2_fails_and_says_what_a_look_costs() {
    // IMDS cannot prove anything (the default TTL of 64), and EC2 refuses the credentials at first.
    let sim = Simulator::start(scenario(|s| {
        s.options.hop_limit = Some(2);
        s.unauthorized = vec!["DescribeInstances"];
    }));
    let child = watch(&sim, &["--interval", "200ms", "--ec2-interval", "2s"]);
    until("two failed looks", Duration::from_secs(15), || {
        sim.requests().iter().filter(|r| r.action == "DescribeInstances").count() >= 2
    });
    let (code, stderr, _) = stop(child);
    assert_eq!(code, Some(0), "still running when stopped: {stderr}");
    let errors = lines_at(&stderr, "ERROR");
    assert_eq!(errors.len(), 1, "the same failure is logged once: {stderr}");
    assert!(errors[0].contains("backing off"), "{stderr}");

    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    let child = watch(&sim, &["--interval", "200ms", "--ec2-interval", "1s"]);
    std::thread::sleep(Duration::from_millis(2500));
    let describes = sim.requests().iter().filter(|r| r.action == "DescribeInstances").count();
    let (_, stderr, _) = stop(child);
    assert!((2..=4).contains(&describes), "one DescribeInstances per --ec2-interval, not per --interval: {describes}");
    assert!(stderr.contains("through EC2 (IMDS cannot prove the hop limit here)"), "{stderr}");
}

#[test]
fn watch_refuses_what_it_cannot_do() {
    let sim = Simulator::start(Scenario::default());
    for args in [&["--interval", "10ms"][..], &["--interval", "2m", "--ec2-interval", "1m"], &["--dry-run"]] {
        let out = watch(&sim, args).wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
