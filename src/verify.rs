//! The one verifier: reads back the instances a run waits on (its own changes, or somebody's still
//! pending) in batches, until `plan::verdict` ends each wait or its bound passes. The agent waits on one
//! instance; the fleet on many, while its changes are still going out. What a wait's end means for a report
//! is the caller's (`Watcher`); when to read, what a read says and how a wait ends are decided here alone.

use crate::ec2::Described;
use crate::error::{Error, Result};
use crate::ids::InstanceId;
use crate::plan::{self, InstanceState, MetadataOptions, Verdict, Wanted};
use crate::wait::PollSchedule;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// EC2 documents up to 200 values per filter: the most instances one read asks for.
pub const BATCH: usize = 200;

/// Room left before a wait's bound for the read that comes just before it (its round trip), so that what
/// the message says EC2 answered is current.
const LAST_READ_MARGIN: Duration = Duration::from_millis(300);

/// How the instances are read back: one DescribeInstances by id for the agent, filtered pages for the fleet.
pub trait ReadBack {
    /// The instances among `ids` as EC2 reads them now (one left out of the answer is read again next
    /// time), each call retried until `until`.
    async fn read_back(&self, ids: &[InstanceId], until: Instant) -> Result<Vec<Described>>;
}

/// One instance waited on.
#[derive(Debug, Clone)]
pub struct Wait {
    pub id: InstanceId,
    /// The caller's own key for it (the fleet: the index of its outcome).
    pub key: usize,
    /// What the options become: the change's fields, the others as they were.
    pub expected: MetadataOptions,
    /// A change of ours was sent (not only somebody else's seen through).
    pub sent: bool,
    /// When the wait began (the change was accepted, or the pending state was first seen).
    pub since: Instant,
    /// When it ends without a verdict: `--wait-timeout` after `since`, or the run's deadline if sooner.
    pub give_up: Instant,
    /// Which of the two `give_up` is, for the message.
    bound: &'static str,
    /// What EC2 answered last: the instance's state and options as seen (`plan::seen`).
    pub seen: Option<(InstanceState, MetadataOptions)>,
    /// Why the last read failed, if it did (throttled until its retries gave up).
    last_error: Option<String>,
}

/// When a wait that starts now gives up: `--wait-timeout` from now, or the run's deadline if sooner, and the
/// flag that names it. Every wait for `applied` takes its bound from here: EC2's (`Wait`) and the data
/// plane's (`reconcile::wait_data_plane`).
pub fn give_up(wait: Duration, deadline: Instant) -> (Instant, &'static str) {
    let wanted = Instant::now() + wait;
    if wanted > deadline { (deadline, "--timeout") } else { (wanted, "--wait-timeout") }
}

impl Wait {
    pub fn new(
        id: InstanceId,
        key: usize,
        expected: MetadataOptions,
        sent: bool,
        wait: Duration,
        deadline: Instant,
    ) -> Self {
        let (give_up, bound) = give_up(wait, deadline);
        Wait { id, key, expected, sent, since: Instant::now(), give_up, bound, seen: None, last_error: None }
    }

    /// What was read last, for the message when the wait ends without a verdict.
    fn last(&self) -> String {
        match (&self.last_error, &self.seen) {
            (Some(err), _) => format!("EC2 answered the read: {err}"),
            (None, Some((_, options))) => options.last_read(),
            (None, None) => "none yet".into(),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub enum End {
    /// The wanted values, `applied`.
    Applied,
    /// Stopped, with the wanted values: EC2 applies them when it starts.
    AppliesAtStart,
    /// Gone (terminated), timed out with what was read last, or refused to be read back.
    Failed(Error),
}

/// What the caller makes of the waits: told of each read and each end.
pub trait Watcher {
    /// More waits may still be added (the fleet's changes still going out).
    fn more_coming(&self) -> bool {
        false
    }
    /// `wait` was read; `wait.seen` holds what EC2 answered.
    fn read(&mut self, _wait: &Wait) {}
    fn ended(&mut self, wait: Wait, end: End);
    /// A round of reads is over; `left` waits remain.
    fn round(&mut self, _left: usize) {}
}

/// Reads every wait of `waits` back until each has ended: every 2 to 2.5 s while more are coming, then on
/// `PollSchedule::APPLIED`, and once more just before the first bound to come. Waits may be added while it
/// runs (`Watcher::more_coming`); it returns once none is left and none is coming, or at `deadline`.
pub async fn verify(
    reader: &impl ReadBack,
    waits: &RefCell<Vec<Wait>>,
    wanted: &Wanted,
    watcher: &mut impl Watcher,
    deadline: Instant,
) {
    let schedule = PollSchedule::APPLIED;
    let mut polls = 0;
    loop {
        let more = watcher.more_coming();
        if !more && waits.borrow().is_empty() {
            return;
        }
        let delay = if more {
            schedule.delay(0)
        } else {
            polls += 1;
            schedule.delay(polls - 1)
        };
        let now = Instant::now();
        let first_bound = waits.borrow().iter().map(|w| w.give_up).min().unwrap_or(deadline).min(deadline);
        let wake = if now + delay > first_bound {
            first_bound.checked_sub(LAST_READ_MARGIN).unwrap_or(first_bound).max(now)
        } else {
            now + delay
        };
        tokio::time::sleep_until(wake).await;
        let read_at = Instant::now();
        let ids: Vec<InstanceId> = waits.borrow().iter().map(|w| w.id.clone()).collect();
        for batch in ids.chunks(BATCH) {
            let in_batch: HashSet<&InstanceId> = batch.iter().collect();
            let until = waits.borrow().iter().filter(|w| in_batch.contains(&w.id)).map(|w| w.give_up).max();
            let until = until.unwrap_or(read_at).min(deadline);
            match reader.read_back(batch, until).await {
                Ok(read) => settle(waits, &read, wanted, watcher),
                // Throttled or failing until its retries gave up: the instances wait on, and the message when
                // their wait ends says what EC2 answered.
                Err(Error::GaveUp { last, .. }) => {
                    tracing::warn!("reading back {} changed instances: EC2 answered {last}", batch.len());
                    for w in waits.borrow_mut().iter_mut().filter(|w| in_batch.contains(&w.id)) {
                        w.last_error = Some(last.to_string());
                    }
                }
                // Refused (credentials expired, not authorized, ...): no later read will do better, so those
                // waits end now, the change accepted but not verified, with the refusal's own exit code.
                Err(err) => {
                    tracing::warn!("reading back {} changed instances: {err}", batch.len());
                    end_where(
                        waits,
                        watcher,
                        |w| in_batch.contains(&w.id),
                        |w| Error::NotVerified { instance_id: w.id.to_string(), cause: Box::new(err.clone()) },
                    );
                }
            }
        }
        // The waits whose bound has come (the read just before it included) end with what was read last.
        let ends = Instant::now().max(read_at + LAST_READ_MARGIN);
        end_where(
            waits,
            watcher,
            |w| w.give_up <= ends,
            |w| Error::WaitTimeout {
                instance_id: w.id.to_string(),
                waited: Instant::now().saturating_duration_since(w.since),
                last: w.last(),
                bound: w.bound,
            },
        );
        watcher.round(waits.borrow().len());
        if Instant::now() >= deadline {
            return;
        }
    }
}

/// Marks what `read` says of each wait, and ends those it gives a verdict.
fn settle(waits: &RefCell<Vec<Wait>>, read: &[Described], wanted: &Wanted, watcher: &mut impl Watcher) {
    let read: HashMap<&InstanceId, &Described> = read.iter().map(|d| (&d.instance_id, d)).collect();
    let mut ended = Vec::new();
    waits.borrow_mut().retain_mut(|w| {
        let Some(d) = read.get(&w.id) else { return true };
        w.seen = Some((d.state, plan::seen(&d.options, &w.expected)));
        w.last_error = None;
        watcher.read(w);
        let end = match plan::verdict(d.state, &d.options, &w.expected, wanted) {
            Verdict::Waiting => return true,
            Verdict::Applied => End::Applied,
            Verdict::AppliesAtStart => End::AppliesAtStart,
            Verdict::Gone => End::Failed(Error::InstanceGone { instance_id: w.id.to_string(), state: d.state }),
        };
        ended.push((w.clone(), end));
        false
    });
    for (w, end) in ended {
        watcher.ended(w, end);
    }
}

/// Ends, as failed with `err(wait)`, every wait for which `which` holds.
fn end_where(
    waits: &RefCell<Vec<Wait>>,
    watcher: &mut impl Watcher,
    which: impl Fn(&Wait) -> bool,
    err: impl Fn(&Wait) -> Error,
) {
    let mut ended = Vec::new();
    waits.borrow_mut().retain(|w| {
        if which(w) {
            ended.push((w.clone(), End::Failed(err(w))));
            false
        } else {
            true
        }
    });
    for (w, end) in ended {
        watcher.ended(w, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{config, options};
    use crate::plan::State;

    /// Answers each read with `answer(n, id)` (n: the read's number, from 0) and records when it came.
    struct Reader<F> {
        answer: F,
        at: RefCell<Vec<Instant>>,
    }

    impl<F: Fn(usize, &InstanceId) -> Result<(InstanceState, MetadataOptions)>> ReadBack for Reader<F> {
        async fn read_back(&self, ids: &[InstanceId], _until: Instant) -> Result<Vec<Described>> {
            let n = self.at.borrow().len();
            self.at.borrow_mut().push(Instant::now());
            ids.iter()
                .map(|id| {
                    let (state, options) = (self.answer)(n, id)?;
                    Ok(Described { instance_id: id.clone(), state, options, source: Default::default() })
                })
                .collect()
        }
    }

    #[derive(Default)]
    struct Ends(Vec<(InstanceId, String)>);

    impl Watcher for Ends {
        fn ended(&mut self, wait: Wait, end: End) {
            let said = match end {
                End::Applied => "applied".to_string(),
                End::AppliesAtStart => "applies at start".to_string(),
                End::Failed(err) => err.to_string(),
            };
            self.0.push((wait.id, said));
        }
    }

    fn waits(ids: &[&str], wait: Duration, deadline: Instant) -> RefCell<Vec<Wait>> {
        let expected = options(2, State::Applied);
        RefCell::new(ids.iter().map(|id| Wait::new((*id).into(), 0, expected.clone(), true, wait, deadline)).collect())
    }

    fn reader<F>(answer: F) -> Reader<F> {
        Reader { answer, at: RefCell::default() }
    }

    /// Applied at the second read: the first comes 2 to 2.5 s after the change, the second 0.6 to 0.9 s later.
    #[tokio::test(start_paused = true)]
    async fn reads_follow_the_poll_schedule_until_the_verdict() {
        let start = Instant::now();
        let wanted = config(crate::plan::Intent::Apply { wait: true }).wanted;
        let r = reader(|n, _: &InstanceId| {
            Ok((InstanceState::Running, options(2, if n == 0 { State::Pending } else { State::Applied })))
        });
        let w = waits(&["i-12345678"], Duration::from_secs(120), start + Duration::from_secs(180));
        let mut ends = Ends::default();
        verify(&r, &w, &wanted, &mut ends, start + Duration::from_secs(180)).await;
        assert_eq!(ends.0, [("i-12345678".into(), "applied".to_string())]);
        let at: Vec<Duration> = r.at.borrow().iter().map(|t| t.duration_since(start)).collect();
        assert_eq!(at.len(), 2);
        assert!(at[0] >= Duration::from_millis(2000) && at[0] <= Duration::from_millis(2500), "{at:?}");
        let gap = at[1] - at[0];
        assert!(gap >= Duration::from_millis(600) && gap <= Duration::from_millis(900), "{at:?}");
    }

    /// Still pending at the bound: the last read comes 300 ms before it, and the message says what it read and
    /// which bound ended the wait.
    #[tokio::test(start_paused = true)]
    async fn the_bound_ends_a_wait_after_a_last_read_just_before_it() {
        let wanted = config(crate::plan::Intent::Apply { wait: true }).wanted;
        let r = reader(|_, _: &InstanceId| Ok((InstanceState::Running, options(2, State::Pending))));
        for (wait, deadline, bound) in [(5, 180, "--wait-timeout"), (120, 5, "--timeout")] {
            let start = Instant::now();
            let w = waits(&["i-12345678"], Duration::from_secs(wait), start + Duration::from_secs(deadline));
            let mut ends = Ends::default();
            verify(&r, &w, &wanted, &mut ends, start + Duration::from_secs(deadline)).await;
            assert_eq!(start.elapsed(), Duration::from_millis(4700));
            assert_eq!(r.at.borrow().last().map(|t| t.duration_since(start)), Some(Duration::from_millis(4700)));
            let said = &ends.0[0].1;
            assert!(said.contains(bound) && said.contains("state pending, hop limit 2"), "{said}");
        }
    }

    /// A refused read ends the waits of its batch at once, not verified, with the refusal's exit code; a
    /// stopped instance with the wanted values applies at start; a terminated one is gone.
    #[tokio::test(start_paused = true)]
    async fn refused_stopped_and_gone() {
        let start = Instant::now();
        let wanted = config(crate::plan::Intent::Apply { wait: true }).wanted;
        let refused = reader(|_, _: &InstanceId| Err(Error::NoCredentials { detail: "expired".into() }));
        let w = waits(&["i-12345678"], Duration::from_secs(120), start + Duration::from_secs(180));
        let mut ends = Ends::default();
        verify(&refused, &w, &wanted, &mut ends, start + Duration::from_secs(180)).await;
        assert_eq!(refused.at.borrow().len(), 1, "no second read");
        assert!(ends.0[0].1.contains("could not be read back"), "{:?}", ends.0);
        let r = reader(|_, id: &InstanceId| {
            let state = if id.as_str() == "i-12345678" { InstanceState::Stopped } else { InstanceState::Terminated };
            Ok((state, options(2, State::Pending)))
        });
        let w = waits(&["i-12345678", "i-87654321"], Duration::from_secs(120), start + Duration::from_secs(180));
        let mut ends = Ends::default();
        verify(&r, &w, &wanted, &mut ends, start + Duration::from_secs(180)).await;
        assert_eq!(ends.0[0], ("i-12345678".into(), "applies at start".to_string()));
        assert!(ends.0[1].1.contains("terminated"), "{:?}", ends.0);
    }
}
