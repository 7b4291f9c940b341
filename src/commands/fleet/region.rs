//! One region's run: read the selection in pages -> the agent's own decision and step per instance -> one
//! paced ModifyInstanceMetadataOptions per non-compliant instance -> the agent's own verifier over batches of ids,
//! while the changes are still going out. Everything it learns goes into the region's slot of the run's store.

use super::Settings;
use super::progress::{self, Live};
use super::report::{Outcome, Tally};
use crate::ec2::{Described, Filter, Fleet, Modified};
use crate::error::Result;
use crate::ids::{InstanceId, Region};
use crate::outcome::{self, Action};
use crate::plan::{self, Change, Decision, Step};
use crate::retry::Patient;
use crate::verify::{self, BATCH, End, ReadBack, Wait, Watcher};
use crate::wait::{Pace, patience};
use futures_util::StreamExt;
use std::cell::RefCell;
use std::collections::BTreeSet;
use tokio::time::Instant;

/// Calls in flight per region. The pace limits the rate (EC2 refills 5 modifies a second); this bounds the sockets
/// and the memory of calls that wait out a throttle, which an org-wide run multiplies by its accounts and regions
/// alive at once (64 each cost an org-wide run at the default bound 124 MiB; BENCHMARKS.md, "Organizations").
const IN_FLIGHT: usize = 16;

/// A region's instances as far as its run got, written as it goes (`runner::Place::state`): a run ended by its
/// deadline or a signal reports each instance as far as it got.
#[derive(Debug, Default)]
pub struct Selection {
    /// The selection has been read: before, the region's instances are not known.
    pub read: bool,
    pub outcomes: Vec<Outcome>,
}

/// One region's run: the outcome of every selected instance, written into `selection` as it comes; `sent` is
/// called once every change has been sent (what is left is verifying them).
pub async fn region<E: Fleet>(
    ec2: &E,
    region: &Region,
    settings: &Settings,
    live: &Live<'_>,
    selection: &RefCell<Selection>,
    sent: impl FnOnce(),
    deadline: Instant,
) -> Result<()> {
    let patient = Patient::new(ec2);
    let selected = select(&patient, settings, deadline).await?;
    let mut outcomes = Vec::with_capacity(selected.len());
    // (index into outcomes, change) for each instance that needs one.
    let mut to_change = Vec::new();
    // Right values, still pending (somebody's change in flight): verified like a change.
    let mut to_verify = Vec::new();
    for d in selected {
        let mut outcome = Outcome::new(&d, region);
        // Nothing vouches for a selected instance's endpoint (no IMDS answered for it): EC2's read is all.
        let decision = plan::decide(&d.options, &settings.wanted);
        if let Decision::Change(change) = decision {
            outcome.change = Some(change);
        }
        let step = plan::step(decision, settings.intent);
        // The agent's own mapping of a step to what is reported before anything is sent.
        if let Some((action, verified)) = outcome::before_sending(&step, &d.options) {
            (outcome.action, outcome.verified) = (action, verified);
        }
        match step {
            Step::SeeThrough => to_verify.push((outcomes.len(), d.options.clone())),
            // Not compliant until EC2 takes the change.
            Step::Send { change, .. } => {
                outcome.action = Action::NotCompliant;
                to_change.push((outcomes.len(), change));
            }
            Step::Nothing | Step::NotCompliant | Step::LeavePending => {}
        }
        outcomes.push(outcome);
    }
    let read = format!("{region}: {}", Tally::of(&outcomes));
    selection.replace(Selection { read: true, outcomes });
    progress::milestone(live, &read);
    let ledger = Ledger { outcomes: selection, pending: RefCell::new(Vec::new()), done: false.into() };
    if !settings.intent.sends() || to_change.is_empty() && to_verify.is_empty() {
        sent();
        return Ok(());
    }
    for (index, expected) in to_verify {
        let id = ledger.outcomes.borrow().outcomes[index].instance_id.clone();
        ledger.pending.borrow_mut().push(Wait::new(id, index, expected, false, settings.wait_timeout, deadline));
    }
    let modify = async {
        change_all(&patient, region, &ledger, to_change, settings, live, deadline).await;
        sent();
    };
    if settings.intent.waits() {
        let mut watcher = Verifying { region, ledger: &ledger, live };
        let batches = Batches(&patient);
        let verify = verify::verify(&batches, &ledger.pending, &settings.wanted, &mut watcher, deadline);
        tokio::join!(modify, verify);
    } else {
        modify.await;
    }
    Ok(())
}

/// The selection, read in pages: by filters, or by `--instance-id` in batches (same filters).
async fn select<E: Fleet>(patient: &Patient<'_, E>, settings: &Settings, deadline: Instant) -> Result<Vec<Described>> {
    let filters = settings.filters();
    let batches: Vec<Vec<Filter>> = if settings.ids.is_empty() {
        vec![filters]
    } else {
        settings
            .ids
            .chunks(BATCH)
            .map(|ids| {
                let mut f = filters.clone();
                f.push(Filter::new("instance-id", ids));
                f
            })
            .collect()
    };
    let mut all = Vec::new();
    for filters in &batches {
        patient.every_page(filters, || patience(deadline), &mut all).await?;
    }
    // An instance read twice is EC2 paging over a changing set: keep the first.
    let mut seen = BTreeSet::new();
    all.retain(|d| seen.insert(d.instance_id.clone()));
    Ok(all)
}

/// The region's outcomes, and the changed instances not yet verified, shared by the two halves of a run.
struct Ledger<'a> {
    /// The region's slot in the run's store, so that an interrupted run can still report them.
    outcomes: &'a RefCell<Selection>,
    pending: RefCell<Vec<Wait>>,
    /// Every change has been sent (or has failed).
    done: std::cell::Cell<bool>,
}

async fn change_all<E: Fleet>(
    patient: &Patient<'_, E>,
    region: &Region,
    ledger: &Ledger<'_>,
    to_change: Vec<(usize, Change)>,
    settings: &Settings,
    live: &Live<'_>,
    deadline: Instant,
) {
    let pace = Pace::new(settings.modify_burst, settings.modify_rate);
    let paced = Patient::paced(patient.inner(), &pace);
    let total = to_change.len();
    let one = |(index, change): (usize, Change)| {
        let paced = &paced;
        async move {
            let id = ledger.outcomes.borrow().outcomes[index].instance_id.clone();
            let until = patience(deadline);
            let result = paced.modify(&id, &change, !settings.intent.changes(), until).await;
            // Where the run's deadline was the bound, the message names --timeout as given.
            let result = result.map_err(|err| err.at_deadline(settings.timeout.filter(|_| until == deadline)));
            (index, change, result)
        }
    };
    let mut results = futures_util::stream::iter(to_change).map(one).buffer_unordered(IN_FLIGHT);
    let mut sent = 0;
    while let Some((index, change, result)) = results.next().await {
        sent += 1;
        let mut selection = ledger.outcomes.borrow_mut();
        let outcome = &mut selection.outcomes[index];
        match result {
            Ok(Modified::WouldSucceed) => outcome.action = Action::WouldChange,
            Ok(Modified::Accepted(answer)) => {
                outcome.after = Some(answer.clone());
                outcome.action = Action::Accepted;
                if settings.intent.waits() {
                    let expected = change.applied_to(&outcome.before.clone().unwrap_or_default());
                    let id = outcome.instance_id.clone();
                    ledger.pending.borrow_mut().push(Wait::new(
                        id,
                        index,
                        expected,
                        true,
                        settings.wait_timeout,
                        deadline,
                    ));
                }
            }
            Err(err) => {
                outcome.fail(&err);
            }
        }
        drop(selection);
        if sent % 100 == 0 || sent == total {
            progress::milestone(live, &format!("{region}: {sent} of {total} changes answered"));
        }
    }
    ledger.done.set(true);
}

/// The fleet's read-back: the waited-on instances by id, a batch at a time, in pages.
struct Batches<'a, 'b, E>(&'a Patient<'b, E>);

impl<E: Fleet> ReadBack for Batches<'_, '_, E> {
    async fn read_back(&self, ids: &[InstanceId], until: Instant) -> Result<Vec<Described>> {
        let mut read = Vec::new();
        self.0.every_page(&[Filter::new("instance-id", ids)], || until, &mut read).await?;
        Ok(read)
    }
}

/// What the verifier's reads and ends mean for the region's outcomes.
struct Verifying<'a> {
    region: &'a Region,
    ledger: &'a Ledger<'a>,
    live: &'a Live<'a>,
}

impl Watcher for Verifying<'_> {
    fn more_coming(&self) -> bool {
        !self.ledger.done.get()
    }

    fn read(&mut self, wait: &Wait) {
        let o = &mut self.ledger.outcomes.borrow_mut().outcomes[wait.key];
        if let Some((state, seen)) = &wait.seen {
            o.after = Some(seen.clone());
            o.state = Some(*state);
        }
    }

    /// An ended wait: applied (compliant, where the change was somebody else's), or failed.
    fn ended(&mut self, wait: Wait, end: End) {
        let o = &mut self.ledger.outcomes.borrow_mut().outcomes[wait.key];
        match end {
            End::Applied | End::AppliesAtStart => {
                o.action = match (wait.sent, end) {
                    (false, _) => Action::Unchanged,
                    (true, End::AppliesAtStart) => Action::AppliesAtStart,
                    (true, _) => Action::Changed,
                };
                o.verified = true;
            }
            End::Failed(err) => o.fail(&err),
        }
    }

    fn round(&mut self, left: usize) {
        progress::milestone(self.live, &format!("{}: {left} changes not yet seen applied", self.region));
    }
}

#[cfg(test)]
mod tests {
    use super::super::exit_code;
    use super::*;
    use crate::cli::Output;
    use crate::exit::ExitCode;
    use crate::plan::{HopLimit, Intent};
    use crate::regions::Regions;
    use std::time::Duration;

    const NO_DEADLINE: Duration = Duration::from_secs(7 * 86_400);

    // --- One region's run over the fake account, on tokio's paused clock ---

    use crate::fakes::FakeAccount;
    use crate::plan::{InstanceState, State};

    fn apply() -> Settings {
        Settings {
            intent: Intent::Apply { wait: true },
            wanted: crate::fakes::config(Intent::Apply { wait: true }).wanted,
            regions: Regions::Given(vec!["us-west-2".parse().unwrap()]),
            tags: Vec::new(),
            ids: Vec::new(),
            wait_timeout: Duration::from_secs(120),
            timeout: None,
            output: Output::Text,
            modify_burst: 100,
            modify_rate: 5.0,
        }
    }

    /// The region's outcomes, and how long the run took on the paused clock.
    async fn one_region(ec2: &FakeAccount, settings: &Settings, limit: Duration) -> (Result<Vec<Outcome>>, Duration) {
        let live = Live::new(true, Tally::default);
        let start = Instant::now();
        let selection = RefCell::default();
        let result = region(ec2, &"us-west-2".into(), settings, &live, &selection, || {}, start + limit).await;
        (result.map(|()| selection.take().outcomes), start.elapsed())
    }

    fn statuses(outcomes: &[Outcome]) -> Vec<Action> {
        outcomes.iter().map(|o| o.action).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn what_needs_a_change_gets_one_and_is_verified_the_rest_is_left_alone() {
        let ec2 = FakeAccount::with(5, 1);
        ec2.instances.borrow_mut()[3].options.hop_limit = HopLimit::new(3);
        let (result, took) = one_region(&ec2, &apply(), NO_DEADLINE).await;
        let outcomes = result.unwrap();
        use Action::{Changed as Applied, Unchanged};
        assert_eq!(statuses(&outcomes), [Applied, Applied, Applied, Unchanged, Applied]);
        assert!(outcomes.iter().all(|o| o.verified), "each change read back applied, the other read applied");
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", false), 4, "one modify per instance that needs it");
        assert_eq!(ec2.instance(&outcomes[3].instance_id).options.hop_limit, HopLimit::new(3), "a higher one is kept");
        // The selection (one page), then batched reads until the changes applied (2 s after each was taken).
        assert!(ec2.count("DescribeInstances", false) <= 5, "{:?}", ec2.calls.borrow());
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn check_and_dry_run_change_nothing() {
        let ec2 = FakeAccount::with(3, 1);
        let check = Settings { intent: Intent::Check, ..apply() };
        let outcomes = one_region(&ec2, &check, NO_DEADLINE).await.0.unwrap();
        assert_eq!(statuses(&outcomes), [Action::NotCompliant; 3]);
        assert!(outcomes.iter().all(|o| o.change.is_some_and(|c| c.hop_limit == HopLimit::new(2))));
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", false), 0);
        let dry = Settings { intent: Intent::DryRun, ..apply() };
        let outcomes = one_region(&ec2, &dry, NO_DEADLINE).await.0.unwrap();
        assert_eq!(statuses(&outcomes), [Action::WouldChange; 3]);
        assert!(ec2.instances.borrow().iter().all(|i| i.options.hop_limit == HopLimit::new(1)), "nothing changed");
    }

    /// Somebody's change in flight (the wanted values, `pending`): seen through to `applied`, not sent again;
    /// with `--no-wait` left as it is; `check` calls it not compliant.
    #[tokio::test(start_paused = true)]
    async fn the_wanted_values_still_pending_are_seen_through() {
        let pending = || {
            let ec2 = FakeAccount::with(1, 2);
            let mut all = ec2.instances.borrow_mut();
            all[0].options.state = Some(State::Pending);
            all[0].applies_at = Some(Instant::now() + Duration::from_secs(3));
            drop(all);
            ec2
        };
        let ec2 = pending();
        let outcomes = one_region(&ec2, &apply(), NO_DEADLINE).await.0.unwrap();
        assert_eq!((outcomes[0].action, outcomes[0].verified), (Action::Unchanged, true));
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", false), 0);
        let outcomes =
            one_region(&pending(), &Settings { intent: Intent::Apply { wait: false }, ..apply() }, NO_DEADLINE)
                .await
                .0
                .unwrap();
        assert_eq!((outcomes[0].action, outcomes[0].verified), (Action::Unchanged, false));
        let check = Settings { intent: Intent::Check, ..apply() };
        assert_eq!(one_region(&pending(), &check, NO_DEADLINE).await.0.unwrap()[0].action, Action::NotCompliant);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_instance_applies_at_start_and_one_terminated_while_waited_on_is_gone() {
        let mut ec2 = FakeAccount::with(2, 1);
        ec2.apply_after = Duration::from_secs(3600);
        ec2.instances.borrow_mut()[0].state = InstanceState::Stopped;
        let settings = apply();
        let terminate = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ec2.instances.borrow_mut()[1].state = InstanceState::Terminated;
        };
        let ((result, _), ()) = tokio::join!(one_region(&ec2, &settings, NO_DEADLINE), terminate);
        let outcomes = result.unwrap();
        assert_eq!(statuses(&outcomes), [Action::AppliesAtStart, Action::Failed]);
        assert_eq!(exit_code(&outcomes[0]), ExitCode::Compliant);
        assert_eq!(outcomes[1].code, ExitCode::InstanceNotFound);
        assert!(outcomes[1].error.as_deref().is_some_and(|e| e.contains("terminated")), "{:?}", outcomes[1].error);
    }

    /// Paced to an account bucket of 10 at 5 a second, 25 changes are never throttled; at 100 and 50 a second
    /// (a budget that other tools share), throttled calls slow the pace and are retried until each change is
    /// taken once. Exact on the paused clock, where the black-box tests could only time it.
    #[tokio::test(start_paused = true)]
    async fn modifies_are_paced_to_the_bucket_and_slow_down_when_throttled() {
        let ec2 = FakeAccount::with(25, 1).bucket(10.0, 5.0);
        let paced = Settings { modify_burst: 10, modify_rate: 5.0, ..apply() };
        let (result, took) = one_region(&ec2, &paced, NO_DEADLINE).await;
        assert!(result.unwrap().iter().all(|o| o.action == Action::Changed));
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", true), 0, "paced to the bucket: nothing throttled");
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", false), 25);
        // 10 at once less the headroom, then 5 a second: about 3 s of modifies, then 2 s to apply.
        assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(10), "{took:?}");

        let ec2 = FakeAccount::with(30, 1).bucket(10.0, 5.0);
        let unpaced = Settings { modify_burst: 100, modify_rate: 50.0, ..apply() };
        let outcomes = one_region(&ec2, &unpaced, NO_DEADLINE).await.0.unwrap();
        assert!(outcomes.iter().all(|o| o.action == Action::Changed));
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", false), 30, "each change taken once");
        let throttled = ec2.count("ModifyInstanceMetadataOptions", true);
        assert!(throttled > 0, "the account's bucket throttled some");
        // Measured when this was written: 8 or 9 throttled calls; 20 with a pace that does not slow down.
        assert!(throttled <= 12, "each throttle halves the pace: {throttled} throttled calls");
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_token_seen_before_ends_the_listing() {
        let mut ec2 = FakeAccount::with(1, 2);
        ec2.pages = Some(vec![Some("A"), Some("B"), Some("A"), Some("C")]);
        let err = one_region(&ec2, &apply(), NO_DEADLINE).await.0.unwrap_err();
        assert!(err.to_string().contains("already given"), "{err}");
        assert_eq!(ec2.count("DescribeInstances", false), 3, "A, B, A: the third ends it");
    }

    /// `--timeout` ends the wait of each changed instance at the run's deadline, and the failure names it.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_waits_and_names_the_bound() {
        let mut ec2 = FakeAccount::with(2, 1);
        ec2.apply_after = Duration::from_secs(3600);
        let (result, took) = one_region(&ec2, &apply(), Duration::from_secs(10)).await;
        let outcomes = result.unwrap();
        // The last read comes just before the deadline, so that the message says what EC2 answered then.
        assert_eq!(took, Duration::from_millis(9700), "the waits end at the deadline, not at --wait-timeout");
        for o in &outcomes {
            assert_eq!((o.action, o.code), (Action::Failed, ExitCode::WaitTimeout));
            let error = o.error.as_deref().unwrap_or_default();
            assert!(error.contains("--timeout") && error.contains("state pending, hop limit 2"), "{error}");
        }
        let (result, took) = one_region(&FakeAccount::with(1, 1), &apply(), NO_DEADLINE).await;
        assert_eq!(result.unwrap()[0].action, Action::Changed);
        assert!(took < Duration::from_secs(120));
    }
}
