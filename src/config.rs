//! Validated settings: everything the run needs, checked before anything touches the network.

use crate::cli::{Cli, Command, Output};
use crate::error::{Error, Result};
use crate::plan::{HopLimit, Wanted};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    Check,
    DryRun,
    Doctor,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub wanted: Wanted,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub wait: bool,
    pub wait_timeout: Duration,
    pub timeout: Duration,
    pub output: Output,
}

impl Config {
    pub fn from_cli(cli: &Cli) -> Result<Self> {
        let o = &cli.options;
        let mode = match (cli.command.unwrap_or(Command::Apply), o.dry_run) {
            (Command::Apply, false) => Mode::Apply,
            (Command::Apply, true) => Mode::DryRun,
            (Command::Check, false) => Mode::Check,
            (Command::Doctor, false) => Mode::Doctor,
            (Command::Check | Command::Doctor, true) => {
                return Err(Error::Usage("check and doctor change nothing already: drop --dry-run".into()));
            }
        };
        let hop_limit = HopLimit::new(o.hop_limit)
            .ok_or_else(|| Error::Usage(format!("--hop-limit {} is outside 1..=64", o.hop_limit)))?;
        let instance_id = o.instance_id.as_deref().map(parse_instance_id).transpose()?;
        let region = o.region.as_deref().map(parse_region).transpose()?;
        let wait_timeout = parse_duration("--wait-timeout", &o.wait_timeout)?;
        let timeout = parse_duration("--timeout", &o.timeout)?;
        if timeout.is_zero() {
            return Err(Error::Usage("--timeout must be more than 0".into()));
        }
        Ok(Config {
            mode,
            wanted: Wanted {
                hop_limit,
                exact: o.exact,
                http_tokens: o.http_tokens,
                ipv6_endpoint: o.ipv6_endpoint,
                instance_tags: o.instance_tags,
            },
            instance_id,
            region,
            wait: !o.no_wait,
            wait_timeout,
            timeout,
            output: o.output,
        })
    }
}

/// `i-` and 8 or 17 lowercase hex digits, as EC2 issues them.
fn parse_instance_id(id: &str) -> Result<String> {
    let ok = id.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(id.to_string())
    } else {
        Err(Error::Usage(format!("--instance-id {id:?} is not an EC2 instance id (i- and 8 or 17 hex digits)")))
    }
}

/// A region name such as `us-west-2` or `us-gov-east-1`: lowercase words and digits joined by dashes.
fn parse_region(region: &str) -> Result<String> {
    let ok = !region.is_empty()
        && region.split('-').count() >= 3
        && region
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if ok {
        Ok(region.to_string())
    } else {
        Err(Error::Usage(format!("region {region:?} is not an AWS region name such as us-west-2")))
    }
}

/// Seconds, bare or with an `s`, `m` or `ms` suffix: `120`, `90s`, `2m`, `500ms`.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1000)
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .map(Duration::from_millis)
        .ok_or_else(|| Error::Usage(format!("{flag} {text:?} is not a duration such as 120, 90s, 2m or 500ms")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config> {
        let mut argv = vec!["imds-hop-limit"];
        argv.extend_from_slice(args);
        Config::from_cli(&Cli::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.mode, Mode::Apply);
        assert_eq!(c.wanted.hop_limit.get(), 2);
        assert!(!c.wanted.exact);
        assert_eq!(c.wanted.http_tokens, None);
        assert!(c.wait);
        assert_eq!(c.wait_timeout, Duration::from_secs(120));
        assert_eq!(c.timeout, Duration::from_secs(180));
    }

    #[test]
    fn modes() {
        assert_eq!(config(&["check"]).unwrap().mode, Mode::Check);
        assert_eq!(config(&["apply", "--dry-run"]).unwrap().mode, Mode::DryRun);
        assert_eq!(config(&["--dry-run"]).unwrap().mode, Mode::DryRun);
        assert!(matches!(config(&["check", "--dry-run"]), Err(Error::Usage(_))));
        assert_eq!(config(&["doctor"]).unwrap().mode, Mode::Doctor);
        assert!(matches!(config(&["doctor", "--dry-run"]), Err(Error::Usage(_))));
    }

    #[test]
    fn durations() {
        let d = |t: &str| parse_duration("--x", t).ok();
        assert_eq!(d("120"), Some(Duration::from_secs(120)));
        assert_eq!(d("90s"), Some(Duration::from_secs(90)));
        assert_eq!(d("2m"), Some(Duration::from_secs(120)));
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "s", "-1", "1.5", "1h", "abc", "99999999999999999999"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        assert!(matches!(config(&["--timeout", "0"]), Err(Error::Usage(_))));
    }

    #[test]
    fn instance_ids() {
        assert!(parse_instance_id("i-0123456789abcdef0").is_ok());
        assert!(parse_instance_id("i-12345678").is_ok());
        for bad in ["", "i-", "0123456789abcdef0", "i-0123456789ABCDEF0", "i-123", "i-0123456789abcdefg", "x-12345678"]
        {
            assert!(parse_instance_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for good in ["us-west-2", "eu-central-1", "us-gov-east-1", "ap-southeast-4"] {
            assert!(parse_region(good).is_ok(), "{good}");
        }
        for bad in ["", "us", "us-west", "US-WEST-2", "us--2", "us-west-2 ", "us_west_2"] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
    }
}
