//! Many instances of one account at once (issue 12): EC2's shared request budget, throttling at every call
//! site, the deadline, and what a run costs the account. Figures at scale are the storm benchmark's
//! (benches/storm.py); these tests assert outcomes and exact counts, not times.

use crate::simulator::{
    Applies, Buckets, Ec2Fault, INSTANCE_ID, REGION, STATIC_KEY, STATIC_SECRET, Scenario, Simulator, more_instance_id,
};
use crate::support::{agent, ec2_calls, expect, lines_at, modifies, no_secret, run, scenario};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn a_compliant_instance_costs_exactly_one_describe() {
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    expect(&run(&mut agent(&sim)), 0);
    let ec2: Vec<String> = sim.requests().iter().filter(|r| r.server == "ec2").map(|r| r.action.clone()).collect();
    assert_eq!(ec2, ["DescribeInstances"]);
}

/// The count is exact; how soon `applied` is seen is a figure of the benchmark (benches/storm.py), not a
/// timed assertion here.
#[test]
fn a_change_applied_after_two_seconds_costs_at_most_four_calls() {
    let sim = Simulator::start(scenario(|s| s.applies = Applies::After(Duration::from_secs(2))));
    expect(&run(&mut agent(&sim)), 0);
    let ec2: Vec<_> = sim.requests().into_iter().filter(|r| r.server == "ec2").collect();
    assert!(ec2.len() <= 4, "{} EC2 calls: {:?}", ec2.len(), ec2.iter().map(|r| &r.action).collect::<Vec<_>>());
    assert_eq!(ec2[0].action, "DescribeInstances");
    assert_eq!(ec2[1].action, "ModifyInstanceMetadataOptions");
    let applied = sim.applied_at_ms().unwrap();
    let seen = ec2.iter().filter(|r| r.action == "DescribeInstances").map(|r| r.at_ms).max().unwrap();
    assert!(seen >= applied, "verified by an answer that came after EC2 applied the change");
}

#[test]
fn throttling_at_every_call_site_is_retried_to_success_and_said_once() {
    // The first describe, the first modify and the first poll are each throttled once.
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::ThrottleRequests(vec![0, 2, 4]))));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    let log: Vec<(String, u16)> =
        sim.requests().into_iter().filter(|r| r.server == "ec2").map(|r| (r.action, r.status)).collect();
    let throttled: Vec<&str> = log.iter().filter(|(_, s)| *s == 503).map(|(a, _)| a.as_str()).collect();
    assert_eq!(throttled, ["DescribeInstances", "ModifyInstanceMetadataOptions", "DescribeInstances"], "{log:?}");
    assert_eq!(log.iter().filter(|(a, s)| a == "ModifyInstanceMetadataOptions" && *s == 200).count(), 1);
    let said: Vec<&str> = lines_at(&r.stderr, "INFO").into_iter().filter(|l| l.contains("throttling")).collect();
    assert_eq!(said.len(), 1, "said once, at INFO: {}", r.stderr);
    assert_eq!(sim.options().0, "applied");
}

#[test]
fn throttling_past_the_deadline_ends_with_8_and_what_ec2_said_last() {
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::ThrottleFirst(usize::MAX))));
    let r = run(agent(&sim).args(["--timeout", "6s"]));
    expect(&r, 8);
    assert!(r.stderr.contains("EC2 kept throttling this account's requests for"), "{}", r.stderr);
    assert!(r.stderr.contains("RequestLimitExceeded") && r.stderr.contains("request id"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(9), "{:?}", r.took);
    assert!(modifies(&sim).is_empty());
    // Backed off, not hammering: a handful of attempts in 6 s.
    assert!(ec2_calls(&sim) <= 12, "{} attempts", ec2_calls(&sim));
}

#[test]
fn a_modify_whose_answer_was_lost_is_not_sent_again() {
    // The modify's answer is a 500 (EC2 may have done it): the agent looks before sending it again.
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::LoseFirstModifyAnswer)));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert_eq!(modifies(&sim).len(), 1, "{}", r.stderr);
    assert_eq!(sim.options(), ("applied".into(), Some(2), Some("enabled"), Some("optional")));
}

/// A storm in the test suite: 60 agents started together against one account whose buckets are small (a
/// describe burst of 10 at 20/s, a modify burst of 10 at 5/s: a 10 s floor for the modifies), each fixing
/// its own instance. All must succeed, each instance applied, and no accepted modify sent twice.
#[test]
fn a_storm_of_sixty_agents_on_small_buckets_all_succeed() {
    const N: usize = 60;
    let sim = Simulator::start(Scenario {
        more_instances: N - 1,
        applies: Applies::After(Duration::from_secs(2)),
        buckets: Some(Buckets { describe: (10.0, 20.0), modify: (10.0, 5.0), defaults: (2.0, 2.0), time_scale: 1.0 }),
        ..Scenario::default()
    });
    let ids: Vec<String> = std::iter::once(INSTANCE_ID.to_string()).chain((0..N - 1).map(more_instance_id)).collect();
    let bin = crate::support::bin();
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            crate::support::process(&sim, &bin)
                .env("AWS_ACCESS_KEY_ID", STATIC_KEY)
                .env("AWS_SECRET_ACCESS_KEY", STATIC_SECRET)
                .args(["--instance-id", id, "--region", REGION])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failed = Vec::new();
    for (id, child) in ids.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        no_secret(&stderr);
        if out.status.code() != Some(0) {
            failed.push(format!("{id}: {:?}: {stderr}", out.status.code()));
        }
    }
    assert!(failed.is_empty(), "{} of {N} failed:\n{}", failed.len(), failed.join("\n"));
    for id in &ids {
        assert_eq!(sim.options_of(id).0, "applied", "{id}");
        assert_eq!(sim.options_of(id).1, Some(2), "{id}");
    }
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for r in sim.requests().iter().filter(|r| r.action == "ModifyInstanceMetadataOptions" && r.status == 200) {
        *accepted.entry(r.instance().unwrap().to_string()).or_default() += 1;
    }
    assert!(accepted.values().all(|n| *n == 1), "an accepted modify sent twice: {accepted:?}");
    assert_eq!(accepted.len(), N);
    let calls = ec2_calls(&sim);
    let throttled = sim.requests().iter().filter(|r| r.throttled()).count();
    eprintln!("storm of {N}: {calls} EC2 calls ({:.1} per instance), {throttled} throttled", calls as f64 / N as f64);
}
