//! What an independent fault test and a real boot found (issue 13), each as a black-box test of the binary
//! against the simulator. Every run goes through `support::run`, which fails on any secret in the output;
//! every run is at trace level (`support::agent` sets RUST_LOG=trace).

use crate::simulator::{
    Applies, Ec2Fault, INSTANCE_ID, ImdsFault, REGION, STATIC_KEY, STATIC_SECRET, Scenario, Simulator,
};
use crate::support::{
    agent, closed_port, ec2_calls, expect, json, lines_at, modifies, no_secret, run, scenario, test_ca,
};
use std::time::Duration;

#[test]
fn an_empty_endpoint_variable_counts_as_unset_in_every_mode() {
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    for mode in [&["apply"][..], &["check"], &["doctor"]] {
        // AWS_ENDPOINT_URL empty beside a real AWS_ENDPOINT_URL_EC2, and the other way round.
        // An empty endpoint mode too: the setting config reads is unset, not an invalid mode.
        let r =
            run(agent(&sim).args(mode).env("AWS_ENDPOINT_URL", "").env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", ""));
        expect(&r, 0);
        let r = run(agent(&sim).args(mode).env("AWS_ENDPOINT_URL_EC2", "").env("AWS_ENDPOINT_URL", &sim.ec2_url));
        expect(&r, 0);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn a_closed_stdout_does_not_turn_success_into_a_crash() {
    let sim = Simulator::start(Scenario::default());
    let out = crate::support::process(&sim, "bash")
        .args(["-c", r#"set -o pipefail; "$0" --output json | true; echo "agent exit ${PIPESTATUS[0]}" >&2"#])
        .arg(crate::support::bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    no_secret(&stderr);
    assert!(stderr.contains("agent exit 0"), "{stderr}");
    assert!(stderr.contains("could not write the report to stdout"), "{stderr}");
    assert_eq!(sim.options(), ("applied".into(), Some(2), Some("enabled"), Some("optional")));
}

#[test]
fn error_pages_that_echo_the_request_print_no_secret_and_say_status_and_code() {
    // Each echoes the request line, every header (Authorization with the access key id, the session token)
    // and the body; runs that EC2 keeps failing end at a short deadline.
    let cases: Vec<(Scenario, i32, &str)> = vec![
        (scenario(|s| s.ec2_faults.push(Ec2Fault::EchoErrorPage(400))), 1, "HTTP 400"),
        (scenario(|s| s.ec2_faults.push(Ec2Fault::EchoErrorPage(503))), 8, "HTTP 503"),
        (scenario(|s| s.ec2_faults.push(Ec2Fault::EchoOkNotXml)), 1, "not an EC2 answer"),
        (scenario(|s| s.ec2_faults.push(Ec2Fault::EchoInMessage)), 1, "InvalidRequest"),
    ];
    for (scenario, code, shown) in cases {
        let sim = Simulator::start(scenario);
        let r = run(agent(&sim).args(["--timeout", "4s"]));
        expect(&r, code);
        assert!(r.stderr.contains(shown), "{shown}: {}", r.stderr);
        assert!(!r.stderr.contains("x-amz-security-token:"), "no header dump: {}", r.stderr);
        assert!(sim.secrets().len() >= 3, "the run was handed credentials to leak");
    }
    // IMDS's own 500 page echoing the request, its token header included: retried, then fine.
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::Echo500First(6))));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
}

#[test]
fn a_ten_megabyte_answer_becomes_a_bounded_message() {
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::HugeAnswer(10 << 20))));
    let r = run(agent(&sim).args(["--timeout", "3s"]));
    expect(&r, 8);
    let longest = r.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2000, "a line of {longest} characters");
    assert!(r.stderr.len() < 64 * 1024, "{} bytes of log", r.stderr.len());
}

#[test]
fn a_malformed_metadata_endpoint_is_a_usage_error_at_once() {
    let sim = Simulator::start(Scenario::default());
    for bad in ["169.254.169.254", "ftp://127.0.0.1:1", "http://", "http://127.0.0.1:1/latest"] {
        let r = run(agent(&sim).env("AWS_EC2_METADATA_SERVICE_ENDPOINT", bad));
        expect(&r, 2);
        assert!(r.stderr.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "{}", r.stderr);
        assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
    }
    let r = run(agent(&sim).env("AWS_ENDPOINT_URL_EC2", "ec2.example"));
    expect(&r, 2);
    assert!(sim.requests().is_empty(), "nothing was asked");
}

#[test]
fn imds_throttling_is_retried() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::ThrottleFirst(3))));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert!(r.stderr.contains("HTTP 429"), "{}", r.stderr);
}

#[test]
fn a_truncated_describe_is_a_malformed_answer_not_a_missing_instance() {
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::TruncatedDescribe)));
    let r = run(&mut agent(&sim));
    expect(&r, 1);
    assert!(r.stderr.contains("incomplete DescribeInstances answer"), "{}", r.stderr);
    assert!(!r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn what_imds_says_is_validated_as_strictly_as_a_flag() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::GarbageIdentity("<html>login</html>"))));
    let r = run(&mut agent(&sim));
    expect(&r, 4);
    assert!(r.stderr.contains("answered something that is not an instance id"), "{}", r.stderr);
    assert_eq!(ec2_calls(&sim), 0, "nothing reached EC2");
    // The region alone garbled (the id given as a flag).
    let r = run(agent(&sim).args(["--instance-id", INSTANCE_ID]));
    expect(&r, 4);
    assert!(r.stderr.contains("not a region"), "{}", r.stderr);
}

#[test]
fn an_unreported_state_is_not_verified_applied() {
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::NoMetadataOptions)));
    let r = run(agent(&sim).args(["--wait-timeout", "4s", "--output", "json"]));
    expect(&r, 6);
    assert!(r.stderr.contains("reported no state"), "{}", r.stderr);
    assert_eq!(modifies(&sim).len(), 1);
    // --no-wait says it did not verify.
    let sim = Simulator::start(scenario(|s| s.ec2_faults.push(Ec2Fault::NoMetadataOptions)));
    let r = run(agent(&sim).args(["--no-wait", "--output", "json"]));
    expect(&r, 0);
    assert_eq!(json(&r)["verified"], false);
}

#[test]
fn imds_never_goes_through_a_proxy_and_ec2_does() {
    let sim = Simulator::start(Scenario::default());
    // The simulator's EC2 port stands for the proxy: it serves absolute-form requests, logs them as proxied,
    // and refuses any metadata request that arrives there.
    let r = run(agent(&sim)
        .env("HTTP_PROXY", &sim.ec2_url)
        .env("HTTPS_PROXY", &sim.ec2_url)
        .env("AWS_ENDPOINT_URL_EC2", "http://ec2.us-west-2.sim.invalid"));
    expect(&r, 0);
    let log = sim.requests();
    assert!(log.iter().filter(|r| r.server == "ec2").all(|r| r.via_proxy), "EC2 calls went through the proxy");
    assert!(!log.iter().any(|r| r.server == "ec2" && r.path.starts_with("/latest/")), "IMDS did not");
    assert!(log.iter().any(|r| r.server == "imds"));

    let proxy = format!("http://127.0.0.1:{}", closed_port());
    let r = run(agent(&sim).env("HTTP_PROXY", &proxy).args(["--timeout", "3s"]));
    expect(&r, 8);
    assert!(r.stderr.contains(&format!("through the proxy {proxy}")), "{}", r.stderr);
}

#[test]
fn a_missing_imds_holds_boot_back_for_the_imds_bound_only() {
    let sim = Simulator::start(Scenario::default());
    // The bound itself (30 s by default, well inside --timeout's 180 s) is timed on the paused clock in
    // reconcile's unit tests; here, that the message names the flag that ended it.
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let r = run(agent(&sim).env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint).args(["--imds-timeout", "3s"]));
    expect(&r, 4);
    assert!(r.stderr.contains("--imds-timeout"), "{}", r.stderr);
}

#[test]
fn unauthorized_keeps_the_encoded_authorization_message() {
    let sim = Simulator::start(scenario(|s| s.policy.unauthorized = vec!["ModifyInstanceMetadataOptions"]));
    let r = run(&mut agent(&sim));
    expect(&r, 5);
    let command = format!("aws sts decode-authorization-message --encoded-message {}", crate::simulator::ENCODED);
    assert!(r.stderr.contains(&command), "{}", r.stderr);
}

/// EC2's message names the kind of policy that refused; the agent, `fleet` and `defaults` each say whose it is
/// to change (never the ARNs the message carries), and keep the decode command. No allowing policy at all
/// is the one case where granting `packaging/iam-policy.json` is the advice.
#[test]
fn the_policy_that_refused_is_named_with_whose_it_is_to_change() {
    let decode = format!("aws sts decode-authorization-message --encoded-message {}", crate::simulator::ENCODED);
    let cases = [
        (
            "with an explicit deny in a service control policy",
            "a service control policy (SCP) of the AWS Organization denies it explicitly: only the organization's administrators can change the Deny",
        ),
        (
            "with an explicit deny in a resource control policy",
            "a resource control policy (RCP) of the AWS Organization denies it explicitly",
        ),
        (
            "because no permissions boundary allows the ec2:ModifyInstanceMetadataOptions action",
            "the permissions boundary of these credentials' role does not allow it: the boundary is the role owner's to change",
        ),
        (
            "with an explicit deny in an identity-based policy",
            "a policy attached to these credentials denies it explicitly: remove or narrow that Deny statement",
        ),
        ("with an explicit deny in a session policy", "the session policy these credentials were issued with"),
    ];
    for (why, advice) in cases {
        let sim = Simulator::start(scenario(|s| {
            s.options.hop_limit = Some(1);
            s.policy.unauthorized = vec!["ModifyInstanceMetadataOptions", "ModifyInstanceMetadataDefaults"];
            s.policy.refused_by = Some(why);
            s.instances = vec![crate::support::web(1, REGION, "running", 1)];
        }));
        let agent_run = run(&mut agent(&sim));
        expect(&agent_run, 5);
        let fleet_run =
            run(&mut crate::support::fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--output", "json"]));
        expect(&fleet_run, 5);
        let fleet_error = json(&fleet_run)["instances"][0]["error"].as_str().unwrap_or_default().to_string();
        let defaults_run = run(&mut crate::support::fleet(&sim, &["defaults", "apply", "--output", "json"]));
        expect(&defaults_run, 5);
        let defaults_error = json(&defaults_run)["regions"][0]["error"].as_str().unwrap_or_default().to_string();
        for (what, text) in [("agent", &agent_run.stderr), ("fleet", &fleet_error), ("defaults", &defaults_error)] {
            assert!(text.contains(advice), "{what}, {why}: {text}");
            assert!(text.contains(&decode), "{what}: the decode command is kept: {text}");
            assert!(!text.contains("arn:aws") && !text.contains("iam-policy.json"), "{what}, {why}: {text}");
        }
    }
    // No allowing policy: grant the shipped one.
    let sim = Simulator::start(scenario(|s| s.policy.unauthorized = vec!["ModifyInstanceMetadataOptions"]));
    let r = run(&mut agent(&sim));
    expect(&r, 5);
    assert!(r.stderr.contains("no identity-based policy allows it: grant ec2:DescribeInstances"), "{}", r.stderr);
    assert!(r.stderr.contains("packaging/iam-policy.json"), "{}", r.stderr);
}

#[test]
fn expired_role_credentials_are_named_as_such() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::ExpiredCredentials)));
    let r = run(&mut agent(&sim));
    expect(&r, 5);
    assert!(r.stderr.contains("credentials from IMDS expired at"), "{}", r.stderr);
    let r = run(agent(&sim).arg("doctor"));
    expect(&r, 5);
    let role = r.stdout.lines().find(|l| l.contains("instance role")).unwrap_or_default();
    assert!(role.starts_with("[FAIL]") && role.contains("expired"), "{}", r.stdout);
}

#[test]
fn metadata_disabled_is_named_when_no_credentials_are_found() {
    let sim = Simulator::start(Scenario::default());
    let r = run(agent(&sim).env("AWS_EC2_METADATA_DISABLED", "true"));
    expect(&r, 5);
    assert!(r.stderr.contains("AWS_EC2_METADATA_DISABLED=true"), "{}", r.stderr);
}

#[test]
fn https_to_ec2_works_with_a_trusted_ca_and_a_certificate_failure_is_not_retried() {
    let dir = std::env::temp_dir().join(format!("ihl-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = test_ca(&dir);
    let sim = Simulator::start(scenario(|s| s.ec2_tls = Some((cert, key))));
    assert!(sim.ec2_url.starts_with("https://"));
    expect(&run(agent(&sim).env("SSL_CERT_FILE", &ca)), 0);
    // The system's trust store does not know the test CA: UnknownIssuer, which no retry heals.
    let r = run(&mut agent(&sim));
    expect(&r, 1);
    assert!(r.stderr.contains("TLS handshake failed") && r.stderr.contains("UnknownIssuer"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(5), "not retried: {:?}", r.took);
    // A plain-HTTP server where HTTPS was asked for: the handshake fails too, and is not retried.
    let plain = Simulator::start(Scenario::default());
    let r = run(agent(&plain).env("AWS_ENDPOINT_URL_EC2", plain.ec2_url.replace("http://", "https://")));
    expect(&r, 1);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
    assert!(r.took < Duration::from_secs(5), "not retried: {:?}", r.took);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_journald_the_agent_adds_no_timestamp_of_its_own() {
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    let r = run(agent(&sim).env("RUST_LOG", "info"));
    let first = r.stderr.lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("20"), "a timestamp on a terminal or file: {first}");
    let r = run(agent(&sim).env("RUST_LOG", "info").env("JOURNAL_STREAM", "8:12345"));
    expect(&r, 0);
    assert!(lines_at(&r.stderr, "INFO").iter().all(|l| l.trim_start().starts_with("INFO")), "{}", r.stderr);
}

#[test]
fn boolean_variables_take_the_usual_spellings_and_bad_values_name_the_variable() {
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(2)));
    for value in ["1", "yes", "true", "on", "0", "no", "false", "off"] {
        for var in ["IMDS_HOP_LIMIT_NO_WAIT", "IMDS_HOP_LIMIT_EXACT"] {
            let r = run(agent(&sim).arg("check").env(var, value));
            expect(&r, 0);
        }
    }
    // Every variable the unit's EnvironmentFile may set: a bad value is exit 2 naming the variable.
    for (var, bad) in [
        ("IMDS_HOP_LIMIT", "two"),
        ("IMDS_HOP_LIMIT_EXACT", "maybe"),
        ("IMDS_HOP_LIMIT_HTTP_TOKENS", "sometimes"),
        ("IMDS_HOP_LIMIT_IPV6_ENDPOINT", "perhaps"),
        ("IMDS_HOP_LIMIT_INSTANCE_TAGS", "perhaps"),
        ("IMDS_HOP_LIMIT_NO_WAIT", "maybe"),
        ("IMDS_HOP_LIMIT_OUTPUT", "yaml"),
    ] {
        let r = run(agent(&sim).env(var, bad));
        expect(&r, 2);
        assert!(r.stderr.contains(var), "{var}: {}", r.stderr);
    }
    for (var, bad) in [
        ("IMDS_HOP_LIMIT_WAIT_TIMEOUT", "soon"),
        ("IMDS_HOP_LIMIT_TIMEOUT", "later"),
        ("IMDS_HOP_LIMIT_IMDS_TIMEOUT", "x"),
    ] {
        let r = run(agent(&sim).env(var, bad));
        expect(&r, 2);
        assert!(r.stderr.contains(var), "{var}: {}", r.stderr);
    }
    for (var, good) in [
        ("IMDS_HOP_LIMIT", "2"),
        ("IMDS_HOP_LIMIT_HTTP_TOKENS", "optional"),
        ("IMDS_HOP_LIMIT_WAIT_TIMEOUT", "90s"),
        ("IMDS_HOP_LIMIT_TIMEOUT", "2m"),
        ("IMDS_HOP_LIMIT_IMDS_TIMEOUT", "20s"),
        ("IMDS_HOP_LIMIT_OUTPUT", "json"),
    ] {
        expect(&run(agent(&sim).arg("check").env(var, good)), 0);
    }
}

#[test]
fn the_overall_timeout_ending_the_wait_is_named_as_such() {
    let sim = Simulator::start(scenario(|s| s.applies = Applies::Never));
    let r = run(agent(&sim).args(["--timeout", "5s"]));
    expect(&r, 6);
    assert!(r.stderr.contains("raise --timeout"), "{}", r.stderr);
    assert!(!r.stderr.contains("--wait-timeout"), "{}", r.stderr);
}

#[test]
fn a_slow_imds_is_slow_not_silent() {
    let sim = Simulator::start(scenario(|s| s.imds_faults.push(ImdsFault::TokenDelay(Duration::from_millis(1500)))));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert!(r.stderr.contains("took 1.5 s to answer"), "{}", r.stderr);
    assert!(!r.stderr.contains("hop-limit symptom"), "{}", r.stderr);
}

#[test]
fn doctor_probes_with_what_apply_would_send_so_a_capped_policy_passes_above_the_cap() {
    let sim = Simulator::start(scenario(|s| {
        s.options.hop_limit = Some(3);
        s.policy.max_hop_limit = Some(2);
    }));
    let r = run(agent(&sim).arg("doctor"));
    expect(&r, 0);
    let probe = modifies(&sim);
    assert_eq!(probe.len(), 1);
    assert!(probe[0].dry_run && probe[0].params.contains(&("HttpPutResponseHopLimit".into(), "2".into())));
}

#[test]
fn static_credentials_from_the_environment_are_never_printed() {
    let sim = Simulator::start(scenario(|s| s.policy.unauthorized = vec!["DescribeInstances"]));
    let r = run(agent(&sim)
        .args(["--instance-id", INSTANCE_ID, "--region", REGION, "-vv"])
        .env("AWS_ACCESS_KEY_ID", STATIC_KEY)
        .env("AWS_SECRET_ACCESS_KEY", STATIC_SECRET));
    expect(&r, 5);
}
