//! `imds-hop-limit defaults check|apply`: the account-level metadata defaults of each region
//! (GetInstanceMetadataDefaults / ModifyInstanceMetadataDefaults), which EC2 uses for instances launched
//! later. The same planner as the agent decides; a region whose defaults an AWS Organizations declarative
//! policy manages is left alone and reported with its own exit code (9).

use crate::accounts::{self, AccountFailure};
use crate::cli::{DefaultsArgs, Output};
use crate::config;
use crate::ec2::{Account, AccountDefaults, Defaults, Ec2Api};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::{AccountId, Region};
use crate::outcome::Action;
use crate::plan::{self, Absent, Change, Field, Intent, MetadataOptions, Plan, Wanted};
use crate::process::{self, Progress};
use crate::regions::Regions;
use crate::retry::Patient;
use crate::runner::{Place, Store};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::Instant;

pub const NOTE: &str = "Defaults apply only to instances launched from now on, never to running or stopped ones \
     (use `imds-hop-limit fleet` for those). An AMI registered with ImdsSupport=v2.0, a launch template's or \
     RunInstances' own metadata options still take precedence over them.";

#[derive(Debug, Clone)]
pub struct Settings {
    /// `check` or `apply` (the defaults have no dry run and nothing to wait for).
    pub intent: Intent,
    pub wanted: Wanted,
    pub regions: Regions,
    pub output: Output,
    pub timeout: Duration,
}

/// How long the defaults command may take when `--timeout` is not given: two calls a region, retried.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Settings {
    pub fn from_args(args: &DefaultsArgs) -> Result<Self> {
        config::check_ec2_endpoints(&config::env_var)?;
        if args.wanted.ipv6_endpoint.is_some() {
            return Err(Error::Usage(
                "the account defaults have no IPv6 endpoint setting: drop --ipv6-endpoint".into(),
            ));
        }
        Ok(Settings {
            intent: config::intent(args.act, false, false)?,
            wanted: config::wanted(&args.wanted)?,
            regions: Regions::from_args(&args.regions),
            output: args.output.output,
            timeout: args.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionDefaults {
    /// The account, where the run is org-wide (`null` otherwise: the credentials' own).
    pub account_id: Option<AccountId>,
    /// How the text names its account: the organization's name for it, else its id.
    #[serde(skip)]
    pub account: Option<String>,
    pub region: Region,
    pub before: Option<MetadataOptions>,
    pub after: Option<MetadataOptions>,
    pub action: Action,
    pub managed_by: Option<crate::ec2::ManagedBy>,
    pub error: Option<String>,
    #[serde(skip)]
    pub code: ExitCode,
}

impl RegionDefaults {
    /// A region not (yet) read: failed until its run says otherwise.
    fn new(region: &Region) -> Self {
        RegionDefaults {
            account_id: None,
            account: None,
            region: region.clone(),
            before: None,
            after: None,
            action: Action::Failed,
            managed_by: None,
            error: None,
            code: ExitCode::Compliant,
        }
    }
}

/// One region: read, decide, change, read back.
pub async fn region<D: Defaults>(ec2: &D, region: &Region, settings: &Settings, deadline: Instant) -> RegionDefaults {
    let mut out = RegionDefaults::new(region);
    if let Err(err) = decide(ec2, &mut out, settings, deadline).await {
        out.action =
            if matches!(err, Error::ManagedElsewhere { .. }) { Action::ManagedElsewhere } else { Action::Failed };
        out.code = err.exit_code();
        out.error = Some(err.to_string());
    }
    out
}

async fn decide<D: Defaults>(ec2: &D, out: &mut RegionDefaults, settings: &Settings, deadline: Instant) -> Result<()> {
    let patient = Patient::new(ec2);
    let before: AccountDefaults = patient.retry("GetInstanceMetadataDefaults", deadline, |ec2| ec2.defaults()).await?;
    out.before = Some(before.options.clone());
    out.managed_by.clone_from(&before.managed_by);
    if before.managed_by == Some(crate::ec2::ManagedBy::DeclarativePolicy) {
        return Err(Error::ManagedElsewhere {
            region: out.region.to_string(),
            managed_by: "an AWS Organizations declarative policy".into(),
            message: before.managed_message,
        });
    }
    let change: Change = match plan::plan(&before.options, &settings.wanted) {
        Plan::Unchanged => {
            out.action = Action::Unchanged;
            return Ok(());
        }
        Plan::Change(change) => change,
    };
    if settings.intent == Intent::Check {
        out.action = Action::NotCompliant;
        out.code = ExitCode::NotCompliant;
        out.after = Some(change.applied_to(&before.options));
        return Ok(());
    }
    patient.retry("ModifyInstanceMetadataDefaults", deadline, |ec2| ec2.modify_defaults(&change)).await?;
    let after = patient.retry("GetInstanceMetadataDefaults", deadline, |ec2| ec2.defaults()).await?;
    out.after = Some(after.options.clone());
    if !change.is_reflected_in(&after.options) {
        return Err(Error::Unexpected(format!(
            "EC2 accepted ModifyInstanceMetadataDefaults in {}, but reads the defaults back as {}",
            out.region,
            describe(&after.options)
        )));
    }
    out.action = Action::Changed;
    Ok(())
}

/// `hop limit 2, endpoint enabled, http tokens required, instance tags no preference`.
pub fn describe(o: &MetadataOptions) -> String {
    o.describe(&Field::DEFAULTS, Absent::NoPreference)
}

pub fn render(regions: &[RegionDefaults], account_failures: &[AccountFailure]) -> String {
    let mut out = String::new();
    for r in regions {
        let before = r.before.as_ref().map_or_else(|| "unknown".into(), describe);
        let line = match r.action {
            Action::Unchanged => format!("as wanted ({before})"),
            // (The defaults have no dry run, no stopped instance and no unverified change: one word each.)
            Action::NotCompliant | Action::WouldChange => format!(
                "not as wanted: {before}; apply would set {}",
                r.after.as_ref().map_or_else(String::new, describe)
            ),
            Action::Changed | Action::Accepted | Action::AppliesAtStart => {
                format!("changed: {before} -> {}", r.after.as_ref().map_or_else(String::new, describe))
            }
            Action::ManagedElsewhere | Action::Failed => {
                format!("{} (exit {})", r.error.as_deref().unwrap_or("failed"), r.code as u8)
            }
        };
        match &r.account {
            Some(account) => _ = writeln!(out, "{} {}: {line}", crate::remote::sanitize(account, 50), r.region),
            None => _ = writeln!(out, "{}: {line}", r.region),
        }
    }
    for f in account_failures {
        let label = f.member.label().unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "account {}: not worked in: {}", crate::remote::sanitize(&label, 50), f.error);
    }
    let _ = writeln!(out, "Note: {NOTE}");
    out
}

pub fn run(args: &DefaultsArgs) -> Result<ExitCode> {
    let settings = Settings::from_args(args)?;
    let accounts = accounts::Settings::from_args(&args.accounts, args.timeout)?;
    // Every account and region with its result as it comes: a run ended by its deadline or a signal still
    // reports every account and region, those not finished with what ended them.
    let store: Store<Option<RegionDefaults>> = Store::default();
    // `--timeout` ends the run at that instant, calls in flight included.
    let work = |deadline: Instant| {
        let (deadline, settings, accounts, store) = (deadline - process::CONCLUDE, &settings, &accounts, &store);
        async move {
            let caller = Account::load().await;
            let roster = accounts.roster(caller, deadline).await?;
            let one = async |ec2: &Ec2Api, place: &Place<'_, Option<RegionDefaults>>| {
                let done = region(ec2, place.region(), settings, deadline).await;
                place.state().replace(Some(done));
                Ok(())
            };
            store.run(accounts, &roster, &settings.regions, deadline, one).await
        }
    };
    let result = process::block_on(settings.timeout, &Progress::at(accounts.stage()), work);
    let error = result.err();
    // Org-wide: every account listed, in order, each with its regions; else the credentials' own account's.
    let (mut regions, mut account_failures) = (Vec::new(), Vec::new());
    for account in store.settle(accounts.org_wide(), error.as_ref()) {
        let member = account.member;
        for settled in account.regions {
            let name = settled.region;
            let mut r = settled.state.unwrap_or_else(|| {
                let mut r = RegionDefaults::new(&name);
                if let Some(err) = &error {
                    r.error = Some(err.to_string());
                    r.code = err.exit_code();
                }
                r
            });
            (r.account_id, r.account) = (member.id.clone(), member.label());
            regions.push(r);
        }
        account_failures.extend(account.failure);
    }
    let code = match &error {
        // Ended by its deadline or a signal, or before any region could be read (the regions themselves).
        Some(err) => err.exit_code(),
        None => ExitCode::merge(regions.iter().map(|r| r.code).chain(account_failures.iter().map(|f| f.code))),
    };
    if let Some(err) = &error {
        tracing::error!("{err}");
    }
    for r in &regions {
        if let Some(err) = &r.error {
            tracing::error!("{}{}: {err}", r.account.as_deref().map(|a| format!("{a} ")).unwrap_or_default(), r.region);
        }
    }
    match settings.output {
        Output::Json => process::emit_json(&json(&regions, &account_failures, code, error.as_ref())),
        Output::Text if !regions.is_empty() || !account_failures.is_empty() => {
            process::emit(&render(&regions, &account_failures))
        }
        Output::Text => {}
    }
    Ok(code)
}

/// The one JSON shape of a defaults run, failures included: `regions` (one entry per account and region;
/// `[]` when none were read), `account_failures` (the accounts an org-wide run could not work in, else
/// `[]`), `note`, `exit_code`, and `error` (what ended the run before it finished, else `null`).
fn json(
    regions: &[RegionDefaults],
    account_failures: &[AccountFailure],
    code: ExitCode,
    ended: Option<&Error>,
) -> serde_json::Value {
    serde_json::json!({
        "regions": regions,
        "account_failures": account_failures,
        "note": NOTE,
        "exit_code": code as u8,
        "error": ended.map(Error::to_string),
    })
}

/// The report of a defaults run that ended before it could read anything (its settings refused).
pub fn failed(err: &Error) -> serde_json::Value {
    json(&[], &[], err.exit_code(), Some(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ec2::ManagedBy;
    use crate::fakes::{FakeAccount, config};
    use crate::plan::{HopLimit, State, Toggle};

    const APPLY: Intent = Intent::Apply { wait: false };

    fn settings(intent: Intent) -> Settings {
        Settings {
            intent,
            wanted: config(intent).wanted,
            regions: Regions::Given(vec!["us-west-2".parse().unwrap()]),
            output: Output::Text,
            timeout: Duration::from_secs(10),
        }
    }

    fn hop(n: i64) -> MetadataOptions {
        MetadataOptions { hop_limit: HopLimit::new(n), http_endpoint: Some(Toggle::Enabled), ..Default::default() }
    }

    async fn one(ec2: &FakeAccount, intent: Intent) -> RegionDefaults {
        region(ec2, &"us-west-2".into(), &settings(intent), Instant::now() + Duration::from_secs(10)).await
    }

    #[tokio::test(start_paused = true)]
    async fn check_then_apply_then_nothing_left_to_do() {
        let ec2 = FakeAccount::with(0, 1);
        ec2.defaults.borrow_mut().options = hop(1);
        let r = one(&ec2, Intent::Check).await;
        assert_eq!((r.action, r.code), (Action::NotCompliant, ExitCode::NotCompliant));
        assert_eq!(r.after, Some(hop(2)), "what apply would set");
        assert_eq!(ec2.count("ModifyInstanceMetadataDefaults", false), 0);
        let r = one(&ec2, APPLY).await;
        assert_eq!((r.action, r.code), (Action::Changed, ExitCode::Compliant));
        assert_eq!((r.before, r.after), (Some(hop(1)), Some(hop(2))), "read back after the change");
        let r = one(&ec2, APPLY).await;
        assert_eq!(r.action, Action::Unchanged);
        assert_eq!(ec2.count("ModifyInstanceMetadataDefaults", false), 1);
    }

    /// "No preference" (unset) is not compliant: instances would launch with the AMI's or EC2's own default.
    #[tokio::test(start_paused = true)]
    async fn no_preference_is_set() {
        let ec2 = FakeAccount::with(0, 1);
        let r = one(&ec2, APPLY).await;
        assert_eq!(r.action, Action::Changed);
        assert_eq!(ec2.defaults.borrow().options, hop(2));
    }

    #[tokio::test(start_paused = true)]
    async fn defaults_a_declarative_policy_manages_are_left_alone_with_exit_9() {
        let ec2 = FakeAccount::with(0, 1);
        *ec2.defaults.borrow_mut() = AccountDefaults {
            options: hop(1),
            managed_by: Some(ManagedBy::DeclarativePolicy),
            managed_message: Some("set by the organization".into()),
        };
        let r = one(&ec2, APPLY).await;
        assert_eq!((r.action, r.code as u8), (Action::ManagedElsewhere, 9));
        assert!(r.error.as_deref().is_some_and(|e| e.contains("declarative policy")), "{:?}", r.error);
        assert_eq!(ec2.count("ModifyInstanceMetadataDefaults", false), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_that_does_not_read_back_fails_the_region() {
        let mut ec2 = FakeAccount::with(0, 1);
        ec2.defaults.borrow_mut().options = hop(1);
        ec2.defaults_read_back = Some(MetadataOptions { state: Some(State::Applied), ..hop(1) });
        let r = one(&ec2, APPLY).await;
        assert_eq!((r.action, r.code), (Action::Failed, ExitCode::Unexpected));
        assert!(r.error.as_deref().is_some_and(|e| e.contains("reads the defaults back as hop limit 1")), "{r:?}");
    }

    #[test]
    fn the_text_report_is_golden() {
        let regions = [
            RegionDefaults {
                before: Some(hop(1)),
                after: Some(hop(2)),
                action: Action::Changed,
                ..RegionDefaults::new(&"us-west-2".into())
            },
            RegionDefaults {
                error: Some("refused".into()),
                code: ExitCode::NotAuthorized,
                ..RegionDefaults::new(&"eu-west-1".into())
            },
        ];
        let expected = format!(
            "us-west-2: changed: hop limit 1, endpoint enabled, http tokens no preference, instance tags no preference \
             -> hop limit 2, endpoint enabled, http tokens no preference, instance tags no preference\n\
             eu-west-1: refused (exit 5)\n\
             Note: {NOTE}\n"
        );
        assert_eq!(render(&regions, &[]), expected);
    }
}
