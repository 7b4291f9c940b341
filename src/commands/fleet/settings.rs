//! What a fleet run is to do, from its arguments: the selection, the wanted options, the pace.
//!
//! To add a selection criterion: a flag in `cli::FleetArgs`, a field in `Settings`, a `Filter` in `filters`.

use crate::cli::{FleetArgs, Output};
use crate::config;
use crate::ec2::Filter;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::plan::{Intent, Wanted};
use crate::regions::Regions;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `check`, `apply --dry-run` (ask EC2 whether each change would be authorized), or `apply` and wait for
    /// `applied` or not (`--no-wait`).
    pub intent: Intent,
    pub wanted: Wanted,
    pub regions: Regions,
    /// `--tag KEY=VALUE` (value `None`: any value), ANDed.
    pub tags: Vec<(String, Option<String>)>,
    /// `--instance-id`, validated, each once.
    pub ids: Vec<InstanceId>,
    /// How long each changed instance may stay pending before it counts as failed.
    pub wait_timeout: Duration,
    /// The deadline of the whole run, if `--timeout` was given.
    pub timeout: Option<Duration>,
    pub output: Output,
    /// ModifyInstanceMetadataOptions burst and rate a second, per region.
    pub modify_burst: u32,
    pub modify_rate: f64,
}

impl Settings {
    pub fn from_args(args: &FleetArgs) -> Result<Self> {
        config::check_ec2_endpoints(&config::env_var)?;
        let mut ids = args.instance_id.clone();
        ids.sort();
        ids.dedup();
        let tags = args
            .tags
            .iter()
            .map(|t| match t.split_once('=') {
                Some(("", _)) => Err(Error::Usage(format!("--tag {t:?}: the key is empty"))),
                Some((k, v)) => Ok((k.to_string(), Some(v.to_string()))),
                None if t.is_empty() => Err(Error::Usage("--tag: the key is empty".into())),
                None => Ok((t.clone(), None)),
            })
            .collect::<Result<_>>()?;
        if !(args.modify_rate.is_finite() && args.modify_rate > 0.0 && args.modify_rate <= 10_000.0) {
            return Err(Error::Usage(format!("--modify-rate {} is not a rate between 0 and 10000", args.modify_rate)));
        }
        Ok(Settings {
            intent: config::intent(args.act, args.dry_run, !args.no_wait)?,
            wanted: config::wanted(&args.wanted)?,
            regions: Regions::from_args(&args.regions),
            tags,
            ids,
            wait_timeout: args.wait.wait_timeout,
            timeout: args.timeout,
            output: args.output.output,
            modify_burst: args.modify_burst,
            modify_rate: args.modify_rate,
        })
    }

    /// The filters every read of the selection sends: tags, and the states whose options can change.
    pub fn filters(&self) -> Vec<Filter> {
        let mut filters: Vec<Filter> = self
            .tags
            .iter()
            .map(|(key, value)| match value {
                Some(value) => Filter::new(format!("tag:{key}"), [value.as_str()]),
                None => Filter::new("tag-key", [key.as_str()]),
            })
            .collect();
        filters.push(Filter::new("instance-state-name", ["running", "stopped"]));
        filters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings> {
        let mut argv = vec!["imds-hop-limit", "fleet"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| Error::Usage(e.to_string()))?;
        let Some(crate::cli::Command::Fleet(fleet)) = &cli.command else { panic!() };
        Settings::from_args(fleet)
    }

    #[test]
    fn tags_are_anded_filters_and_only_running_or_stopped_instances_are_selected() {
        let s = settings(&["check", "--tag", "team=web", "--tag", "env", "--region", "us-west-2"]).unwrap();
        assert_eq!(
            s.filters(),
            vec![
                Filter::new("tag:team", ["web"]),
                Filter::new("tag-key", ["env"]),
                Filter::new("instance-state-name", ["running", "stopped"]),
            ]
        );
        assert_eq!(s.regions, Regions::Given(vec!["us-west-2".parse().unwrap()]));
        assert_eq!(s.timeout, None, "a fleet run has no deadline unless given one");
    }

    #[test]
    fn bad_selections_are_usage_errors() {
        for bad in [
            &["check", "--tag", "=web"][..],
            &["apply", "--instance-id", "i-xyz"],
            &["apply", "--region", "Oregon"],
            &["apply", "--modify-rate", "0"],
            &["check", "--dry-run"],
        ] {
            assert!(matches!(settings(bad), Err(Error::Usage(_))), "{bad:?}");
        }
        let s = settings(&["check", "--region", "us-west-2,eu-west-1", "--region", "us-west-2"]).unwrap();
        let given = ["us-west-2", "eu-west-1"].map(|r| r.parse().unwrap()).to_vec();
        assert_eq!(s.regions, Regions::Given(given), "each region once");
        let s = settings(&["apply", "--all-regions", "--region", "us-west-2"]).unwrap();
        assert_eq!(s.regions, Regions::All, "--all-regions wins over AWS_REGION and --region");
    }

    #[test]
    fn instance_ids_are_deduplicated_and_comma_separated_lists_work() {
        let s = settings(&["apply", "--instance-id", "i-12345678,i-0123456789abcdef0", "--instance-id", "i-12345678"])
            .unwrap();
        assert_eq!(s.ids, ["i-0123456789abcdef0", "i-12345678"].map(InstanceId::from));
    }
}
