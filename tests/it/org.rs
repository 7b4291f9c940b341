//! Org-wide fleet and defaults (issue 30) on the simulator, which serves STS and Organizations beside EC2:
//! an organization of member accounts, each holding the same instances with a budget of its own, entered
//! through sts:AssumeRole (whose credentials select the member, as on AWS); the management account is worked
//! with its own credentials. moto's tests (moto.rs) run the same commands against a third-party
//! implementation; these are for what moto cannot show: refusals, throttling per account, signals, deadlines,
//! a listing that never ends. Every run's output is searched for the assumed roles' secrets (`support::run`).

use crate::simulator::{ACCOUNT, Buckets, Ec2Fault, INSTANCE_ID, REGION, Scenario, Simulator, members};
use crate::support::{Run, count, expect, fleet, fleet_process, json, modifies, run, scenario, until};
use std::time::Duration;

const ROLE: [&str; 2] = ["--role-name", "imds-hop-limit"];

fn org(n: usize, more: impl FnOnce(&mut Scenario)) -> Simulator {
    Simulator::start(scenario(|s| {
        s.organization = Some(members(n));
        more(s);
    }))
}

fn org_run(sim: &Simulator, args: &[&str]) -> Run {
    run(&mut fleet(sim, &[args, &ROLE[..]].concat()))
}

/// Every member entered through its role, once; the management account with its own credentials (no
/// AssumeRole for it: a management account has no member role); every instance changed where it is, and
/// named with its account in the JSON and the table.
#[test]
fn each_account_is_entered_through_its_role_and_the_callers_own_with_its_credentials() {
    let sim = org(2, |_| {});
    let r = org_run(&sim, &["fleet", "apply", "--organization", "--output", "json"]);
    expect(&r, 0);
    assert_eq!((count(&sim, "ListAccounts"), count(&sim, "GetCallerIdentity")), (1, 1));
    assert_eq!(count(&sim, "AssumeRole"), 2, "the two members, not the management account");
    let doc = json(&r);
    let accounts: Vec<&str> =
        doc["instances"].as_array().unwrap().iter().map(|i| i["account_id"].as_str().unwrap()).collect();
    assert_eq!(accounts, [ACCOUNT, "200000000001", "200000000002"], "{doc}");
    assert_eq!(doc["accounts"][1]["name"], "team-1");
    assert_eq!(doc["summary"]["changed"], 3);
    for member in ["200000000001", "200000000002"] {
        assert_eq!(sim.hop_limit_in(member, INSTANCE_ID), Some(2), "{member}");
    }
    // Each member's calls were signed by its own role's credentials.
    let modified_in: Vec<Option<String>> = modifies(&sim).iter().map(|m| m.account.clone()).collect();
    assert_eq!(modified_in.len(), 3);
    assert!(modified_in.contains(&Some("200000000001".into())) && modified_in.contains(&None), "{modified_in:?}");

    let sim = org(2, |_| {});
    let r = org_run(&sim, &["fleet", "check", "--organization"]);
    expect(&r, 3);
    assert!(r.stdout.starts_with("ACCOUNT"), "{}", r.stdout);
    assert!(r.stdout.contains("team-2      i-0123456789abcdef0  us-west-2"), "{}", r.stdout);
    assert!(r.stdout.contains("team-1 us-west-2: selected 1"), "{}", r.stdout);
}

/// A role that cannot be assumed is that account's failure, with STS's reason and what to check; the other
/// accounts go on; the exit code is the merge (5: a refusal).
#[test]
fn a_refused_role_is_that_accounts_failure_and_the_others_go_on() {
    let sim = org(3, |s| s.policy.refuse_roles = vec!["200000000002".into()]);
    let r = org_run(&sim, &["fleet", "apply", "--organization", "--output", "json"]);
    expect(&r, 5);
    let doc = json(&r);
    let refused = &doc["accounts"][2];
    assert_eq!(refused["account_id"], "200000000002", "{doc}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("could not assume arn:aws:iam::200000000002:role/imds-hop-limit"), "{error}");
    assert!(error.contains("AccessDenied") && error.contains("must exist in that account and trust"), "{error}");
    assert_eq!(doc["summary"]["account_failures"][0]["account_id"], "200000000002");
    assert_eq!(doc["summary"]["changed"], 3, "the management account and the two others");
    assert_eq!(sim.hop_limit_in("200000000003", INSTANCE_ID), Some(2));
    assert_eq!(sim.hop_limit_in("200000000002", INSTANCE_ID), Some(1));
    assert!(r.stderr.contains(", 1 account failed"), "{}", r.stderr);
}

/// EC2's budgets are per account and region: with a modify bucket of 2 and 1 a second, two accounts' changes
/// go out side by side, each paced by its own bucket (account B's first change does not wait for account
/// A's last), and each account's throttling is its own.
#[test]
fn each_account_region_is_paced_on_its_own() {
    let sim = org(2, |s| {
        s.more_instances = 4;
        s.buckets =
            Some(Buckets { describe: (100.0, 20.0), modify: (2.0, 1.0), defaults: (2.0, 2.0), time_scale: 1.0 });
    });
    let accounts = "200000000001,200000000002";
    let args = ["fleet", "apply", "--accounts", accounts, "--modify-burst", "2", "--modify-rate", "1"];
    let r = org_run(&sim, &[&args[..], &["--output", "json"]].concat());
    expect(&r, 0);
    assert_eq!(json(&r)["summary"]["applied"], 10);
    let answered = |account: &str| -> Vec<u64> {
        let mine = modifies(&sim).into_iter().filter(|m| m.account.as_deref() == Some(account) && m.status == 200);
        mine.map(|m| m.at_ms).collect()
    };
    let (a, b) = (answered("200000000001"), answered("200000000002"));
    assert_eq!((a.len(), b.len()), (5, 5), "each change sent once: {a:?} {b:?}");
    assert!(b[0] < a[4] && a[0] < b[4], "side by side, each at its own pace: {a:?} {b:?}");
    assert!(modifies(&sim).iter().all(|m| m.account.is_some()), "the caller's own account was not among them");
}

/// SIGTERM mid-run: the report names every account, those not reached with what ended the run, and what
/// was reached as far as it got; exit 143.
#[test]
fn sigterm_reports_the_accounts_not_reached() {
    let sim = org(3, |s| s.ec2_faults.push(Ec2Fault::HangRegions(vec![REGION])));
    let child = fleet_process(&sim, crate::support::bin())
        .args(["fleet", "check", "--organization", "--accounts-at-once", "1", "--output", "json"])
        .args(ROLE)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first account's selection is in flight (and hangs).
    until("the first account's DescribeInstances", Duration::from_secs(20), || sim.arrived() > 3);
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    crate::support::no_secret(&format!("{stdout}{stderr}"));
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let failures = doc["summary"]["account_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "the three not reached: {doc}");
    assert!(failures.iter().all(|f| f["error"].as_str().unwrap().contains("interrupted by SIGTERM")), "{doc}");
    assert_eq!(doc["summary"]["region_failures"][0]["account_id"], ACCOUNT, "the one reached: {doc}");
}

/// `--timeout` bounds the whole org-wide run, every account's calls in flight included.
#[test]
fn the_timeout_bounds_every_account() {
    let sim = org(3, |s| s.ec2_faults.push(Ec2Fault::HangRegions(vec![REGION])));
    let r = org_run(&sim, &["fleet", "check", "--organization", "--timeout", "3s", "--output", "json"]);
    expect(&r, 8);
    assert!(r.took < Duration::from_secs(10), "{:?}", r.took);
    let doc = json(&r);
    assert!(doc["error"].as_str().unwrap().contains("--timeout 3s"), "{doc}");
    assert_eq!(doc["summary"]["region_failures"].as_array().unwrap().len(), 4, "every account's region: {doc}");
}

/// A ListAccounts whose page tokens repeat would never end: the run ends, saying so, before any account.
#[test]
fn a_page_token_cycle_in_the_listing_ends_the_run() {
    let sim = org(3, |s| s.ec2_faults.push(Ec2Fault::AccountsPageCycle));
    let r = org_run(&sim, &["fleet", "check", "--organization", "--output", "json"]);
    expect(&r, 1);
    assert!(json(&r)["error"].as_str().unwrap().contains("page token it had answered before"), "{}", r.stdout);
    assert_eq!(count(&sim, "ListAccounts"), 3, "A, B, A: the third page is the first repeat");
    assert_eq!(count(&sim, "DescribeInstances"), 0);
}

/// `--organization` from an account in no organization (AWSOrganizationsNotInUseException): its own exit code.
#[test]
fn an_account_in_no_organization_says_so_with_its_own_exit_code() {
    let sim = Simulator::start(Scenario::default());
    let r = org_run(&sim, &["fleet", "check", "--organization", "--output", "json"]);
    expect(&r, 10);
    assert!(json(&r)["error"].as_str().unwrap().contains("not in an AWS Organization"), "{}", r.stdout);
    let r = org_run(&sim, &["defaults", "check", "--organization", "--output", "json"]);
    expect(&r, 10);
    assert_eq!(json(&r)["regions"], serde_json::json!([]));
}

/// defaults: one entry per account and region, each with its account.
#[test]
fn defaults_are_read_and_set_per_account_and_region() {
    let sim = org(2, |_| {});
    let r =
        org_run(&sim, &["defaults", "apply", "--organization", "--region", "us-west-2,eu-west-1", "--output", "json"]);
    expect(&r, 0);
    let doc = json(&r);
    let entries: Vec<(String, String, String)> = doc["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("account_id"), s("region"), s("action"))
        })
        .collect();
    assert_eq!(entries.len(), 6, "3 accounts x 2 regions: {entries:?}");
    assert!(entries.iter().all(|(_, _, action)| action == "changed"), "{entries:?}");
    assert!(entries.contains(&("200000000002".into(), "eu-west-1".into(), "changed".into())), "{entries:?}");
    assert_eq!(count(&sim, "ModifyInstanceMetadataDefaults"), 6);
    let r = org_run(&sim, &["defaults", "check", "--accounts", "200000000001", "--region", "us-west-2"]);
    expect(&r, 0);
    assert!(r.stdout.contains("team-1 us-west-2: as wanted") || r.stdout.contains("200000000001 us-west-2: as wanted"));
}

/// Bad input is refused before any call, exit 2, saying why.
#[test]
fn bad_accounts_input_is_refused_before_any_call() {
    let sim = org(1, |_| {});
    for (args, why) in [
        (&["fleet", "check", "--accounts", "12345", "--role-name", "r"][..], "12 digits"),
        (&["fleet", "check", "--role-name", "r"], "give one of them"),
        (&["fleet", "check", "--organization"], "need --role-name"),
        (&["defaults", "check", "--accounts", "200000000001", "--role-name", "a/b"], "IAM role name"),
    ] {
        let r = run(&mut fleet(&sim, args));
        expect(&r, 2);
        assert!(r.stderr.contains(why) || r.stdout.contains(why), "{args:?}: {}{}", r.stdout, r.stderr);
    }
    assert_eq!(sim.requests().len(), 0, "no call was made");
}

// --- One deadline, one classifier, whichever service (issue 34) ---

/// A hung sts:AssumeRole or organizations:ListAccounts at `--timeout` ends the run as a hung EC2 call does:
/// exit 8, the run's message naming `--timeout` as given. Before, the STS call's own bound answered first, as
/// the account's "no answer before the run's deadline", exit 1.
#[test]
fn a_hung_sts_or_organizations_call_ends_at_the_timeout_as_ec2_does() {
    for action in ["AssumeRole", "ListAccounts", "GetCallerIdentity"] {
        let sim = org(2, |s| s.ec2_faults.push(Ec2Fault::HangActions(vec![action])));
        let r = org_run(&sim, &["fleet", "check", "--organization", "--timeout", "4s", "--output", "json"]);
        expect(&r, 8);
        assert!(r.took < Duration::from_secs(10), "{action}: {:?}", r.took);
        let doc = json(&r);
        let error = doc["error"].as_str().unwrap();
        let message =
            "the run's deadline (--timeout 4s) passed while calling AWS (STS, Organizations, EC2) in the accounts";
        assert!(error.contains(message), "{action}: {doc}");
        assert!(!r.stdout.contains("no answer before"), "{action}: {doc}");
        if action == "AssumeRole" {
            let failures = doc["summary"]["account_failures"].as_array().unwrap();
            assert_eq!(failures.len(), 2, "the two members: {doc}");
            assert!(failures.iter().all(|f| f["error"].as_str().unwrap().contains(message)), "{doc}");
        }
    }
    // The same hang in EC2: the same message and exit code.
    let sim = org(2, |s| s.ec2_faults.push(Ec2Fault::HangActions(vec!["DescribeInstances"])));
    let r = org_run(&sim, &["fleet", "check", "--organization", "--timeout", "4s", "--output", "json"]);
    expect(&r, 8);
    assert!(json(&r)["error"].as_str().unwrap().contains("(--timeout 4s) passed while calling AWS"), "{}", r.stdout);
}

/// STS not activated in the region called, for one account (RegionDisabledException): a refusal, exit 5,
/// with STS's reason and what to do; the other accounts go on.
#[test]
fn sts_not_activated_for_an_account_is_a_refusal() {
    let sim = org(2, |s| s.ec2_faults.push(Ec2Fault::StsRegionDisabled("200000000002")));
    let r = org_run(&sim, &["fleet", "check", "--organization", "--output", "json"]);
    expect(&r, 5);
    let doc = json(&r);
    let failures = doc["summary"]["account_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{doc}");
    let error = failures[0]["error"].as_str().unwrap();
    assert!(error.contains("RegionDisabledException") && error.contains("STS is not activated"), "{error}");
    assert_eq!(doc["summary"]["selected"], 2, "the management account and the other member: {doc}");
}

/// STS throttling every AssumeRole: retried by the same loop as EC2's calls, with the same backoff, then
/// given up with the same advice in STS's terms, naming `--timeout`: exit 8. The others go on.
#[test]
fn throttled_sts_gives_up_with_the_advice_ec2_gives() {
    let sim = org(1, |s| s.ec2_faults.push(Ec2Fault::ThrottleActions(vec!["AssumeRole"])));
    let r = org_run(&sim, &["fleet", "check", "--organization", "--timeout", "5s", "--output", "json"]);
    expect(&r, 8);
    let doc = json(&r);
    let error = doc["summary"]["account_failures"][0]["error"].as_str().unwrap();
    for words in [
        "STS kept throttling this account's requests",
        "until the run's deadline (--timeout 5s)",
        "sts:AssumeRole: throttled",
        "Throttling",
        "STS's request budget",
    ] {
        assert!(error.contains(words), "{words}: {error}");
    }
    assert_eq!(doc["summary"]["selected"], 1, "the management account went on: {doc}");
}

/// An STS answer that is not STS's says so, in STS's name, not EC2's.
#[test]
fn a_malformed_sts_answer_is_named_as_stss() {
    let sim = org(1, |s| s.ec2_faults.push(Ec2Fault::StsNotXml));
    let r = org_run(&sim, &["fleet", "check", "--organization", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let error = json(&r)["error"].as_str().unwrap().to_string();
    assert!(error.contains("sts:GetCallerIdentity failed: an answer that is not an STS answer"), "{error}");
    assert!(!error.contains("EC2"), "{error}");
}

/// Every log line of an org-wide run says which account it is about, as the table and the JSON do.
#[test]
fn an_org_wide_runs_log_lines_name_their_account() {
    let sim = org(2, |s| s.ec2_faults.push(Ec2Fault::StsRegionDisabled("200000000002")));
    let r = org_run(&sim, &["fleet", "check", "--organization"]);
    expect(&r, 5);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("us-west-2: selected 1")).collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(lines.iter().any(|l| l.contains("account{account=team-1}")), "{}", r.stderr);
    assert!(lines.iter().any(|l| l.contains("account{account=management}")), "{}", r.stderr);
    let refused = r.stderr.lines().find(|l| l.contains("RegionDisabledException")).unwrap_or_default();
    assert!(refused.contains("account{account=team-2}"), "{}", r.stderr);
}

/// An account gives its turn to the next once its changes are sent, and verifies them beside the next
/// accounts (issue 35): with one account sending at a time and EC2 applying each change 3 s after taking it,
/// the next account's change goes out before the previous account's change is seen applied, and the whole run
/// takes less than the accounts one after the other would (3 x 3 s).
#[test]
fn an_account_verifies_beside_the_next_one() {
    let sim = org(2, |s| s.applies = crate::simulator::Applies::After(Duration::from_secs(3)));
    let r = org_run(&sim, &["fleet", "apply", "--organization", "--accounts-at-once", "1", "--output", "json"]);
    expect(&r, 0);
    assert_eq!(json(&r)["summary"]["applied"], 3, "{}", r.stdout);
    let requests = sim.requests();
    let modified = |account: Option<&str>| {
        let of =
            requests.iter().filter(|q| q.action == "ModifyInstanceMetadataOptions" && q.account.as_deref() == account);
        of.map(|q| q.at_ms).next().unwrap()
    };
    let last_read = |account: Option<&str>| {
        let of = requests.iter().filter(|q| q.action == "DescribeInstances" && q.account.as_deref() == account);
        of.map(|q| q.at_ms).next_back().unwrap()
    };
    let (first, second, third) = (None, Some("200000000001"), Some("200000000002"));
    assert!(modified(second) < last_read(first), "the second account's change went out while the first verified");
    assert!(modified(third) < last_read(second), "and the third's while the second verified");
    assert!(r.took < Duration::from_secs(8), "side by side, not 3 x 3 s: {:?}", r.took);
}
