//! `imds-hop-limit fleet check|apply`: every matching instance of one or more regions, from a laptop or a CI
//! job. Per region (region.rs): read the selection in pages of 1,000 -> the agent's own decision and step per
//! instance (`plan`) -> one paced ModifyInstanceMetadataOptions per non-compliant instance -> the agent's own
//! verifier (`verify`) over batches of ids, while the changes are still going out. Accounts and regions run side by
//! side on the one runner, each account-region with its own budget. One instance's failure is recorded with it and
//! never stops the others; the exit code merges them (`ExitCode::merge`). Here: the run and its report's
//! gathering; settings.rs: what the run is to do; region.rs: one region's work; report.rs: the one count of
//! outcomes and the rendering; progress.rs: the live view, counted from the store as the report counts.

mod progress;
mod region;
pub mod report;
mod settings;

pub use region::{Selection, region};
pub use settings::Settings;

use crate::accounts;
use crate::cli::{FleetArgs, Output};
use crate::ec2::{Account, Ec2Api};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::Region;
use crate::outcome::Action;
use crate::plan::Intent;
use crate::process::{self, Progress};
use crate::runner::{Place, Settled, SettledAccount, Store};
use progress::Live;
use report::Outcome;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

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
    // Every account and region with its instances as far as they got: outside the run, so that a run its
    // deadline or a signal ends still reports them. The live view counts from it.
    let store: Store<Selection> = Store::default();
    let live = Live::new(quiet, || {
        let mut totals = report::Tally::default();
        store.each(|s: &Selection| totals.add(&s.outcomes));
        totals
    });
    // `--timeout` ends the run at that instant, calls in flight and retries included; the waits inside end
    // at the same deadline, less `CONCLUDE`, so what they decided is in the store by then.
    let limit = settings.timeout.unwrap_or(NO_DEADLINE);
    let work = |deadline: Instant| {
        let deadline = deadline - process::CONCLUDE;
        let (settings, accounts, live, store) = (&settings, &accounts, &live, &store);
        async move {
            let caller = Account::load().await;
            let roster = accounts.roster(caller, deadline).await?;
            let one = async |ec2: &Ec2Api, place: &Place<'_, Selection>| {
                region(ec2, place.region(), settings, live, place.state(), || place.sent(), deadline).await
            };
            store.run(accounts, &roster, &settings.regions, deadline, one).await
        }
    };
    let ended = process::block_on(limit, &Progress::at(accounts.stage()), work).err();
    live.finish();
    let interrupted = matches!(ended, Some(Error::Signal { .. } | Error::Deadline { .. }));
    match &ended {
        // What was sent stays sent: report each instance as far as it got.
        Some(err) if interrupted => tracing::error!(
            "{err}; so far: {}. Changes sent are not undone; the report below is as far as the run got, and \
             `imds-hop-limit fleet check` with the same selection shows each instance now",
            live.totals()
        ),
        // Before any region's selection could be read (the regions themselves): the report, with no instance.
        Some(err) => tracing::error!("{err}"),
        None => {}
    }
    let mut run =
        gather_accounts(store.settle(accounts.org_wide(), ended.as_ref()), accounts.org_wide(), ended.as_ref());
    if let (true, Some(err), true) = (interrupted, &ended, settings.intent.sends()) {
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
        settings.intent.verb(),
        summary.line(),
        elapsed.as_secs_f64(),
        code as u8
    );
    match settings.output {
        Output::Json => process::emit_json(&report::Json::new(summary, &run, ended.as_ref())),
        Output::Text => process::emit(&report::render(&run, settings.intent == Intent::Check)),
    }
    Ok(code)
}

/// The whole run's report, account by account in the order listed (the credentials' own alone, when the run
/// is not org-wide): each account's instances as far as they got (all of them where its region finished; none
/// where its selection failed) tagged with the account, its regions that failed as a whole
/// (`SettledAccount::region_failures`), and the accounts that could not be worked in.
fn gather_accounts(accounts: Vec<SettledAccount<Selection>>, org_wide: bool, ended: Option<&Error>) -> report::Run {
    let mut run = report::Run { org_wide, ..report::Run::default() };
    for account in accounts {
        run.failures.extend(account.region_failures(|s| s.read, ended));
        let member = account.member;
        let mut regions = Vec::new();
        for Settled { region, state, end } in account.regions {
            if matches!((&end, state.read), (Some(Ok(())), _) | (None, true)) {
                run.outcomes.extend(state.outcomes.into_iter().map(|mut o| {
                    (o.account_id, o.account) = (member.id.clone(), member.label());
                    o
                }));
            }
            regions.push(region);
        }
        run.account_failures.extend(account.failure);
        run.accounts.push(report::AccountRun { member, regions });
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

/// Whether an outcome leaves the run compliant, needing a change, or failed: its exit code.
pub fn exit_code(o: &Outcome) -> ExitCode {
    o.action.exit_code(o.code)
}
