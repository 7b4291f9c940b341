//! `imds-hop-limit watch` (issue 22), black-box against the simulator: it applies at start, makes no EC2 call
//! while IMDS proves compliance, repairs a drift within one interval, logs per change and not per look, backs
//! off without exiting while EC2 fails, and exits 0 at once on SIGTERM.

use crate::simulator::{Scenario, Simulator};
use crate::support::{Followed, ec2_calls, follow, imds_like, lines_at, modifies, scenario, until};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn watch(sim: &Simulator, args: &[&str]) -> Child {
    crate::support::process(sim, crate::support::bin())
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `watch` with its stderr followed as it comes.
fn followed(sim: &Simulator, args: &[&str]) -> (Child, Followed) {
    let mut child = watch(sim, args);
    let log = follow(&mut child);
    (child, log)
}

/// SIGTERM, then the exit code and stderr; the stop must be prompt (a kubelet waits 30 s, then kills).
fn stop((mut child, log): (Child, Followed)) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let took = start.elapsed();
    (status.code(), log.finish(), took)
}

#[test]
fn watch_applies_stays_quiet_and_cheap_while_compliant_and_repairs_a_drift() {
    let sim = Simulator::start(imds_like(1));
    let child = followed(&sim, &["--interval", "300ms"]);
    until("the first change", Duration::from_secs(30), || sim.effective_hop_limit() == 2);
    // Once the change is in effect and said so, several compliant looks: no EC2 call at all.
    child.1.until("changed (hop limit 1 -> 2)", 1, Duration::from_secs(10));
    sim.reset_log();
    until("four looks", Duration::from_secs(10), || sim.probe_requests() >= 8);
    assert_eq!(ec2_calls(&sim), 0, "compliant looks cost no EC2 call: {:?}", sim.requests());
    // Somebody lowers it: repaired within an interval (plus the change itself).
    sim.set_hop_limit(1);
    until("the drift repaired", Duration::from_secs(10), || sim.effective_hop_limit() == 2);
    assert_eq!(modifies(&sim).len(), 1, "one change for the drift");
    // The change is seen on the data plane within a probe or two, and said once.
    child.1.until("changed (hop limit 1 -> 2)", 2, Duration::from_secs(10));
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
        s.policy.unauthorized = vec!["DescribeInstances"];
    }));
    let child = followed(&sim, &["--interval", "200ms", "--ec2-interval", "2s"]);
    until("two failed looks", Duration::from_secs(15), || {
        sim.requests().iter().filter(|r| r.action == "DescribeInstances").count() >= 2
    });
    let (code, stderr, _) = stop(child);
    assert_eq!(code, Some(0), "still running when stopped: {stderr}");
    let errors = lines_at(&stderr, "ERROR");
    assert_eq!(errors.len(), 1, "the same failure is logged once: {stderr}");
    assert!(errors[0].contains("backing off"), "{stderr}");

    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    let child = followed(&sim, &["--interval", "200ms", "--ec2-interval", "1s"]);
    let describes = || sim.requests().iter().filter(|r| r.action == "DescribeInstances").count();
    until("the first look", Duration::from_secs(15), || describes() >= 1);
    let first = Instant::now();
    until("two more looks", Duration::from_secs(15), || describes() >= 3);
    let took = first.elapsed();
    let (_, stderr, _) = stop(child);
    // Two more looks at --ec2-interval (1 s, give or take a tenth) take at least 1.8 s; at --interval, 0.4 s.
    assert!(
        took >= Duration::from_millis(1750),
        "one DescribeInstances per --ec2-interval, not per --interval: {took:?}"
    );
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
