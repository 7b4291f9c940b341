//! Wires the real metadata and EC2 sides to the reconcile loop, under the deadline and the signals,
//! and reports the outcome.

use crate::cli::Output;
use crate::config::{Config, Mode};
use crate::doctor::{self, Check};
use crate::ec2::Ec2Api;
use crate::error::{Error, ExitCode, Result};
use crate::imds::{self, Imds, Metadata};
use crate::reconcile::{self, Action, Progress, Report};
use std::time::Duration;
use tokio::time::Instant;

pub fn main(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::Unexpected;
        }
    };
    let start = Instant::now();
    let progress = Progress::default();
    let deadline = start + config.timeout;
    let result = if config.mode == Mode::Doctor {
        runtime
            .block_on(supervised(&config, &progress, deadline, doctor(&config)))
            .map(|checks| report_doctor(&config, &checks))
    } else {
        runtime
            .block_on(supervised(&config, &progress, deadline, run(&config, &progress, deadline)))
            .map(|report| finish(&config, &report, start.elapsed()))
    };
    result.unwrap_or_else(|err| {
        tracing::error!("{err}");
        err.exit_code()
    })
}

/// `work`, ended early by the deadline or by SIGTERM/SIGINT, saying where it was.
async fn supervised<T>(
    config: &Config,
    progress: &Progress,
    deadline: Instant,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::Unexpected(format!("cannot watch SIGTERM: {e}")))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::Unexpected(format!("cannot watch SIGINT: {e}")))?;
    tokio::select! {
        result = tokio::time::timeout_at(deadline, work) => {
            result.unwrap_or_else(|_| Err(Error::Deadline { stage: progress.get(), limit: config.timeout }))
        }
        _ = term.recv() => Err(Error::Signal { signal: "SIGTERM", stage: progress.get() }),
        _ = int.recv() => Err(Error::Signal { signal: "SIGINT", stage: progress.get() }),
    }
}

async fn doctor(config: &Config) -> Result<Vec<Check>> {
    let imds = Imds::new(imds::endpoint_from_env()?)?;
    Ok(doctor::diagnose(config, &imds).await)
}

fn report_doctor(config: &Config, checks: &[Check]) -> ExitCode {
    let code = doctor::exit_code(checks);
    if config.output == Output::Json {
        let json = serde_json::json!({ "checks": checks, "exit_code": code as u8 });
        println!("{json}");
    } else {
        print!("{}", doctor::render(checks));
    }
    code
}

async fn run(config: &Config, progress: &Progress, deadline: Instant) -> Result<Report> {
    let imds = Imds::new(imds::endpoint_from_env()?)?;
    let (instance_id, region) = reconcile::identity(&imds, config, deadline).await?;
    tracing::debug!(%instance_id, %region, "identity");
    let ec2 = Ec2Api::new(&region, imds.client()).await;
    match reconcile::reconcile(&ec2, instance_id, region, config, progress, deadline).await {
        // A missing role is the commonest cause of missing credentials on an instance: say so plainly.
        Err(Error::NoCredentials { detail }) => match imds.has_role().await {
            Ok(false) => Err(Error::NoInstanceRole),
            _ => Err(Error::NoCredentials { detail }),
        },
        other => other,
    }
}

fn finish(config: &Config, report: &Report, elapsed: Duration) -> ExitCode {
    let change = reconcile::describe_change(&report.before, &report.after);
    let outcome = match report.action {
        Action::Unchanged => "already compliant, nothing changed".to_string(),
        Action::Changed if report.verified => format!("changed ({change}), applied"),
        Action::Changed => format!("changed ({change}), accepted; not waiting for applied (--no-wait)"),
        Action::WouldChange => "not compliant; the change would be authorized (--dry-run, nothing changed)".into(),
        Action::NotCompliant => "not compliant".into(),
    };
    tracing::info!(
        "{} ({}): hop limit {}, endpoint {}: {} in {:.2} s",
        report.instance_id,
        report.region,
        show(report.after.hop_limit),
        show(report.after.http_endpoint),
        outcome,
        elapsed.as_secs_f64()
    );
    if config.output == Output::Json {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a Report,
            elapsed_ms: u64,
        }
        let json = Json { report, elapsed_ms: elapsed.as_millis() as u64 };
        println!("{}", serde_json::to_string(&json).expect("a report serializes"));
    }
    match report.action {
        Action::Unchanged | Action::Changed => ExitCode::Compliant,
        Action::WouldChange | Action::NotCompliant => ExitCode::NotCompliant,
    }
}

fn show<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "unknown".into(), |v| v.to_string())
}
