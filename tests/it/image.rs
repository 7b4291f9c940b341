//! The container image (issue 22): the OCI archive that scripts/dist writes, checked blob by blob (digests,
//! sizes, platforms, a numeric non-root user, the labels, what the layer holds, its size), and run by a real OCI
//! runtime from Debian (podman with runc) in the host's network namespace, which inside the test suite's
//! `unshare --net` is the test's own loopback: `apply` fixes the simulated instance; `watch` makes no EC2 call
//! on compliant looks, repairs a drift within an interval, and exits 0 on SIGTERM.

use crate::simulator::{Options, Simulator};
use crate::support::{dist, ec2_calls, follow, modifies, no_secret, scenario, scratch, until, version};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn archive() -> PathBuf {
    dist().join(format!("imds-hop-limit-{}-oci.tar", version()))
}

/// A blob of the layout, its digest and size checked against the descriptor that names it.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let data = std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(format!("sha256:{:x}", Sha256::digest(&data)), digest, "the blob's digest");
    assert_eq!(descriptor["size"].as_u64(), Some(data.len() as u64), "the blob's size");
    data
}

fn json(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap()
}

#[test]
fn the_image_is_an_oci_index_of_both_architectures_from_scratch() {
    let layout = scratch("oci");
    let out = Command::new("tar").arg("-xf").arg(archive()).arg("-C").arg(&layout).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(layout.join("oci-layout")).unwrap(), r#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let top = &index["manifests"][0];
    let reference = format!("{}:{}", manifests_image(), version());
    assert_eq!(
        top["annotations"]["org.opencontainers.image.ref.name"],
        version(),
        "the tag, as the layout spec has it"
    );
    assert_eq!(top["annotations"]["io.containerd.image.name"], reference.as_str());
    let platforms = json(&blob(&layout, top));
    let mut seen = Vec::new();
    for m in platforms["manifests"].as_array().unwrap() {
        let arch = m["platform"]["architecture"].as_str().unwrap().to_string();
        assert_eq!(m["platform"]["os"], "linux");
        let manifest = json(&blob(&layout, m));
        let config = json(&blob(&layout, &manifest["config"]));
        assert_eq!(config["architecture"], arch.as_str());
        let c = &config["config"];
        assert_eq!(c["User"], "65532:65532", "numeric, not root");
        assert_eq!(c["Entrypoint"], serde_json::json!(["/imds-hop-limit"]));
        assert_eq!(
            c["Cmd"],
            serde_json::json!(["apply"]),
            "the oneshot, as a Bottlerocket bootstrap container runs it"
        );
        let labels = &c["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], version());
        assert_eq!(labels["org.opencontainers.image.licenses"], "MIT OR Apache-2.0");
        assert!(labels["org.opencontainers.image.source"].as_str().unwrap().starts_with("https://"));
        assert_eq!(labels["org.opencontainers.image.revision"].as_str().unwrap().len(), 40, "a commit");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "FROM scratch: one layer");
        let layer = blob(&layout, &layers[0]);
        assert!(layer.len() <= 4 << 20, "{arch}: {} bytes compressed, more than 4 MiB", layer.len());
        let tarball = layout.join(format!("layer-{arch}.tar.gz"));
        std::fs::write(&tarball, &layer).unwrap();
        let list = Command::new("tar").arg("-tvzf").arg(&tarball).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        let files: Vec<&str> = list.lines().filter(|l| !l.starts_with('d')).collect();
        assert_eq!(files.len(), 2, "the binary and the CA bundle, nothing else: {list}");
        assert!(list.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" imds-hop-limit")), "{list}");
        assert!(list.contains("etc/ssl/certs/ca-certificates.crt"), "{list}");
        eprintln!("{arch}: layer {} bytes compressed", layer.len());
        seen.push(arch);
    }
    seen.sort();
    assert_eq!(seen, ["amd64", "arm64"]);
    let _ = std::fs::remove_dir_all(&layout);
}

/// The repository the DaemonSet runs (the ECS task and the Bottlerocket settings name the same).
fn manifests_image() -> String {
    let daemonset = std::fs::read_to_string("deploy/kubernetes/daemonset.yaml").unwrap();
    let line = daemonset.lines().find_map(|l| l.trim().strip_prefix("image: ")).unwrap();
    line.rsplit_once(':').unwrap().0.to_string()
}

/// `podman load` stores the image under the reference the manifests run (issue 27: it was
/// `localhost/0.1.0:latest`, so a DaemonSet on a node loaded by hand pulled instead). In a store of its own.
#[test]
fn podman_load_names_the_image_as_the_manifests_do() {
    let store = scratch("podman-store");
    let root = |args: &[&str]| {
        // Its own storage, run and temporary directories: nothing another test's podman keeps (a container's
        // exit code under the default tmpdir) is touched, and removing the folder removes it all.
        let mut cmd = podman(&["--root", &format!("{}/root", store.display())]);
        cmd.args(["--runroot", &format!("{}/run", store.display())]);
        cmd.args(["--tmpdir", &format!("{}/tmp", store.display()), "--storage-driver", "vfs"]).args(args);
        cmd.output().expect("podman (.ci/run installs it)")
    };
    let out = root(&["load", "-i", archive().to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let reference = format!("{}:{}", manifests_image(), version());
    assert!(text.contains(&format!("Loaded image: {reference}")), "{text}");
    let out = root(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let images = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(images.trim(), reference, "one image, under the manifests' name");
    let _ = std::fs::remove_dir_all(&store);
}

fn podman(args: &[&str]) -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]).args(args);
    cmd
}

/// `podman run` of the image with the host's network (the test's loopback) and the simulator's endpoints.
fn run_image(sim: &Simulator, args: &[&str]) -> Command {
    let mut cmd = podman(&["run", "--rm", "--network=host", "--ulimit", "nofile=1024:1024"]);
    cmd.args(["--ulimit", "nproc=1024:1024"]);
    for (k, v) in sim.env() {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(format!("oci-archive:{}", archive().display())).args(args);
    cmd
}

#[test]
fn podman_runs_the_image_apply_fixes_the_instance_and_watch_keeps_it() {
    let sim = Simulator::start(scenario(|s| {
        s.ttl_is_hop_limit = true;
        s.options = Options { hop_limit: Some(1), ..Options::default() };
    }));
    let out = run_image(&sim, &["apply"]).output().expect("podman (.ci/run installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    no_secret(&text);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(sim.effective_hop_limit(), 2, "{text}");

    let mut child = run_image(&sim, &["watch", "--interval", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = follow(&mut child);
    // The container starts, then looks: compliant looks cost no EC2 call.
    until("watch looked through IMDS", Duration::from_secs(60), || sim.probe_requests() >= 6);
    sim.reset_log();
    until("four more looks", Duration::from_secs(30), || sim.probe_requests() >= 8);
    assert_eq!(ec2_calls(&sim), 0, "compliant looks: {:?}", sim.requests());
    sim.set_hop_limit(1);
    until("the drift repaired within an interval and a change", Duration::from_secs(5), || {
        sim.effective_hop_limit() == 2
    });
    assert_eq!(modifies(&sim).len(), 1);
    // The change is in effect on the data plane, and said so, before the stop.
    log.until("changed (hop limit 1 -> 2)", 1, Duration::from_secs(10));
    let stopped = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let text = log.finish();
    assert_eq!(status.code(), Some(0), "SIGTERM ends watch with 0: {text}");
    assert!(stopped.elapsed() < Duration::from_secs(10), "{:?}", stopped.elapsed());
    assert!(text.contains("changed (hop limit 1 -> 2)") && text.contains("SIGTERM: stopping"), "{text}");
}
