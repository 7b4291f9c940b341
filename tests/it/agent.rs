//! Black-box tests of the `imds-hop-limit` binary against the simulated instance on loopback.

use crate::simulator::{
    Applies, Ec2Fault, INSTANCE_ID, ImdsFault, Options, REGION, SECRET_MARK, STATIC_KEY, STATIC_SECRET, Scenario,
    Simulator,
};
use crate::support::{agent, expect, json, modifies, run, scenario};
use std::time::{Duration, Instant};

#[test]
fn changes_hop_limit_waits_for_applied_and_second_run_changes_nothing() {
    let sim = Simulator::start(Scenario::default());
    let first = run(agent(&sim).arg("--output").arg("json"));
    expect(&first, 0);
    assert_eq!(sim.options(), ("applied".into(), Some(2), Some("enabled"), Some("optional")));
    let m = modifies(&sim);
    assert_eq!(m.len(), 1);
    let sent: Vec<&str> = m[0]
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("Http") || k.starts_with("Instance"))
        .collect();
    assert_eq!(sent, ["InstanceId", "HttpPutResponseHopLimit"], "only what must change is sent");
    assert_eq!(sim.token_requests(), 1, "one IMDS token for identity and credentials");
    let j = json(&first);
    assert_eq!(j["action"], "changed");
    assert_eq!(j["instance_id"], INSTANCE_ID);
    assert_eq!(j["region"], REGION);
    assert_eq!(j["before"]["hop_limit"], 1);
    assert_eq!(j["after"]["hop_limit"], 2);
    assert_eq!(j["after"]["state"], "applied");
    assert_eq!(j["verified"], true);
    assert!(j["elapsed_ms"].as_u64().unwrap() >= 300, "waited for the pending time");
    assert!(first.stderr.contains("hop limit 1 -> 2"), "{}", first.stderr);

    let calls_before = sim.requests().iter().filter(|r| r.server == "ec2").count();
    let second = run(agent(&sim).args(["--output", "json"]));
    expect(&second, 0);
    assert_eq!(modifies(&sim).len(), 1, "a second run makes no Modify call");
    let calls = sim.requests().iter().filter(|r| r.server == "ec2").count() - calls_before;
    assert_eq!(calls, 1, "a no-op run makes exactly one EC2 call");
    assert_eq!(json(&second)["action"], "unchanged");
    assert!(second.stderr.contains("already compliant"), "{}", second.stderr);
}

#[test]
fn check_exits_3_when_not_compliant_and_0_when_compliant_without_modifying() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim).args(["check", "--output", "json"]));
    expect(&r, 3);
    assert_eq!(json(&r)["action"], "not-compliant");
    assert!(modifies(&sim).is_empty());
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    expect(&run(agent(&sim).arg("check")), 0);
    assert!(modifies(&sim).is_empty());
}

#[test]
fn dry_run_asks_ec2_and_changes_nothing() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim).args(["--dry-run", "--output", "json"]));
    expect(&r, 3);
    assert_eq!(json(&r)["action"], "would-change");
    let m = modifies(&sim);
    assert_eq!(m.len(), 1);
    assert!(m[0].dry_run);
    assert_eq!(sim.options().1, Some(1));

    let sim = Simulator::start(scenario(|s| s.policy.unauthorized = vec!["ModifyInstanceMetadataOptions"]));
    let r = run(agent(&sim).arg("--dry-run"));
    expect(&r, 5);
    assert!(r.stderr.contains("ec2:ModifyInstanceMetadataOptions"), "{}", r.stderr);
}

#[test]
fn not_authorized_names_the_missing_action_and_the_policy() {
    for action in ["ModifyInstanceMetadataOptions", "DescribeInstances"] {
        let sim = Simulator::start(scenario(|s| s.policy.unauthorized = vec![action]));
        let r = run(&mut agent(&sim));
        expect(&r, 5);
        assert!(r.stderr.contains(&format!("ec2:{action}")), "{}", r.stderr);
        assert!(r.stderr.contains("iam-policy.json"), "{}", r.stderr);
    }
}

#[test]
fn an_instance_without_a_role_is_told_so() {
    let sim = Simulator::start(scenario(|s| s.role_attached = false));
    let r = run(&mut agent(&sim));
    expect(&r, 5);
    assert!(r.stderr.contains("no IAM role is attached"), "{}", r.stderr);
    assert!(modifies(&sim).is_empty());
}

#[test]
fn malformed_credentials_are_a_credentials_error() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::MalformedCredentials)));
    let r = run(&mut agent(&sim));
    expect(&r, 5);
    assert!(r.stderr.contains("credentials"), "{}", r.stderr);
}

#[test]
fn unknown_instance_exits_7() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim).args(["--instance-id", "i-0fffffffffffffff0"]));
    expect(&r, 7);
    assert!(r.stderr.contains("i-0fffffffffffffff0"), "{}", r.stderr);
}

#[test]
fn pending_forever_gives_up_at_wait_timeout_with_6() {
    let sim = Simulator::start(scenario(|s| s.applies = Applies::Never));
    let r = run(agent(&sim).args(["--wait-timeout", "2s"]));
    expect(&r, 6);
    assert!(r.stderr.contains("--wait-timeout"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
}

#[test]
fn the_overall_timeout_bounds_the_wait_too() {
    let sim = Simulator::start(scenario(|s| s.applies = Applies::Never));
    let r = run(agent(&sim).args(["--timeout", "2s"]));
    assert!(r.code == 6, "exit {}: {}", r.code, r.stderr);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
}

#[test]
fn no_wait_returns_once_ec2_accepted() {
    let sim = Simulator::start(scenario(|s| s.applies = Applies::After(Duration::from_secs(30))));
    let r = run(agent(&sim).args(["--no-wait", "--output", "json"]));
    expect(&r, 0);
    let j = json(&r);
    assert_eq!(j["action"], "changed");
    assert_eq!(j["verified"], false);
    assert_eq!(j["after"]["state"], "pending");
    assert!(r.took < Duration::from_secs(10));
}

#[test]
fn unreachable_metadata_service_exits_4_at_the_deadline() {
    let port = crate::support::closed_port();
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .args(["--timeout", "2"]));
    expect(&r, 4);
    assert!(r.stderr.contains("cannot reach the instance metadata service"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
}

#[test]
fn metadata_refusing_connections_at_boot_is_retried() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::RefuseFor(Duration::from_millis(1500)))));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert!(r.stderr.contains("retrying"), "{}", r.stderr);
    assert_eq!(sim.options().1, Some(2));
}

#[test]
fn a_silent_token_answer_is_named_as_the_hop_limit_symptom_and_fails_fast() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::TokenNeverAnswers)));
    let r = run(&mut agent(&sim));
    expect(&r, 4);
    assert!(r.stderr.contains("Run imds-hop-limit on the host, not in the container"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(10), "failed fast, not at the 180 s deadline: {:?}", r.took);
}

#[test]
fn a_disabled_endpoint_is_fixed_from_outside_with_flags_and_static_credentials() {
    let sim = Simulator::start(scenario(|s| s.options.http_endpoint = Some("disabled")));
    let r = run(&mut agent(&sim));
    expect(&r, 4);
    assert!(r.stderr.contains("disabled"), "{}", r.stderr);

    let r = run(agent(&sim)
        .args(["--instance-id", INSTANCE_ID, "--region", REGION])
        .env("AWS_ACCESS_KEY_ID", STATIC_KEY)
        .env("AWS_SECRET_ACCESS_KEY", STATIC_SECRET));
    expect(&r, 0);
    assert_eq!(sim.options(), ("applied".into(), Some(2), Some("enabled"), Some("optional")));
    assert_eq!(sim.token_requests(), 1, "only the first run asked IMDS");
}

#[test]
fn aws_region_overrides_imds_and_reaches_the_signature() {
    let sim = Simulator::start(Scenario::default());
    // The simulator accepts only signatures scoped to a region enabled for the account, as EC2 does.
    let r = run(agent(&sim).env("AWS_REGION", "me-south-1"));
    expect(&r, 5);
    // In another enabled region, the instance does not exist.
    let r = run(agent(&sim).env("AWS_REGION", "eu-west-1"));
    expect(&r, 7);
    let r = run(agent(&sim).env("AWS_REGION", REGION));
    expect(&r, 0);
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let sim = Simulator::start(scenario(|s| {
        s.ec2_faults.push(Ec2Fault::ThrottleFirst(2));
        s.ec2_faults.push(Ec2Fault::ServerErrorFirst(1));
    }));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert_eq!(sim.options().1, Some(2));
}

#[test]
fn slow_ec2_answers_are_waited_for() {
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::Slow(Duration::from_millis(400)))));
    expect(&run(&mut agent(&sim)), 0);
}

#[test]
fn malformed_ec2_answer_is_an_unexpected_error() {
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::MalformedDescribe)));
    let r = run(&mut agent(&sim));
    expect(&r, 1);
    assert!(r.stderr.contains("DescribeInstances"), "{}", r.stderr);
}

#[test]
fn fields_ec2_leaves_out_are_unknown_and_set() {
    let unreported = || Options { http_tokens: None, hop_limit: None, http_endpoint: None, ipv6: None, tags: None };
    let sent = |sim: &Simulator| -> Vec<String> {
        modifies(sim)[0].params.iter().map(|(k, _)| k.clone()).filter(|k| k.starts_with("Http")).collect()
    };
    // IMDS answered for this very instance, so its endpoint is enabled: only the hop limit is sent.
    let sim = Simulator::start(scenario(|s| s.options = unreported()));
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 0);
    assert_eq!(sent(&sim), ["HttpPutResponseHopLimit"]);
    assert_eq!(json(&r)["before"]["hop_limit"], serde_json::Value::Null);
    // Given --instance-id, the instance may be another one: an unreported endpoint is set too.
    let sim = Simulator::start(scenario(|s| s.options = unreported()));
    expect(&run(agent(&sim).args(["--instance-id", INSTANCE_ID])), 0);
    assert_eq!(sent(&sim), ["HttpPutResponseHopLimit", "HttpEndpoint"], "never HttpTokens unless asked");
}

#[test]
fn http_tokens_only_when_asked_and_exact_lowers() {
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(5)));
    expect(&run(&mut agent(&sim)), 0);
    assert!(modifies(&sim).is_empty(), "a higher hop limit is kept");
    expect(&run(agent(&sim).args(["--exact", "--http-tokens", "required"])), 0);
    assert_eq!(sim.options(), ("applied".into(), Some(2), Some("enabled"), Some("required")));
    let m = modifies(&sim);
    assert!(m[0].params.contains(&("HttpTokens".into(), "required".into())));
}

#[test]
fn optional_toggles_and_env_flags() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim)
        .env("IMDS_HOP_LIMIT", "3")
        .env("IMDS_HOP_LIMIT_IPV6_ENDPOINT", "enabled")
        .args(["--instance-tags", "enabled"]));
    expect(&r, 0);
    let m = modifies(&sim);
    for pair in [("HttpPutResponseHopLimit", "3"), ("HttpProtocolIpv6", "enabled"), ("InstanceMetadataTags", "enabled")]
    {
        assert!(m[0].params.contains(&(pair.0.into(), pair.1.into())), "{pair:?} in {:?}", m[0].params);
    }
}

#[test]
fn no_secret_is_printed_even_at_the_most_verbose_level() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim).args(["-vv", "--output", "json"]).env("RUST_LOG", "trace"));
    expect(&r, 0);
    let secrets = sim.secrets();
    assert!(secrets.len() >= 4, "the run was handed a token and credentials: {}", secrets.len());
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("TRACE") || all.contains("DEBUG"), "the verbose levels really logged: {all}");
    for secret in &secrets {
        if let Some(line) = all.lines().find(|l| l.contains(secret.as_str())) {
            let shown: String = line.replace(secret.as_str(), "<SECRET>").chars().take(600).collect();
            panic!("a secret was printed, in this line: {shown}");
        }
    }
    assert!(!all.contains(SECRET_MARK), "a secret printed");
}

#[test]
fn usage_errors_exit_2() {
    let sim = Simulator::start(Scenario::default());
    for args in [
        &["--hop-limit", "65"][..],
        &["--hop-limit", "0"],
        &["check", "--dry-run"],
        &["--instance-id", "web-1"],
        &["--region", "Mars"],
        &["--wait-timeout", "soon"],
        &["--bogus"],
    ] {
        let r = run(agent(&sim).args(args));
        expect(&r, 2);
    }
    assert!(sim.requests().is_empty(), "usage errors touch nothing");
}

#[test]
fn version_and_help() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim).arg("--version"));
    expect(&r, 0);
    assert!(r.stdout.starts_with("imds-hop-limit "), "{}", r.stdout);
    let r = run(agent(&sim).arg("--help"));
    expect(&r, 0);
    for flag in
        ["--hop-limit", "--exact", "--http-tokens", "--dry-run", "--no-wait", "--wait-timeout", "--timeout", "--output"]
    {
        assert!(r.stdout.contains(flag), "{flag} in --help");
    }
    assert!(r.stdout.contains("8 EC2 kept throttling"), "every exit code in --help: {}", r.stdout);
}

#[test]
fn sigterm_ends_the_run_with_143_saying_where_it_was() {
    let sim = Simulator::start(scenario(|s| s.applies = Applies::Never));
    let child =
        crate::support::process(&sim, crate::support::bin()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while modifies(&sim).is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    // Only a guard against waiting out --wait-timeout (120 s): how soon the signal ends the run is no
    // promise a loaded test machine can time.
    assert!(killed.elapsed() < Duration::from_secs(60), "ended by the signal: {:?}", killed.elapsed());
    assert_eq!(out.status.code(), Some(143));
    let stderr = String::from_utf8_lossy(&out.stderr);
    crate::support::no_secret(&stderr);
    assert!(stderr.contains("SIGTERM") && stderr.contains("waiting"), "{stderr}");
}

/// Remote mode on a stopped instance: EC2 takes the change and applies it when the instance starts, so the
/// agent reports that at the first read (exit 0), as the fleet does, instead of waiting out --wait-timeout
/// (issue 20's drift). A terminated instance is gone: exit 7 at once.
#[test]
fn a_stopped_instance_applies_at_start_and_a_terminated_one_is_gone() {
    use crate::support::{FLEET_ENV, web};
    let stopped = web(1, REGION, "stopped", 1);
    let gone = web(2, REGION, "terminated", 1);
    let (stopped_id, gone_id) = (stopped.id.clone(), gone.id.clone());
    let sim = Simulator::start(scenario(|s| s.instances = vec![stopped, gone]));
    let r =
        run(agent(&sim).envs(FLEET_ENV).args(["--instance-id", &stopped_id, "--region", REGION, "--output", "json"]));
    expect(&r, 0);
    assert!(r.took < Duration::from_secs(20), "not the whole --wait-timeout: {:?}", r.took);
    assert_eq!(json(&r)["action"], "changed-applies-at-start", "{}", r.stdout);
    assert!(r.stderr.contains("the instance is stopped: EC2 applies the change when it starts"), "{}", r.stderr);
    let r = run(agent(&sim).envs(FLEET_ENV).args(["--instance-id", &gone_id, "--region", REGION]));
    expect(&r, 7);
    assert!(r.stderr.contains("is terminated"), "{}", r.stderr);
    assert!(modifies(&sim).iter().all(|m| m.instance() != Some(gone_id.as_str())), "nothing sent to it");
}

/// Each command refuses, with exit 2 and the reason, a flag it does not use, rather than running and ignoring
/// it (apply's flags before another command's name too); the same setting from the environment is not read
/// (one EnvironmentFile serves every command). Every command refuses `--timeout 0` (issue 20).
#[test]
fn flags_a_command_does_not_use_are_usage_errors() {
    let sim = Simulator::start(Scenario::default());
    for (args, says) in [
        (&["check", "--wait-timeout", "5s"][..], "`imds-hop-limit check` does not take --wait-timeout"),
        (&["check", "--no-wait"], "`imds-hop-limit check` does not take --no-wait"),
        (&["doctor", "--evidence", "ec2"], "`imds-hop-limit doctor` does not take --evidence"),
        (&["watch", "--output", "json"], "`imds-hop-limit watch` does not take --output"),
        (
            &["fleet", "check", "--imds-timeout", "5", "--no-wait"],
            "`imds-hop-limit fleet check` does not take --imds-timeout",
        ),
        (
            &["defaults", "check", "--wait-timeout", "1m"],
            "`imds-hop-limit defaults check` does not take --wait-timeout",
        ),
        (&["--timeout", "0"], "for '--timeout <DURATION>': a deadline must be more than 0"),
        (&["fleet", "check", "--timeout", "0"], "for '--timeout <DURATION>': a deadline must be more than 0"),
        (&["defaults", "check", "--timeout", "0"], "for '--timeout <DURATION>': a deadline must be more than 0"),
        (&["--wait-timeout", "soon"], "invalid value 'soon' for '--wait-timeout <DURATION>': not a duration"),
        (&["--hop-limit", "3", "check"], "the subcommand 'check' cannot be used with '--hop-limit <N>'"),
    ] {
        let r = run(agent(&sim).args(args));
        expect(&r, 2);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert!(sim.requests().is_empty(), "{args:?}: nothing was asked of anyone");
    }
    let r = run(agent(&sim).arg("check").env("IMDS_HOP_LIMIT_WAIT_TIMEOUT", "5s").env("IMDS_HOP_LIMIT_NO_WAIT", "1"));
    expect(&r, 3);
}
