//! Validated settings: everything the run needs, checked before anything touches the network.

use crate::cli::{
    Act, AgentDeadlines, ApplyArgs, CheckArgs, DoctorArgs, EvidenceSource, Output, WantedArgs, WatchArgs,
};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, Region};
use crate::plan::{HopLimit, Intent, Wanted};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// What the run does: check (doctor reads as check does), dry run, or apply and wait or not.
    pub intent: Intent,
    /// The options the instance must end with.
    pub wanted: Wanted,
    /// `--instance-id`: instead of this instance's own id from IMDS.
    pub instance_id: Option<InstanceId>,
    /// `--region` or `AWS_REGION`: instead of the region IMDS reports.
    pub region: Option<Region>,
    /// How long to wait for `applied` after a change.
    pub wait_timeout: Duration,
    /// How long the identity stage may retry an unreachable or throttling IMDS (at boot).
    pub imds_timeout: Duration,
    /// The deadline of the whole run.
    pub timeout: Duration,
    pub output: Output,
    /// The metadata endpoint, validated: `http(s)://host[:port]`.
    pub imds_endpoint: String,
    /// `--evidence`: sense from IMDS where it can prove (the default), or always ask EC2.
    pub evidence: EvidenceSource,
}

/// The one reading of the flags that say what a run does (`check` or `apply`, `--dry-run`, `--no-wait`), for
/// every command that takes them.
pub fn intent(act: Act, dry_run: bool, wait: bool) -> Result<Intent> {
    match (act, dry_run) {
        (Act::Check, true) => Err(Error::Usage("check changes nothing already: drop --dry-run".into())),
        (Act::Check, false) => Ok(Intent::Check),
        (Act::Apply, true) => Ok(Intent::DryRun),
        (Act::Apply, false) => Ok(Intent::Apply { wait }),
    }
}

const DEFAULT_IMDS_V4: &str = "http://169.254.169.254";
const DEFAULT_IMDS_V6: &str = "http://[fd00:ec2::254]";

/// What the four agent commands' arguments give a `Config`, each from its own `Args`.
struct Given<'a> {
    intent: Intent,
    wanted: &'a WantedArgs,
    instance_id: Option<InstanceId>,
    region: Option<Region>,
    deadlines: &'a AgentDeadlines,
    evidence: EvidenceSource,
    wait_timeout: Duration,
    output: Output,
}

impl<'a> Given<'a> {
    fn apply(a: &'a ApplyArgs) -> Result<Self> {
        Ok(Given {
            intent: intent(Act::Apply, a.dry_run, !a.no_wait)?,
            wanted: &a.wanted,
            instance_id: a.target.instance_id.clone(),
            region: a.target.region.clone(),
            deadlines: &a.deadlines,
            evidence: a.evidence.evidence,
            wait_timeout: a.wait.wait_timeout,
            output: a.output.output,
        })
    }

    /// `check` reads and decides: it waits for nothing.
    fn check(c: &'a CheckArgs) -> Self {
        Given {
            intent: Intent::Check,
            wanted: &c.wanted,
            instance_id: c.target.instance_id.clone(),
            region: c.target.region.clone(),
            deadlines: &c.deadlines,
            evidence: c.evidence.evidence,
            wait_timeout: Duration::ZERO,
            output: c.output.output,
        }
    }

    /// `doctor` reads IMDS and EC2 both, and waits for nothing.
    fn doctor(d: &'a DoctorArgs) -> Self {
        Given {
            intent: Intent::Check,
            wanted: &d.wanted,
            instance_id: d.target.instance_id.clone(),
            region: d.target.region.clone(),
            deadlines: &d.deadlines,
            evidence: EvidenceSource::Ec2,
            wait_timeout: Duration::ZERO,
            output: d.output.output,
        }
    }

    /// `watch` applies to this instance (it takes no `--instance-id`), verifies each change, and reports by
    /// its log.
    fn watch(w: &'a WatchArgs) -> Self {
        Given {
            intent: Intent::Apply { wait: true },
            wanted: &w.wanted,
            instance_id: None,
            region: w.region.clone(),
            deadlines: &w.deadlines,
            evidence: w.evidence.evidence,
            wait_timeout: w.wait.wait_timeout,
            output: Output::Text,
        }
    }
}

impl Config {
    pub fn apply(a: &ApplyArgs) -> Result<Self> {
        Self::with_env(Given::apply(a)?, env_var)
    }

    pub fn check(c: &CheckArgs) -> Result<Self> {
        Self::with_env(Given::check(c), env_var)
    }

    pub fn doctor(d: &DoctorArgs) -> Result<Self> {
        Self::with_env(Given::doctor(d), env_var)
    }

    /// `watch`'s agent settings, and its own: how often to look.
    pub fn watch(w: &WatchArgs) -> Result<(Self, Watch)> {
        let watch = Watch::from_args(w)?;
        Ok((Self::with_env(Given::watch(w), env_var)?, watch))
    }

    /// `env` gives a variable's value, empty counting as unset (as for the AWS CLI).
    fn with_env(given: Given, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        check_ec2_endpoints(&env)?;
        let imds_endpoint = match env("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            Some(url) => endpoint_url("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url)?,
            None => match env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
                None => DEFAULT_IMDS_V4.into(),
                Some(mode) if mode.eq_ignore_ascii_case("ipv4") => DEFAULT_IMDS_V4.into(),
                Some(mode) if mode.eq_ignore_ascii_case("ipv6") => DEFAULT_IMDS_V6.into(),
                Some(mode) => {
                    return Err(Error::Usage(format!(
                        "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE={mode:?}: expected IPv4 or IPv6"
                    )));
                }
            },
        };
        Ok(Config {
            intent: given.intent,
            wanted: wanted(given.wanted)?,
            instance_id: given.instance_id,
            region: given.region,
            wait_timeout: given.wait_timeout,
            imds_timeout: given.deadlines.imds_timeout,
            timeout: given.deadlines.timeout,
            output: given.output,
            imds_endpoint,
            evidence: given.evidence,
        })
    }
}

/// `watch`'s own settings: how often to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Where IMDS proves the hop limit: no API cost.
    pub interval: Duration,
    /// Where it cannot: one DescribeInstances each.
    pub ec2_interval: Duration,
}

impl Watch {
    pub fn from_args(w: &WatchArgs) -> Result<Self> {
        if w.interval < Duration::from_millis(100) || w.ec2_interval < w.interval {
            return Err(Error::Usage(
                "--interval must be at least 100ms, and --ec2-interval at least --interval".into(),
            ));
        }
        Ok(Watch { interval: w.interval, ec2_interval: w.ec2_interval })
    }
}

/// What the operator wants, from the flags every command shares.
pub fn wanted(o: &WantedArgs) -> Result<Wanted> {
    let hop_limit = HopLimit::new(o.hop_limit)
        .ok_or_else(|| Error::Usage(format!("--hop-limit {} is outside 1..=64", o.hop_limit)))?;
    Ok(Wanted {
        hop_limit,
        exact: o.exact,
        http_tokens: o.http_tokens,
        ipv6_endpoint: o.ipv6_endpoint,
        instance_tags: o.instance_tags,
    })
}

/// Endpoints are configuration: a malformed one is a usage error now, not a retry loop at boot.
pub fn check_ec2_endpoints(env: &impl Fn(&str) -> Option<String>) -> Result<()> {
    for var in ["AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_ORGANIZATIONS", "AWS_ENDPOINT_URL"] {
        if let Some(url) = env(var) {
            endpoint_url(var, &url)?;
        }
    }
    Ok(())
}

/// A variable's value, empty counting as unset (as for the AWS CLI).
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An endpoint URL from `var`: `http` or `https`, a host, an optional port, no path, query or user name.
/// Returned without a trailing slash.
fn endpoint_url(var: &str, url: &str) -> Result<String> {
    let bad = |why: &str| {
        Err(Error::Usage(format!(
            "{var}={url:?} is not an endpoint URL ({why}); expected http://HOST[:PORT] or https://HOST[:PORT]"
        )))
    };
    let Ok(uri) = url.parse::<http::Uri>() else { return bad("not a URL") };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return bad("the scheme must be http or https"),
        None => return bad("no scheme"),
    }
    let Some(authority) = uri.authority() else { return bad("no host") };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return bad("no host, or a user name in it");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return bad("a path or query");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The EC2 endpoint the SDK will use for `region`: `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, else EC2's
/// regional endpoint (for naming the proxy that carries the calls, and in messages).
pub fn ec2_endpoint(region: &str) -> String {
    endpoint(crate::ec2::failures::Service::Ec2, region)
}

/// The endpoint the SDK calls `service` at in `region`: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL`, else AWS's own.
pub fn endpoint(service: crate::ec2::failures::Service, region: &str) -> String {
    let env = env_var;
    let prefix = service.prefix();
    env(service.endpoint_variable()).or_else(|| env("AWS_ENDPOINT_URL")).unwrap_or_else(|| {
        let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
        format!("https://{prefix}.{region}.{suffix}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The config of the agent command the arguments name, with `env` for the environment.
    fn config_with(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut argv = vec!["imds-hop-limit"];
        argv.extend_from_slice(args);
        let command = Cli::try_parse_from(argv).unwrap().chosen();
        let given = match &command {
            Command::Apply(a) => Given::apply(a)?,
            Command::Check(c) => Given::check(c),
            Command::Doctor(d) => Given::doctor(d),
            Command::Watch(w) => {
                Watch::from_args(w)?;
                Given::watch(w)
            }
            Command::Fleet(_) | Command::Defaults(_) | Command::Templates(_) => panic!("not an agent command"),
        };
        Config::with_env(given, env)
    }

    fn config(args: &[&str]) -> Result<Config> {
        config_with(args, |_| None)
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.intent, Intent::Apply { wait: true });
        assert_eq!(c.wanted.hop_limit.get(), 2);
        assert!(!c.wanted.exact);
        assert_eq!(c.wanted.http_tokens, None);
        assert_eq!(config(&["--no-wait"]).unwrap().intent, Intent::Apply { wait: false });
        assert_eq!(c.wait_timeout, Duration::from_secs(120));
        assert_eq!(c.timeout, Duration::from_secs(180));
        assert_eq!(c.imds_timeout, Duration::from_secs(30));
    }

    fn with_env(vars: &[(&str, &str)]) -> Result<Config> {
        config_with(&[], |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn endpoints_are_validated_before_anything_runs() {
        assert_eq!(with_env(&[]).unwrap().imds_endpoint, "http://169.254.169.254");
        let mode = with_env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]).unwrap();
        assert_eq!(mode.imds_endpoint, "http://[fd00:ec2::254]");
        let given = with_env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:8080/")]).unwrap();
        assert_eq!(given.imds_endpoint, "http://127.0.0.1:8080");
        for var in ["AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"] {
            for bad in
                ["169.254.169.254", "ftp://169.254.169.254", "http://", "http://h/latest", "not a url", "http://u:p@h"]
            {
                let err = with_env(&[(var, bad)]).unwrap_err();
                assert!(matches!(err, Error::Usage(_)), "{var}={bad}");
                assert!(err.to_string().contains(var), "{err}");
            }
        }
        assert!(with_env(&[("AWS_ENDPOINT_URL_EC2", "https://ec2.us-west-2.amazonaws.com")]).is_ok());
        assert!(matches!(with_env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "v5")]), Err(Error::Usage(_))));
    }

    #[test]
    fn modes() {
        assert_eq!(config(&["check"]).unwrap().intent, Intent::Check);
        assert_eq!(config(&["apply", "--dry-run"]).unwrap().intent, Intent::DryRun);
        assert_eq!(config(&["--dry-run", "--no-wait"]).unwrap().intent, Intent::DryRun);
        assert_eq!(config(&["doctor"]).unwrap().intent, Intent::Check, "doctor reads, as check does");
        let watch = config(&["watch", "--interval", "10s"]).unwrap();
        assert_eq!(watch.intent, Intent::Apply { wait: true });
        assert!(matches!(config(&["watch", "--interval", "10ms"]), Err(Error::Usage(_))));
    }

    /// Every command that takes `check`/`apply`, `--dry-run` and `--no-wait` reads them here.
    #[test]
    fn one_reading_of_the_flags_that_say_what_a_run_does() {
        assert_eq!(intent(Act::Check, false, true).unwrap(), Intent::Check);
        assert!(matches!(intent(Act::Check, true, true), Err(Error::Usage(m)) if m.contains("drop --dry-run")));
        assert_eq!(intent(Act::Apply, true, true).unwrap(), Intent::DryRun, "a dry run waits for nothing");
        assert_eq!(intent(Act::Apply, false, false).unwrap(), Intent::Apply { wait: false });
        let waits = intent(Act::Apply, false, true).unwrap();
        assert!(waits.sends() && waits.changes() && waits.waits());
        assert!(Intent::DryRun.sends() && !Intent::DryRun.changes() && !Intent::DryRun.waits());
        assert!(!Intent::Check.sends() && !Intent::Check.changes());
        assert_eq!((Intent::Check.verb(), Intent::DryRun.verb()), ("check", "apply"));
    }
}
