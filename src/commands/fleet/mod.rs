//! `imds-hop-limit fleet check|apply`: every matching instance of one or more regions, from a laptop or a CI
//! job. Per region: read the selection in pages of 1,000 -> the agent's own decision and step per instance
//! (`plan`) -> one paced ModifyInstanceMetadataOptions per non-compliant instance -> the agent's own verifier
//! (`verify`) over batches of ids, while the changes are still going out. Regions run side by side, each with its own budget. One instance's
//! failure is recorded with it and never stops the others; the exit code merges them (`ExitCode::merge`).
//!
//! To add a selection criterion: a flag in `cli::FleetArgs`, a field in `Settings`, a `Filter` in `filters`.

pub mod report;

use crate::accounts;
use crate::cli::{Act, FleetArgs, Output};
use crate::config;
use crate::ec2::{Account, Described, Ec2Api, Filter, Fleet, Modified};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::{InstanceId, Region};
use crate::outcome::{self, Action};
use crate::plan::{self, Change, Decision, Intent, Step, Wanted};
use crate::process::{self, Progress};
use crate::regions::Regions;
use crate::retry::Patient;
use crate::runner::{Place, Settled, SettledAccount, Store};
use crate::verify::{self, BATCH, End, ReadBack, Wait, Watcher};
use crate::wait::{Pace, patience};
use futures_util::StreamExt;
use report::{Counts, Outcome, RegionFailure};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Settings {
    pub act: Act,
    /// `--dry-run`: ask EC2 whether each change would be authorized; change nothing.
    pub dry_run: bool,
    pub wanted: Wanted,
    pub regions: Regions,
    /// `--tag KEY=VALUE` (value `None`: any value), ANDed.
    pub tags: Vec<(String, Option<String>)>,
    /// `--instance-id`, validated, each once.
    pub ids: Vec<InstanceId>,
    /// Wait for `applied` (not `--no-wait`).
    pub wait: bool,
    /// How long each changed instance may stay pending before it counts as failed.
    pub wait_timeout: Duration,
    /// The deadline of the whole run, if `--timeout` was given.
    pub timeout: Option<Duration>,
    pub output: Output,
    /// ModifyInstanceMetadataOptions burst and rate a second, per region.
    pub modify_burst: u32,
    pub modify_rate: f64,
}

/// Calls in flight per region. The pace limits the rate; this only bounds the sockets and the memory of
/// calls that wait out a throttle.
const IN_FLIGHT: usize = 64;

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
        if args.act == Act::Check && args.dry_run {
            return Err(Error::Usage("check changes nothing already: drop --dry-run".into()));
        }
        Ok(Settings {
            act: args.act,
            dry_run: args.dry_run,
            wanted: config::wanted(&args.wanted)?,
            regions: Regions::from_args(&args.regions),
            tags,
            ids,
            wait: !args.no_wait,
            wait_timeout: args.wait.wait_timeout,
            timeout: args.timeout,
            output: args.output.output,
            modify_burst: args.modify_burst,
            modify_rate: args.modify_rate,
        })
    }

    /// What the run means to do with each selected instance.
    pub fn intent(&self) -> Intent {
        match (self.act, self.dry_run) {
            (Act::Check, _) => Intent::Check,
            (Act::Apply, true) => Intent::DryRun,
            (Act::Apply, false) => Intent::Apply { wait: self.wait },
        }
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
    counts: &Counts,
    selection: &RefCell<Selection>,
    sent: impl FnOnce(),
    deadline: Instant,
) -> Result<()> {
    let patient = Patient::new(ec2);
    let selected = select(&patient, settings, deadline).await?;
    counts.add_selected(selected.len());
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
            counts.add_to_change();
            outcome.change = Some(change);
        }
        let step = plan::step(decision, settings.intent());
        // The agent's own mapping of a step to what is reported before anything is sent.
        if let Some((action, verified)) = outcome::before_sending(&step, &d.options) {
            (outcome.action, outcome.verified) = (action, verified);
            if step == Step::Nothing {
                counts.add_compliant();
            }
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
    let compliant = outcomes.iter().filter(|o| o.action == Action::Unchanged).count();
    let needing = outcomes.iter().filter(|o| o.change.is_some()).count();
    report::milestone(
        counts,
        &format!("{region}: {} selected, {compliant} compliant, {needing} to change", outcomes.len()),
    );
    selection.replace(Selection { read: true, outcomes });
    let ledger = Ledger { outcomes: selection, pending: RefCell::new(Vec::new()), done: false.into() };
    if settings.act == Act::Check || to_change.is_empty() && to_verify.is_empty() {
        sent();
        return Ok(());
    }
    for (index, expected) in to_verify {
        let id = ledger.outcomes.borrow().outcomes[index].instance_id.clone();
        ledger.pending.borrow_mut().push(Wait::new(id, index, expected, false, settings.wait_timeout, deadline));
    }
    let modify = async {
        change_all(&patient, region, &ledger, to_change, settings, counts, deadline).await;
        sent();
    };
    if settings.wait && !settings.dry_run {
        let mut watcher = Verifying { region, ledger: &ledger, counts };
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
    counts: &Counts,
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
            let result = paced.modify(&id, &change, settings.dry_run, until).await;
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
                counts.add_changed();
                outcome.after = Some(answer.clone());
                outcome.action = Action::Accepted;
                if settings.wait {
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
                counts.add_failed();
                outcome.fail(&err);
            }
        }
        drop(selection);
        if sent % 100 == 0 || sent == total {
            report::milestone(counts, &format!("{region}: {sent} of {total} changes answered"));
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

/// What the verifier's reads and ends mean for the region's outcomes and the live counts.
struct Verifying<'a> {
    region: &'a Region,
    ledger: &'a Ledger<'a>,
    counts: &'a Counts,
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

    /// An ended wait counts once: applied, or failed (and then no longer as changed, if a change was sent).
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
                self.counts.add_applied();
            }
            End::Failed(err) => {
                if wait.sent {
                    self.counts.changed_then_failed();
                } else {
                    self.counts.add_failed();
                }
                o.fail(&err);
            }
        }
    }

    fn round(&mut self, left: usize) {
        report::milestone(self.counts, &format!("{}: {left} changes not yet seen applied", self.region));
    }
}

/// The instances named by `--instance-id` that no region's selection held.
pub fn not_found(settings: &Settings, regions: &[Region], outcomes: &[Outcome]) -> Vec<Outcome> {
    let regions = regions.iter().map(Region::as_str).collect::<Vec<_>>().join(",");
    let found: BTreeSet<&str> = outcomes.iter().map(|o| o.instance_id.as_str()).collect();
    settings
        .ids
        .iter()
        .filter(|id| !found.contains(id.as_str()))
        .map(|id| {
            let err = Error::InstanceNotFound {
                instance_id: id.into(),
                region: regions.clone(),
                detail: "not among the running or stopped instances that match the selection".into(),
            };
            let mut o = Outcome::missing(id, &regions);
            o.fail(&err);
            o
        })
        .collect()
}

/// A run without `--timeout` still ends: every wait inside it has its own bound; this is only the far end.
const NO_DEADLINE: Duration = Duration::from_secs(7 * 86_400);

pub fn run(args: &FleetArgs, quiet: bool) -> Result<ExitCode> {
    let settings = Settings::from_args(args)?;
    let accounts = accounts::Settings::from_args(&args.accounts, settings.timeout)?;
    let start = std::time::Instant::now();
    let counts = Counts::new(quiet);
    // Every account and region with its instances as far as they got: outside the run, so that a run its
    // deadline or a signal ends still reports them.
    let store: Store<Selection> = Store::default();
    // `--timeout` ends the run at that instant, calls in flight and retries included; the waits inside end
    // at the same deadline, less `CONCLUDE`, so what they decided is in the store by then.
    let limit = settings.timeout.unwrap_or(NO_DEADLINE);
    let work = |deadline: Instant| {
        let deadline = deadline - process::CONCLUDE;
        let (settings, accounts, counts, store) = (&settings, &accounts, &counts, &store);
        async move {
            let caller = Account::load().await;
            let roster = accounts.roster(caller, deadline).await?;
            let one = async |ec2: &Ec2Api, place: &Place<'_, Selection>| {
                region(ec2, place.region(), settings, counts, place.state(), || place.sent(), deadline).await
            };
            store.run(accounts, &roster, &settings.regions, deadline, one).await
        }
    };
    let ended = process::block_on(limit, &Progress::at(accounts.stage()), work).err();
    counts.finish();
    let interrupted = matches!(ended, Some(Error::Signal { .. } | Error::Deadline { .. }));
    match &ended {
        // What was sent stays sent: report each instance as far as it got.
        Some(err) if interrupted => tracing::error!(
            "{err}; so far: {counts}. Changes sent are not undone; the report below is as far as the run got, and \
             `imds-hop-limit fleet check` with the same selection shows each instance now"
        ),
        // Before any region's selection could be read (the regions themselves): the report, with no instance.
        Some(err) => tracing::error!("{err}"),
        None => {}
    }
    let mut run =
        gather_accounts(store.settle(accounts.org_wide(), ended.as_ref()), accounts.org_wide(), ended.as_ref());
    if let (true, Some(err), Act::Apply) = (interrupted, &ended, settings.act) {
        unsent(&mut run.outcomes, err);
    }
    if ended.is_none() {
        run.outcomes.extend(not_found(&settings, &run.regions(), &run.outcomes));
    }
    run.sources = report::sources(&run.outcomes, settings.wanted.hop_limit);
    let merged = ExitCode::merge(
        run.outcomes
            .iter()
            .map(exit_code)
            .chain(run.failures.iter().map(|f| f.code))
            .chain(run.account_failures.iter().map(|f| f.code)),
    );
    let code = ended.as_ref().map_or(merged, Error::exit_code);
    let elapsed = start.elapsed();
    let summary = report::Summary::new(&run, code, elapsed.as_millis() as u64);
    tracing::info!(
        "fleet {}: {} in {:.1} s; exit {}",
        if settings.act == Act::Check { "check" } else { "apply" },
        summary.line(),
        elapsed.as_secs_f64(),
        code as u8
    );
    match settings.output {
        Output::Json => process::emit_json(&report::Json::new(summary, &run, ended.as_ref())),
        Output::Text => process::emit(&report::render(&run, settings.act == Act::Check)),
    }
    Ok(code)
}

/// The whole run's report, account by account in the order listed (the credentials' own alone, when the run
/// is not org-wide): each account's instances and failed regions, tagged with the account, and the accounts
/// that could not be worked in.
fn gather_accounts(accounts: Vec<SettledAccount<Selection>>, org_wide: bool, ended: Option<&Error>) -> report::Run {
    let mut run = report::Run { org_wide, ..report::Run::default() };
    for account in accounts {
        let member = account.member;
        let (regions, mut outcomes, mut failures) =
            gather(account.regions, ended, org_wide.then(|| member.label()).flatten());
        for o in &mut outcomes {
            (o.account_id, o.account) = (member.id.clone(), member.label());
        }
        for f in &mut failures {
            (f.account_id, f.account) = (member.id.clone(), member.label());
        }
        run.account_failures.extend(account.failure);
        run.accounts.push(report::AccountRun { member, regions });
        run.outcomes.extend(outcomes);
        run.failures.extend(failures);
    }
    run
}

/// The report of a fleet run that ended before it could read anything (its settings refused): the same
/// shape as every other, with no instance.
pub fn failed(err: &Error) -> serde_json::Value {
    let run = report::Run::default();
    let summary = report::Summary::new(&run, err.exit_code(), 0);
    serde_json::to_value(report::Json::new(summary, &run, Some(err))).unwrap_or_default()
}

/// What an interrupted apply had not yet sent is failed, with what ended the run: the change it was to make
/// did not happen, and "not compliant" is `check`'s word for an instance nobody tried to change.
fn unsent(outcomes: &mut [Outcome], err: &Error) {
    for o in outcomes.iter_mut().filter(|o| o.action == Action::NotCompliant) {
        o.action = Action::Failed;
        o.code = err.exit_code();
        o.error = Some(format!("the change was not sent before the run ended: {err}"));
    }
}

/// Every region's outcomes and failures, in the regions' order: its instances as far as they got (all of
/// them where it finished); where its selection failed, the failure; where a signal or the deadline (`ended`)
/// came before its selection was read, the region as not read.
fn gather(
    results: Vec<Settled<Selection>>,
    ended: Option<&Error>,
    account: Option<String>,
) -> (Vec<Region>, Vec<Outcome>, Vec<RegionFailure>) {
    let account = account.map(|a| format!("{a} ")).unwrap_or_default();
    let some_region_worked = results.iter().any(|r| matches!(r.end, Some(Ok(()))));
    let (mut regions, mut outcomes, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for Settled { region, state, end } in results {
        match (end, state.read) {
            (Some(Ok(())), _) | (None, true) => outcomes.extend(state.outcomes),
            (Some(Err(err)), _) => {
                let mut error = err.to_string();
                // The same credentials worked elsewhere: EC2 refuses them in a region the account has not enabled.
                if some_region_worked && matches!(err, Error::NoCredentials { .. }) {
                    error.push_str(&format!(
                        "; the same credentials worked in another region, so {region} may not be enabled for this \
                         account (--all-regions takes only the enabled ones)"
                    ));
                }
                tracing::error!("{account}{region}: {error}");
                failures.push(RegionFailure {
                    account_id: None,
                    account: None,
                    region: region.clone(),
                    error,
                    code: err.exit_code(),
                });
            }
            // (A run that ended by itself has every region's result: `ended` is there.)
            (None, false) => failures.push(RegionFailure {
                account_id: None,
                account: None,
                region: region.clone(),
                error: format!("not read before the run ended{}", ended.map(|e| format!(": {e}")).unwrap_or_default()),
                code: ended.map_or(ExitCode::Unexpected, Error::exit_code),
            }),
        }
        regions.push(region);
    }
    (regions, outcomes, failures)
}

/// Whether an outcome leaves the run compliant, needing a change, or failed: its exit code.
pub fn exit_code(o: &Outcome) -> ExitCode {
    o.action.exit_code(o.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::plan::HopLimit;
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

    // --- One region's run over the fake account, on tokio's paused clock ---

    use crate::fakes::FakeAccount;
    use crate::plan::{InstanceState, State};

    fn apply() -> Settings {
        Settings {
            act: Act::Apply,
            dry_run: false,
            wanted: crate::fakes::config(crate::config::Mode::Apply).wanted,
            regions: Regions::Given(vec!["us-west-2".parse().unwrap()]),
            tags: Vec::new(),
            ids: Vec::new(),
            wait: true,
            wait_timeout: Duration::from_secs(120),
            timeout: None,
            output: Output::Text,
            modify_burst: 100,
            modify_rate: 5.0,
        }
    }

    /// The region's outcomes, the counts' summary line, and how long the run took on the paused clock.
    async fn one_region(ec2: &FakeAccount, settings: &Settings, limit: Duration) -> (Result<Vec<Outcome>>, Duration) {
        let counts = Counts::new(true);
        let start = Instant::now();
        let selection = RefCell::default();
        let result = region(ec2, &"us-west-2".into(), settings, &counts, &selection, || {}, start + limit).await;
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
        let check = Settings { act: Act::Check, ..apply() };
        let outcomes = one_region(&ec2, &check, NO_DEADLINE).await.0.unwrap();
        assert_eq!(statuses(&outcomes), [Action::NotCompliant; 3]);
        assert!(outcomes.iter().all(|o| o.change.is_some_and(|c| c.hop_limit == HopLimit::new(2))));
        assert_eq!(ec2.count("ModifyInstanceMetadataOptions", false), 0);
        let dry = Settings { dry_run: true, ..apply() };
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
        let outcomes = one_region(&pending(), &Settings { wait: false, ..apply() }, NO_DEADLINE).await.0.unwrap();
        assert_eq!((outcomes[0].action, outcomes[0].verified), (Action::Unchanged, false));
        let check = Settings { act: Act::Check, ..apply() };
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
