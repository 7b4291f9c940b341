//! The agent against a third-party EC2 implementation: moto's server (PyPI `moto[server]`) on loopback as
//! the EC2 API, the project's simulator as IMDS serving that instance's id, region and role credentials,
//! and the AWS CLI (PyPI `awscli`) reading the result back.
//!
//! What moto cannot prove, so the simulator's tests do: moto reports `applied` at once (no pending time
//! to wait through), it drops the fields a change did not send (so HttpTokens and HttpEndpoint read back
//! as absent, not as kept), it carries out a DryRun for real (so `--dry-run` is never pointed at it), and it
//! accepts any signature.

use crate::simulator::{REGION, Scenario, Simulator};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Moto {
    let port = crate::support::closed_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is installed: pip install 'moto[server]' awscli (.ci/run does)");
    let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "moto_server did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// The AWS CLI against moto, with dummy credentials and no metadata service.
fn aws(moto: &Moto, args: &[&str]) -> serde_json::Value {
    aws_in(moto, None, REGION, args)
}

fn agent(sim: &Simulator, moto: &Moto) -> (i32, serde_json::Value, String) {
    let r = crate::support::run(crate::support::agent(sim).env("AWS_ENDPOINT_URL_EC2", &moto.url).args([
        "--output",
        "json",
        "--wait-timeout",
        "10s",
    ]));
    let json = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r.code, json, r.stderr)
}

#[test]
fn the_agent_works_against_moto_and_the_aws_cli_reads_the_result() {
    let moto = start_moto();
    let images = aws(&moto, &["ec2", "describe-images", "--owners", "amazon"]);
    let image = images["Images"][0]["ImageId"].as_str().expect("moto ships images").to_string();
    let launched = aws(
        &moto,
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &image,
            "--count",
            "1",
            "--instance-type",
            "t3.micro",
            "--metadata-options",
            "HttpPutResponseHopLimit=1,HttpTokens=optional,HttpEndpoint=enabled",
        ],
    );
    let id = launched["Instances"][0]["InstanceId"].as_str().unwrap().to_string();
    assert_eq!(launched["Instances"][0]["MetadataOptions"]["HttpPutResponseHopLimit"], 1);

    let sim = Simulator::start(Scenario { instance_id: id.clone(), ..Scenario::default() });
    let (code, json, stderr) = agent(&sim, &moto);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["action"], "changed", "{stderr}");
    assert_eq!(json["instance_id"], id.as_str());

    let read = aws(&moto, &["ec2", "describe-instances", "--instance-ids", &id]);
    let options = &read["Reservations"][0]["Instances"][0]["MetadataOptions"];
    assert_eq!(options["HttpPutResponseHopLimit"], 2, "{options}");
    assert_eq!(options["State"], "applied", "{options}");
    // moto drops fields a change did not send; where it still reports them they must be as they were.
    for (field, kept) in [("HttpEndpoint", "enabled"), ("HttpTokens", "optional")] {
        assert!(options[field].is_null() || options[field] == kept, "{field} untouched: {options}");
    }

    let (code, json, stderr) = agent(&sim, &moto);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["action"], "unchanged", "the second run changes nothing: {stderr}");
    assert_eq!(sim.token_requests(), 2, "one IMDS token per run");
}

// --- Org-wide (issue 30): moto implements Organizations, STS AssumeRole (whose credentials select the member
// account) and EC2 per account ---

/// An access key id, its secret and a session token.
type Keys = (String, String, String);

/// The AWS CLI in `account` (through an assumed role, as the tool enters it; the management account with its
/// own credentials).
fn aws_in(moto: &Moto, account: Option<&str>, region: &str, args: &[&str]) -> serde_json::Value {
    // Each account's credentials, assumed once.
    static ASSUMED: std::sync::Mutex<Vec<(String, Keys)>> = std::sync::Mutex::new(Vec::new());
    let (key, secret, token) = match account {
        None => ("testing".to_string(), "testing".to_string(), None),
        Some(account) => {
            let known = ASSUMED.lock().unwrap().iter().find(|(a, _)| a == account).map(|(_, c)| c.clone());
            let (key, secret, token) = known.unwrap_or_else(|| {
                let role = format!("arn:aws:iam::{account}:role/setup");
                let c = aws(moto, &["sts", "assume-role", "--role-arn", &role, "--role-session-name", "setup"]);
                let c = &c["Credentials"];
                let s = |k: &str| c[k].as_str().unwrap().to_string();
                let creds = (s("AccessKeyId"), s("SecretAccessKey"), s("SessionToken"));
                ASSUMED.lock().unwrap().push((account.to_string(), creds.clone()));
                creds
            });
            (key, secret, Some(token))
        }
    };
    let mut cmd = Command::new("aws");
    cmd.args(["--endpoint-url", &moto.url, "--region", region, "--output", "json"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    if let Some(token) = token {
        cmd.env("AWS_SESSION_TOKEN", token);
    }
    let out = cmd.output().expect("the AWS CLI");
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    // A command with nothing to answer (create-auto-scaling-group) prints nothing.
    if out.stdout.trim_ascii().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A launch template named `web` from one of moto's images, at hop limit 1 with HttpTokens required; its id.
fn web_template(moto: &Moto) -> String {
    let images = aws(moto, &["ec2", "describe-images", "--owners", "amazon"]);
    let image = images["Images"][0]["ImageId"].as_str().expect("moto ships images").to_string();
    let data = format!(
        r#"{{"ImageId":"{image}","InstanceType":"t3.micro","MetadataOptions":{{"HttpPutResponseHopLimit":1,"HttpTokens":"required"}}}}"#
    );
    let made =
        aws(moto, &["ec2", "create-launch-template", "--launch-template-name", "web", "--launch-template-data", &data]);
    made["LaunchTemplate"]["LaunchTemplateId"].as_str().unwrap().to_string()
}

/// Launches one instance at hop limit 1 in `account` and `region`; its id.
fn launch(moto: &Moto, account: Option<&str>, region: &str) -> String {
    // moto ships the same images in every account and region.
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let image = IMAGE.get_or_init(|| {
        let images = aws_in(moto, account, region, &["ec2", "describe-images", "--owners", "amazon"]);
        images["Images"][0]["ImageId"].as_str().expect("moto ships images").to_string()
    });
    let launched = aws_in(
        moto,
        account,
        region,
        &[
            "ec2",
            "run-instances",
            "--image-id",
            image,
            "--count",
            "1",
            "--instance-type",
            "t3.micro",
            "--metadata-options",
            "HttpPutResponseHopLimit=1,HttpTokens=required,HttpEndpoint=enabled",
        ],
    );
    launched["Instances"][0]["InstanceId"].as_str().unwrap().to_string()
}

fn hop_limit(moto: &Moto, account: Option<&str>, region: &str, id: &str) -> i64 {
    let read = aws_in(moto, account, region, &["ec2", "describe-instances", "--instance-ids", id]);
    read["Reservations"][0]["Instances"][0]["MetadataOptions"]["HttpPutResponseHopLimit"].as_i64().unwrap()
}

/// The tool against moto with the management account's credentials and nothing else.
fn org_fleet(moto: &Moto, args: &[&str]) -> crate::support::Run {
    let mut cmd = assert_cmd::Command::cargo_bin("imds-hop-limit").unwrap();
    cmd.env_clear()
        .env("HOME", "/nonexistent")
        .env("RUST_LOG", "debug")
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", REGION)
        .args(args)
        .timeout(Duration::from_secs(120));
    let r = crate::support::run(&mut cmd);
    // Assumed-role credentials are secrets: no access key id of any kind, no session token, in any output.
    for text in [&r.stdout, &r.stderr] {
        let b = text.as_bytes();
        let key = (0..b.len().saturating_sub(19)).any(|i| {
            (b[i..].starts_with(b"ASIA") || b[i..].starts_with(b"AKIA"))
                && b[i + 4..i + 20].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        });
        assert!(!key, "an access key id was printed: {text}");
        assert!(!text.contains("FQoGZXIvYXdzE"), "a session token was printed");
    }
    r
}

/// An organization of the management account and three members, with instances in two regions: `check
/// --organization` lists every instance with its account; `apply` changes them all, read back per account;
/// `--accounts` selects; the management account is worked with its own credentials (it has no member role).
#[test]
fn fleet_works_across_an_organizations_accounts_on_moto() {
    let moto = start_moto();
    aws_in(&moto, None, REGION, &["organizations", "create-organization", "--feature-set", "ALL"]);
    let mut members = Vec::new();
    for name in ["web-prod", "web-stage", "batch"] {
        let created = aws_in(
            &moto,
            None,
            REGION,
            &["organizations", "create-account", "--email", &format!("{name}@example.com"), "--account-name", name],
        );
        members.push(created["CreateAccountStatus"]["AccountId"].as_str().unwrap().to_string());
    }
    let management =
        aws_in(&moto, None, REGION, &["sts", "get-caller-identity"])["Account"].as_str().unwrap().to_string();
    let mut instances = Vec::new();
    for account in members.iter().map(|m| Some(m.as_str())).chain([None]) {
        for region in [REGION, "eu-west-1"] {
            instances.push((account.map(str::to_string), region, launch(&moto, account, region)));
        }
    }
    let regions = format!("{REGION},eu-west-1");
    let org = ["--organization", "--role-name", "imds-hop-limit", "--region", &regions, "--output", "json"];

    let r = org_fleet(&moto, &[&["fleet", "check"][..], &org].concat());
    assert_eq!(r.code, 3, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let listed: Vec<(String, String)> = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["account_id"].as_str().unwrap().to_string(), i["instance_id"].as_str().unwrap().to_string()))
        .collect();
    for (account, _, id) in &instances {
        let account = account.clone().unwrap_or_else(|| management.clone());
        assert!(listed.contains(&(account.clone(), id.clone())), "{account} {id} listed: {listed:?}");
    }
    assert_eq!(doc["accounts"].as_array().unwrap().len(), 4, "{}", doc["accounts"]);
    let names: Vec<&str> = doc["accounts"].as_array().unwrap().iter().filter_map(|a| a["name"].as_str()).collect();
    assert!(names.contains(&"web-prod") && names.contains(&"batch"), "{names:?}");
    assert!(r.stderr.contains("sts:AssumeRole") || !r.stderr.is_empty());

    // Text: the ACCOUNT column, by the organization's names.
    let r =
        org_fleet(&moto, &["fleet", "check", "--organization", "--role-name", "imds-hop-limit", "--region", &regions]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stdout.starts_with("ACCOUNT"), "{}", r.stdout);
    assert!(r.stdout.contains("web-stage"), "{}", r.stdout);

    let r = org_fleet(&moto, &[&["fleet", "apply"][..], &org].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["summary"]["changed"], instances.len(), "{}", doc["summary"]);
    for (account, region, id) in &instances {
        assert_eq!(hop_limit(&moto, account.as_deref(), region, id), 2, "{account:?} {region} {id}");
    }

    // --accounts selects: a new instance in one member and one in another; check lists only the member's
    // instances, and apply (of the new one: moto forgets the fields a change did not send, so the instances
    // changed above would read as needing the endpoint) changes it alone.
    let selected = launch(&moto, Some(&members[0]), REGION);
    let other = launch(&moto, Some(&members[1]), REGION);
    let only = ["--accounts", &members[0], "--role-name", "imds-hop-limit", "--region", REGION, "--output", "json"];
    let r = org_fleet(&moto, &[&["fleet", "check"][..], &only].concat());
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let ids: Vec<&str> =
        doc["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&selected.as_str()) && !ids.contains(&other.as_str()), "{ids:?}");
    assert!(doc["instances"].as_array().unwrap().iter().all(|i| i["account_id"] == members[0].as_str()), "{doc}");
    let r = org_fleet(&moto, &[&["fleet", "apply", "--instance-id", &selected][..], &only].concat());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(hop_limit(&moto, Some(&members[0]), REGION, &selected), 2);
    assert_eq!(hop_limit(&moto, Some(&members[1]), REGION, &other), 1, "not among --accounts: untouched");
}

/// `--organization` where the listing has no ACTIVE account (moto lists none, rather than answering
/// AWSOrganizationsNotInUseException, for an account outside any organization): its own exit code (10), and
/// the report's one shape.
#[test]
fn an_organization_with_no_account_to_work_in_is_said_with_its_own_exit_code() {
    let moto = start_moto();
    let r = org_fleet(
        &moto,
        &["fleet", "check", "--organization", "--role-name", "imds-hop-limit", "--region", REGION, "--output", "json"],
    );
    assert_eq!(r.code, 10, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("no ACTIVE account"), "{doc}");
    assert_eq!(doc["instances"], serde_json::json!([]));
}

/// Where an instance came from (issue 36), on moto: an Auto Scaling group launching from a launch template
/// tags its instances with the group's name (moto as EC2 does), and `fleet` names the group as each instance's
/// source. (moto does not apply a template's metadata options to the instances it launches, so their hop limit
/// is moto's own; the source is read from the tags whatever it is.)
#[test]
fn fleet_names_an_auto_scaling_group_as_its_instances_source_on_moto() {
    let moto = start_moto();
    let spec = format!("LaunchTemplateId={},Version=$Default", web_template(&moto));
    let zone = format!("{REGION}a");
    let group = ["autoscaling", "create-auto-scaling-group", "--auto-scaling-group-name", "web-asg"];
    let size = ["--min-size", "2", "--max-size", "2", "--desired-capacity", "2"];
    let placed = ["--launch-template", &spec, "--availability-zones", &zone];
    aws(&moto, &[&group[..], &size[..], &placed[..]].concat());
    let r = org_fleet(&moto, &["fleet", "check", "--region", REGION, "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{doc}");
    for i in instances {
        assert_eq!(i["source"]["kind"], "auto-scaling-group", "{doc}");
        assert_eq!(i["source"]["name"], "web-asg", "{doc}");
    }
}

/// `templates` on moto (issue 36). check reads the default version and says not compliant. apply: moto ignores
/// CreateLaunchTemplateVersion's SourceVersion (the new version holds only what the request sent, the metadata
/// options), so the tool's read-back finds the new version differs from its source (no image, no instance
/// type) and does not make it the default: exit 1, the default version still the one that launches. On EC2, and
/// on the simulator that behaves as EC2 documents it (templates.rs), the same request inherits the rest.
#[test]
fn templates_on_moto_read_back_catches_its_ignored_source_version() {
    let moto = start_moto();
    let id = web_template(&moto);
    let r = org_fleet(&moto, &["templates", "check", "--region", REGION, "--output", "json"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["templates"][0]["launch_template_id"], id.as_str(), "{doc}");
    assert_eq!(
        (doc["templates"][0]["hop_limit"].clone(), doc["templates"][0]["http_tokens"].clone()),
        (1.into(), "required".into())
    );

    let r = org_fleet(&moto, &["templates", "apply", "--region", REGION, "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let error = doc["templates"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("was not made the default: it differs from its source in") && error.contains("image_id"),
        "{error}"
    );
    let versions = aws(&moto, &["ec2", "describe-launch-templates", "--launch-template-ids", &id]);
    assert_eq!(versions["LaunchTemplates"][0]["DefaultVersionNumber"], 1, "the default is still the source");
}
