//! `imds-hop-limit doctor` against the simulated instance: one test per verdict.

use crate::simulator::{Policy, Scenario, Simulator};
use crate::support::{agent, run};

fn doctor(sim: &Simulator, args: &[&str]) -> (i32, String, String) {
    let r = run(agent(sim).arg("doctor").args(args));
    (r.code, r.stdout, r.stderr)
}

/// The line of `step`: its name stands right after the six-character mark.
fn line<'a>(stdout: &'a str, step: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.get(7..).is_some_and(|rest| rest.starts_with(step)))
        .unwrap_or_else(|| panic!("no line for {step}:\n{stdout}"))
}

#[test]
fn all_good_passes_every_step_and_changes_nothing() {
    let sim = Simulator::start(Scenario {
        options: crate::simulator::Options { hop_limit: Some(2), http_tokens: Some("required"), ..Default::default() },
        ..Scenario::default()
    });
    let (code, out, err) = doctor(&sim, &[]);
    assert_eq!(code, 0, "{out}{err}");
    for step in [
        "metadata service",
        "where",
        "identity",
        "instance role",
        "ec2:DescribeInstances",
        "ec2:ModifyInstanceMetadataOptions",
        "metadata options",
    ] {
        assert!(line(&out, step).starts_with("[ok]"), "{step}:\n{out}");
    }
    assert!(line(&out, "identity").contains("us-west-2a"), "{out}");
    assert!(line(&out, "instance role").contains("expire in"), "{out}");
    let modifies: Vec<_> = sim.requests().into_iter().filter(|r| r.action == "ModifyInstanceMetadataOptions").collect();
    assert!(modifies.iter().all(|m| m.dry_run), "doctor only ever asks with DryRun");
    assert_eq!(sim.options().1, Some(2));
}

#[test]
fn not_compliant_is_a_warning_with_the_exact_change_and_the_tradeoff() {
    let sim = Simulator::start(Scenario::default());
    let (code, out, _) = doctor(&sim, &[]);
    assert_eq!(code, 0, "apply would work:\n{out}");
    let options = line(&out, "metadata options");
    assert!(options.starts_with("[warn]") && options.contains("would set hop limit 1 -> 2"), "{out}");
    assert!(out.contains("HttpTokens=required is its safe companion"), "{out}");
    // Its tags say nothing of where it came from: the region's default for new instances (issue 36).
    assert!(
        out.contains("Its tags do not say where it came from: `imds-hop-limit defaults apply --hop-limit 2`"),
        "{out}"
    );
    assert_eq!(sim.options().1, Some(1), "doctor changes nothing");
}

#[test]
fn no_role_fails_the_role_step_and_skips_what_needs_credentials() {
    let sim = Simulator::start(Scenario { role_attached: false, ..Scenario::default() });
    let (code, out, _) = doctor(&sim, &[]);
    assert_eq!(code, 5, "{out}");
    let role = line(&out, "instance role");
    assert!(role.starts_with("[FAIL]") && role.contains("no IAM role is attached"), "{out}");
    assert!(out.contains("attach an instance profile"), "{out}");
    assert!(line(&out, "ec2:DescribeInstances").starts_with("[skip]"), "{out}");
    assert!(line(&out, "metadata options").starts_with("[skip]"), "{out}");
}

#[test]
fn a_refused_endpoint_fails_first_and_skips_the_rest() {
    let sim = Simulator::start(Scenario::default());
    let out = crate::support::agent(&sim)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://127.0.0.1:{}", crate::support::closed_port()))
        .env("RUST_LOG", "info")
        .args(["doctor", "--output", "json"])
        .output()
        .unwrap();
    crate::support::no_secret(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit_code"], 4);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks[0]["step"], "metadata service");
    assert_eq!(checks[0]["status"], "fail");
    assert!(checks[0]["hint"].as_str().unwrap().contains("HttpEndpoint=disabled"));
    let skipped: Vec<&str> =
        checks.iter().filter(|c| c["status"] == "skip").map(|c| c["step"].as_str().unwrap()).collect();
    assert!(
        skipped.contains(&"identity") && skipped.contains(&"instance role") && skipped.contains(&"metadata options"),
        "{skipped:?}"
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn token_silence_is_named_as_the_hop_limit() {
    let sim = Simulator::start(Scenario {
        imds_faults: vec![crate::simulator::ImdsFault::TokenNeverAnswers],
        ..Scenario::default()
    });
    let (code, out, _) = doctor(&sim, &[]);
    assert_eq!(code, 4, "{out}");
    let metadata = line(&out, "metadata service");
    assert!(metadata.starts_with("[FAIL]") && metadata.contains("hop-limit symptom"), "{out}");
    assert!(out.contains("raise the hop limit"), "{out}");
}

#[test]
fn unauthorized_names_the_action_and_the_policy() {
    let sim = Simulator::start(Scenario {
        policy: Policy { unauthorized: vec!["ModifyInstanceMetadataOptions"], ..Policy::default() },
        ..Scenario::default()
    });
    let (code, out, _) = doctor(&sim, &[]);
    assert_eq!(code, 5, "{out}");
    assert!(line(&out, "ec2:DescribeInstances").starts_with("[ok]"), "{out}");
    let modify = line(&out, "ec2:ModifyInstanceMetadataOptions");
    assert!(modify.starts_with("[FAIL]") && modify.contains("not authorized"), "{out}");
    assert_eq!(out.matches("packaging/iam-policy.json").count(), 1, "the policy named once: {out}");
}

/// The whole rendering, golden: only what differs from run to run (the port, the milliseconds) and from
/// machine to machine (the container signs) is normalized.
#[test]
fn the_no_role_verdict_renders_exactly() {
    // IMDS's own TTL (hop limit 1): doctor reads the hop limit from it with no role at all.
    let sim = Simulator::start(Scenario { role_attached: false, ttl_is_hop_limit: true, ..Scenario::default() });
    let (code, out, _) = doctor(&sim, &[]);
    assert_eq!(code, 5);
    let port = sim.imds_url.rsplit(':').next().unwrap().to_string();
    let normalized: Vec<String> = out
        .lines()
        .map(|l| {
            let l = l.replace(&port, "PORT");
            if l.contains("IMDSv2 token from") {
                let cut = l.rfind(" in ").unwrap();
                format!("{} in N ms", &l[..cut])
            } else if l.starts_with("[ok]   where") {
                "[ok]   where                              (this machine's)".to_string()
            } else {
                l
            }
        })
        .collect();
    let expected = "\
[ok]   metadata service                   IMDSv2 token from http://127.0.0.1:PORT in N ms
[ok]   where                              (this machine's)
[ok]   hops to IMDS                       this process is 1 hop from IMDS; the instance's hop limit must be at least 1
[ok]   token answer TTL                   the token answer reaches this process with TTL 1; 1 hop from IMDS, so the instance's hop limit is 1 (read from IMDS itself, no IAM needed)
[ok]   environment                        no proxy for the metadata address; AWS_EC2_METADATA_DISABLED not set
[ok]   identity                           i-0123456789abcdef0 in us-west-2, zone us-west-2a
[FAIL] instance role                      no IAM role is attached to this instance (IMDS has nothing under iam/security-credentials/): attach an instance profile whose role allows ec2:DescribeInstances and ec2:ModifyInstanceMetadataOptions (packaging/iam-policy.json), or give credentials through the environment
                                          -> attach an instance profile: EC2 console, Actions, Security, Modify IAM role; or `aws ec2 associate-iam-instance-profile`
[skip] ec2:DescribeInstances              skipped: needs credentials
[skip] ec2:ModifyInstanceMetadataOptions  skipped: needs credentials
[skip] metadata options                   skipped: needs credentials";
    assert_eq!(normalized.join("\n"), expected);
}
