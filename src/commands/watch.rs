//! `imds-hop-limit watch`: apply as the oneshot does, then keep the instance compliant, for a node agent run
//! as a container (a Kubernetes DaemonSet, an ECS daemon service). Each look is one pass of the agent: IMDS
//! itself proves the hop limit at no API cost where it can (`sense`); where it cannot, the pass asks EC2, and
//! the next look waits `--ec2-interval` instead of `--interval`, because each such look spends one
//! DescribeInstances from the account's shared budget. A hop limit that drifted lower is applied again.
//! Failures back off without exiting. One log line per change or failure, never per look. SIGTERM and SIGINT
//! end it at once with exit 0: a node agent that is told to stop has done nothing wrong.

use crate::cli::EvidenceSource;
use crate::config::{Config, Watch};
use crate::error::{Error, ExitCode, Result, Signal};
use crate::imds::Imds;
use crate::process::{self, Progress, Signals};
use crate::reconcile::{self, Action, Report, Target};
use std::time::Duration;
use tokio::time::Instant;

/// The longest wait after failures: EC2 or IMDS failing for a long time is looked at every 15 minutes.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// What the last look found, so that only a change of it is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Nothing,
    Compliant(EvidenceSource),
    Failed(String),
}

pub fn run(config: Config) -> Result<ExitCode> {
    let watch = config.watch.ok_or_else(|| Error::Unexpected("watch without its settings".into()))?;
    let signal = process::runtime()?.block_on(watch_until_signal(&config, watch))?;
    tracing::info!("{signal}: stopping");
    Ok(ExitCode::Compliant)
}

/// Looks until a signal comes; which one.
async fn watch_until_signal(config: &Config, watch: Watch) -> Result<Signal> {
    let mut signals = Signals::new()?;
    let imds = Imds::new(&config.imds_endpoint)?;
    let mut seen = Seen::Nothing;
    let mut failures = 0u32;
    let mut target: Option<Target> = None;
    loop {
        let look = async {
            let deadline = Instant::now() + config.timeout;
            let progress = Progress::default();
            let t = match &target {
                Some(t) => t.clone(),
                None => reconcile::identity(&imds, config, deadline).await?,
            };
            let report =
                tokio::time::timeout_at(deadline, crate::agent::pass(config, &imds, t.clone(), &progress, deadline))
                    .await
                    .unwrap_or_else(|_| Err(Error::Deadline { stage: progress.get(), limit: config.timeout }))?;
            Ok::<_, Error>((t, report))
        };
        let outcome = tokio::select! {
            outcome = look => outcome,
            signal = signals.recv() => return Ok(signal),
        };
        let wait = match outcome {
            Ok((t, report)) => {
                target = Some(t);
                failures = 0;
                let now = Seen::Compliant(report.evidence);
                tell(&report, &seen, &now, watch);
                seen = now;
                jittered(if report.evidence == EvidenceSource::Imds { watch.interval } else { watch.ec2_interval })
            }
            Err(err) => {
                failures += 1;
                let now = Seen::Failed(err.to_string());
                let wait = backoff(watch.interval, failures);
                if now != seen {
                    tracing::error!("{err}; looking again in {:.0} s, backing off while it fails", wait.as_secs_f64());
                }
                seen = now;
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            signal = signals.recv() => return Ok(signal),
        }
    }
}

/// One line when something changed: a change made, compliance regained after failures, how the looks are
/// made (and what each costs) when that differs from before.
fn tell(report: &Report, before: &Seen, now: &Seen, watch: Watch) {
    if report.action == Action::Changed {
        tracing::info!(
            "{} ({}): changed ({}); looking again every {}",
            report.instance_id,
            report.region,
            reconcile::describe_change(&report.before, &report.after),
            cost(report.evidence, watch)
        );
    } else if before != now {
        tracing::info!(
            "{} ({}): compliant{}; looking again every {}",
            report.instance_id,
            report.region,
            if matches!(before, Seen::Failed(_)) { " again" } else { "" },
            cost(report.evidence, watch)
        );
    }
}

fn cost(evidence: EvidenceSource, watch: Watch) -> String {
    match evidence {
        EvidenceSource::Imds => {
            format!("{} through IMDS itself (no EC2 call)", crate::config::show_duration(watch.interval))
        }
        EvidenceSource::Ec2 => format!(
            "{} through EC2 (IMDS cannot prove the hop limit here): one DescribeInstances from the account's budget each",
            crate::config::show_duration(watch.ec2_interval)
        ),
    }
}

/// `interval`, give or take a tenth: nodes started together (a node group, a DaemonSet rolled out at once)
/// drift apart instead of looking, and where IMDS cannot prove, calling DescribeInstances, at the same moment.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

/// After `failures` failures in a row: the interval doubled each time, jittered, at most `MAX_BACKOFF`.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let window = interval.saturating_mul(1u32 << failures.min(16)).min(MAX_BACKOFF);
    window.mul_f64(0.5 + 0.5 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_to_a_quarter_of_an_hour() {
        let i = Duration::from_secs(60);
        for _ in 0..200 {
            let first = backoff(i, 1);
            assert!(first >= Duration::from_secs(60) && first <= Duration::from_secs(120), "{first:?}");
            let late = backoff(i, 30);
            assert!(late >= MAX_BACKOFF / 2 && late <= MAX_BACKOFF, "{late:?}");
        }
    }

    #[test]
    fn healthy_looks_are_spread_by_a_tenth() {
        let i = Duration::from_secs(60);
        let draws: Vec<Duration> = (0..2000).map(|_| jittered(i)).collect();
        assert!(draws.iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        assert!(
            draws.iter().any(|d| *d < Duration::from_secs(56)) && draws.iter().any(|d| *d > Duration::from_secs(64))
        );
    }

    #[test]
    fn the_log_says_what_a_look_costs() {
        let w = Watch { interval: Duration::from_secs(60), ec2_interval: Duration::from_secs(1800) };
        assert_eq!(cost(EvidenceSource::Imds, w), "1m through IMDS itself (no EC2 call)");
        assert!(cost(EvidenceSource::Ec2, w).starts_with("30m through EC2"));
    }
}
