//! The Systems Manager Command document (packaging/ssm/): the project's schema and checker accept it and refuse
//! each known way to get one wrong; its script, with the parameters pasted in as Systems Manager does, passes
//! shellcheck and runs the agent against the simulated instance. The install branch is not run here: it
//! would install into this machine's /usr/bin and enable a unit in its systemd.

use crate::simulator::{Scenario, Simulator};
use crate::support::{no_secret, scenario};
use std::process::{Command, Output};

const DOCUMENT: &str = "packaging/ssm/imds-hop-limit.json";

fn check(args: &[&str]) -> Output {
    Command::new("python3")
        .arg("packaging/ssm/check")
        .args(args)
        .output()
        .expect("python3 with jsonschema (.ci/run installs it)")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The script as Systems Manager would run it with these parameter values (the others at their defaults).
fn render(values: &[&str]) -> String {
    let mut args = vec!["--render", DOCUMENT];
    args.extend_from_slice(values);
    let out = check(&args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_document_passes_the_schema_and_each_wrong_one_fails_for_its_reason() {
    let out = check(&[DOCUMENT]);
    assert!(out.status.success(), "{}", text(&out));
    for (fixture, why) in [
        ("loose-pattern.json", "allows shell syntax"),
        ("unconstrained.json", "parameters/Command"),
        ("traced-shell.json", "'set -x' should not be valid"),
        ("hidden-failure.json", "|| true' should not be valid"),
        ("old-schema.json", "'2.2' was expected"),
        ("undeclared.json", "{{ Region }} is used but not a declared parameter"),
        ("bad-default.json", "the default '65' is not allowed"),
        ("wrong-action.json", "'aws:runShellScript' was expected"),
        ("broken-script.json", "the script does not parse"),
    ] {
        let out = check(&[&format!("tests/fixtures/ssm/{fixture}")]);
        assert_eq!(out.status.code(), Some(1), "{fixture} must fail: {}", text(&out));
        assert!(text(&out).contains(why), "{fixture}: {}", text(&out));
    }
    // A value outside a parameter's constraint is refused, as Systems Manager refuses it.
    let out = check(&["--render", DOCUMENT, "HopLimit=2; reboot"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_rendered_script_passes_shellcheck() {
    let path = std::env::temp_dir().join(format!("ssm-script-{}.sh", std::process::id()));
    std::fs::write(&path, render(&["HttpTokens=required", "Exact=true"])).unwrap();
    let out = Command::new("shellcheck").args(["-s", "bash"]).arg(&path).output().expect("shellcheck");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}", text(&out));
}

/// Runs the document's script with bash, as the SSM agent does, with the agent already installed
/// (Install=none) and the environment pointing at the simulator.
fn run_script(sim: &Simulator, values: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("imds-hop-limit");
    let path = format!("{}:/usr/bin:/bin", bin.parent().unwrap().display());
    let mut values = values.to_vec();
    values.push("Install=none");
    let out = Command::new("bash")
        .args(["-c", &render(&values)])
        .env_clear()
        .envs(sim.env())
        .env("PATH", path)
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    no_secret(&text(&out));
    out
}

#[test]
fn the_script_runs_the_agent_with_its_parameters() {
    let sim = Simulator::start(Scenario::default());
    let out = run_script(&sim, &["Command=check"]);
    assert_eq!(out.status.code(), Some(3), "check on hop limit 1: {}", text(&out));
    let out = run_script(&sim, &["HttpTokens=required"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.options(), ("applied".into(), Some(2), Some("enabled"), Some("required")));
    let out = run_script(&sim, &["Command=check", "HopLimit=3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let sim = Simulator::start(scenario(|s| s.options.hop_limit = Some(4)));
    let out = run_script(&sim, &["HopLimit=2", "Exact=true", "WaitTimeout=30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(sim.options().1, Some(2), "Exact lowers a higher hop limit");
}
