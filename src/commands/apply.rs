//! `imds-hop-limit apply` (the default) and `check`: one pass of the agent over this instance (or
//! `--instance-id`), under `--timeout` and the signals, reported in one log line (and `--output json`).

use crate::cli::{EvidenceSource, Output};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::{InstanceId, Region};
use crate::outcome::Action;
use crate::plan::{Absent, Field};
use crate::process::{self, Progress};
use crate::reconcile::Report;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

pub fn run(config: Config) -> Result<ExitCode> {
    let start = Instant::now();
    let progress = Progress::default();
    let once = |deadline| crate::agent::once(&config, &progress, deadline);
    match process::block_on(config.timeout, &progress, once) {
        Ok(report) => Ok(finish(&config, &report, start.elapsed())),
        // The run's one report, in the same shape as a success's, with what it knew of the instance.
        Err(err) if config.output == Output::Json => {
            tracing::error!("{err}");
            let known = progress.identity();
            process::emit_json(&failed(known.map(|k| &k.0), known.map(|k| &k.1), &err, start.elapsed()));
            Ok(err.exit_code())
        }
        Err(err) => Err(err),
    }
}

/// The report of a run that failed: the success's keys, `null` where unknown, `action` `failed`, the
/// message in `error`.
pub fn failed(instance_id: Option<&InstanceId>, region: Option<&Region>, err: &Error, elapsed: Duration) -> Value {
    serde_json::json!({
        "instance_id": instance_id,
        "region": region,
        "before": null,
        "after": null,
        "action": "failed",
        "verified": false,
        "evidence": null,
        "sensed": null,
        "elapsed_ms": elapsed.as_millis() as u64,
        "error": err.to_string(),
        "exit_code": err.exit_code() as u8,
    })
}

fn finish(config: &Config, report: &Report, elapsed: Duration) -> ExitCode {
    // The agent's failures are errors, not reports: no report of its is `failed`.
    let code = report.action.exit_code(ExitCode::Unexpected);
    if let (Some(sensed), Action::Unchanged) = (&report.sensed, report.action) {
        tracing::info!(
            "{} ({}): compliant by IMDS itself: the token answer reaches this process with TTL >= {}, so the hop \
             limit is at least {}; no EC2 call, in {:.3} s",
            report.instance_id,
            report.region,
            sensed.hop_limit_at_least,
            sensed.hop_limit_at_least,
            elapsed.as_secs_f64()
        );
    } else {
        let mut change = report.before.changes_to(&report.after);
        if report.sensed.is_some() {
            // The hop limit before was IMDS's own answer's TTL, with no router between: no DescribeInstances.
            change.push_str("; the hop limit read from IMDS itself");
        }
        let outcome = match report.action {
            Action::Changed if report.verified && report.evidence == EvidenceSource::Imds => format!(
                "changed ({change}), in effect: the token answer now reaches this process with TTL >= {}",
                config.wanted.hop_limit
            ),
            Action::Unchanged => "already compliant, nothing changed".to_string(),
            Action::Changed if report.verified => format!("changed ({change}), applied"),
            Action::Changed => format!("changed ({change}), accepted; not waiting for applied (--no-wait)"),
            Action::AppliesAtStart => {
                format!("changed ({change}); the instance is stopped: EC2 applies the change when it starts")
            }
            Action::WouldChange => "not compliant; the change would be authorized (--dry-run, nothing changed)".into(),
            Action::NotCompliant => "not compliant".into(),
            Action::Accepted => format!("changed ({change}), accepted"),
            Action::ManagedElsewhere | Action::Failed => "failed".into(),
        };
        tracing::info!(
            "{} ({}): {}: {} in {:.2} s",
            report.instance_id,
            report.region,
            report.after.describe(&Field::COMPLIANCE, Absent::Unknown),
            outcome,
            elapsed.as_secs_f64()
        );
    }
    if config.output == Output::Json {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a Report,
            elapsed_ms: u64,
            error: Option<String>,
            exit_code: u8,
        }
        let json = Json { report, elapsed_ms: elapsed.as_millis() as u64, error: None, exit_code: code as u8 };
        process::emit_json(&json);
    }
    code
}
