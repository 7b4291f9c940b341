//! What every command runs inside: a runtime, the signals that end it, the run's deadline, and output that
//! survives a closed stdout. Below the commands; knows none of them.

pub mod signal;

use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::{InstanceId, Region};
use crate::process::signal::{Signal, Stage};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

/// How much sooner than `--timeout` a run's own waits and retries end: enough for them to conclude with
/// their own messages (which bound ended a wait, what EC2 answered last) before the deadline cuts whatever
/// is still in flight.
pub const CONCLUDE: Duration = Duration::from_millis(250);

/// Every command's runtime: one thread is plenty for a handful of calls, and for a fleet's paced ones.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::Unexpected(format!("cannot start the async runtime: {err}")))
}

/// `work` on a runtime of its own, ended by SIGTERM/SIGINT or at `limit` (`--timeout`), calls in flight and
/// retries included; `progress` says where it was for the message. `work` is given the run's deadline, the
/// one instant its own waits must end by.
pub fn block_on<T, F: Future<Output = Result<T>>>(
    limit: Duration,
    progress: &Progress,
    work: impl FnOnce(Instant) -> F,
) -> Result<T> {
    runtime()?.block_on(bounded(limit, progress, work))
}

/// `work`, ended at `limit` from now or by SIGTERM/SIGINT, saying where it was.
pub async fn bounded<T, F: Future<Output = Result<T>>>(
    limit: Duration,
    progress: &Progress,
    work: impl FnOnce(Instant) -> F,
) -> Result<T> {
    let mut signals = Signals::new()?;
    ended_by(limit, progress, signals.recv(), work).await
}

/// `work`, ended at `limit` from now or when `signal` comes, whichever is first.
async fn ended_by<T, F: Future<Output = Result<T>>>(
    limit: Duration,
    progress: &Progress,
    signal: impl Future<Output = Signal>,
    work: impl FnOnce(Instant) -> F,
) -> Result<T> {
    tokio::select! {
        result = within(limit, progress, work) => result,
        signal = signal => Err(Error::Signal { signal, stage: progress.get() }),
    }
}

/// `work`, given its deadline (`limit` from now) and ended there, calls in flight and retries included, saying
/// where it was: a whole run's deadline, or one look's of `watch` (which watches the signals itself).
pub async fn within<T, F: Future<Output = Result<T>>>(
    limit: Duration,
    progress: &Progress,
    work: impl FnOnce(Instant) -> F,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    tokio::time::timeout_at(deadline, work(deadline))
        .await
        .unwrap_or_else(|_| Err(Error::Deadline { stage: progress.get(), limit }))
}

/// SIGTERM and SIGINT, watched from the moment this is made.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> Result<Self> {
        let watch = |kind, name| signal(kind).map_err(|e| Error::Unexpected(format!("cannot watch {name}: {e}")));
        Ok(Signals { term: watch(SignalKind::terminate(), "SIGTERM")?, int: watch(SignalKind::interrupt(), "SIGINT")? })
    }

    /// The next signal to come.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Int,
        }
    }
}

/// Where a run is, for the message when a deadline or a signal ends it, and which instance it works on once
/// that is known, for the report of a run that then fails.
#[derive(Debug, Default)]
pub struct Progress(AtomicU8, std::sync::OnceLock<(InstanceId, Region)>);

impl Progress {
    /// A run that starts at `stage` (the fleet and defaults commands, which read no IMDS).
    pub fn at(stage: Stage) -> Self {
        let progress = Progress::default();
        progress.set(stage);
        progress
    }

    pub fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    /// The instance the run works on, once known (first call wins).
    pub fn identified(&self, instance_id: &InstanceId, region: &Region) {
        let _ = self.1.set((instance_id.clone(), region.clone()));
    }

    pub fn identity(&self) -> Option<&(InstanceId, Region)> {
        self.1.get()
    }

    pub fn get(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            x if x == Stage::Ec2 as u8 => Stage::Ec2,
            x if x == Stage::Waiting as u8 => Stage::Waiting,
            x if x == Stage::Accounts as u8 => Stage::Accounts,
            _ => Stage::Identity,
        }
    }
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

/// A report as one line of JSON on stdout, written as it is rendered: an org-wide report of tens of thousands
/// of instances is never held whole in memory beside the run it reports.
pub fn emit_json(value: &impl serde::Serialize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    let written = serde_json::to_writer(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(err) = written {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_work_and_says_where_it_was() {
        let progress = Progress::at(Stage::Waiting);
        let start = Instant::now();
        let err = bounded(Duration::from_secs(3), &progress, |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(matches!(err, Error::Deadline { stage: Stage::Waiting, limit } if limit == Duration::from_secs(3)));
    }

    /// A signal ends the work the moment it comes, before the deadline, saying where the run was.
    #[tokio::test(start_paused = true)]
    async fn a_signal_ends_the_work_at_once() {
        let progress = Progress::at(Stage::Ec2);
        let start = Instant::now();
        let signal = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Signal::Term
        };
        let work = |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        };
        let err = ended_by(Duration::from_secs(180), &progress, signal, work).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(matches!(err, Error::Signal { signal: Signal::Term, stage: Stage::Ec2 }), "{err}");
        assert_eq!(err.exit_code() as u8, 143);
    }
}
