//! One test environment for the black-box tests: the agent's command with an environment that reaches the
//! simulator and nothing else, at the most verbose log level, and a run whose whole output is searched for
//! every secret the simulator handed out (they all carry `SECRET_MARK`) before anything else is asserted.

use crate::simulator::{Logged, SECRET_MARK, Scenario, Simulator};
use assert_cmd::Command;
use std::time::{Duration, Instant};

/// The agent, with an environment that reaches the simulator and nothing else. `RUST_LOG=trace`: every
/// black-box run is at the most verbose level, so every path, failures included, is searched for secrets.
pub fn agent(sim: &Simulator) -> Command {
    let mut cmd = Command::cargo_bin("imds-hop-limit").unwrap();
    cmd.env_clear()
        .envs(sim.env())
        .env("HOME", "/nonexistent")
        .env("RUST_LOG", "trace")
        .timeout(Duration::from_secs(90));
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

pub fn run(cmd: &mut Command) -> Run {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    };
    no_secret(&format!("{}{}", r.stdout, r.stderr));
    r
}

/// Fails, showing the line with the secret masked, when `output` holds anything the simulator handed out:
/// IMDS tokens, access keys, secret keys, session tokens, the static credentials given through the
/// environment.
#[track_caller]
pub fn no_secret(output: &str) {
    if let Some(line) = output.lines().find(|l| l.contains(SECRET_MARK)) {
        let shown: String = line.replace(SECRET_MARK, "<MARK>").chars().take(600).collect();
        panic!("a secret was printed, in this line: {shown}");
    }
}

#[track_caller]
pub fn expect(r: &Run, code: i32) {
    assert_eq!(r.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", r.stdout, r.stderr);
}

pub fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", r.stdout))
}

pub fn modifies(sim: &Simulator) -> Vec<Logged> {
    sim.requests().into_iter().filter(|r| r.action == "ModifyInstanceMetadataOptions").collect()
}

pub fn ec2_calls(sim: &Simulator) -> usize {
    sim.requests().iter().filter(|r| r.server == "ec2").count()
}

pub fn scenario(f: impl FnOnce(&mut Scenario)) -> Scenario {
    let mut s = Scenario::default();
    f(&mut s);
    s
}

/// The lines of the agent's own log at `level` (INFO, WARN, ...).
pub fn lines_at<'a>(stderr: &'a str, level: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.split_whitespace().take(2).any(|w| w == level)).collect()
}
