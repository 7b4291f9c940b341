//! The one runner of the commands that work over accounts and regions (fleet, defaults): the accounts of the
//! roster side by side under a bound, each account's regions side by side within it, and each region's work
//! given its slot in the one store of results (`Store`). The store lives outside the run's future, so that a
//! run its deadline or a signal ends (the future dropped) still reports every account and region as far as it
//! got. A command gives only its per-region work and reads the store when the run has ended.
//!
//! What bounds a run: at most `--accounts-at-once` accounts are *sending* at a time (entering the account,
//! reading, changing); an account gives its turn to the next one as soon as every region of it has sent its
//! changes (`Place::sent`), and goes on verifying them beside the next accounts. At most `ALIVE` times that many
//! accounts are in the run at all, verifying included, which bounds sockets and memory; within an account,
//! `regions::AT_ONCE` regions at a time. EC2's budgets are per account and region, so every account-region is
//! paced on its own whatever the bounds.

use crate::accounts::{AccountFailure, Member, Roster, Settings};
use crate::ec2::{Account, Ec2Api};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::Region;
use crate::regions::{AT_ONCE, Regions};
use futures_util::StreamExt;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

/// How many accounts may be in a run at once, verifying included, per account allowed to be sending.
pub const ALIVE: usize = 4;

/// Every account of a run in the order listed, each with its regions once resolved, and each region with
/// what its work has done so far (`S`: the command's own) and how it ended.
pub struct Store<S> {
    accounts: RefCell<Vec<Rc<AccountSlot<S>>>>,
}

impl<S> Default for Store<S> {
    fn default() -> Self {
        Store { accounts: RefCell::default() }
    }
}

/// One account of a run.
pub struct AccountSlot<S> {
    member: Member,
    /// Its own failure: not entered, or its regions not resolved (org-wide runs; else it is the run's).
    failure: RefCell<Option<Error>>,
    /// Its regions, once resolved (`None` before).
    regions: RefCell<Option<Vec<Rc<Slot<S>>>>>,
    /// Its turn among the accounts sending at once, held until every region has sent its changes.
    turn: RefCell<Option<OwnedSemaphorePermit>>,
}

/// One region of an account: what the command's work has done there so far, and how it ended.
pub struct Slot<S> {
    region: Region,
    state: RefCell<S>,
    /// `None` while the work runs (or when the run ended first); else its end.
    end: RefCell<Option<Result<()>>>,
    /// Every change of the region has been sent (or the work ended).
    sent: Cell<bool>,
}

/// What a region's work is given besides its EC2 client: its slot, and a way to give its account's turn on.
pub struct Place<'a, S> {
    account: &'a AccountSlot<S>,
    slot: &'a Slot<S>,
}

impl<S> Place<'_, S> {
    pub fn region(&self) -> &Region {
        &self.slot.region
    }

    /// What the work has done so far: it writes here as it goes, so that an interrupted run still has it.
    pub fn state(&self) -> &RefCell<S> {
        &self.slot.state
    }

    /// Every change of this region has been sent: what is left is verifying them. Once every region of the
    /// account says so (or has ended), the next account may start.
    pub fn sent(&self) {
        self.slot.sent.set(true);
        self.account.release_if_sent();
    }
}

impl<S> AccountSlot<S> {
    fn release_if_sent(&self) {
        let all_sent = self.regions.borrow().as_ref().is_some_and(|regions| regions.iter().all(|r| r.sent.get()));
        if all_sent {
            self.turn.take();
        }
    }
}

/// A region whose work failed as a whole (its listing not read, say), or that the run ended before it read
/// anything: none of its items are in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionFailure {
    /// The account, where the run is org-wide (`null` otherwise).
    pub account_id: Option<crate::ids::AccountId>,
    #[serde(skip)]
    pub account: Option<String>,
    pub region: Region,
    pub error: String,
    #[serde(skip)]
    pub code: ExitCode,
}

/// The places a run could not work in, for its log's last line: `, N region(s) failed, N account(s) failed`,
/// each only when not zero (empty when both are).
pub fn places_failed(regions: usize, accounts: usize) -> String {
    let mut said = String::new();
    for (n, what) in [(regions, "region"), (accounts, "account")] {
        match n {
            0 => {}
            1 => said.push_str(&format!(", 1 {what} failed")),
            n => said.push_str(&format!(", {n} {what}s failed")),
        }
    }
    said
}

/// What a place the run ended before says (`not reached`, `not read`), with what ended it, and its exit code.
pub fn ended_before(what: &str, ended: Option<&Error>) -> (String, ExitCode) {
    (
        format!("{what} before the run ended{}", ended.map(|e| format!(": {e}")).unwrap_or_default()),
        ended.map_or(ExitCode::Unexpected, Error::exit_code),
    )
}

/// A region of the settled run: what its work did, and how it ended (`None`: the run ended first).
pub struct Settled<S> {
    pub region: Region,
    pub state: S,
    pub end: Option<Result<()>>,
}

/// An account of the settled run: its regions (none where it was not entered), and its failure, where it
/// could not be worked in.
pub struct SettledAccount<S> {
    pub member: Member,
    pub regions: Vec<Settled<S>>,
    pub failure: Option<AccountFailure>,
}

impl<S> SettledAccount<S> {
    /// The account's regions whose work left nothing to report, each as its failure (the account named on it):
    /// the work's own error, or, where the run ended before the work had read its listing (`read` says whether
    /// it had), what ended the run. A region where EC2 found no credentials while the same credentials worked in
    /// another region of the account is named as perhaps not enabled. Each region's own error is logged, with
    /// the account where it has a name.
    pub fn region_failures(&self, read: impl Fn(&S) -> bool, ended: Option<&Error>) -> Vec<RegionFailure> {
        let some_region_worked = self.regions.iter().any(|r| matches!(r.end, Some(Ok(()))));
        let account = self.member.label();
        let prefix = account.as_ref().map(|a| format!("{a} ")).unwrap_or_default();
        let mut failures = Vec::new();
        for Settled { region, state, end } in &self.regions {
            let (error, code) = match (end, read(state)) {
                (Some(Err(err)), _) => {
                    let mut error = err.to_string();
                    // The same credentials worked elsewhere: EC2 refuses them in a region the account has not
                    // enabled.
                    if some_region_worked && matches!(err, Error::NoCredentials { .. }) {
                        error.push_str(&format!(
                            "; the same credentials worked in another region, so {region} may not be enabled for \
                             this account (--all-regions takes only the enabled ones)"
                        ));
                    }
                    tracing::error!("{prefix}{region}: {error}");
                    (error, err.exit_code())
                }
                // (A run that ended by itself has every region's end: `ended` is there.)
                (None, false) => ended_before("not read", ended),
                (Some(Ok(())), _) | (None, true) => continue,
            };
            let (account_id, account) = (self.member.id.clone(), account.clone());
            failures.push(RegionFailure { account_id, account, region: region.clone(), error, code });
        }
        failures
    }
}

impl<S: Default> Store<S> {
    /// `work` in every region of every account of `roster`, as `settings` and `regions` say; every account
    /// and region goes on the store first, each result as it comes. Not org-wide: the credentials' own
    /// account, whose failure (its regions not resolved) is the run's. Org-wide: an account's failure (not
    /// entered, regions not resolved) is its own, and the others go on.
    pub async fn run(
        &self,
        settings: &Settings,
        roster: &Roster,
        regions: &Regions,
        deadline: Instant,
        work: impl AsyncFn(&Ec2Api, &Place<'_, S>) -> Result<()>,
    ) -> Result<()> {
        let accounts: Vec<Rc<AccountSlot<S>>> = roster
            .members
            .iter()
            .map(|member| {
                Rc::new(AccountSlot {
                    member: member.clone(),
                    failure: RefCell::default(),
                    regions: RefCell::default(),
                    turn: RefCell::default(),
                })
            })
            .collect();
        self.accounts.replace(accounts.clone());
        let (work, org_wide) = (&work, settings.org_wide());
        if !org_wide {
            let account = roster.caller.clone();
            return in_account(&account, &accounts[0], regions, deadline, work).await;
        }
        let turns = Arc::new(Semaphore::new(settings.at_once.max(1)));
        futures_util::stream::iter(accounts)
            .then(|slot| {
                let turns = turns.clone();
                async move { (slot, turns.acquire_owned().await.ok()) }
            })
            .map(|(slot, turn)| {
                slot.turn.replace(turn);
                // Every line logged while working in the account says which it is (the table and JSON say it too).
                let span = tracing::info_span!("account", account = %slot.member.label().unwrap_or_default());
                async move {
                    let result = match settings.enter(roster, &slot.member, deadline).await {
                        Ok(account) => in_account(&account, &slot, regions, deadline, work).await,
                        Err(err) => Err(err),
                    };
                    if let Err(err) = result {
                        tracing::error!("could not work in the account: {err}");
                        slot.failure.replace(Some(err));
                    }
                    slot.turn.take();
                }
                .instrument(span)
            })
            .buffer_unordered(settings.at_once.max(1).saturating_mul(ALIVE))
            .collect::<()>()
            .await;
        Ok(())
    }
}

/// `work` in every region of one account, side by side; fails only when the regions cannot be resolved.
async fn in_account<S: Default>(
    account: &Account,
    slot: &AccountSlot<S>,
    regions: &Regions,
    deadline: Instant,
    work: &impl AsyncFn(&Ec2Api, &Place<'_, S>) -> Result<()>,
) -> Result<()> {
    let names = regions.resolve(account, deadline).await?;
    tracing::debug!(regions = ?names, "regions");
    let slots: Vec<Rc<Slot<S>>> = names
        .into_iter()
        .map(|region| {
            Rc::new(Slot { region, state: RefCell::default(), end: RefCell::default(), sent: Cell::new(false) })
        })
        .collect();
    slot.regions.replace(Some(slots.clone()));
    futures_util::stream::iter(slots)
        .map(|region| async move {
            let ec2 = account.ec2(&region.region);
            let end = work(&ec2, &Place { account: slot, slot: &region }).await;
            region.end.replace(Some(end));
            region.sent.set(true);
            slot.release_if_sent();
        })
        .buffer_unordered(AT_ONCE)
        .collect::<()>()
        .await;
    Ok(())
}

impl<S> Store<S> {
    /// Each region's state as far as its work has got, for a live view while the run goes on: a state being
    /// written at this very instant is left out of this look.
    pub fn each(&self, mut look: impl FnMut(&S)) {
        let Ok(accounts) = self.accounts.try_borrow() else { return };
        for account in accounts.iter() {
            let Ok(regions) = account.regions.try_borrow() else { continue };
            for slot in regions.iter().flatten() {
                if let Ok(state) = slot.state.try_borrow() {
                    look(&state);
                }
            }
        }
    }
}

impl<S: Default> Store<S> {
    /// Every account of the run in order, each with its regions and their states, and its failure where it
    /// could not be worked in: its own (org-wide: not entered, regions not resolved), or, with no region
    /// resolved when the run ended (`ended`), not reached. Not org-wide, the credentials' own account's failure
    /// was the run's, and is not repeated here.
    pub fn settle(&self, org_wide: bool, ended: Option<&Error>) -> Vec<SettledAccount<S>> {
        self.accounts
            .take()
            .into_iter()
            .map(|slot| {
                let regions = slot.regions.take();
                let failure = match (slot.failure.take(), &regions) {
                    (Some(err), _) => Some((err.to_string(), err.exit_code())),
                    (None, None) if org_wide => Some(ended_before("not reached", ended)),
                    _ => None,
                };
                let member = slot.member.clone();
                let failure = failure.map(|(error, code)| AccountFailure { member: member.clone(), error, code });
                let regions = regions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| Settled { region: r.region.clone(), state: r.state.take(), end: r.end.take() })
                    .collect();
                SettledAccount { member, regions, failure }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_that_failed_are_said_only_when_there_are_some() {
        assert_eq!(places_failed(0, 0), "");
        assert_eq!(places_failed(1, 0), ", 1 region failed");
        assert_eq!(places_failed(2, 3), ", 2 regions failed, 3 accounts failed");
        assert_eq!(places_failed(0, 1), ", 1 account failed");
    }
}
