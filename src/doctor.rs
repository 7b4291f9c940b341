//! `imds-hop-limit doctor`: explains, step by step, why this instance or this container gets no
//! credentials, and changes nothing. A step that cannot run because an earlier one failed is skipped.

use crate::config::Config;
use crate::ec2::{Ec2, Ec2Api};
use crate::error::{Error, ExitCode, POLICY_HINT};
use crate::imds::{Imds, Metadata};
use crate::plan::{self, Change, HttpTokens, Plan};
use crate::reconcile::describe_change;
use aws_credential_types::provider::ProvideCredentials;
use serde::Serialize;
use std::path::Path;
use std::time::{Instant, SystemTime};

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

pub async fn diagnose(config: &Config, imds: &Imds) -> Vec<Check> {
    let mut checks = Vec::new();
    let signs = container_signs(Path::new("/"), |v| std::env::var(v).ok());
    let in_container = !signs.is_empty();

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
                let hint = if in_container {
                    "this container is one routed hop further from IMDS than the host: run `imds-hop-limit` on the \
                     host, or raise the hop limit to 2 (one more for each further bridge)"
                } else {
                    "the token answer dies on the way: raise the hop limit by one for each routed hop between this \
                     process and the instance (`imds-hop-limit --hop-limit N` on the host)"
                };
                checks.push(Check::fail("metadata service", &err, Some(hint.into())));
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
                match provider.provide_credentials().await {
                    Ok(creds) => {
                        credentials_ok = true;
                        let until = creds.expiry().map(expires_in).unwrap_or_else(|| "no expiry given".into());
                        checks.push(Check::ok("instance role", format!("credentials obtainable, {until}")));
                    }
                    Err(e) => checks.push(Check::fail(
                        "instance role",
                        &Error::NoCredentials { detail: aws_sdk_ec2::error::DisplayErrorContext(&e).to_string() },
                        None,
                    )),
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
    let plan = plan::plan(&current, &config.wanted);
    let probe = match plan {
        Plan::Change(change) => change,
        // Nothing to change: ask about the hop limit it already has, which changes nothing either way.
        Plan::Unchanged => {
            Change { hop_limit: current.hop_limit.or(Some(config.wanted.hop_limit)), ..Change::default() }
        }
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
