//! The Systems Manager Command document (packaging/ssm/): the project's schema and checker accept it and refuse
//! each known way to get one wrong; its script, with the parameters pasted in as Systems Manager does, passes
//! shellcheck and runs the agent against the simulated instance. The install branch (the static tarball) runs
//! against dist/ served over HTTPS on loopback, with `install`, `useradd` and `systemctl` replaced by stubs that
//! install into a scratch root and record what they were asked: nothing of this machine's is changed.

use crate::simulator::{Scenario, Simulator};
use crate::support::{dist, no_secret, scenario, scratch, test_ca, version};
use std::path::Path;
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

/// The document's defaults install this version from the release's assets, under the names the release
/// workflow publishes (scripts/dist's names, beside SHA256SUMS).
#[test]
fn the_default_download_is_this_releases_assets() {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("packaging/ssm/imds-hop-limit.json").unwrap()).unwrap();
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    let repository =
        manifest.lines().find_map(|l| l.strip_prefix("repository = \"").and_then(|r| r.strip_suffix('"'))).unwrap();
    let version = crate::support::version();
    let parameters = &doc["parameters"];
    assert_eq!(parameters["Version"]["default"], version);
    assert_eq!(parameters["ReleaseBase"]["default"], format!("{repository}/releases/download/v{version}"));
    let workflow = std::fs::read_to_string(".github/workflows/release.yml").unwrap();
    assert!(workflow.contains("gh release create \"$GITHUB_REF_NAME\" dist/*"), "every dist/ file is an asset");
}

/// Pushes to main and pull requests run `.ci/run` on the machine the release workflow builds on (issue 27:
/// only the release workflow existed); `.ci/run` lints every workflow with actionlint.
#[test]
fn pushes_and_pull_requests_run_ci_as_the_release_does() {
    let ci = std::fs::read_to_string(".github/workflows/ci.yml").unwrap();
    let release = std::fs::read_to_string(".github/workflows/release.yml").unwrap();
    for trigger in ["  push:\n    branches: [main]", "  pull_request:"] {
        assert!(ci.contains(trigger), "{trigger}: {ci}");
    }
    for step in ["image: rust:1.95-bookworm", "options: --privileged", "run: bash .ci/run", "fetch-depth: 0"] {
        assert!(ci.contains(step) && release.contains(step), "{step}");
    }
    let run = std::fs::read_to_string(".ci/run").unwrap();
    assert!(run.contains("/actionlint\" .github/workflows/*.yml"), "every workflow is linted");
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
    let bin = crate::support::bin();
    let path = format!("{}:/usr/bin:/bin", bin.parent().unwrap().display());
    let mut values = values.to_vec();
    values.push("Install=none");
    let out = crate::support::process(sim, "bash").args(["-c", &render(&values)]).env("PATH", path).output().unwrap();
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

/// dist/ (or a copy of it) served over HTTPS on loopback by Python's http.server: the port, and the server.
fn serve_https(dir: &Path, cert: &str, key: &str) -> (u16, std::process::Child) {
    let server = r#"
import functools, http.server, ssl, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.log_message = lambda *a: None
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", server, dir.to_str().unwrap(), cert, key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    (line.trim().parse().expect("the server's port"), child)
}

/// Stubs for what would change this machine: `install` copies into `root`, `useradd` and `systemctl` record
/// their arguments there.
fn stubs(root: &Path) -> std::path::PathBuf {
    let bin = root.join("stubs");
    std::fs::create_dir_all(&bin).unwrap();
    let write = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    // install -m MODE SRC DEST
    write("install", r#"mkdir -p "$STUB_ROOT$(dirname "$4")" && cp "$3" "$STUB_ROOT$4" && chmod "$2" "$STUB_ROOT$4""#);
    write("useradd", r#"echo "useradd $*" >> "$STUB_ROOT/calls""#);
    write("id", "exit 1");
    write("systemctl", r#"echo "systemctl $*" >> "$STUB_ROOT/calls""#);
    bin
}

/// Runs the script with Install=tarball against dist/ as `served` holds it: (exit code, output, scratch root).
fn install_run(sim: &Simulator, served: &Path, name: &str) -> (Option<i32>, String, std::path::PathBuf) {
    let root = scratch(name);
    let (ca, cert, key) = test_ca(&root);
    let (port, mut server) = serve_https(served, &cert, &key);
    let stubs = stubs(&root);
    let base = format!("ReleaseBase=https://127.0.0.1:{port}");
    let script = render(&["Install=tarball", &base, &format!("Version={}", version())]);
    let path = format!("{}:{}/usr/bin:/usr/bin:/bin", stubs.display(), root.display());
    let out = crate::support::process(sim, "bash")
        .args(["-c", &script])
        .env("PATH", path)
        .env("STUB_ROOT", &root)
        .env("CURL_CA_BUNDLE", &ca)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let output = text(&out);
    no_secret(&output);
    (out.status.code(), output, root)
}

#[test]
fn the_install_branch_checks_the_download_installs_the_tarball_and_runs_it() {
    let dist = dist();
    let sim = Simulator::start(Scenario::default());
    let (code, output, root) = install_run(&sim, &dist, "ssm-install");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(": OK"), "the tarball was checked against SHA256SUMS: {output}");
    let installed = root.join("usr/bin/imds-hop-limit");
    let out = Command::new(&installed).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("imds-hop-limit {}", version()));
    assert!(root.join("etc/systemd/system/imds-hop-limit.service").exists());
    let calls = std::fs::read_to_string(root.join("calls")).unwrap();
    assert!(calls.contains("useradd --system") && calls.contains("systemctl enable imds-hop-limit.service"), "{calls}");
    assert_eq!(sim.options().1, Some(2), "the installed agent ran");
    let _ = std::fs::remove_dir_all(&root);

    // A download that does not match SHA256SUMS installs nothing and fails the command.
    let copy = scratch("ssm-corrupt-dist");
    for entry in std::fs::read_dir(&dist).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let tarball = copy.join(format!("imds-hop-limit-{}-x86_64-unknown-linux-musl.tar.gz", version()));
    let mut bytes = std::fs::read(&tarball).unwrap();
    bytes.push(0);
    std::fs::write(&tarball, bytes).unwrap();
    let sim = Simulator::start(Scenario::default());
    let (code, output, root) = install_run(&sim, &copy, "ssm-corrupt");
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("FAILED"), "sha256sum says which file failed: {output}");
    assert!(!root.join("usr/bin/imds-hop-limit").exists());
    assert!(sim.requests().is_empty(), "nothing ran");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&copy);
}
