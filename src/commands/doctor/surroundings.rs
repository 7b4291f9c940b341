//! What surrounds the process, read before doctor asks anything: container signs, hops to IMDS, the token
//! answer's TTL, credentials and settings in the environment.

use crate::hops::{self, Hops};
use crate::sense;
use std::path::Path;
use std::time::Duration;

/// Well-known signs that this process runs in a container, read under `root` (`/` in production).
pub fn container_signs(root: &Path, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut signs = Vec::new();
    for (file, what) in [(".dockerenv", "/.dockerenv"), ("run/.containerenv", "/run/.containerenv")] {
        if root.join(file).exists() {
            signs.push(what.to_string());
        }
    }
    if let Ok(cgroup) = std::fs::read_to_string(root.join("proc/1/cgroup")) {
        for word in ["docker", "kubepods", "containerd", "ecs", "libpod"] {
            if cgroup.contains(word) {
                signs.push(format!("/proc/1/cgroup mentions {word}"));
                break;
            }
        }
    }
    for var in ["ECS_CONTAINER_METADATA_URI_V4", "ECS_CONTAINER_METADATA_URI", "KUBERNETES_SERVICE_HOST"] {
        if env(var).is_some_and(|v| !v.is_empty()) {
            signs.push(format!("${var} is set"));
        }
    }
    signs
}

/// How long each hop probe waits for its ICMP answer.
const PROBE_WAIT: Duration = Duration::from_millis(300);

/// What doctor reads of this process's surroundings before it asks anything: gathered by `surroundings`,
/// given by the unit tests.
#[derive(Debug, Clone)]
pub struct Surroundings {
    /// Signs that this process runs in a container.
    pub container_signs: Vec<String>,
    /// Hops from this process to the metadata address, or why they were not counted.
    pub hops: Result<Hops, String>,
    /// Credentials in the environment (AWS_ACCESS_KEY_ID), which the SDK prefers to the role's.
    pub env_credentials: bool,
    /// AWS_EC2_METADATA_DISABLED=true: the SDKs in this environment skip IMDS.
    pub metadata_disabled: bool,
    /// The proxy that HTTP_PROXY/HTTPS_PROXY/NO_PROXY give for the metadata address, if any.
    pub metadata_proxy: Option<String>,
    /// The TTL at which IMDS's token answer reaches this process, or why it was not measured.
    pub token_ttl: Result<Option<sense::Measured>, String>,
}

pub async fn surroundings(endpoint: &str) -> Surroundings {
    let env = crate::config::env_var;
    Surroundings {
        container_signs: container_signs(Path::new("/"), env),
        hops: measure_hops(endpoint).await,
        env_credentials: env("AWS_ACCESS_KEY_ID").is_some(),
        metadata_disabled: env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        metadata_proxy: crate::ec2::proxy_for(endpoint),
        token_ttl: match sense::address(endpoint) {
            Some(addr) => sense::measure(addr).await,
            None => Err("the endpoint is not http:// at an IP address".into()),
        },
    }
}

/// Hops from this process to the metadata endpoint's address, or why they could not be counted.
async fn measure_hops(endpoint: &str) -> Result<Hops, String> {
    let uri: http::Uri = endpoint.parse().map_err(|_| "the endpoint is not a URL".to_string())?;
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().map_err(|_| format!("{host} is a name, not an address"))?;
    let target = std::net::SocketAddr::new(ip, 80);
    tokio::task::spawn_blocking(move || hops::measure(target, PROBE_WAIT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the probe failed: {e}"))
}

/// `this process is 2 hops from IMDS; the instance's hop limit must be at least 2`.
pub(super) fn hops_sentence(n: u8) -> String {
    let unit = if n == 1 { "hop" } else { "hops" };
    format!("this process is {n} {unit} from IMDS; the instance's hop limit must be at least {n}")
}
