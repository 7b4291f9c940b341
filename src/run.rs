//! Wires the real metadata and EC2 sides to the reconcile loop, under the deadline and the signals,
//! and reports the outcome.

use crate::cli::EvidenceSource;
use crate::cli::Output;
use crate::config::{Config, Mode};
use crate::doctor::{self, Check};
use crate::ec2::Ec2Api;
use crate::error::{Error, ExitCode, Result, Signal};
use crate::imds::{Imds, Metadata, Probe};
use crate::plan::MetadataOptions;
use crate::reconcile::{self, Action, Progress, Report};
use crate::sense::{self, Evidence};
use std::time::Duration;
use tokio::time::Instant;

pub fn main(config: Config) -> ExitCode {
    if let Some(watch) = config.watch {
        return crate::watch::main(&config, watch);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!("{err}");
            return err.exit_code();
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
        let code = err.exit_code();
        // `--output json` gets its one object on a failure too: what failed, and the exit code.
        if config.output == Output::Json {
            let json = serde_json::json!({ "error": err.to_string(), "exit_code": code as u8 });
            emit(&format!("{json}\n"));
        }
        code
    })
}

/// `work` on a runtime of its own, ended by SIGTERM/SIGINT, or after `limit` if given (the fleet and
/// defaults commands, which bound their own waits and only need the signals and a far end).
pub fn block_on<T>(limit: Option<Duration>, work: impl Future<Output = Result<T>>) -> Result<T> {
    let limit = limit.unwrap_or(Duration::from_secs(30 * 86_400));
    runtime()?.block_on(async {
        let progress = Progress::default();
        progress.set(crate::error::Stage::Ec2);
        let deadline = Instant::now() + limit;
        watched(limit, &progress, deadline, work).await
    })
}

/// Every command's runtime: one thread is plenty for a handful of calls, and for a fleet's paced ones.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::Unexpected(format!("cannot start the async runtime: {err}")))
}

/// `work`, ended early by the deadline or by SIGTERM/SIGINT, saying where it was.
async fn supervised<T>(
    config: &Config,
    progress: &Progress,
    deadline: Instant,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    watched(config.timeout, progress, deadline, work).await
}

async fn watched<T>(
    limit: Duration,
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
            result.unwrap_or_else(|_| Err(Error::Deadline { stage: progress.get(), limit }))
        }
        _ = term.recv() => Err(Error::Signal { signal: Signal::Term, stage: progress.get() }),
        _ = int.recv() => Err(Error::Signal { signal: Signal::Int, stage: progress.get() }),
    }
}

async fn doctor(config: &Config) -> Result<Vec<Check>> {
    let imds = Imds::new(&config.imds_endpoint)?;
    let around = doctor::surroundings(&config.imds_endpoint).await;
    let ec2 = async |region: &str| Ec2Api::new(region, imds.client()).await;
    Ok(doctor::diagnose(config, &around, &imds, ec2).await)
}

fn report_doctor(config: &Config, checks: &[Check]) -> ExitCode {
    let code = doctor::exit_code(checks);
    if config.output == Output::Json {
        let json = serde_json::json!({ "checks": checks, "exit_code": code as u8 });
        emit(&format!("{json}\n"));
    } else {
        emit(&doctor::render(checks));
    }
    code
}

/// Writes a report to stdout. A closed stdout (`| head`, `| true`) must not turn the run's outcome into a
/// crash: the failure is logged and the exit code stays what the run earned.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!("could not write the report to stdout: {err}");
    }
}

/// Clap's usage errors, `--help` and `--version`, written without a panic on a closed stream.
pub fn emit_usage(message: &str, help: bool) -> ExitCode {
    use std::io::Write;
    if help {
        emit(message);
        ExitCode::Compliant
    } else {
        let _ = std::io::stderr().lock().write_all(message.as_bytes());
        ExitCode::Usage
    }
}

async fn run(config: &Config, progress: &Progress, deadline: Instant) -> Result<Report> {
    // Sense first: a compliant instance proven by IMDS needs nothing else, its identity read with the probe's
    // token over the same raw connections, with no HTTP client, credentials or EC2.
    let sensed = sense_first(config).await;
    if let (Some(Evidence::Proven(s, token)), Some(addr)) = (&sensed, sense::address(&config.imds_endpoint)) {
        if sense::compliant(s, &config.wanted) {
            if let Some((instance_id, region)) = sense::identity(addr, token).await {
                let region = config.region.clone().unwrap_or(region);
                return Ok(compliant_by_imds(reconcile::Target::named(instance_id, region), s));
            }
        }
    }
    let imds = Imds::new(&config.imds_endpoint)?;
    let target = reconcile::identity(&imds, config, deadline).await?;
    tracing::debug!(?target, "identity");
    // Nothing answered the probes (IMDS not up yet at boot) but the identity's retries found it: sense again.
    let sensed = match sensed {
        Some(e) if sense::unreachable(&e) => sense_first(config).await,
        other => other,
    };
    look(config, &imds, target, sensed, progress, deadline).await
}

fn compliant_by_imds(target: reconcile::Target, sensed: &sense::Sensed) -> Report {
    Report {
        instance_id: target.instance_id,
        region: target.region,
        before: MetadataOptions::default(),
        after: MetadataOptions::default(),
        action: Action::Unchanged,
        verified: true,
        evidence: EvidenceSource::Imds,
        sensed: Some(sensed.clone()),
    }
}

/// One look at an instance whose identity is known: sense, and where that cannot prove compliance, EC2's
/// read, decide, change and verify. The agent makes one; `watch` one every interval.
pub async fn pass(
    config: &Config,
    imds: &Imds,
    target: reconcile::Target,
    progress: &Progress,
    deadline: Instant,
) -> Result<Report> {
    let sensed = sense_first(config).await;
    look(config, imds, target, sensed, progress, deadline).await
}

/// The rest of a pass once sensing has spoken: compliant by IMDS, or EC2's read, decision, change and check.
async fn look(
    config: &Config,
    imds: &Imds,
    target: reconcile::Target,
    sensed: Option<Evidence>,
    progress: &Progress,
    deadline: Instant,
) -> Result<Report> {
    if let Some(Evidence::Proven(s, _)) = &sensed {
        if sense::compliant(s, &config.wanted) {
            return Ok(compliant_by_imds(target, s));
        }
    }
    // Where the kernel showed it enforces the minimum TTL on the way to IMDS, a change is verified there.
    let data_plane = match sensed {
        Some(Evidence::Proven(..) | Evidence::Below) => sense::address(&config.imds_endpoint),
        _ => None,
    };
    let ec2 = Ec2Api::new(&target.region, imds.client()).await;
    let result = reconcile::reconcile(&ec2, &target, config, progress, deadline, data_plane).await;
    explain_credentials(imds, result).await
}

/// What IMDS itself shows, before any EC2 call, where it can: this instance (not `--instance-id`), a hop
/// limit that is "at least" (not `--exact`), no IPv6 endpoint setting (sensing cannot see it), an `http://`
/// endpoint at an IP address, and `--evidence imds`.
async fn sense_first(config: &Config) -> Option<Evidence> {
    let w = &config.wanted;
    if config.evidence == EvidenceSource::Ec2 || config.instance_id.is_some() || w.exact || w.ipv6_endpoint.is_some() {
        return None;
    }
    let addr = sense::address(&config.imds_endpoint)?;
    let evidence = sense::sense(addr, w.hop_limit, w.instance_tags.is_some()).await;
    match &evidence {
        Evidence::Proven(..) => {}
        Evidence::Below => {
            tracing::debug!("the token answer does not reach this process with TTL >= {}: asking EC2", w.hop_limit)
        }
        Evidence::Unproven(why) => tracing::debug!("the hop limit could not be proven from IMDS ({why}): asking EC2"),
    }
    Some(evidence)
}

/// A credentials failure, said in the instance's own terms: no role attached is the commonest cause; a role
/// whose credentials IMDS served already expired comes next (the SDK uses them anyway, and EC2 answers
/// RequestExpired or AuthFailure). Looked up only on this failure path.
async fn explain_credentials<T>(imds: &Imds, result: Result<T>) -> Result<T> {
    let failure = match &result {
        Err(Error::NoCredentials { .. }) => None,
        Err(Error::ClockSkew { failure }) => Some(failure.clone()),
        _ => return result,
    };
    match imds.has_role().await {
        Ok(false) if failure.is_none() => return Err(Error::NoInstanceRole),
        Ok(true) => {}
        _ => return result,
    }
    if let Ok(Some(expired)) = imds.role_credentials_expiration().await {
        if expired <= std::time::SystemTime::now() {
            return Err(Error::credentials_expired(expired, failure));
        }
    }
    result
}

fn finish(config: &Config, report: &Report, elapsed: Duration) -> ExitCode {
    if let Some(sensed) = &report.sensed {
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
        let change = reconcile::describe_change(&report.before, &report.after);
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
    }
    if config.output == Output::Json {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a Report,
            elapsed_ms: u64,
        }
        let json = Json { report, elapsed_ms: elapsed.as_millis() as u64 };
        match serde_json::to_string(&json) {
            Ok(text) => emit(&format!("{text}\n")),
            Err(err) => tracing::error!("could not render the report as JSON: {err}"),
        }
    }
    match report.action {
        Action::Unchanged | Action::Changed | Action::AppliesAtStart => ExitCode::Compliant,
        Action::WouldChange | Action::NotCompliant => ExitCode::NotCompliant,
    }
}

fn show<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "unknown".into(), |v| v.to_string())
}
