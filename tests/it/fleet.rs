//! `imds-hop-limit fleet` and `defaults` (issue 15), black-box against the simulated account: selection by
//! tag and by id, pages, pacing and throttling, stopped instances, one failure among many, the merged exit
//! code, the JSON shape, regions, and the account defaults with a declarative policy.

use crate::simulator::{
    Applies, Buckets, Ec2Fault, INSTANCE_ID, InstanceSpec, REGION, Scenario, Simulator, fleet_instance,
};
use crate::support::{Run, calls, expect, fleet, fleet_process, json, modifies, run, scenario, web};
use assert_cmd::Command;
use std::collections::BTreeSet;

fn untagged(n: usize, hop: i64) -> InstanceSpec {
    InstanceSpec { tags: Vec::new(), ..web(n, REGION, "running", hop) }
}

fn instances(r: &Run) -> Vec<serde_json::Value> {
    json(r)["instances"].as_array().unwrap().clone()
}

#[test]
fn check_by_tag_reads_one_page_changes_nothing_and_says_what_would_change() {
    let sim = Simulator::start(scenario(|s| {
        s.instances = vec![web(1, REGION, "running", 1), web(2, REGION, "running", 2), untagged(3, 1)];
    }));
    let r = run(&mut fleet(&sim, &["fleet", "check", "--tag", "team=web"]));
    expect(&r, 3);
    assert_eq!(
        r.stdout,
        "INSTANCE             REGION     STATE    HOP LIMIT  ENDPOINT  RESULT         SOURCE\n\
         i-40000000000000001  us-west-2  running  1 -> 2     enabled   not compliant  -\n\
         1 compliant instance not listed (--output json lists every one)\n\
         us-west-2: selected 2, compliant 1, to change 1, changed 0, applied 0, failed 0, not compliant 1\n\
         Where the 1 instance that needed a change came from, and the fix that makes it stick (the next instance \
         from a source left as it is has the hop limit it had):\n  \
         us-west-2 (source unknown) (1 instance): `imds-hop-limit defaults apply \
         --hop-limit 2` sets the region's default for new launches that do not set a hop limit themselves\n"
    );
    assert!(modifies(&sim).is_empty());
    let describes = calls(&sim, "DescribeInstances");
    assert_eq!(describes.len(), 1);
    let params = &describes[0].params;
    let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| pk == k && pv == v);
    assert!(has("MaxResults", "1000"), "{params:?}");
    assert!(params.iter().any(|(_, v)| v == "tag:team") && has("Filter.1.Value.1", "web"), "{params:?}");
    assert!(params.iter().any(|(_, v)| v == "instance-state-name"), "{params:?}");
}

#[test]
fn apply_changes_each_tagged_instance_once_and_verifies_in_batches_by_id() {
    let mut specs: Vec<InstanceSpec> = (0..30).map(|n| web(n, REGION, "running", 1)).collect();
    specs.extend((30..40).map(|n| web(n, REGION, "running", 3)));
    specs.extend((40..45).map(|n| untagged(n, 1)));
    let sim = Simulator::start(scenario(|s| s.instances = specs));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--tag", "env=prod", "--output", "json"]));
    expect(&r, 0);
    let sent: BTreeSet<String> = modifies(&sim).iter().map(|m| m.instance().unwrap().to_string()).collect();
    assert_eq!(modifies(&sim).len(), 30, "one call per non-compliant instance");
    assert_eq!(sent.len(), 30);
    for n in 0..30 {
        assert_eq!(sim.options_of(&format!("i-4{n:016x}")).0, "applied");
        assert_eq!(sim.options_of(&format!("i-4{n:016x}")).1, Some(2));
    }
    assert_eq!(sim.options_of(&format!("i-4{:016x}", 30)).1, Some(3), "a higher hop limit is kept");
    assert_eq!(sim.options_of(&format!("i-4{:016x}", 40)).1, Some(1), "untagged: not selected");
    let describes = calls(&sim, "DescribeInstances");
    // One page for the selection, then verification rounds, each one call for up to 200 ids.
    assert!(describes.len() >= 2 && describes.len() <= 6, "{} DescribeInstances", describes.len());
    for d in &describes[1..] {
        assert!(d.params.iter().any(|(_, v)| v == "instance-id"), "verification reads by id: {:?}", d.params);
    }
    let summary = &json(&r)["summary"];
    assert_eq!((summary["selected"].as_u64(), summary["changed"].as_u64()), (Some(40), Some(30)));
    assert_eq!((summary["applied"].as_u64(), summary["compliant"].as_u64()), (Some(30), Some(10)));
    // A second run changes nothing and costs one call.
    sim.reset_log();
    let again = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web"]));
    expect(&again, 0);
    assert!(again.stdout.contains("40 compliant instances not listed"), "{}", again.stdout);
    assert_eq!(sim.requests().iter().filter(|r| r.server == "ec2").count(), 1);
}

#[test]
fn the_selection_is_read_in_pages_of_a_thousand() {
    let sim = Simulator::start(scenario(|s| s.instances = (0..2300).map(fleet_instance).collect()));
    let r = run(&mut fleet(&sim, &["fleet", "check", "--output", "json"]));
    expect(&r, 3);
    let describes = calls(&sim, "DescribeInstances");
    assert_eq!(describes.len(), 3, "2,301 instances (with the agent's own) in pages of 1,000");
    assert!(describes[1].params.iter().any(|(k, v)| k == "NextToken" && v == "1000"), "{:?}", describes[1].params);
    let summary = &json(&r)["summary"];
    assert_eq!(summary["selected"].as_u64(), Some(2301));
    assert_eq!(summary["not_compliant"].as_u64(), Some(1151), "1,150 even ones and the agent's own");
    let ids: BTreeSet<String> = instances(&r).iter().map(|i| i["instance_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2301, "each instance once");
}

#[test]
fn instance_ids_are_read_in_batches_and_one_not_found_is_reported_with_7() {
    let sim = Simulator::start(scenario(|s| s.instances = (0..250).map(|n| web(n, REGION, "running", 1)).collect()));
    let mut ids: Vec<String> = (0..201).map(|n| format!("i-4{n:016x}")).collect();
    ids.push("i-0fffffffffffffff0".into());
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--output", "json", "--instance-id", &ids.join(",")]));
    expect(&r, 7);
    assert_eq!(modifies(&sim).len(), 201, "the others were changed");
    let selection: Vec<_> = calls(&sim, "DescribeInstances").into_iter().take(2).collect();
    for d in &selection {
        let values = d.params.iter().filter(|(k, _)| k.starts_with("Filter.") && k.contains(".Value.")).count();
        assert!(values <= 200 + 3, "at most 200 ids a call: {values}");
    }
    let missing = instances(&r).into_iter().find(|i| i["instance_id"] == "i-0fffffffffffffff0").unwrap();
    assert_eq!(missing["action"], "failed");
    assert!(missing["error"].as_str().unwrap().contains("not found"), "{missing}");
    assert_eq!(json(&r)["summary"]["applied"].as_u64(), Some(201));
}

/// Against an account bucket smaller than the pace (a budget that other tools share), throttled calls are
/// retried until each change is taken once, and the run says EC2 throttled it. How the pace keeps inside a
/// bucket and slows down when throttled is timed exactly on the paused clock, in the fleet's unit tests.
#[test]
fn throttled_modifies_are_retried_until_each_is_taken_once() {
    let buckets = Buckets { describe: (100.0, 20.0), modify: (10.0, 5.0), defaults: (2.0, 2.0), time_scale: 1.0 };
    let sim = Simulator::start(scenario(|s| {
        s.instances = (0..25).map(|n| web(n, REGION, "running", 1)).collect();
        s.buckets = Some(buckets);
    }));
    let r = run(&mut fleet(
        &sim,
        &["fleet", "apply", "--tag", "team=web", "--modify-burst", "100", "--modify-rate", "100"],
    ));
    expect(&r, 0);
    let m = modifies(&sim);
    assert!(m.iter().any(|c| c.status == 503), "the account's bucket throttled some");
    let accepted: Vec<&str> = m.iter().filter(|c| c.status == 200).map(|c| c.instance().unwrap()).collect();
    assert_eq!(accepted.len(), 25, "each accepted once: {accepted:?}\n{}", r.stderr);
    assert!(r.stderr.contains("throttling"), "{}", r.stderr);
}

#[test]
fn a_stopped_instance_is_changed_and_reported_as_applying_when_it_starts() {
    let sim = Simulator::start(scenario(|s| {
        s.instances = vec![web(1, REGION, "running", 1), web(2, REGION, "stopped", 1)];
    }));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web"]));
    expect(&r, 0);
    assert!(
        r.stdout
            .contains("i-40000000000000002  us-west-2  stopped  1 -> 2     enabled   changed; applies when it starts"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 stopped instance is changed too: EC2 applies"), "{}", r.stdout);
    assert_eq!(sim.options_of("i-40000000000000002").1, Some(2));
    assert_eq!(sim.options_of("i-40000000000000002").0, "pending", "EC2 applies it at the next start");
}

#[test]
fn one_refused_instance_does_not_stop_the_others_and_sets_the_exit_code() {
    let sim = Simulator::start(scenario(|s| {
        s.instances = (0..6).map(|n| web(n, REGION, "running", 1)).collect();
        s.policy.unauthorized_instances = vec!["i-40000000000000003".into()];
    }));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--output", "json"]));
    expect(&r, 5);
    let all = instances(&r);
    let refused = all.iter().find(|i| i["instance_id"] == "i-40000000000000003").unwrap();
    assert_eq!(refused["action"], "failed");
    assert!(refused["error"].as_str().unwrap().contains("iam-fleet-policy.json"), "{refused}");
    assert_eq!(all.iter().filter(|i| i["action"] == "changed").count(), 5);
    assert_eq!(json(&r)["summary"]["exit_code"], 5);
}

#[test]
fn the_json_report_has_a_summary_and_every_instance_with_before_after_action_and_error() {
    let sim =
        Simulator::start(scenario(|s| s.instances = vec![web(1, REGION, "running", 1), web(2, REGION, "running", 2)]));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--output", "json"]));
    expect(&r, 0);
    let v = json(&r);
    let summary = v["summary"].as_object().unwrap();
    for key in [
        "selected",
        "compliant",
        "not_compliant",
        "changed",
        "applied",
        "applies_at_start",
        "failed",
        "regions",
        "exit_code",
    ] {
        assert!(summary.contains_key(key), "summary.{key}: {v}");
    }
    for i in v["instances"].as_array().unwrap() {
        for key in ["instance_id", "region", "state", "before", "after", "action", "error", "verified"] {
            assert!(i.get(key).is_some(), "instances[].{key}: {i}");
        }
    }
    let changed = v["instances"].as_array().unwrap().iter().find(|i| i["action"] == "changed").unwrap();
    assert_eq!((changed["before"]["hop_limit"].as_u64(), changed["after"]["hop_limit"].as_u64()), (Some(1), Some(2)));
    assert_eq!(changed["after"]["state"], "applied");
    assert_eq!(changed["verified"], true);
}

#[test]
fn dry_run_asks_ec2_for_each_change_and_exits_3() {
    let sim = Simulator::start(scenario(|s| s.instances = (0..3).map(|n| web(n, REGION, "running", 1)).collect()));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--dry-run", "--tag", "team=web"]));
    expect(&r, 3);
    let m = modifies(&sim);
    assert_eq!(m.len(), 3);
    assert!(m.iter().all(|c| c.dry_run));
    assert!(r.stdout.contains("would change (--dry-run)"), "{}", r.stdout);
    assert_eq!(sim.options_of("i-40000000000000001").1, Some(1));
}

#[test]
fn regions_run_side_by_side_and_all_regions_asks_describe_regions() {
    let sim = Simulator::start(scenario(|s| {
        s.instances =
            vec![web(1, REGION, "running", 1), web(2, "eu-west-1", "running", 1), web(3, "ap-south-1", "running", 1)];
    }));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--region", "us-west-2,eu-west-1"]));
    expect(&r, 0);
    assert_eq!(modifies(&sim).len(), 2);
    assert_eq!(sim.options_of("i-40000000000000003").1, Some(1), "ap-south-1 was not asked for");
    sim.reset_log();
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--all-regions", "--output", "json"]));
    expect(&r, 0);
    assert_eq!(calls(&sim, "DescribeRegions").len(), 1);
    let regions: Vec<String> =
        json(&r)["summary"]["regions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(regions, ["ap-south-1", "eu-west-1", "us-east-1", "us-west-2"]);
    assert_eq!(modifies(&sim).len(), 1, "only ap-south-1's instance was left to change");
    assert_eq!(sim.options_of("i-40000000000000003").1, Some(2));
}

#[test]
fn a_region_the_account_has_not_enabled_fails_alone_and_is_named() {
    let sim = Simulator::start(scenario(|s| s.instances = vec![web(1, REGION, "running", 1)]));
    let r = run(&mut fleet(&sim, &["fleet", "apply", "--tag", "team=web", "--region", "us-west-2,me-south-1"]));
    expect(&r, 5);
    assert_eq!(sim.options_of("i-40000000000000001").1, Some(2), "the enabled region is still done");
    assert!(
        r.stdout.contains("me-south-1: could not read the selection: no AWS credentials")
            && r.stdout.contains("me-south-1 may not be enabled for this account"),
        "{}",
        r.stdout
    );
}

#[test]
fn no_region_anywhere_is_a_usage_error_before_any_call() {
    let sim = Simulator::start(Scenario::default());
    let mut cmd = fleet(&sim, &["fleet", "check"]);
    cmd.env_remove("AWS_REGION");
    let r = run(&mut cmd);
    expect(&r, 2);
    assert!(r.stderr.contains("no region"), "{}", r.stderr);
    assert!(sim.requests().is_empty());
}

#[test]
fn the_agents_own_instance_is_part_of_the_account_but_not_of_a_tagged_selection() {
    let sim = Simulator::start(scenario(|s| s.instances = vec![web(1, REGION, "running", 2)]));
    let r = run(&mut fleet(&sim, &["fleet", "check", "--tag", "team"]));
    expect(&r, 0);
    assert_eq!(sim.options_of(INSTANCE_ID).1, Some(1));
}

fn defaults(sim: &Simulator, args: &[&str]) -> Command {
    fleet(sim, args)
}

#[test]
fn defaults_check_then_apply_then_nothing_left_to_do() {
    let sim = Simulator::start(Scenario::default());
    let r = run(&mut defaults(&sim, &["defaults", "check"]));
    expect(&r, 3);
    assert_eq!(
        r.stdout.lines().next().unwrap(),
        "us-west-2: not as wanted: hop limit no preference, endpoint no preference, http tokens no preference, \
         instance tags no preference; apply would set hop limit 2, endpoint enabled, http tokens no preference, \
         instance tags no preference"
    );
    assert!(r.stdout.contains("only to instances launched from now on"), "{}", r.stdout);
    let r = run(&mut defaults(&sim, &["defaults", "apply", "--http-tokens", "required"]));
    expect(&r, 0);
    assert!(r.stdout.starts_with("us-west-2: changed: "), "{}", r.stdout);
    let m = calls(&sim, "ModifyInstanceMetadataDefaults");
    assert_eq!(m.len(), 1);
    let has = |k: &str, v: &str| m[0].params.iter().any(|(pk, pv)| pk == k && pv == v);
    assert!(has("HttpPutResponseHopLimit", "2") && has("HttpEndpoint", "enabled") && has("HttpTokens", "required"));
    let r = run(&mut defaults(&sim, &["defaults", "apply", "--http-tokens", "required", "--output", "json"]));
    expect(&r, 0);
    assert_eq!(json(&r)["regions"][0]["action"], "unchanged");
    assert_eq!(calls(&sim, "ModifyInstanceMetadataDefaults").len(), 1, "nothing sent again");
}

#[test]
fn defaults_managed_by_a_declarative_policy_are_left_alone_with_exit_9() {
    let sim = Simulator::start(scenario(|s| s.defaults_by_policy = vec!["eu-west-1"]));
    let r = run(&mut defaults(&sim, &["defaults", "apply", "--region", "us-west-2,eu-west-1", "--output", "json"]));
    expect(&r, 9);
    let regions = json(&r)["regions"].as_array().unwrap().clone();
    let eu = regions.iter().find(|r| r["region"] == "eu-west-1").unwrap();
    assert_eq!(eu["action"], "managed-elsewhere");
    assert!(eu["error"].as_str().unwrap().contains("declarative policy"), "{eu}");
    let us = regions.iter().find(|r| r["region"] == "us-west-2").unwrap();
    assert_eq!(us["action"], "changed", "the other region is still done");
    let m = calls(&sim, "ModifyInstanceMetadataDefaults");
    assert_eq!(m.len(), 1, "nothing sent to the managed region");
}

#[test]
fn defaults_throttled_by_their_small_budget_are_retried() {
    let sim = Simulator::start(scenario(|s| {
        s.buckets = Some(Buckets { defaults: (1.0, 0.5), ..Buckets::DOCUMENTED });
        s.ec2_faults.push(Ec2Fault::ThrottleRequests(vec![1]));
    }));
    let r = run(&mut defaults(&sim, &["defaults", "apply"]));
    expect(&r, 0);
    let m = calls(&sim, "ModifyInstanceMetadataDefaults");
    assert_eq!((m[0].status, m.last().unwrap().status), (503, 200), "{m:?}");
}

/// On a terminal (a pseudo-terminal from util-linux's `script`), the counts are one live line on stderr, and the
/// per-milestone log lines of a pipe are not written.
#[test]
fn on_a_terminal_the_counts_are_a_live_line_instead_of_log_lines() {
    let sim = Simulator::start(scenario(|s| s.instances = (0..3).map(|n| web(n, REGION, "running", 1)).collect()));
    let command = format!("{} fleet apply --tag team=web", crate::support::bin().display());
    let out = fleet_process(&sim, "script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .envs([("PATH", "/usr/bin:/bin"), ("TERM", "xterm")])
        .output()
        .expect("script (util-linux's bsdutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    crate::support::no_secret(&text);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("selected 3, compliant 0, to change 3"), "the live line: {text}");
    assert!(!text.contains("changes answered"), "no milestone log lines on a terminal: {text}");
    assert!(text.contains("changed, applied"), "the table: {text}");
}

#[test]
fn an_interrupted_run_says_how_far_it_got() {
    let sim = Simulator::start(scenario(|s| {
        s.instances = (0..3).map(|n| web(n, REGION, "running", 1)).collect();
        s.applies = Applies::Never;
    }));
    let child = fleet_process(&sim, crate::support::bin())
        .args(["fleet", "apply", "--tag", "team=web"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the changes went out, while it waits for `applied`.
    let start = std::time::Instant::now();
    while modifies(&sim).len() < 3 && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    crate::support::no_secret(&stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT") && stderr.contains("so far: selected 3"), "{stderr}");
    assert!(stderr.contains("changed 3, applied 0"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("changed, accepted (not verified)").count(), 3, "the report as far as it got: {stdout}");
}

/// Where each instance came from, by the tags EC2 and the launchers put on it (issue 36): every instance's
/// `source` in the JSON, a SOURCE column in the table, and the instances that needed a change grouped by source,
/// each with the fix that makes the hop limit stick there. Tag values are remote text: a line break in one never
/// reaches the output as one. No call beyond the selection's one DescribeInstances.
#[test]
fn each_instance_is_named_with_its_source_and_the_fix_that_sticks() {
    let tagged = |n: usize, tags: &[(&str, &str)]| InstanceSpec {
        tags: [("team", "web")].iter().chain(tags).map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..web(n, REGION, "running", 1)
    };
    let asg = [
        ("aws:autoscaling:groupName", "web"),
        ("aws:ec2launchtemplate:id", "lt-0fedcba9876543210"),
        ("aws:ec2launchtemplate:version", "4"),
    ];
    let sim = Simulator::start(scenario(|s| {
        s.instances = vec![
            tagged(
                1,
                &[
                    ("karpenter.sh/nodepool", "general"),
                    ("karpenter.k8s.aws/ec2nodeclass", "default"),
                    ("eks:eks-cluster-name", "prod"),
                ],
            ),
            tagged(
                2,
                &[
                    ("eks:nodegroup-name", "ng-1"),
                    ("eks:cluster-name", "prod"),
                    ("aws:autoscaling:groupName", "eks-ng"),
                ],
            ),
            tagged(3, &asg),
            tagged(4, &asg),
            tagged(5, &[("elasticbeanstalk:environment-name", "web-prod")]),
            tagged(6, &[]),
            tagged(7, &[("aws:autoscaling:groupName", "evil\r\nX-Injected: yes")]),
        ];
    }));
    let r = run(&mut fleet(&sim, &["fleet", "check", "--tag", "team", "--output", "json"]));
    expect(&r, 3);
    let doc = json(&r);
    let source = |n: usize| doc["instances"][n - 1]["source"].clone();
    assert_eq!(
        source(1),
        serde_json::json!({"kind": "karpenter", "name": "default", "cluster": "prod", "launch_template_id": null,
                           "launch_template_version": null})
    );
    assert_eq!((source(2)["kind"].clone(), source(2)["name"].clone()), ("eks-nodegroup".into(), "ng-1".into()));
    assert_eq!(
        source(3),
        serde_json::json!({"kind": "auto-scaling-group", "name": "web", "cluster": null,
                           "launch_template_id": "lt-0fedcba9876543210", "launch_template_version": "4"})
    );
    assert_eq!(source(5)["kind"], "elastic-beanstalk");
    assert_eq!(
        source(6),
        serde_json::json!({"kind": null, "name": null, "cluster": null, "launch_template_id": null,
                                             "launch_template_version": null})
    );
    assert_eq!(source(7)["name"], "evil X-Injected: yes", "one line");
    let groups = doc["sources"].as_array().unwrap();
    assert_eq!(groups.len(), 6, "the two instances of group web together: {doc}");
    let web_group = groups.iter().find(|g| g["source"]["name"] == "web").unwrap();
    assert_eq!(web_group["instances"], 2);
    assert!(web_group["fix"].as_str().unwrap().contains("launch template lt-0fedcba9876543210 version 4"));
    assert_eq!(calls(&sim, "DescribeInstances").len(), 1, "the tags came with the selection");

    let r = run(&mut fleet(&sim, &["fleet", "check", "--tag", "team"]));
    expect(&r, 3);
    assert!(!r.stdout.contains("\r") && !r.stdout.contains("\nX-Injected"), "{}", r.stdout);
    for words in [
        "  us-west-2 Karpenter EC2NodeClass default (cluster prod) (1 instance): set \
         spec.metadataOptions.httpPutResponseHopLimit: 2 on EC2NodeClass default of cluster prod",
        "  us-west-2 EKS managed node group ng-1 (cluster prod) (1 instance):",
        "update-nodegroup-version",
        "  us-west-2 Auto Scaling group web (2 instances): a new version of launch template lt-0fedcba9876543210 version 4",
        "  us-west-2 Elastic Beanstalk environment web-prod (1 instance): no Elastic Beanstalk option sets the hop limit",
        "  us-west-2 (source unknown) (1 instance): `imds-hop-limit defaults apply",
    ] {
        assert!(r.stdout.contains(words), "{words}\n{}", r.stdout);
    }
    let row = r.stdout.lines().find(|l| l.starts_with("i-40000000000000001")).unwrap();
    assert!(row.ends_with("Karpenter EC2NodeClass default (cluster prod)"), "{row}");
}
