//! The three channels and the release artifacts, each checked by a real tool: systemd-analyze, the project's
//! .ebextensions schema, cloud-init's own schema, shellcheck, lintian, rpm, qemu-user. The artifact checks read
//! dist/ (built by scripts/dist; .ci/run builds it first) or $IMDS_HOP_LIMIT_DIST.

use crate::support::{dist, scratch, version};
use std::path::Path;
use std::process::{Command, Output};

const UNIT: &str = "systemd/imds-hop-limit.service";
const HOOK: &str = "ebextensions/bundle/.platform/hooks/prebuild/10-imds-hop-limit.sh";

fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (.ci/run installs it): {e}"))
}

/// Runs a tool that must succeed; its stdout and stderr.
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = tool(program, args);
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
    text(&out)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).collect()
}

#[test]
fn the_unit_is_a_oneshot_ordered_before_containers_and_never_after_cloud_final() {
    assert_eq!(unit_values("Type"), ["oneshot"]);
    assert_eq!(unit_values("RemainAfterExit"), ["yes"]);
    assert_eq!(unit_values("Wants"), ["network-online.target"]);
    assert_eq!(unit_values("After"), ["network-online.target"], "never After=cloud-final.service: ECS waits for it");
    let before = unit_values("Before").join(" ");
    assert!(before.contains("docker.service") && before.contains("ecs.service"), "{before}");
    assert_eq!(unit_values("ExecStart"), ["/usr/bin/imds-hop-limit apply"]);
    assert!(!unit_values("Documentation").is_empty());
    assert_eq!(unit_values("User"), ["imds-hop-limit"], "not root on systemd 219 either");
    assert_eq!(unit_values("DynamicUser"), ["yes"]);
    let env_files = unit_values("EnvironmentFile");
    assert!(env_files.contains(&"-/etc/default/imds-hop-limit".to_string()), "{env_files:?}");
    assert!(env_files.contains(&"-/etc/sysconfig/imds-hop-limit".to_string()), "{env_files:?}");
    // The agent's own deadline (--timeout, 180 s by default) must end it before systemd does.
    let timeout: u64 = unit_values("TimeoutStartSec")[0].parse().unwrap();
    assert!(timeout > 180, "TimeoutStartSec={timeout}");
    assert!(
        unit_values("StandardOutput")[0].contains("journal") && unit_values("StandardOutput")[0].contains("console")
    );
}

#[test]
fn the_unit_scores_at_most_1_5_on_systemd_analyze_security() {
    let out = tool("systemd-analyze", &["security", "--offline=true", "--no-pager", UNIT]);
    let report = text(&out);
    let line = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{report}"));
    let score: f64 = line.split(": ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{report}");
}

#[test]
fn ebextensions_configs_pass_the_schema_and_the_seed_script_does_not() {
    let shipped =
        ["ebextensions/bundle/.ebextensions/10-imds-hop-limit.config", "ebextensions/optional/iam-policy.config"];
    run_ok("python3", &[&["ebextensions/check"][..], &shipped[..]].concat());
    for (fixture, why) in [
        ("hidden-failure.config", "|| true"),
        ("traced-shell.config", "bash -x"),
        ("bad-mode.config", "'755' does not match"),
        ("misspelt-key.config", "'container_command' was unexpected"),
        ("seed-script.config", "|| true"),
    ] {
        let path = format!("tests/fixtures/ebextensions/{fixture}");
        let out = tool("python3", &["ebextensions/check", &path]);
        assert_eq!(out.status.code(), Some(1), "{fixture} must fail: {}", text(&out));
        assert!(text(&out).contains(why), "{fixture}: {}", text(&out));
    }
}

#[test]
fn the_eb_policy_snippet_is_the_packaged_policy() {
    let snippet = std::fs::read_to_string("ebextensions/optional/iam-policy.config").unwrap();
    let json = snippet.lines().find_map(|l| l.trim().strip_prefix("PolicyDocument: ")).unwrap();
    let in_snippet: serde_json::Value = serde_json::from_str(json).unwrap();
    let packaged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("packaging/iam-policy.json").unwrap()).unwrap();
    assert_eq!(
        in_snippet, packaged,
        "regenerate ebextensions/optional/iam-policy.config from packaging/iam-policy.json"
    );
    let actions: Vec<&str> =
        packaged["Statement"].as_array().unwrap().iter().map(|s| s["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["ec2:DescribeInstances", "ec2:ModifyInstanceMetadataOptions"]);
    // Least privilege in every partition: the modify only on the calling instance, no `arn:aws:` literal.
    let modify = &packaged["Statement"][1];
    assert_eq!(modify["Resource"], "*");
    assert_eq!(modify["Condition"]["StringEquals"]["aws:ARN"], "${ec2:SourceInstanceARN}");
    assert_eq!(modify["Condition"]["StringEqualsIfExists"]["ec2:MetadataHttpTokens"], "required");
    assert!(!packaged.to_string().contains("arn:aws:"), "a partition literal fails in aws-cn and aws-us-gov");
}

#[test]
fn the_fleet_policy_grants_the_fleet_and_defaults_calls_and_never_imdsv1() {
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("packaging/iam-fleet-policy.json").unwrap()).unwrap();
    let mut actions: Vec<String> = Vec::new();
    for statement in policy["Statement"].as_array().unwrap() {
        match &statement["Action"] {
            serde_json::Value::String(a) => actions.push(a.clone()),
            serde_json::Value::Array(all) => actions.extend(all.iter().map(|a| a.as_str().unwrap().to_string())),
            other => panic!("{other}"),
        }
    }
    actions.sort();
    assert_eq!(
        actions,
        [
            "autoscaling:DescribeAutoScalingGroups",
            "ec2:CreateLaunchTemplateVersion",
            "ec2:DescribeInstances",
            "ec2:DescribeLaunchTemplateVersions",
            "ec2:DescribeLaunchTemplates",
            "ec2:DescribeRegions",
            "ec2:GetInstanceMetadataDefaults",
            "ec2:ModifyInstanceMetadataDefaults",
            "ec2:ModifyInstanceMetadataOptions",
            "ec2:ModifyLaunchTemplate",
        ]
    );
    // templates: never a template Karpenter or EKS owns (their tags), which they would overwrite.
    let templates = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ChangeLaunchTemplatesThatKarpenterAndEksDoNotOwn");
    let null = &templates.unwrap()["Condition"]["Null"];
    for tag in ["karpenter.sh/nodepool", "karpenter.k8s.aws/ec2nodeclass", "eks:nodegroup-name", "eks:cluster-name"] {
        assert_eq!(null[format!("aws:ResourceTag/{tag}")], "true", "{tag}");
    }
    let modify =
        policy["Statement"].as_array().unwrap().iter().find(|s| s["Action"] == "ec2:ModifyInstanceMetadataOptions");
    let condition = &modify.unwrap()["Condition"];
    assert_eq!(condition["StringEqualsIfExists"]["ec2:MetadataHttpTokens"], "required");
    assert_eq!(condition["StringEqualsIfExists"]["ec2:MetadataHttpEndpoint"], "enabled");
    assert!(!policy.to_string().contains("arn:aws:"), "a partition literal fails in aws-cn and aws-us-gov");
    // The message that points at it names this file.
    let hint = std::fs::read_to_string("src/ec2/failures.rs").unwrap();
    assert!(hint.contains("packaging/iam-fleet-policy.json"));
}

#[test]
fn the_hook_is_executable_and_hides_nothing() {
    let index = tool("git", &["ls-files", "-s", HOOK]);
    assert!(text(&index).starts_with("100755"), "git must record the hook as executable: {}", text(&index));
    let hook = std::fs::read_to_string(HOOK).unwrap();
    for banned in ["|| true", "set -x", "bash -x", "-o xtrace"] {
        assert!(!hook.lines().any(|l| !l.trim_start().starts_with('#') && l.contains(banned)), "{banned}");
    }
}

/// The demo is the first thing a new user runs: it ends with 0 and nothing of bash's own (issue 27: its second
/// coprocess started before the first was reaped, and bash warned that the first "still exists").
#[test]
fn the_demo_runs_clean() {
    let target = crate::support::bin().parent().unwrap().parent().unwrap().to_path_buf();
    let out = Command::new("bash")
        .args(["scripts/demo", "--inside"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let said = text(&out);
    crate::support::no_secret(&said);
    assert!(out.status.success(), "{said}");
    assert!(!said.lines().any(|l| l.contains(": warning: ") || l.contains("execute_coproc")), "{said}");
    assert!(said.contains("fleet apply: selected 5"), "it ran to the end: {said}");
}

#[test]
fn shipped_shell_scripts_pass_shellcheck() {
    let scripts = [
        HOOK,
        "packaging/user-data/user-data.sh",
        "ebextensions/make-bundle",
        "scripts/demo",
        "scripts/test",
        "scripts/dist",
        "scripts/preflight",
        "scripts/reproducible",
        ".ci/run",
    ];
    run_ok("shellcheck", &scripts);
}

/// `compiler` standing for one that has lost its C library headers, as `aarch64-linux-gnu-gcc` is on a machine
/// where `libc6-dev-arm64-cross` (only recommended by the compiler's package) was never installed: `real` run
/// with `-nostdinc`. (musl-gcc's specs add its include directory back, so it is stood in for by the host cc.)
fn headerless(dir: &Path, compiler: &str, real: &str) {
    let real = run_ok("sh", &["-c", &format!("command -v {real}")]);
    let wrapper = dir.join(compiler);
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {} -nostdinc \"$@\"\n", real.trim())).unwrap();
    run_ok("chmod", &["+x", wrapper.to_str().unwrap()]);
}

#[test]
fn the_preflight_passes_here_and_names_the_missing_headers_package_in_seconds() {
    let out = tool("bash", &["scripts/preflight"]);
    assert!(out.status.success(), "{}", text(&out));
    for (compiler, real, package) in
        [("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-gcc", "libc6-dev-arm64-cross"), ("musl-gcc", "cc", "musl-dev")]
    {
        let dir = scratch(&format!("preflight-{compiler}"));
        headerless(&dir, compiler, real);
        let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
        let start = std::time::Instant::now();
        let out = Command::new("bash").arg("scripts/preflight").env("PATH", path).output().unwrap();
        let took = start.elapsed();
        assert_eq!(out.status.code(), Some(1), "{compiler} without headers must fail: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("<sys/types.h>") && said.contains(&format!("apt-get install {package}")), "{said}");
        assert!(took < std::time::Duration::from_secs(20), "a preflight, not a build: {took:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn cloud_init_schema(file: &str) -> Output {
    let root = std::env::var("CLOUD_INIT_ROOT")
        .unwrap_or_else(|_| format!("{}/.cache/imds-hop-limit/cloud-init", std::env::var("HOME").unwrap_or_default()));
    let cli = format!("{root}/usr/bin/cloud-init");
    assert!(Path::new(&cli).exists(), "cloud-init unpacked at {root} (.ci/run unpacks Debian's package there)");
    Command::new("python3")
        .args([&cli, "schema", "--config-file", file])
        .env("PYTHONPATH", format!("{root}/usr/lib/python3/dist-packages"))
        .output()
        .unwrap()
}

#[test]
fn the_cloud_config_passes_cloud_inits_own_schema() {
    let out = cloud_init_schema("packaging/user-data/cloud-config.yaml");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Valid cloud-config"), "{}", text(&out));
    let broken = std::env::temp_dir().join(format!("broken-cloud-config-{}.yaml", std::process::id()));
    std::fs::write(&broken, "#cloud-config\nruncmd: imds-hop-limit\nwrite_files: {path: 1}\n").unwrap();
    let out = cloud_init_schema(broken.to_str().unwrap());
    let _ = std::fs::remove_file(&broken);
    assert!(!out.status.success(), "a broken cloud-config must fail: {}", text(&out));
}

#[test]
fn release_tarballs_hold_static_binaries_that_run_on_both_architectures() {
    let dist = dist();
    let out = Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&dist).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for (arch, runner) in [("x86_64", None), ("aarch64", Some("qemu-aarch64"))] {
        let name = format!("imds-hop-limit-{}-{arch}-unknown-linux-musl", version());
        let dir = scratch(arch);
        let tarball = dist.join(format!("{name}.tar.gz"));
        run_ok("tar", &["-xzf", tarball.to_str().unwrap(), "-C", dir.to_str().unwrap()]);
        let bin = dir.join(&name).join("imds-hop-limit");
        for file in [
            "imds-hop-limit.service",
            "iam-policy.json",
            "iam-fleet-policy.json",
            "ssm-document.json",
            "imds-hop-limit.1.gz",
            "README.md",
            "completions/imds-hop-limit.bash",
            "deploy/kubernetes/daemonset.yaml",
            "deploy/ecs/task-definition.json",
            "deploy/bottlerocket/user-data.toml",
        ] {
            assert!(dir.join(&name).join(file).exists(), "{file} in {name}");
        }
        let headers = run_ok("readelf", &["-lh", bin.to_str().unwrap()]);
        assert!(!headers.contains("INTERP"), "{arch}: statically linked, no interpreter");
        assert!(headers.contains(if arch == "x86_64" { "X86-64" } else { "AArch64" }), "{arch}");
        let size = std::fs::metadata(&bin).unwrap().len();
        // A guard against bloat. 6 MiB held until `templates` (the launch-template shapes of aws-sdk-ec2, and the
        // Auto Scaling client for `used_by`) added 0.67 MiB: 6.58 MiB for x86_64, 5.02 MiB for aarch64 (README).
        assert!(size <= 7 * 1024 * 1024, "{arch}: {size} bytes > 7 MiB");
        // The SBOM: `cargo auditable`'s dependency list, in the binary itself.
        let sbom = embedded_dependencies(&bin);
        for package in ["imds-hop-limit", "aws-sdk-ec2", "aws-lc-sys", "tokio", "rustls"] {
            assert!(sbom.contains(&format!("\"name\":\"{package}\"")), "{arch}: {package} in {sbom:.300}");
        }
        let out = match runner {
            None => tool(bin.to_str().unwrap(), &["--version"]),
            Some(qemu) => tool(qemu, &[bin.to_str().unwrap(), "--version"]),
        };
        assert!(out.status.success(), "{arch}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("imds-hop-limit {}", version()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The dependency list that `cargo auditable` embeds (a zlib-compressed JSON document in the ELF section
/// `.dep-v0`, which `cargo audit bin` and syft read), read with no tool that knows about it: the section
/// headers by hand, zlib by Python's.
fn embedded_dependencies(bin: &Path) -> String {
    let elf = std::fs::read(bin).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF");
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    let section = (0..shnum)
        .find(|&i| {
            let name = names + u32_at(header(i));
            elf[name..].starts_with(b".dep-v0\0")
        })
        .unwrap_or_else(|| panic!("{}: no .dep-v0 section (built without cargo auditable?)", bin.display()));
    let (offset, size) = (u64_at(header(section) + 0x18), u64_at(header(section) + 0x20));
    let mut python = Command::new("python3")
        .args(["-c", "import sys, zlib; sys.stdout.write(zlib.decompress(sys.stdin.buffer.read()).decode())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    python.stdin.take().unwrap().write_all(&elf[offset..offset + size]).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "zlib: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_deb_passes_lintian_and_installs_what_it_should() {
    let dist = dist();
    for arch in ["amd64", "arm64"] {
        let deb = dist.join(format!("imds-hop-limit_{}-1_{arch}.deb", version()));
        let deb = deb.to_str().unwrap();
        let out = tool("lintian", &["--tag-display-limit", "0", "--fail-on", "error,warning", deb]);
        assert!(out.status.success(), "lintian {arch}: {}", text(&out));
        // The EC2 API is HTTPS, verified against the system's CA bundle: a minimal system must get one.
        let depends = run_ok("dpkg-deb", &["-f", deb, "Depends"]);
        assert!(depends.split(',').any(|d| d.trim() == "ca-certificates"), "Depends: {depends}");
        let listing = run_ok("dpkg-deb", &["-c", deb]);
        for path in [
            "./usr/bin/imds-hop-limit",
            "./lib/systemd/system/imds-hop-limit.service",
            "./usr/share/doc/imds-hop-limit/iam-policy.json",
            "./usr/share/doc/imds-hop-limit/iam-fleet-policy.json",
            "./usr/share/doc/imds-hop-limit/ssm-document.json",
            "./usr/share/man/man1/imds-hop-limit.1.gz",
            "./usr/share/bash-completion/completions/imds-hop-limit",
        ] {
            assert!(listing.contains(path), "{path} in {deb}:\n{listing}");
        }
        let dir = scratch(&format!("deb-{arch}"));
        run_ok("dpkg-deb", &["-e", deb, dir.to_str().unwrap()]);
        let postinst = std::fs::read_to_string(dir.join("postinst")).unwrap();
        assert!(postinst.contains("deb-systemd-helper enable 'imds-hop-limit.service'"), "enabled on install");
        assert!(postinst.contains("adduser --system"), "the unit's system user is made");
        let postrm = std::fs::read_to_string(dir.join("postrm")).unwrap();
        assert!(postrm.contains("deb-systemd-helper mask") && postrm.contains("deb-systemd-helper purge"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_unit_as_installed_by_the_deb_verifies_clean() {
    let dist = dist();
    let deb = dist.join(format!("imds-hop-limit_{}-1_amd64.deb", version()));
    let root = scratch("root");
    run_ok("dpkg-deb", &["-x", deb.to_str().unwrap(), root.to_str().unwrap()]);
    let unit = root.join("lib/systemd/system/imds-hop-limit.service");
    // The targets and units it orders against (sysinit.target, network-online.target, ...) from this machine.
    run_ok("sh", &["-c", &format!("cp -an /lib/systemd/system/. {}/lib/systemd/system/", root.display())]);
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", &format!("--root={}", root.display()), unit.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success() && text(&out).trim().is_empty(), "systemd-analyze verify: {}", text(&out));
    let page = run_ok("sh", &["-c", &format!("zcat {}/usr/share/man/man1/imds-hop-limit.1.gz", root.display())]);
    assert!(page.contains(".TH imds-hop-limit 1") && page.contains("hop\\-limit"), "the man page: {page}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_rpm_has_a_gzip_payload_the_files_and_the_scriptlets() {
    let dist = dist();
    for arch in ["x86_64", "aarch64"] {
        let rpm = dist.join(format!("imds-hop-limit-{}-1.{arch}.rpm", version()));
        let rpm = rpm.to_str().unwrap();
        let info = run_ok("rpm", &["-qpil", "--scripts", rpm]);
        for needle in [
            "/usr/bin/imds-hop-limit",
            "/usr/lib/systemd/system/imds-hop-limit.service",
            "/usr/share/doc/imds-hop-limit/iam-policy.json",
            "/usr/share/doc/imds-hop-limit/iam-fleet-policy.json",
            "/usr/share/doc/imds-hop-limit/ssm-document.json",
            "/usr/share/man/man1/imds-hop-limit.1.gz",
            &format!("Architecture: {arch}"),
            "useradd -r -g imds-hop-limit",
            "systemctl enable imds-hop-limit.service",
            "disable --now imds-hop-limit.service",
        ] {
            assert!(info.contains(needle), "{needle} in {rpm}:\n{info}");
        }
        let requires = run_ok("rpm", &["-qpR", rpm]);
        assert!(requires.lines().any(|l| l.trim() == "ca-certificates"), "Requires:\n{requires}");
        let compressor = run_ok("rpm", &["-qp", "--qf", "%{PAYLOADCOMPRESSOR}", rpm]);
        assert_eq!(compressor.trim(), "gzip", "AL2's rpm cannot read zstd");
    }
}

#[test]
fn the_eb_bundle_keeps_the_hook_and_binaries_executable() {
    let dist = dist();
    let zip = dist.join(format!("imds-hop-limit-{}-eb-bundle.zip", version()));
    let script = "import sys, zipfile\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(oct(i.external_attr >> 16 & 0o777), i.filename)";
    let listing = run_ok("python3", &["-c", script, zip.to_str().unwrap()]);
    for entry in [
        "0o755 .platform/hooks/prebuild/10-imds-hop-limit.sh",
        "0o644 .ebextensions/10-imds-hop-limit.config",
        "0o755 bin/imds-hop-limit-x86_64",
        "0o755 bin/imds-hop-limit-aarch64",
    ] {
        assert!(listing.lines().any(|l| l == entry), "{entry} in the bundle:\n{listing}");
    }
}
