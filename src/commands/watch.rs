//! `imds-hop-limit watch`: apply as the oneshot does, then keep the instance compliant, for a node agent run
//! as a container (a Kubernetes DaemonSet, an ECS daemon service). Each look is one pass of the agent: IMDS
//! itself proves the hop limit at no API cost where it can (`sense`); where it cannot, the pass asks EC2, and
//! the next look waits `--ec2-interval` instead of `--interval`, because each such look spends one
//! DescribeInstances from the account's shared budget. A hop limit that drifted lower is applied again.
//! Failures back off without exiting. One log line per change or failure, never per look. SIGTERM and SIGINT
//! end it at once with exit 0: a node agent that is told to stop has done nothing wrong.

use crate::cli::EvidenceSource;
use crate::config::{Config, Watch};
use crate::error::Result;
use crate::exit::ExitCode;
use crate::imds::Imds;
use crate::outcome::Action;
use crate::process::signal::Signal;
use crate::process::{self, Progress, Signals};
use crate::reconcile::{Report, Target};
use crate::wait;
use std::time::Duration;

/// The longest wait after failures: EC2 or IMDS failing for a long time is looked at every 15 minutes.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Healthy looks come every interval, give or take a tenth: nodes started together drift apart instead of
/// looking (and, where IMDS cannot prove, calling DescribeInstances) at the same moment.
const SPREAD: f64 = 0.1;

/// What the last look found, so that only a change of it is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Nothing,
    Compliant(EvidenceSource),
    Failed(String),
}

pub fn run(config: Config, watch: Watch) -> Result<ExitCode> {
    let signal = process::runtime()?.block_on(watch_until_signal(&config, watch))?;
    tracing::info!("{signal}: stopping");
    Ok(ExitCode::Compliant)
}

/// Looks until a signal comes; which one.
async fn watch_until_signal(config: &Config, watch: Watch) -> Result<Signal> {
    let mut signals = Signals::new()?;
    let mut agent = Agent { config, imds: Imds::new(&config.imds_endpoint)?, target: None };
    Ok(keep_looking(watch, &mut agent, signals.recv()).await)
}

/// One look at the instance, as `keep_looking` takes it: the agent's pass, or a test's script.
trait Look {
    async fn look(&mut self) -> Result<Report>;
}

/// The agent's pass, each under `--timeout`; the identity read once, at the first look that gets it.
struct Agent<'a> {
    config: &'a Config,
    imds: Imds,
    target: Option<Target>,
}

impl Look for Agent<'_> {
    async fn look(&mut self) -> Result<Report> {
        let config = self.config;
        let progress = Progress::default();
        let (imds, known, at) = (&self.imds, &self.target, &progress);
        let (target, report) = process::within(config.timeout, &progress, |deadline| async move {
            let target = match known {
                Some(t) => t.clone(),
                None => crate::agent::identity(imds, config, deadline).await?,
            };
            let report = crate::agent::pass(config, imds, target.clone(), at, deadline).await?;
            Ok((target, report))
        })
        .await?;
        self.target = Some(target);
        Ok(report)
    }
}

/// The schedule: a look, then the next after `--interval` (jittered) where IMDS proved it, `--ec2-interval`
/// where EC2 had to be asked, or the backoff after a failure; until `stop` comes, mid-look or mid-wait.
async fn keep_looking(watch: Watch, looker: &mut impl Look, stop: impl Future<Output = Signal>) -> Signal {
    tokio::pin!(stop);
    let mut seen = Seen::Nothing;
    let mut failures = 0u32;
    loop {
        let outcome = tokio::select! {
            outcome = looker.look() => outcome,
            signal = &mut stop => return signal,
        };
        let wait = match outcome {
            Ok(report) => {
                failures = 0;
                let now = Seen::Compliant(report.evidence);
                tell(&report, &seen, &now, watch);
                seen = now;
                let interval =
                    if report.evidence == EvidenceSource::Imds { watch.interval } else { watch.ec2_interval };
                wait::around(interval, SPREAD)
            }
            Err(err) => {
                failures += 1;
                let now = Seen::Failed(err.to_string());
                let wait = wait::retreat(watch.interval, failures, MAX_BACKOFF);
                if now != seen {
                    tracing::error!("{err}; looking again in {:.0} s, backing off while it fails", wait.as_secs_f64());
                }
                seen = now;
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            signal = &mut stop => return signal,
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
            report.before.changes_to(&report.after),
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
            format!("{} through IMDS itself (no EC2 call)", crate::duration::show_duration(watch.interval))
        }
        EvidenceSource::Ec2 => format!(
            "{} through EC2 (IMDS cannot prove the hop limit here): one DescribeInstances from the account's budget each",
            crate::duration::show_duration(watch.ec2_interval)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use tokio::time::Instant;

    #[test]
    fn the_log_says_what_a_look_costs() {
        let w = Watch { interval: Duration::from_secs(60), ec2_interval: Duration::from_secs(1800) };
        assert_eq!(cost(EvidenceSource::Imds, w), "1m through IMDS itself (no EC2 call)");
        assert!(cost(EvidenceSource::Ec2, w).starts_with("30m through EC2"));
    }

    // --- The schedule, on the paused clock, over a scripted look ---

    use crate::plan::MetadataOptions;
    use std::cell::RefCell;

    /// Answers each look with the next of `script` (the last repeats), recording when it came.
    struct Script {
        script: Vec<Option<EvidenceSource>>,
        at: RefCell<Vec<Instant>>,
    }

    impl Look for Script {
        async fn look(&mut self) -> Result<Report> {
            let n = self.at.borrow().len();
            self.at.borrow_mut().push(Instant::now());
            match self.script[n.min(self.script.len() - 1)] {
                Some(evidence) => Ok(Report {
                    instance_id: "i-12345678".into(),
                    region: "us-west-2".into(),
                    before: MetadataOptions::default(),
                    after: MetadataOptions::default(),
                    action: Action::Unchanged,
                    verified: true,
                    evidence,
                    sensed: None,
                }),
                None => Err(Error::MetadataUnreachable { endpoint: "e".into(), detail: "refused".into() }),
            }
        }
    }

    fn gaps(script: &Script, start: Instant) -> Vec<Duration> {
        let at = script.at.borrow();
        std::iter::once(start).chain(at.iter().copied()).zip(at.iter()).map(|(a, b)| *b - a).collect()
    }

    async fn stop_after(after: Duration) -> Signal {
        tokio::time::sleep(after).await;
        Signal::Term
    }

    const WATCH: Watch = Watch { interval: Duration::from_secs(60), ec2_interval: Duration::from_secs(1800) };

    /// Proven by IMDS: a look every minute, give or take a tenth; where EC2 had to be asked, every half hour.
    #[tokio::test(start_paused = true)]
    async fn looks_come_every_interval_or_every_ec2_interval() {
        let start = Instant::now();
        let mut imds = Script { script: vec![Some(EvidenceSource::Imds)], at: RefCell::default() };
        let signal = keep_looking(WATCH, &mut imds, stop_after(Duration::from_secs(600))).await;
        assert_eq!((signal, start.elapsed()), (Signal::Term, Duration::from_secs(600)), "ended by the signal");
        let g = gaps(&imds, start);
        assert_eq!(g[0], Duration::ZERO, "the first look at once");
        assert!(g.len() >= 10 && g.len() <= 12, "{g:?}");
        assert!(g[1..].iter().all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)), "{g:?}");

        let start = Instant::now();
        let mut ec2 = Script { script: vec![Some(EvidenceSource::Ec2)], at: RefCell::default() };
        keep_looking(WATCH, &mut ec2, stop_after(Duration::from_secs(7200))).await;
        let g = gaps(&ec2, start);
        assert!(g.len() >= 4 && g.len() <= 5, "{g:?}");
        assert!(g[1..].iter().all(|d| *d >= Duration::from_secs(1620) && *d <= Duration::from_secs(1980)), "{g:?}");
    }

    /// Failures back off, doubling from the interval, and a success returns to the interval.
    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_a_success_resets_the_interval() {
        let start = Instant::now();
        let script = vec![None, None, None, Some(EvidenceSource::Imds)];
        let mut looks = Script { script, at: RefCell::default() };
        keep_looking(WATCH, &mut looks, stop_after(Duration::from_secs(1200))).await;
        let g = gaps(&looks, start);
        let secs = |lo, hi| move |d: &Duration| *d >= Duration::from_secs(lo) && *d <= Duration::from_secs(hi);
        assert!(secs(60, 120)(&g[1]) && secs(120, 240)(&g[2]) && secs(240, 480)(&g[3]), "{g:?}");
        assert!(g[4..].iter().all(secs(54, 66)), "{g:?}");
    }

    /// A signal that comes while a look is still under way ends it there.
    #[tokio::test(start_paused = true)]
    async fn a_signal_ends_a_look_under_way() {
        struct Hangs;
        impl Look for Hangs {
            async fn look(&mut self) -> Result<Report> {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(Error::Unexpected("never".into()))
            }
        }
        let start = Instant::now();
        let signal = keep_looking(WATCH, &mut Hangs, stop_after(Duration::from_secs(5))).await;
        assert_eq!((signal, start.elapsed()), (Signal::Term, Duration::from_secs(5)));
    }
}
