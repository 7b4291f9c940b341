//! `imds-hop-limit templates check|apply` (issue 36) against the simulator, whose launch templates behave as
//! EC2 documents them: a new version inherits its source version's parameters, each parameter given replaces
//! the inherited one whole, and the snapshots of inherited block device mappings are dropped unless given. moto's
//! launch templates (moto.rs) ignore SourceVersion; the tool's read-back catches that there.

use crate::simulator::{
    ACCOUNT, Ec2Fault, Options, REGION, Scenario, Simulator, TemplateData, TemplateSpec, members, template_options,
};
use crate::support::{Run, count, expect, fleet, json, run, scenario};

const PLAIN: &str = "lt-0000000000000000a";
const HIGH: &str = "lt-0000000000000000b";
const UNSET: &str = "lt-0000000000000000c";
const KARPENTER: &str = "lt-0000000000000000d";
const EKS: &str = "lt-0000000000000000e";
const AHEAD: &str = "lt-0000000000000000f";

fn template(id: &'static str, name: &'static str, options: Options) -> TemplateSpec {
    TemplateSpec { id, name, region: REGION, tags: Vec::new(), versions: vec![TemplateData::with(options)], default: 1 }
}

/// A plain template at hop limit 1 with HttpTokens required, one at 3, one that sets no metadata option,
/// one Karpenter made, one EKS made for a node group, and one whose $Latest (2) is not its default (1).
fn templates() -> Vec<TemplateSpec> {
    let mut ahead = template(AHEAD, "batch", template_options(Some(1), None));
    ahead.versions.push(TemplateData::with(template_options(Some(1), Some("required"))));
    vec![
        template(PLAIN, "web", template_options(Some(1), Some("required"))),
        template(HIGH, "gpu", template_options(Some(3), None)),
        template(UNSET, "legacy", Options::unset()),
        TemplateSpec {
            tags: vec![
                ("karpenter.k8s.aws/ec2nodeclass", "default"),
                ("karpenter.sh/nodepool", "general"),
                ("eks:eks-cluster-name", "prod"),
            ],
            ..template(KARPENTER, "karpenter.k8s.aws/1234", template_options(Some(1), Some("required")))
        },
        TemplateSpec {
            tags: vec![("eks:nodegroup-name", "ng-1"), ("eks:cluster-name", "prod")],
            ..template(EKS, "eks-ng-1", template_options(Some(1), Some("required")))
        },
        ahead,
    ]
}

/// Groups on the plain template's default, pinned to its version 1, and on the unset one's $Latest.
const GROUPS: [(&str, &str, &str); 3] =
    [("web-asg", PLAIN, "$Default"), ("web-pinned", PLAIN, "1"), ("legacy", UNSET, "$Latest")];

fn sim() -> Simulator {
    Simulator::start(scenario(|s| {
        s.templates = templates();
        s.groups = GROUPS.to_vec();
    }))
}

fn templates_run(sim: &Simulator, args: &[&str]) -> Run {
    run(&mut fleet(sim, &[&["templates"], args, &["--region", REGION, "--output", "json"]].concat()))
}

fn entry<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["templates"].as_array().unwrap().iter().find(|t| t["launch_template_id"] == id).unwrap()
}

/// check: every template's default version read in one listing, each judged as an instance would be (an
/// unset hop limit by the region's default, read once), owned and $Latest-ahead ones with their fix; exit 3;
/// nothing written.
#[test]
fn check_reads_each_default_version_once_and_says_what_each_needs() {
    let sim = sim();
    let r = templates_run(&sim, &["check"]);
    expect(&r, 3);
    let doc = json(&r);
    assert_eq!(doc["templates"].as_array().unwrap().len(), 6, "{doc}");
    for (id, action) in [
        (PLAIN, "not-compliant"),
        (HIGH, "unchanged"),
        (UNSET, "not-compliant"),
        (KARPENTER, "not-compliant"),
        (EKS, "not-compliant"),
        (AHEAD, "not-compliant"),
    ] {
        assert_eq!(entry(&doc, id)["action"], action, "{id}: {doc}");
    }
    let plain = entry(&doc, PLAIN);
    assert_eq!((plain["hop_limit"].clone(), plain["http_tokens"].clone()), (1.into(), "required".into()));
    assert_eq!((plain["version"].clone(), plain["launch_template_name"].clone()), (1.into(), "web".into()));
    let unset = entry(&doc, UNSET);
    assert_eq!(unset["hop_limit"], serde_json::Value::Null, "as the version sets it: not set");
    assert_eq!(
        (unset["effective_hop_limit"].clone(), unset["hop_limit_from"].clone()),
        (1.into(), "ec2-default".into())
    );
    let karpenter = entry(&doc, KARPENTER);
    assert_eq!(karpenter["managed_by"]["kind"], "karpenter");
    assert!(karpenter["fix"].as_str().unwrap().contains("httpPutResponseHopLimit: 2 on EC2NodeClass default"), "{doc}");
    assert!(entry(&doc, EKS)["fix"].as_str().unwrap().contains("update-nodegroup-version"), "{doc}");
    let ahead = entry(&doc, AHEAD);
    assert_eq!((ahead["default_version"].clone(), ahead["latest_version"].clone()), (1.into(), 2.into()));
    assert!(ahead["fix"].as_str().unwrap().contains("$Latest (version 2) is not its default (version 1)"), "{doc}");
    assert_eq!(doc["summary"]["not_compliant"], 5);
    assert_eq!(doc["summary"]["exit_code"], 3);
    assert_eq!(count(&sim, "DescribeLaunchTemplates"), 1);
    assert_eq!(count(&sim, "DescribeLaunchTemplateVersions"), 1, "every default version in one listing");
    assert_eq!(count(&sim, "GetInstanceMetadataDefaults"), 1, "one template leaves the hop limit unset");
    // The groups that launch from each, with the version each asks for; the pinned one with its next step.
    assert_eq!(count(&sim, "DescribeAutoScalingGroups"), 1);
    let used_by = plain["used_by"].as_array().unwrap();
    assert_eq!((used_by[0]["group"].clone(), used_by[0]["version"].clone()), ("web-asg".into(), "$Default".into()));
    assert_eq!(used_by[0]["next_step"], serde_json::Value::Null);
    assert_eq!((used_by[1]["group"].clone(), used_by[1]["version"].clone()), ("web-pinned".into(), "1".into()));
    let step = used_by[1]["next_step"].as_str().unwrap();
    assert!(step.contains("--auto-scaling-group-name web-pinned --launch-template 'LaunchTemplateId=lt-0000000000000000a,Version=$Default'"), "{step}");
    assert!(step.contains("not taken: it replaces instances"), "{step}");
    assert_eq!(entry(&doc, HIGH)["used_by"], serde_json::json!([]));
    assert_eq!(entry(&doc, UNSET)["used_by"][0]["version"], "$Latest");
    assert_eq!(count(&sim, "CreateLaunchTemplateVersion") + count(&sim, "ModifyLaunchTemplate"), 0);
}

/// apply: one new version per template it may change, equal to its source but for the metadata options (the
/// image, the user data, the root volume's snapshot: the simulator drops inherited snapshots as EC2 does), with
/// only the hop limit changed (HttpTokens=required kept; an unset HttpTokens left unset), made the default;
/// owned and $Latest-ahead templates left with their fix, not failing the run. A second apply writes nothing.
#[test]
fn apply_makes_one_equal_version_the_default_and_again_writes_nothing() {
    let sim = sim();
    let r = templates_run(&sim, &["apply"]);
    expect(&r, 0);
    let doc = json(&r);
    for (id, action) in [
        (PLAIN, "changed"),
        (HIGH, "unchanged"),
        (UNSET, "changed"),
        (KARPENTER, "left"),
        (EKS, "left"),
        (AHEAD, "left"),
    ] {
        assert_eq!(entry(&doc, id)["action"], action, "{id}: {doc}");
    }
    assert_eq!(entry(&doc, PLAIN)["new_version"], 2);
    assert_eq!(
        (entry(&doc, PLAIN)["default_version"].clone(), entry(&doc, PLAIN)["latest_version"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(count(&sim, "CreateLaunchTemplateVersion"), 2);
    assert_eq!(count(&sim, "ModifyLaunchTemplate"), 2);
    let plain = sim.template(PLAIN);
    assert_eq!(plain.default, 2);
    let (source, new) = (&plain.versions[0], &plain.versions[1]);
    assert_eq!(new.options, template_options(Some(2), Some("required")), "HttpTokens=required kept");
    assert_eq!((&new.image_id, &new.user_data, &new.mappings), (&source.image_id, &source.user_data, &source.mappings));
    let unset = sim.template(UNSET);
    assert_eq!(unset.versions[1].options, template_options(Some(2), None), "the hop limit written, nothing else");
    for id in [KARPENTER, EKS, AHEAD] {
        assert_eq!(sim.template(id).versions.len(), if id == AHEAD { 2 } else { 1 }, "{id} not changed");
    }
    let again = templates_run(&sim, &["apply"]);
    expect(&again, 0);
    assert_eq!(count(&sim, "CreateLaunchTemplateVersion"), 2, "the second apply created nothing");
    assert_eq!(entry(&json(&again), PLAIN)["action"], "unchanged");
    // The text: a row per template, and each template left as it is with why.
    let text = run(&mut fleet(&sim, &["templates", "check", "--region", REGION]));
    expect(&text, 3);
    assert!(
        text.stdout.starts_with("TEMPLATE  ") && text.stdout.contains("HOP LIMIT  HTTP TOKENS  RESULT"),
        "{}",
        text.stdout
    );
    let row = text.stdout.lines().find(|l| l.starts_with(PLAIN)).unwrap();
    assert!(row.contains(" web ") && row.contains(" 2 ") && row.ends_with("required     compliant"), "{row}");
    assert!(
        text.stdout.contains(&format!("{KARPENTER} ({REGION}): owned by Karpenter EC2NodeClass default")),
        "{}",
        text.stdout
    );
}

/// A refused CreateLaunchTemplateVersion (a policy on one template's tags) is that template's failure, exit 5;
/// the others are changed.
#[test]
fn a_refused_new_version_fails_its_template_and_the_others_are_changed() {
    let sim = Simulator::start(scenario(|s| {
        s.templates = templates();
        s.policy.refuse_templates = vec![PLAIN];
    }));
    let r = templates_run(&sim, &["apply"]);
    expect(&r, 5);
    let doc = json(&r);
    let plain = entry(&doc, PLAIN);
    assert_eq!(plain["action"], "failed");
    assert!(
        plain["error"].as_str().unwrap().contains("not authorized to call ec2:CreateLaunchTemplateVersion"),
        "{doc}"
    );
    assert_eq!(entry(&doc, UNSET)["action"], "changed");
    assert_eq!(sim.template(PLAIN).default, 1);
}

/// --launch-template selects by id or name; bad input is refused before any call; --dry-run writes nothing.
#[test]
fn templates_are_selected_by_id_or_name_and_bad_input_is_refused_first() {
    let sim = sim();
    let r = templates_run(&sim, &["check", "--launch-template", &format!("{PLAIN},legacy,web")]);
    expect(&r, 3);
    let listings: Vec<Vec<(String, String)>> =
        crate::support::calls(&sim, "DescribeLaunchTemplates").into_iter().map(|c| c.params).collect();
    assert_eq!(listings.len(), 2, "ids and names in listings of their own");
    assert!(listings.iter().all(|p| !(p.iter().any(|(k, _)| k.starts_with("LaunchTemplateId."))
        && p.iter().any(|(k, _)| k.starts_with("LaunchTemplateName.")))));
    let ids: Vec<String> = json(&r)["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["launch_template_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&PLAIN.to_string()) && ids.contains(&UNSET.to_string()), "{ids:?}");
    let dry = templates_run(&sim, &["apply", "--dry-run"]);
    expect(&dry, 3);
    assert_eq!(entry(&json(&dry), PLAIN)["action"], "would-change");
    assert_eq!(count(&sim, "CreateLaunchTemplateVersion"), 0);
    let before = sim.requests().len();
    for (bad, why) in [
        (&["check", "--launch-template", "lt-xyz"][..], "not a launch template id"),
        (&["check", "--launch-template", "a b"], "not a launch template id (lt-...) or name"),
        (&["check", "--dry-run"], "drop --dry-run"),
    ] {
        let r = templates_run(&sim, bad);
        expect(&r, 2);
        assert!(r.stdout.contains(why) || r.stderr.contains(why), "{bad:?}: {}{}", r.stdout, r.stderr);
    }
    assert_eq!(sim.requests().len(), before, "no call for bad input");
}

/// Throttled, the calls are retried as every call is, and each change is still made once.
#[test]
fn throttling_is_retried_and_each_change_made_once() {
    let sim = Simulator::start(scenario(|s| {
        s.templates = templates();
        s.ec2_faults.push(Ec2Fault::ThrottleFirst(3));
    }));
    let r = templates_run(&sim, &["apply"]);
    expect(&r, 0);
    assert_eq!(sim.template(PLAIN).versions.len(), 2, "one new version, not two");
    assert_eq!(sim.template(UNSET).versions.len(), 2);
}

/// Org-wide, on the one runner: each account's templates, each entry with its account.
#[test]
fn templates_are_changed_in_each_account_of_the_organization() {
    let sim = Simulator::start(scenario(|s| {
        s.templates = vec![template(PLAIN, "web", template_options(Some(1), Some("required")))];
        s.organization = Some(members(2));
    }));
    let r = templates_run(&sim, &["apply", "--organization", "--role-name", "imds-hop-limit"]);
    expect(&r, 0);
    let doc = json(&r);
    let accounts: Vec<serde_json::Value> =
        doc["templates"].as_array().unwrap().iter().map(|t| t["account_id"].clone()).collect();
    assert_eq!(accounts, [ACCOUNT, "200000000001", "200000000002"].map(serde_json::Value::from), "{doc}");
    assert!(doc["templates"].as_array().unwrap().iter().all(|t| t["action"] == "changed"), "{doc}");
    assert_eq!(sim.template_in("200000000002", PLAIN).default, 2);
}

/// The one JSON shape on the failure path: an organization that cannot be listed still prints templates,
/// summary and error.
#[test]
fn the_json_has_one_shape_on_the_failure_path() {
    let sim = Simulator::start(Scenario::default());
    let r = templates_run(&sim, &["check", "--organization", "--role-name", "imds-hop-limit"]);
    expect(&r, 10);
    let doc = json(&r);
    assert_eq!(doc["templates"], serde_json::json!([]));
    assert_eq!(doc["summary"]["exit_code"], 10);
    assert!(doc["error"].as_str().unwrap().contains("not in an AWS Organization"), "{doc}");
}
