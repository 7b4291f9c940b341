//! `imds-hop-limit doctor`: explains, step by step, why this instance or this container gets no
//! credentials, and changes nothing. A step that cannot run because an earlier one failed is skipped.

use crate::config::Config;
use crate::ec2::{Ec2, Ec2Api};
use crate::error::{Error, ExitCode, POLICY_HINT};
use crate::hops::{self, Hops};
use crate::imds::{Imds, Metadata};
use crate::plan::{self, Change, HttpTokens, Plan};
use crate::reconcile::describe_change;
use aws_credential_types::provider::ProvideCredentials;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub step: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The exit code a failure of this step means (the table apply uses).
    #[serde(skip)]
    pub code: Option<ExitCode>,
}

impl Check {
    fn ok(step: &'static str, detail: impl Into<String>) -> Self {
        Check { step, status: Status::Ok, detail: detail.into(), hint: None, code: None }
    }
    fn warn(step: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Check { step, status: Status::Warn, detail: detail.into(), hint: Some(hint.into()), code: None }
    }
    fn skip(step: &'static str, why: &str) -> Self {
        Check { step, status: Status::Skip, detail: format!("skipped: {why}"), hint: None, code: None }
    }
    fn fail(step: &'static str, err: &Error, hint: Option<String>) -> Self {
        Check { step, status: Status::Fail, detail: err.to_string(), hint, code: Some(err.exit_code()) }
    }
}

/// The exit code of the first blocking failure, else 0.
pub fn exit_code(checks: &[Check]) -> ExitCode {
    checks.iter().find_map(|c| c.code.filter(|_| c.status == Status::Fail)).unwrap_or(ExitCode::Compliant)
}

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
fn hops_sentence(n: u8) -> String {
    let unit = if n == 1 { "hop" } else { "hops" };
    format!("this process is {n} {unit} from IMDS; the instance's hop limit must be at least {n}")
}

pub async fn diagnose(config: &Config, imds: &Imds) -> Vec<Check> {
    let mut checks = Vec::new();
    let signs = container_signs(Path::new("/"), |v| std::env::var(v).ok());
    let in_container = !signs.is_empty();
    let hops = measure_hops(imds.endpoint()).await;

    // 1. The metadata service: a TCP connection, then an IMDSv2 token (through the first read).
    let started = Instant::now();
    let imds_id = if !imds.accepts_connections().await {
        let err = Error::MetadataUnreachable {
            endpoint: imds.endpoint().into(),
            detail: "no TCP connection within 1 s".into(),
        };
        checks.push(Check::fail(
            "metadata service",
            &err,
            Some(
                "not on EC2, the instance's metadata endpoint is disabled (HttpEndpoint=disabled), or a firewall \
                  blocks it; fix it from outside with `imds-hop-limit --instance-id ID --region R`"
                    .into(),
            ),
        ));
        None
    } else {
        match imds.instance_id().await {
            Ok(id) => {
                checks.push(Check::ok(
                    "metadata service",
                    format!("IMDSv2 token from {} in {} ms", imds.endpoint(), started.elapsed().as_millis()),
                ));
                Some(id)
            }
            Err(err @ Error::TokenSilent { .. }) => {
                let hint = match &hops {
                    Ok(hops) => format!(
                        "{}: raise the hop limit to {n} (`imds-hop-limit --hop-limit {n}` on the host)",
                        hops_sentence(hops.count()),
                        n = hops.count()
                    ),
                    Err(_) if in_container => "this container is one routed hop further from IMDS than the host: run \
                         `imds-hop-limit` on the host, or raise the hop limit to 2 (one more for each further bridge)"
                        .into(),
                    Err(_) => "the token answer dies on the way: raise the hop limit by one for each routed hop \
                         between this process and the instance (`imds-hop-limit --hop-limit N` on the host)"
                        .into(),
                };
                checks.push(Check::fail("metadata service", &err, Some(hint)));
                None
            }
            Err(err) => {
                checks.push(Check::fail("metadata service", &err, None));
                None
            }
        }
    };

    // 2. Where this runs, so that the advice fits.
    checks.push(if in_container {
        Check::ok("where", format!("inside a container ({})", signs.join(", ")))
    } else {
        Check::ok("where", "on the host (no container signs)")
    });
    checks.push(match &hops {
        Ok(hops) => Check::ok("hops to IMDS", hops_sentence(hops.count())),
        Err(why) => Check::skip("hops to IMDS", &format!("not measured: {why}")),
    });

    // 3. Identity.
    let identity = match (&config.instance_id, &config.region, imds_id) {
        (Some(id), Some(region), _) => Some((id.clone(), region.clone())),
        (flag_id, flag_region, Some(imds_id)) => {
            let id = flag_id.clone().unwrap_or(imds_id);
            let region = match flag_region {
                Some(r) => Ok(r.clone()),
                None => imds.region().await,
            };
            match region {
                Ok(region) => Some((id, region)),
                Err(err) => {
                    checks.push(Check::fail("identity", &err, Some("give --region".into())));
                    None
                }
            }
        }
        _ => {
            checks.push(Check::skip("identity", "needs the metadata service, or --instance-id and --region"));
            None
        }
    };
    if let Some((id, region)) = &identity {
        let zone = imds.availability_zone().await.map(|z| format!(", zone {z}")).unwrap_or_default();
        checks.push(Check::ok("identity", format!("{id} in {region}{zone}")));
    }

    // 4. The instance role and its credentials.
    let metadata_ok = checks.first().is_some_and(|c| c.status == Status::Ok);
    let mut credentials_ok = false;
    if !metadata_ok {
        checks.push(Check::skip("instance role", "needs the metadata service"));
    } else {
        match imds.has_role().await {
            Ok(false) => checks.push(Check::fail(
                "instance role",
                &Error::NoInstanceRole,
                Some(
                    "attach an instance profile: EC2 console, Actions, Security, Modify IAM role; or \
                 `aws ec2 associate-iam-instance-profile`"
                        .into(),
                ),
            )),
            Ok(true) => {
                let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                    .imds_client(imds.client())
                    .build();
                // The expiry as IMDS gives it: the SDK extends credentials served expired, so theirs can't tell.
                let expiration = imds.role_credentials_expiration().await.ok().flatten();
                match provider.provide_credentials().await {
                    Ok(_) if expiration.is_some_and(|at| at <= SystemTime::now()) => {
                        let expired = expiration
                            .map(aws_smithy_types::DateTime::from)
                            .and_then(|at| at.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                            .unwrap_or_default();
                        let failure = crate::error::Failure::new(crate::error::FailureKind::Refused);
                        checks.push(Check::fail(
                            "instance role",
                            &Error::CredentialsExpired { expired, failure },
                            None,
                        ));
                    }
                    Ok(_) => {
                        credentials_ok = true;
                        let until = expiration.map(expires_in).unwrap_or_else(|| "no expiry given".into());
                        checks.push(Check::ok("instance role", format!("credentials obtainable, {until}")));
                    }
                    Err(e) => {
                        let root = crate::error::chain(&e).last().map(ToString::to_string).unwrap_or_default();
                        let detail = crate::remote::sanitize(&root, 300);
                        checks.push(Check::fail("instance role", &Error::NoCredentials { detail }, None));
                    }
                }
            }
            Err(err) => checks.push(Check::fail("instance role", &err, None)),
        }
    }
    let env_credentials = std::env::var("AWS_ACCESS_KEY_ID").is_ok_and(|k| !k.is_empty());

    // 5. EC2: reachable and authorized; 6. the options against what is wanted.
    let Some((id, region)) = identity else {
        checks.push(Check::skip("ec2:DescribeInstances", "needs the instance identity"));
        checks.push(Check::skip("ec2:ModifyInstanceMetadataOptions", "needs the instance identity"));
        checks.push(Check::skip("metadata options", "needs the instance identity"));
        return checks;
    };
    if !credentials_ok && !env_credentials {
        for step in ["ec2:DescribeInstances", "ec2:ModifyInstanceMetadataOptions", "metadata options"] {
            checks.push(Check::skip(step, "needs credentials"));
        }
        return checks;
    }
    let ec2 = Ec2Api::new(&region, imds.client()).await;
    let current = match ec2.describe(&id).await {
        Ok(current) => {
            checks.push(Check::ok("ec2:DescribeInstances", "authorized"));
            current
        }
        Err(err) => {
            let hint = matches!(err, Error::NotAuthorized { .. }).then(|| POLICY_HINT.to_string());
            checks.push(Check::fail("ec2:DescribeInstances", &err, hint));
            checks.push(Check::skip("ec2:ModifyInstanceMetadataOptions", "needs DescribeInstances"));
            checks.push(Check::skip("metadata options", "needs DescribeInstances"));
            return checks;
        }
    };
    // As apply decides: IMDS answered for this very instance, so an unreported endpoint is enabled.
    let current = crate::reconcile::known_options(config, &current);
    let plan = plan::plan(&current, &config.wanted);
    let probe = match plan {
        Plan::Change(change) => change,
        // Nothing to change now: ask about what apply sends when the hop limit is too low, the wanted
        // value, which the shipped policy allows (the current one may be above the policy's cap).
        Plan::Unchanged => Change { hop_limit: Some(config.wanted.hop_limit), ..Change::default() },
    };
    match ec2.modify(&id, &probe, true).await {
        Ok(_) => checks.push(Check::ok("ec2:ModifyInstanceMetadataOptions", "authorized (DryRun)")),
        Err(err) => {
            let hint = matches!(err, Error::NotAuthorized { .. }).then(|| POLICY_HINT.to_string());
            checks.push(Check::fail("ec2:ModifyInstanceMetadataOptions", &err, hint));
        }
    }
    let tradeoff = "a hop limit above 1 lets containers use the instance role; HttpTokens=required is its safe \
                    companion (`--http-tokens required`)";
    // Measured farther from IMDS than the instance's hop limit reaches: that is the answer, whatever else.
    let needed = hops.as_ref().ok().map(|h| h.count());
    if let (Some(needed), Some(have)) = (needed, current.hop_limit) {
        if have.get() < needed {
            checks.push(Check::warn(
                "metadata options",
                format!("hop limit {have}, but {}", hops_sentence(needed)),
                format!("run `imds-hop-limit --hop-limit {needed}` on the host; {tradeoff}"),
            ));
            return checks;
        }
    }
    checks.push(match plan {
        Plan::Unchanged if plan::is_in_effect(&current, &config.wanted) => {
            if current.http_tokens == Some(HttpTokens::Required) {
                Check { hint: Some(tradeoff.into()), ..Check::ok("metadata options", summary(&current)) }
            } else {
                Check::warn(
                    "metadata options",
                    format!("compliant: {}; IMDSv1 still allowed", summary(&current)),
                    tradeoff,
                )
            }
        }
        Plan::Unchanged => Check::warn(
            "metadata options",
            format!("{}: a change is still pending", summary(&current)),
            "wait, or run `imds-hop-limit`",
        ),
        Plan::Change(change) => Check::warn(
            "metadata options",
            format!(
                "not compliant: `imds-hop-limit` would set {}",
                describe_change(&current, &change.applied_to(&current))
            ),
            format!("run `imds-hop-limit` on the host; {tradeoff}"),
        ),
    });
    checks
}

fn summary(o: &plan::MetadataOptions) -> String {
    let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    format!(
        "hop limit {}, endpoint {}, tokens {}",
        show(o.hop_limit.map(|h| h.to_string())),
        show(o.http_endpoint.map(|t| t.to_string())),
        show(o.http_tokens.map(|t| t.to_string()))
    )
}

fn expires_in(at: SystemTime) -> String {
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!("expire in {} min", left.as_secs() / 60),
        Err(_) => "already expired".into(),
    }
}

/// One line per step, the hint under a failure or warning.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Ok => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        };
        out.push_str(&format!("{mark} {:<34} {}\n", c.step, c.detail));
        if let Some(hint) = &c.hint {
            if c.status != Status::Ok {
                out.push_str(&format!("       {:<34} -> {hint}\n", ""));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_signs_are_found_under_a_root() {
        let root = std::env::temp_dir().join(format!("ihl-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc/1")).unwrap();
        assert!(container_signs(&root, |_| None).is_empty());
        std::fs::write(root.join(".dockerenv"), "").unwrap();
        std::fs::write(root.join("proc/1/cgroup"), "0::/system.slice/docker-0123.scope\n").unwrap();
        let signs = container_signs(&root, |v| (v == "ECS_CONTAINER_METADATA_URI_V4").then(|| "http://x".into()));
        assert_eq!(signs, ["/.dockerenv", "/proc/1/cgroup mentions docker", "$ECS_CONTAINER_METADATA_URI_V4 is set"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rendering_is_golden() {
        let silent = Error::TokenSilent { endpoint: "http://169.254.169.254".into() };
        let checks = vec![
            Check::fail("metadata service", &silent, Some(format!("{}: raise the hop limit to 3", hops_sentence(3)))),
            Check::ok("where", "inside a container (/.dockerenv)"),
            Check::ok("hops to IMDS", hops_sentence(3)),
            Check::skip("identity", "needs the metadata service, or --instance-id and --region"),
        ];
        let expected = "\
[FAIL] metadata service                   no IMDSv2 token answer from http://169.254.169.254: the connection opened but the answer never came. This is the hop-limit symptom itself: this process is more hops from IMDS than the instance's hop limit allows (typically a container behind a hop limit of 1). Run imds-hop-limit on the host, not in the container
                                          -> this process is 3 hops from IMDS; the instance's hop limit must be at least 3: raise the hop limit to 3
[ok]   where                              inside a container (/.dockerenv)
[ok]   hops to IMDS                       this process is 3 hops from IMDS; the instance's hop limit must be at least 3
[skip] identity                           skipped: needs the metadata service, or --instance-id and --region
";
        assert_eq!(render(&checks), expected);
        assert_eq!(hops_sentence(1), "this process is 1 hop from IMDS; the instance's hop limit must be at least 1");
    }

    #[test]
    fn the_first_failure_decides_the_exit_code_and_warnings_do_not() {
        let unreachable = Error::MetadataUnreachable { endpoint: "e".into(), detail: "d".into() };
        let checks = vec![
            Check::ok("a", "fine"),
            Check::warn("b", "not compliant", "run it"),
            Check::fail("c", &Error::NoInstanceRole, None),
            Check::fail("d", &unreachable, None),
            Check::skip("e", "needs c"),
        ];
        assert_eq!(exit_code(&checks), ExitCode::NotAuthorized);
        assert_eq!(exit_code(&checks[..2]), ExitCode::Compliant);
        let text = render(&checks);
        assert!(text.contains("[FAIL] c") && text.contains("[skip] e") && text.contains("-> run it"), "{text}");
    }
}
