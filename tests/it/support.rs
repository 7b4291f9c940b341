//! One test environment for the black-box tests: the agent's command with an environment that reaches the
//! simulator and nothing else, at the most verbose log level, and a run whose whole output is searched for
//! every secret the simulator handed out (they all carry `SECRET_MARK`) before anything else is asserted.

use crate::simulator::{
    InstanceSpec, Logged, Options, REGION, SECRET_MARK, STATIC_KEY, STATIC_SECRET, Scenario, Simulator,
};
use assert_cmd::Command;
use std::path::PathBuf;
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

/// What a fleet run needs besides the simulator's endpoints: static credentials, no IMDS, us-west-2.
pub const FLEET_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", STATIC_KEY),
    ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_REGION", REGION),
    ("HOME", "/nonexistent"),
];

/// The fleet command, with static credentials (no IMDS: `AWS_EC2_METADATA_DISABLED`), in us-west-2 unless
/// the arguments say otherwise.
pub fn fleet(sim: &Simulator, args: &[&str]) -> Command {
    let mut cmd = agent(sim);
    cmd.envs(FLEET_ENV).args(args);
    cmd
}

/// `program` (the binary, or a shell that runs it) as a plain process, for a signal, a pipe or a shell: an
/// environment that reaches the simulator and nothing else, at the default log level. Its output does not
/// pass through `run`, so a test that reads it calls `no_secret` on it.
pub fn process(sim: &Simulator, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear().envs(sim.env()).env("HOME", "/nonexistent");
    cmd
}

/// The binary as a plain process (for a signal or a terminal), with the fleet's environment and nothing else.
pub fn fleet_process(sim: &Simulator, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = process(sim, program);
    cmd.envs(FLEET_ENV);
    cmd
}

/// The binary the tests run.
pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("imds-hop-limit")
}

pub fn web(n: usize, region: &'static str, state: &'static str, hop: i64) -> InstanceSpec {
    InstanceSpec {
        id: format!("i-4{n:016x}"),
        region,
        tags: vec![("team".into(), "web".into()), ("env".into(), "prod".into())],
        state,
        options: Options { hop_limit: Some(hop), ..Options::default() },
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

/// The requests for `action` (EC2's, STS's or Organizations'), as the simulator logged them.
pub fn calls(sim: &Simulator, action: &str) -> Vec<Logged> {
    sim.requests().into_iter().filter(|r| r.action == action).collect()
}

/// How many requests for `action` the simulator answered.
pub fn count(sim: &Simulator, action: &str) -> usize {
    calls(sim, action).len()
}

pub fn modifies(sim: &Simulator) -> Vec<Logged> {
    calls(sim, "ModifyInstanceMetadataOptions")
}

/// An instance whose IMDS answers with IP TTL = its hop limit `hop`, as IMDS does.
pub fn imds_like(hop: i64) -> Scenario {
    scenario(|s| {
        s.ttl_is_hop_limit = true;
        s.options = crate::simulator::Options { hop_limit: Some(hop), ..crate::simulator::Options::default() };
    })
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

/// The release artifacts (scripts/dist builds them; .ci/run does first), or $IMDS_HOP_LIMIT_DIST.
pub fn dist() -> PathBuf {
    let dir = PathBuf::from(std::env::var("IMDS_HOP_LIMIT_DIST").unwrap_or_else(|_| "dist".into()));
    assert!(
        dir.join("SHA256SUMS").exists(),
        "{} holds no artifacts: run `bash scripts/dist` (.ci/run does)",
        dir.display()
    );
    dir
}

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// An empty directory of this test run's own.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ihl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A throwaway CA and a certificate for 127.0.0.1 that it signed, made with openssl: (ca, cert, key).
pub fn test_ca(dir: &std::path::Path) -> (String, String, String) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[&["req", "-x509"][..], &ec, &["-days", "2", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem"]]
            .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

/// Waits for `done`, looking every 20 ms, failing the test after `limit`: a condition, never a fixed sleep.
#[track_caller]
pub fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child's stderr, read on a thread of its own as it comes, so that a test waits for a line to be written
/// instead of sleeping until it probably was.
pub struct Followed {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

/// Follows `child`'s stderr (it must be piped); the child's output is then read from the `Followed`.
pub fn follow(child: &mut std::process::Child) -> Followed {
    use std::io::Read;
    let mut stderr = child.stderr.take().expect("a piped stderr");
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = text.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Followed { text, reader }
}

impl Followed {
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until the text holds `needle` `times` times.
    #[track_caller]
    pub fn until(&self, needle: &str, times: usize, limit: Duration) {
        until(&format!("{times} x {needle:?}"), limit, || self.text().matches(needle).count() >= times);
    }

    /// Everything the child wrote, once it has closed stderr (exited).
    pub fn finish(self) -> String {
        let _ = self.reader.join();
        let text = self.text.lock().unwrap().clone();
        no_secret(&text);
        text
    }
}
