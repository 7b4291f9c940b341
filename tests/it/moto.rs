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
    let out = Command::new("aws")
        .args(["--endpoint-url", &moto.url, "--region", REGION, "--output", "json"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the AWS CLI is installed: pip install awscli (.ci/run does)");
    assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
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
