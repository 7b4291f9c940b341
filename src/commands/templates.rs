//! `imds-hop-limit templates check|apply`: the launch templates new instances come from. Per region: list the
//! templates (DescribeLaunchTemplates, pages of 200), read every default version in one listing
//! (DescribeLaunchTemplateVersions `$Default`), decide with the same planner as for instances (a template that
//! leaves the hop limit unset is judged by the region's account default, read once and only then), and for
//! each template it may change, one new version from the default one, read back and compared, made the default.
//! Accounts and regions on the one runner, as `fleet` and `defaults`.
//!
//! Never changed, only explained: a template Karpenter or EKS owns (by its tags; Karpenter overwrites a change
//! made there), and one whose `$Latest` is not its default version (a new version would also become `$Latest`
//! and change what groups on `$Latest` launch: its owner chooses).

use crate::accounts::{self, AccountFailure};
use crate::cli::{Output, TemplatesArgs};
use crate::config;
use crate::ec2::failures::Service;
use crate::ec2::groups::{Group, Groups};
use crate::ec2::templates::{LaunchTemplate, TemplateVersion, Templates, is_template_id};
use crate::ec2::{Account, Defaults, Ec2Api};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::ids::{AccountId, Region};
use crate::plan::{self, Absent, Field, HopLimit, HttpTokens, Intent, MetadataOptions, Plan, Toggle, Wanted};
use crate::process::{self, Progress};
use crate::regions::Regions;
use crate::retry::{Patient, pages};
use crate::runner::{Place, RegionFailure, Store};
use crate::source::{Launcher, Source};
use crate::wait::patience;
use futures_util::StreamExt;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `check`, `apply --dry-run` or `apply` (a template's version has nothing to wait for: it is read back at
    /// once).
    pub intent: Intent,
    pub wanted: Wanted,
    pub regions: Regions,
    /// `--launch-template` by id, and by name (none of either: every template).
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub timeout: Duration,
    pub output: Output,
}

/// How long a templates run may take when `--timeout` is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Changes in flight per region: each is three calls (create, read back, make default).
const IN_FLIGHT: usize = 4;
/// The most pages one listing reads: 1,000 pages of 200, far more templates than any account holds.
const MAX_PAGES: usize = 1_000;

impl Settings {
    pub fn from_args(args: &TemplatesArgs) -> Result<Self> {
        config::check_ec2_endpoints(&config::env_var)?;
        let (mut ids, mut names) = (Vec::new(), Vec::new());
        for t in &args.launch_template {
            let t = t.trim();
            if t.starts_with("lt-") {
                if !is_template_id(t) {
                    return Err(Error::Usage(format!("--launch-template {t:?}: not a launch template id (lt-...)")));
                }
                ids.push(t.to_string());
            } else if (3..=128).contains(&t.len())
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"()./_-".contains(&b))
            {
                names.push(t.to_string());
            } else {
                return Err(Error::Usage(format!(
                    "--launch-template {:?}: not a launch template id (lt-...) or name (3 to 128 of A-Z a-z 0-9 ( ) . / \
                     _ -)",
                    crate::remote::sanitize(t, 40)
                )));
            }
        }
        ids.sort();
        ids.dedup();
        names.sort();
        names.dedup();
        Ok(Settings {
            intent: config::intent(args.act, args.dry_run, false)?,
            wanted: config::wanted(&args.wanted)?,
            regions: Regions::from_args(&args.regions),
            ids,
            names,
            timeout: args.timeout.unwrap_or(DEFAULT_TIMEOUT),
            output: args.output.output,
        })
    }
}

/// What the run did with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateAction {
    /// Its default version launches with the wanted options already.
    Unchanged,
    /// `check`: it needs a change.
    NotCompliant,
    /// `--dry-run`: apply would change it.
    WouldChange,
    /// A new version, read back equal to its source but for the metadata options, is the default now.
    Changed,
    /// Not compliant, and not the tool's to change: Karpenter or EKS owns it, or its `$Latest` is not its
    /// default; `fix` says what its owner can do.
    Left,
    Failed,
}

/// Where the hop limit a template's instances get comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HopFrom {
    /// The template sets it.
    Template,
    /// The template leaves it unset: the region's account default applies.
    AccountDefault,
    /// Neither sets it: EC2's own default (1; 2 for an AMI registered with ImdsSupport v2.0).
    Ec2Default,
}

/// One template's entry in the report.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateOutcome {
    pub account_id: Option<AccountId>,
    #[serde(skip)]
    pub account: Option<String>,
    pub region: Region,
    pub launch_template_id: String,
    pub launch_template_name: String,
    pub default_version: i64,
    pub latest_version: i64,
    /// The version read: the default.
    pub version: Option<i64>,
    /// As the version sets them (`null`: not set).
    pub hop_limit: Option<HopLimit>,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<Toggle>,
    /// The hop limit its instances get, and where it comes from.
    pub effective_hop_limit: Option<HopLimit>,
    pub hop_limit_from: Option<HopFrom>,
    /// The launcher that owns it (Karpenter, EKS), by its tags; `null`: nobody but its account.
    pub managed_by: Option<Source>,
    /// The Auto Scaling groups that launch from it, with the version each asks for; `null` where the groups
    /// could not be read.
    pub used_by: Option<Vec<Group>>,
    pub action: TemplateAction,
    /// The version `apply` made the default.
    pub new_version: Option<i64>,
    /// For a template left as it is: why, and what its owner can do.
    pub fix: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub code: ExitCode,
}

impl TemplateOutcome {
    fn new(t: &LaunchTemplate, region: &Region) -> Self {
        TemplateOutcome {
            account_id: None,
            account: None,
            region: region.clone(),
            launch_template_id: t.id.clone(),
            launch_template_name: t.name.clone(),
            default_version: t.default_version,
            latest_version: t.latest_version,
            version: None,
            hop_limit: None,
            http_tokens: None,
            http_endpoint: None,
            effective_hop_limit: None,
            hop_limit_from: None,
            managed_by: owner(&t.owner).then(|| t.owner.clone()),
            used_by: None,
            action: TemplateAction::Failed,
            new_version: None,
            fix: None,
            error: None,
            code: ExitCode::Compliant,
        }
    }

    fn fail(&mut self, err: &Error) {
        self.action = TemplateAction::Failed;
        self.code = err.exit_code();
        self.error = Some(err.to_string());
    }
}

/// Whether a template's tags say a launcher owns it: Karpenter (`karpenter.sh/*`, `karpenter.k8s.aws/*`) or
/// an EKS managed node group (`eks:*`).
fn owner(source: &Source) -> bool {
    matches!(source.kind, Some(Launcher::Karpenter | Launcher::EksNodegroup))
}

/// A region's templates as far as its run got (the runner's slot).
#[derive(Debug, Default)]
pub struct RegionTemplates {
    pub read: bool,
    pub templates: Vec<TemplateOutcome>,
}

/// The options a template's instances get: what the version sets, else the account default, else EC2's own
/// (the endpoint enabled, the hop limit 1).
fn effective(set: &MetadataOptions, default: Option<&MetadataOptions>) -> (MetadataOptions, HopFrom) {
    let from = match (set.hop_limit, default.and_then(|d| d.hop_limit)) {
        (Some(_), _) => HopFrom::Template,
        (None, Some(_)) => HopFrom::AccountDefault,
        (None, None) => HopFrom::Ec2Default,
    };
    let fallback = default.cloned().unwrap_or_default();
    let mut options = MetadataOptions { state: None, ..set.or(&fallback) };
    options.hop_limit = options.hop_limit.or(HopLimit::new(1));
    options.http_endpoint = options.http_endpoint.or(Some(Toggle::Enabled));
    (options, from)
}

/// The planner's answer for a template: `None` where its instances launch as wanted; else the whole metadata
/// options of the new version: the version's own, with only the fields that must change changed (a field it
/// leaves unset stays unset, HttpTokens above all).
fn decide(set: &MetadataOptions, default: Option<&MetadataOptions>, wanted: &Wanted) -> Option<MetadataOptions> {
    let (effective, _) = effective(set, default);
    match plan::plan(&effective, wanted) {
        Plan::Unchanged => None,
        Plan::Change(change) => Some(MetadataOptions { state: None, ..change.applied_to(set) }),
    }
}

/// What a template left as it is needs, said to its owner.
fn left_because(t: &LaunchTemplate, wanted: HopLimit) -> String {
    if owner(&t.owner) {
        return format!("owned by {}: {}", t.owner.label(), t.owner.fix(wanted));
    }
    format!(
        "$Latest (version {}) is not its default (version {}): a new version would also become $Latest and change \
         what groups on $Latest launch. Its owner chooses: make the version to launch the default, then run \
         `imds-hop-limit templates apply --launch-template {}` again",
        t.latest_version, t.default_version, t.id
    )
}

/// What the owner of a group pinned to a version number can do: point it at `$Default`, then replace its instances
/// (not taken here: it replaces instances).
fn pinned_step(g: &Group, template: &str) -> String {
    let named = !g.name.is_empty() && g.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let group = if named { g.name.as_str() } else { "GROUP" };
    format!(
        "group {} launches version {} of {template}, not the default: `aws autoscaling update-auto-scaling-group \
         --auto-scaling-group-name {group} --launch-template 'LaunchTemplateId={template},Version=$Default'`, then \
         `aws autoscaling start-instance-refresh --auto-scaling-group-name {group}` to replace its instances (not \
         taken: it replaces instances)",
        g.name, g.version
    )
}

/// One region's run, its templates written into `slot` as they come.
pub async fn region<E: Templates + Defaults + Groups>(
    ec2: &E,
    region: &Region,
    settings: &Settings,
    slot: &RefCell<RegionTemplates>,
    deadline: Instant,
) -> Result<()> {
    let patient = &Patient::new(ec2);
    let until = || patience(deadline);
    let (ids, names) = (&settings.ids, &settings.names);
    // Ids and names in listings of their own: one request names templates one way.
    let none: &[String] = &[];
    let listings: Vec<(&[String], &[String])> = match (ids.is_empty(), names.is_empty()) {
        (true, true) => vec![(none, none)],
        (false, true) => vec![(ids, none)],
        (true, false) => vec![(none, names)],
        (false, false) => vec![(ids, none), (none, names)],
    };
    let mut templates: Vec<LaunchTemplate> = Vec::new();
    for (ids, names) in listings {
        let mut listed = Vec::new();
        pages(Service::Ec2, "DescribeLaunchTemplates", MAX_PAGES, &mut listed, |next| async move {
            let page = patient
                .retry("DescribeLaunchTemplates", until(), |ec2| ec2.templates(ids, names, next.as_deref()))
                .await?;
            Ok((page.templates, page.next))
        })
        .await?;
        // A template named both by id and by name is listed once.
        for t in listed {
            if !templates.iter().any(|known| known.id == t.id) {
                templates.push(t);
            }
        }
    }
    let named = !ids.is_empty() || !names.is_empty();
    let mut versions: HashMap<String, TemplateVersion> = HashMap::new();
    if named {
        // One template a call: DescribeLaunchTemplateVersions takes one template id.
        for t in &templates {
            let id = t.id.as_str();
            let page = patient
                .retry("DescribeLaunchTemplateVersions", until(), |ec2| ec2.default_versions(Some(id), None))
                .await?;
            versions.extend(page.versions.into_iter().map(|v| (v.template_id.clone(), v)));
        }
    } else if !templates.is_empty() {
        let mut all = Vec::new();
        pages(Service::Ec2, "DescribeLaunchTemplateVersions", MAX_PAGES, &mut all, |next| async move {
            let page = patient
                .retry("DescribeLaunchTemplateVersions", until(), |ec2| ec2.default_versions(None, next.as_deref()))
                .await?;
            Ok((page.versions, page.next))
        })
        .await?;
        versions.extend(all.into_iter().map(|v| (v.template_id.clone(), v)));
    }
    // The account default, read only when a template leaves the hop limit unset.
    let unset = templates.iter().any(|t| versions.get(&t.id).is_some_and(|v| v.options.hop_limit.is_none()));
    let default = if unset {
        Some(patient.retry("GetInstanceMetadataDefaults", until(), |ec2| ec2.defaults()).await?.options)
    } else {
        None
    };
    // The groups that launch from them (read only where there are templates); a refusal leaves `used_by` unknown.
    let groups = if templates.is_empty() {
        Some(Vec::new())
    } else {
        let mut read = Vec::new();
        let listed =
            pages(Service::AutoScaling, "DescribeAutoScalingGroups", MAX_PAGES, &mut read, |next| async move {
                let page =
                    patient.retry("DescribeAutoScalingGroups", until(), |ec2| ec2.groups(next.as_deref())).await?;
                Ok((page.groups, page.next))
            })
            .await;
        listed
            .map(|()| read)
            .map_err(|err| tracing::warn!("{region}: the Auto Scaling groups were not read ({err}): used_by is null"))
            .ok()
    };
    let wanted = &settings.wanted;
    let mut to_change = Vec::new();
    let mut outcomes = Vec::with_capacity(templates.len());
    for t in &templates {
        let mut o = TemplateOutcome::new(t, region);
        o.used_by = groups.as_ref().map(|all| all.iter().filter(|g| g.launches(&t.id, &t.name)).cloned().collect());
        let Some(v) = versions.get(&t.id) else {
            o.fail(&Error::Unexpected(format!(
                "ec2:DescribeLaunchTemplateVersions did not give the default version ({}) of {}",
                t.default_version, t.id
            )));
            outcomes.push(o);
            continue;
        };
        let (now, from) = effective(&v.options, default.as_ref());
        (o.version, o.hop_limit, o.http_tokens, o.http_endpoint) =
            (Some(v.version), v.options.hop_limit, v.options.http_tokens, v.options.http_endpoint);
        (o.effective_hop_limit, o.hop_limit_from) = (now.hop_limit, Some(from));
        match decide(&v.options, default.as_ref(), wanted) {
            None => o.action = TemplateAction::Unchanged,
            Some(_) if settings.intent == Intent::Check => {
                o.action = TemplateAction::NotCompliant;
                o.code = ExitCode::NotCompliant;
                if owner(&t.owner) || t.latest_version != t.default_version {
                    o.fix = Some(left_because(t, wanted.hop_limit));
                }
            }
            Some(_) if owner(&t.owner) || t.latest_version != t.default_version => {
                o.action = TemplateAction::Left;
                o.fix = Some(left_because(t, wanted.hop_limit));
            }
            Some(_) if settings.intent == Intent::DryRun => {
                o.action = TemplateAction::WouldChange;
                o.code = ExitCode::NotCompliant;
            }
            Some(options) => to_change.push((outcomes.len(), v.clone(), options)),
        }
        // Groups pinned to a version number do not launch a new default: their owner's next step.
        if o.action != TemplateAction::Unchanged {
            for g in o.used_by.iter_mut().flatten().filter(|g| g.pinned()) {
                g.next_step = Some(pinned_step(g, &t.id));
            }
        }
        outcomes.push(o);
    }
    slot.replace(RegionTemplates { read: true, templates: outcomes });
    let one = |(index, source, options): (usize, TemplateVersion, MetadataOptions)| async move {
        let token = client_token(&source, &options);
        let made = async {
            let version = patient
                .retry("CreateLaunchTemplateVersion", until(), |ec2| ec2.new_version(&source, &options, &token))
                .await?;
            let id = source.template_id.as_str();
            patient.retry("ModifyLaunchTemplate", until(), |ec2| ec2.make_default(id, version)).await?;
            Ok::<_, Error>(version)
        };
        let made = made.await;
        (index, options, made)
    };
    let mut results = futures_util::stream::iter(to_change).map(one).buffer_unordered(IN_FLIGHT);
    while let Some((index, options, result)) = results.next().await {
        let mut slot = slot.borrow_mut();
        let o = &mut slot.templates[index];
        match result {
            // The new default version's options, as read back equal to what was asked.
            Ok(version) => {
                (o.action, o.new_version, o.version) = (TemplateAction::Changed, Some(version), Some(version));
                // The newest version, made the default: $Latest and $Default both.
                (o.default_version, o.latest_version) = (version, version);
                (o.hop_limit, o.http_tokens, o.http_endpoint) =
                    (options.hop_limit, options.http_tokens, options.http_endpoint);
                (o.effective_hop_limit, o.hop_limit_from) = (options.hop_limit, Some(HopFrom::Template));
            }
            Err(err) => {
                tracing::error!("{region} {}: {err}", o.launch_template_id);
                o.fail(&err);
            }
        }
    }
    Ok(())
}

/// The same request makes one version however often it is retried: EC2 keeps a client token's answer. From the
/// template, its source version and the options asked for.
fn client_token(source: &TemplateVersion, options: &MetadataOptions) -> String {
    let o = options.describe(&Field::ALL, Absent::NotSet).replace([' ', ','], "");
    let token = format!("imds-hop-limit-{}-{}-{o}", source.template_id, source.version);
    token.chars().filter(char::is_ascii_graphic).take(128).collect()
}

pub fn run(args: &TemplatesArgs) -> Result<ExitCode> {
    let settings = Settings::from_args(args)?;
    let accounts = accounts::Settings::from_args(&args.accounts, args.timeout)?;
    let store: Store<RegionTemplates> = Store::default();
    let work = |deadline: Instant| {
        let (deadline, settings, accounts, store) = (deadline - process::CONCLUDE, &settings, &accounts, &store);
        async move {
            let caller = Account::load().await;
            let roster = accounts.roster(caller, deadline).await?;
            let one = async |ec2: &Ec2Api, place: &Place<'_, RegionTemplates>| {
                let result = region(ec2, place.region(), settings, place.state(), deadline).await;
                place.sent();
                result
            };
            store.run(accounts, &roster, &settings.regions, deadline, one).await
        }
    };
    let ended = process::block_on(settings.timeout, &Progress::at(accounts.stage()), work).err();
    let (mut templates, mut region_failures, mut account_failures) = (Vec::new(), Vec::new(), Vec::new());
    for account in store.settle(accounts.org_wide(), ended.as_ref()) {
        region_failures.extend(account.region_failures(|s| s.read, ended.as_ref()));
        let member = account.member;
        for settled in account.regions {
            for mut t in settled.state.templates {
                (t.account_id, t.account) = (member.id.clone(), member.label());
                templates.push(t);
            }
        }
        account_failures.extend(account.failure);
    }
    let code = match &ended {
        Some(err) => err.exit_code(),
        None => ExitCode::merge(
            templates
                .iter()
                .map(|t| t.code)
                .chain(region_failures.iter().map(|f| f.code))
                .chain(account_failures.iter().map(|f| f.code)),
        ),
    };
    if let Some(err) = &ended {
        tracing::error!("{err}");
    }
    let summary = Summary::of(&templates, &region_failures, &account_failures, code);
    tracing::info!("templates {}: {}; exit {}", settings.intent.verb(), summary.line(), code as u8);
    match settings.output {
        Output::Json => process::emit_json(&json(&templates, summary, ended.as_ref())),
        Output::Text => process::emit(&render(&templates, &region_failures, &account_failures, accounts.org_wide())),
    }
    Ok(code)
}

/// The counts of a run, as the JSON and the log's last line give them.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub templates: usize,
    pub compliant: usize,
    pub not_compliant: usize,
    pub changed: usize,
    pub left: usize,
    pub failed: usize,
    pub region_failures: Vec<RegionFailure>,
    pub account_failures: Vec<AccountFailure>,
    pub exit_code: u8,
}

impl Summary {
    fn of(
        templates: &[TemplateOutcome],
        region_failures: &[RegionFailure],
        account_failures: &[AccountFailure],
        code: ExitCode,
    ) -> Self {
        let count = |a: &[TemplateAction]| templates.iter().filter(|t| a.contains(&t.action)).count();
        Summary {
            templates: templates.len(),
            compliant: count(&[TemplateAction::Unchanged]),
            not_compliant: count(&[TemplateAction::NotCompliant, TemplateAction::WouldChange]),
            changed: count(&[TemplateAction::Changed]),
            left: count(&[TemplateAction::Left]),
            failed: count(&[TemplateAction::Failed]),
            region_failures: region_failures.to_vec(),
            account_failures: account_failures.to_vec(),
            exit_code: code as u8,
        }
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{} templates, compliant {}, not compliant {}, changed {}, left to their owner {}, failed {}",
            self.templates, self.compliant, self.not_compliant, self.changed, self.left, self.failed
        );
        line.push_str(&crate::runner::places_failed(self.region_failures.len(), self.account_failures.len()));
        line
    }
}

/// The one JSON shape of a templates run, failures included.
fn json(templates: &[TemplateOutcome], summary: Summary, ended: Option<&Error>) -> serde_json::Value {
    serde_json::json!({
        "templates": templates,
        "summary": summary,
        "error": ended.map(Error::to_string),
    })
}

/// The report of a run that ended before it could read anything (its settings refused).
pub fn failed(err: &Error) -> serde_json::Value {
    json(&[], Summary::of(&[], &[], &[], err.exit_code()), Some(err))
}

fn result(t: &TemplateOutcome) -> String {
    match t.action {
        TemplateAction::Unchanged => "compliant".into(),
        TemplateAction::NotCompliant => "not compliant".into(),
        TemplateAction::WouldChange => "would change (--dry-run)".into(),
        TemplateAction::Changed => format!("changed: version {} is the default", t.new_version.unwrap_or_default()),
        TemplateAction::Left => "left to its owner".into(),
        TemplateAction::Failed => format!("failed (exit {})", t.code as u8),
    }
}

/// The text report: a row per template, then what each template left as it is needs, and the failures.
fn render(
    templates: &[TemplateOutcome],
    region_failures: &[RegionFailure],
    account_failures: &[AccountFailure],
    org_wide: bool,
) -> String {
    let cell = |text: &str| crate::remote::sanitize(text, 60);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for t in templates {
        let hop = match (t.hop_limit_from, t.effective_hop_limit) {
            (Some(HopFrom::Template), Some(h)) => h.to_string(),
            (Some(HopFrom::AccountDefault), Some(h)) => format!("{h} (account default)"),
            (Some(HopFrom::Ec2Default), Some(h)) => format!("{h} (EC2's default)"),
            _ => "unknown".into(),
        };
        let version = match t.version {
            Some(v) if t.latest_version != v => format!("{v} (latest {})", t.latest_version),
            Some(v) => v.to_string(),
            None => "-".into(),
        };
        let mut row: Vec<String> = Vec::new();
        if org_wide {
            row.push(cell(t.account.as_deref().unwrap_or("-")));
        }
        row.extend([
            t.launch_template_id.clone(),
            cell(&t.launch_template_name),
            t.region.to_string(),
            version,
            hop,
            plan::show(t.http_tokens, Absent::NotSet),
            result(t),
        ]);
        rows.push(row);
    }
    let mut header: Vec<String> = Vec::new();
    if org_wide {
        header.push("ACCOUNT".into());
    }
    header.extend(["TEMPLATE", "NAME", "REGION", "DEFAULT", "HOP LIMIT", "HTTP TOKENS", "RESULT"].map(String::from));
    let mut out = crate::table::render(&header, &rows);
    for t in templates.iter().filter(|t| t.fix.is_some()) {
        let _ = writeln!(out, "{} ({}): {}", t.launch_template_id, t.region, t.fix.as_deref().unwrap_or_default());
    }
    for t in templates {
        for g in t.used_by.iter().flatten() {
            if let Some(step) = &g.next_step {
                let _ = writeln!(out, "{} ({}): {step}", t.launch_template_id, t.region);
            }
        }
    }
    for f in region_failures {
        let place = f.account.as_deref().filter(|_| org_wide).map(|a| format!("{} ", cell(a))).unwrap_or_default();
        let _ = writeln!(out, "{place}{}: could not read the templates: {}", f.region, f.error);
    }
    for f in account_failures {
        let label = f.member.label().unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "account {}: not worked in: {}", cell(&label), f.error);
    }
    let failed: Vec<&TemplateOutcome> = templates.iter().filter(|t| t.action == TemplateAction::Failed).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "Failures:");
        for t in failed {
            let _ = writeln!(out, "  {}: {}", t.launch_template_id, t.error.as_deref().unwrap_or("failed"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::State;

    fn wanted() -> Wanted {
        Wanted {
            hop_limit: HopLimit::new(2).unwrap(),
            exact: false,
            http_tokens: None,
            ipv6_endpoint: None,
            instance_tags: None,
        }
    }

    fn set(hop: Option<i64>, tokens: Option<HttpTokens>) -> MetadataOptions {
        MetadataOptions { hop_limit: hop.and_then(HopLimit::new), http_tokens: tokens, ..MetadataOptions::default() }
    }

    /// The planner's rules, for templates: never lower, never IMDSv1, HttpTokens only when asked; a field the
    /// version leaves unset stays unset in the new one; an unset hop limit is judged by the account default.
    #[test]
    fn a_template_is_planned_as_an_instance_and_keeps_what_it_leaves_unset() {
        let w = wanted();
        // Set to 1, HttpTokens required: the hop limit alone changes, required kept.
        let new = decide(&set(Some(1), Some(HttpTokens::Required)), None, &w).unwrap();
        assert_eq!(new, set(Some(2), Some(HttpTokens::Required)));
        // Higher is kept.
        assert_eq!(decide(&set(Some(3), None), None, &w), None);
        // Unset, account default 2: compliant, nothing written.
        let default2 = set(Some(2), Some(HttpTokens::Required));
        assert_eq!(decide(&set(None, None), Some(&default2), &w), None);
        assert_eq!(effective(&set(None, None), Some(&default2)).1, HopFrom::AccountDefault);
        // Unset, no account default (EC2's 1): the hop limit written explicitly, HttpTokens left unset.
        let new = decide(&set(None, None), None, &w).unwrap();
        assert_eq!((new.hop_limit, new.http_tokens), (HopLimit::new(2), None));
        assert_eq!(effective(&set(None, None), None).1, HopFrom::Ec2Default);
        // Asked for HttpTokens: set; never optional unless asked.
        let tokens = Wanted { http_tokens: Some(HttpTokens::Required), ..w };
        let new = decide(&set(Some(2), Some(HttpTokens::Optional)), None, &tokens).unwrap();
        assert_eq!(new.http_tokens, Some(HttpTokens::Required));
        // The endpoint disabled in the template: enabled, the rest as it was.
        let disabled = MetadataOptions { http_endpoint: Some(Toggle::Disabled), ..set(Some(2), None) };
        let new = decide(&disabled, None, &w).unwrap();
        assert_eq!((new.http_endpoint, new.hop_limit, new.state), (Some(Toggle::Enabled), HopLimit::new(2), None));
        let _ = State::Applied;
    }

    #[test]
    fn a_client_token_is_ascii_bounded_and_names_the_source_and_the_options() {
        let v = crate::ec2::templates::tests_version("lt-0123456789abcdef0", 7, set(Some(1), None));
        let token = client_token(&v, &set(Some(2), Some(HttpTokens::Required)));
        assert!(token.starts_with("imds-hop-limit-lt-0123456789abcdef0-7-"), "{token}");
        assert!(token.len() <= 128 && token.bytes().all(|b| b.is_ascii_graphic()), "{token}");
        assert_ne!(token, client_token(&v, &set(Some(3), None)), "other options, another version");
    }
}
