//! Sensing the hop limit from IMDS itself (issue 21), black-box from the simulator's request log: the
//! simulator sends each IMDS answer with TTL = the applied hop limit (`ttl_is_hop_limit`), as IMDS sends the
//! token answer, on loopback; without it, it answers with the system's default TTL of 64, as a local
//! emulator or proxy would, which must never be taken as proof.

use crate::simulator::{ImdsFault, Simulator};
use crate::support::{agent, ec2_calls, expect, imds_like, json, modifies, run, scenario};

fn credential_reads(sim: &Simulator) -> usize {
    sim.requests().iter().filter(|r| r.server == "imds" && r.path.contains("security-credentials")).count()
}

#[test]
fn a_compliant_instance_costs_no_ec2_call_no_credentials_and_says_how_it_knows() {
    let sim = Simulator::start(imds_like(2));
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 0, "{:?}", sim.requests());
    assert_eq!(credential_reads(&sim), 0, "no credentials fetched");
    assert!(r.stderr.contains("compliant by IMDS itself: the token answer reaches this process with TTL >= 2"));
    let doc = json(&r);
    assert_eq!(doc["evidence"], "imds");
    assert_eq!(doc["action"], "unchanged");
    assert_eq!(doc["sensed"]["hop_limit_at_least"], 2);
    assert_eq!(doc["sensed"]["http_tokens"], "optional", "a GET without a token was answered");
}

#[test]
fn check_needs_no_role_on_a_compliant_instance() {
    let mut s = imds_like(3);
    s.role_attached = false;
    let sim = Simulator::start(s);
    let r = run(agent(&sim).arg("check"));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 0);
}

fn ec2_actions(sim: &Simulator) -> Vec<String> {
    sim.requests().iter().filter(|r| r.server == "ec2").map(|r| r.action.clone()).collect()
}

/// What a ModifyInstanceMetadataOptions set, besides naming the action and the instance (and DryRun false).
fn modify_fields(sim: &Simulator) -> Vec<(String, String)> {
    let modify = modifies(sim).pop().expect("a modify");
    modify
        .params
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Action" | "Version" | "InstanceId" | "DryRun"))
        .collect()
}

/// Hop limit 1 -> 2 on the host, where no router stands between the agent and IMDS (here loopback, where a SYN
/// sent with TTL 1 is answered): the token answer's TTL is the hop limit itself, so the change is one
/// ModifyInstanceMetadataOptions setting the hop limit and nothing else, with no DescribeInstances (issue 29).
/// The run ends once the token answer arrives at TTL 2; a second run makes no EC2 call.
#[test]
fn a_change_costs_one_ec2_call_where_no_router_stands_between() {
    let sim = Simulator::start(imds_like(1));
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 0);
    assert_eq!(ec2_actions(&sim), ["ModifyInstanceMetadataOptions"], "{}", r.stderr);
    assert_eq!(modify_fields(&sim), [("HttpPutResponseHopLimit".to_string(), "2".to_string())]);
    let doc = json(&r);
    assert_eq!(
        (doc["action"].as_str(), doc["evidence"].as_str(), doc["verified"].as_bool()),
        (Some("changed"), Some("imds"), Some(true))
    );
    assert_eq!(doc["before"]["hop_limit"], 1, "{doc}");
    assert_eq!(doc["before"]["http_endpoint"], "enabled", "IMDS answered: {doc}");
    assert_eq!(doc["before"]["http_tokens"], "optional", "sensed: {doc}");
    assert_eq!(doc["sensed"]["hop_limit"], 1, "{doc}");
    assert_eq!(doc["after"]["hop_limit"], 2, "{doc}");
    assert!(r.stderr.contains("the hop limit read from IMDS itself"), "{}", r.stderr);
    assert!(r.stderr.contains("the token answer now reaches this process with TTL >= 2"), "{}", r.stderr);
    assert_eq!(sim.effective_hop_limit(), 2);
    sim.reset_log();
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 0, "the second run: {:?}", sim.requests());
}

/// The exact hop limit below a higher wanted one, found by IP_MINTTL probes: 2 with `--hop-limit 4`, one
/// modify to 4. `check` says not compliant with no EC2 call at all; `--dry-run` asks EC2 once, with DryRun.
#[test]
fn the_exact_hop_limit_is_found_below_any_wanted_one_and_check_needs_no_ec2() {
    let sim = Simulator::start(imds_like(2));
    let r = run(agent(&sim).args(["check", "--hop-limit", "4", "--output", "json"]));
    expect(&r, 3);
    assert_eq!(ec2_calls(&sim), 0, "{}", r.stderr);
    let doc = json(&r);
    assert_eq!((doc["action"].as_str(), doc["before"]["hop_limit"].as_i64()), (Some("not-compliant"), Some(2)));
    let r = run(agent(&sim).args(["--dry-run", "--hop-limit", "4"]));
    expect(&r, 3);
    assert_eq!(ec2_actions(&sim), ["ModifyInstanceMetadataOptions"], "{}", r.stderr);
    assert!(modifies(&sim)[0].dry_run);
    sim.reset_log();
    let r = run(agent(&sim).args(["--hop-limit", "4", "--output", "json"]));
    expect(&r, 0);
    assert_eq!(ec2_actions(&sim), ["ModifyInstanceMetadataOptions"], "{}", r.stderr);
    assert_eq!(modify_fields(&sim), [("HttpPutResponseHopLimit".to_string(), "4".to_string())]);
    assert_eq!(json(&r)["before"]["hop_limit"], 2);
    assert_eq!(sim.effective_hop_limit(), 4);
}

/// Where more than the hop limit must change, or `--exact` is asked for, EC2 is read first, as before: the
/// one-call change is for the hop limit alone.
#[test]
fn more_than_the_hop_limit_or_exact_is_planned_from_ec2s_read() {
    for args in [&["--http-tokens", "required"][..], &["--exact"]] {
        let sim = Simulator::start(imds_like(1));
        let r = run(agent(&sim).args(args));
        expect(&r, 0);
        assert_eq!(ec2_actions(&sim)[0], "DescribeInstances", "{args:?}: {}", r.stderr);
        assert_eq!(modifies(&sim).len(), 1, "{args:?}");
        assert_eq!(sim.effective_hop_limit(), 2, "{args:?}");
    }
}

/// A refused modify is reported as before, with the same exit code: now after no other EC2 call.
#[test]
fn a_refused_one_call_change_is_reported_as_before() {
    let mut s = imds_like(1);
    s.policy.unauthorized = vec!["ModifyInstanceMetadataOptions"];
    let sim = Simulator::start(s);
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 5);
    assert_eq!(ec2_actions(&sim), ["ModifyInstanceMetadataOptions"]);
    assert!(r.stderr.contains("ec2:ModifyInstanceMetadataOptions"), "{}", r.stderr);
    assert_eq!(json(&r)["action"], "failed");
}

/// An IMDS that answers with TTL 64 whatever the hop limit (an emulator, a proxy): never proof. The run asks
/// EC2 and changes what EC2 says must change; a compliant one costs its one DescribeInstances.
#[test]
fn an_answer_at_ttl_64_is_never_taken_for_proof() {
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(1)));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert!(r.stderr.contains("an answer arrived with TTL 64"), "{}", r.stderr);
    assert_eq!(modifies(&sim).len(), 1);
    assert_eq!(sim.options().1, Some(2));
    sim.reset_log();
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 1, "EC2 was asked: {:?}", sim.requests());
}

/// What sensing cannot see goes to EC2 exactly as before: `--evidence ec2`, `--exact`, `--instance-id`, the
/// IPv6 endpoint; and HttpTokens asked for and sensed otherwise.
#[test]
fn what_cannot_be_sensed_is_asked_of_ec2() {
    let sim = Simulator::start(imds_like(2));
    for args in [
        &["--evidence", "ec2"][..],
        &["--exact"],
        &["--ipv6-endpoint", "disabled"],
        &["--instance-id", "i-0123456789abcdef0"],
        &["check", "--http-tokens", "required"],
    ] {
        sim.reset_log();
        let r = run(agent(&sim).args(args));
        assert!(ec2_calls(&sim) >= 1, "{args:?}: EC2 asked: {}", r.stderr);
    }
}

/// Over IPv6 (IPV6_MINHOPCOUNT, unicast hops): the same proof, on ::1.
#[test]
fn ipv6_senses_too() {
    let sim = Simulator::start_on("[::1]:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap(), imds_like(2));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 0, "{}", r.stderr);
    let sim = Simulator::start_on("[::1]:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap(), imds_like(1));
    let r = run(&mut agent(&sim));
    expect(&r, 0);
    assert_eq!(ec2_actions(&sim), ["ModifyInstanceMetadataOptions"], "one call, as over IPv4: {}", r.stderr);
}

/// doctor reads the instance's hop limit from the token answer's TTL, with no IAM at all.
#[test]
fn doctor_reads_the_hop_limit_from_imds_itself() {
    let mut s = imds_like(3);
    s.role_attached = false;
    let sim = Simulator::start(s);
    let r = run(agent(&sim).arg("doctor"));
    let line = r.stdout.lines().find(|l| l.contains("token answer TTL")).unwrap_or_default().to_string();
    assert!(line.starts_with("[ok]") && line.contains("TTL 3;") && line.contains("hop limit is 3"), "{}", r.stdout);
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(3)));
    let r = run(agent(&sim).arg("doctor"));
    let line = r.stdout.lines().find(|l| l.contains("token answer TTL")).unwrap_or_default().to_string();
    assert!(line.starts_with("[warn]") && line.contains("TTL 64"), "{}", r.stdout);
}

/// An IMDS too slow to answer a probe in time (1.5 s) proves nothing either way: EC2 is asked and polled, and
/// the run does not wait on the data plane for an answer that comes too late for any probe.
#[test]
fn a_slow_imds_is_not_taken_for_a_low_hop_limit() {
    let mut s = imds_like(1);
    s.imds_faults.push(ImdsFault::TokenDelay(std::time::Duration::from_millis(1500)));
    let sim = Simulator::start(s);
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 0);
    assert!(r.stderr.contains("too slow to tell"), "{}", r.stderr);
    assert_eq!(json(&r)["evidence"], "ec2", "verified by EC2's `applied`");
}

// --- The raw reader honours HTTP framing (issue 27) ---

fn framed(fault: ImdsFault) -> Simulator {
    let mut s = imds_like(2);
    s.imds_faults.push(fault);
    Simulator::start(s)
}

/// A chunked token answer (valid HTTP/1.1) is decoded: the token, not its chunk framing, goes back to IMDS,
/// so the raw reader's own identity reads are answered (one probe token, no SDK token), and the run is
/// compliant by IMDS itself. Before, the framing was taken as the token and written, line breaks included,
/// into the next request's header, which IMDS refused; the SDK then read the identity again.
#[test]
fn a_chunked_token_answer_is_decoded_not_written_into_a_header() {
    let sim = framed(ImdsFault::ChunkedAnswers);
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 0, "{:?}", sim.requests());
    assert_eq!(json(&r)["evidence"], "imds");
    // The probe and its control (whose answer the kernel drops); no token for an SDK client.
    assert_eq!((sim.probe_requests(), sim.token_requests()), (2, 0), "the probe's token served the identity");
    for path in ["/latest/meta-data/instance-id", "/latest/meta-data/placement/region"] {
        let reads: Vec<u16> = sim.requests().iter().filter(|r| r.path == path).map(|r| r.status).collect();
        assert_eq!(reads, [200], "{path}");
    }
}

/// An answer framed by its length on a connection IMDS keeps open ends with its last byte: proven, with no
/// EC2 call. Before, the reader waited for a close that never came, and every probe ran out its 250 ms.
#[test]
fn an_answer_on_a_connection_kept_open_ends_with_its_last_byte() {
    let sim = framed(ImdsFault::KeepsConnectionsOpen);
    let r = run(agent(&sim).args(["--output", "json"]));
    expect(&r, 0);
    assert_eq!(ec2_calls(&sim), 0, "{}", r.stderr);
    assert_eq!(json(&r)["evidence"], "imds");
    assert!(!r.stderr.contains("too slow to tell"), "{}", r.stderr);
}

/// A chunked token answer with one valid chunk, then a chunk size of 2^64 - 1 (issue 34): before, the size was
/// added to the body's length, which wrapped past the bound, and the agent panicked slicing with it (abort,
/// SIGABRT, on the plain boot path). Now it is not proven: EC2 is asked, and the run ends as it should.
#[test]
fn a_hostile_chunk_size_is_not_proven_never_a_crash() {
    let sim = framed(ImdsFault::HostileChunkSize);
    let r = run(agent(&sim).args(["--output", "json", "-v"]));
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    expect(&r, 0);
    assert!(r.stderr.contains("a body longer than 16 KiB"), "the probe says why: {}", r.stderr);
    assert_eq!(json(&r)["evidence"], "ec2", "not proven by IMDS: EC2 was asked");
    assert_eq!(ec2_calls(&sim), 1, "one DescribeInstances: {:?}", sim.requests());
}

/// A token answer whose body carries a line break and a header is no token: it is never written into a
/// request, the probe proves nothing, and the run says why.
#[test]
fn a_token_answer_that_would_write_a_header_is_refused() {
    let sim = framed(ImdsFault::TokenWithHeader);
    let r = run(&mut agent(&sim));
    assert!(sim.requests().iter().all(|r| !r.injected), "a request carried IMDS's header: {:?}", sim.requests());
    assert!(r.stderr.contains("bytes that are not a token"), "{}", r.stderr);
    assert_ne!(r.code, 0, "{}", r.stderr);
}
