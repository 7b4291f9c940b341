//! What a fleet run reports: the final report, as a text table or one JSON object, and the one count of
//! outcomes (`Tally`) with its one line, which the live view, the log's last word and the table's per-region
//! lines all show. Pure rendering over `Outcome`s, so the whole text is checked in tests.

use crate::accounts::{AccountFailure, Member};
use crate::ec2::Described;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::ids::{AccountId, InstanceId, Region};
use crate::outcome::Action;
use crate::plan::{self, Absent, Change, HopLimit, InstanceState, MetadataOptions};
pub use crate::runner::RegionFailure;
use crate::source::Source;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub instance_id: InstanceId,
    /// The account it is in, where the run is org-wide (`null` otherwise: the credentials' own).
    pub account_id: Option<AccountId>,
    /// How the table names its account: the organization's name for it, else its id.
    #[serde(skip)]
    pub account: Option<String>,
    pub region: String,
    /// EC2's instance state when it was selected (running or stopped), or as last read back; `None` (JSON
    /// `null`) for an `--instance-id` that no selection held.
    pub state: Option<InstanceState>,
    pub before: Option<MetadataOptions>,
    /// As last read back (or as EC2's answer to the change).
    pub after: Option<MetadataOptions>,
    pub action: Action,
    /// Whether `after` was read back from EC2 as applied (or reflected, when stopped).
    pub verified: bool,
    /// The fields sent (or that would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// Where it came from, by its tags: every field `null` where unknown (and for an id no selection held).
    pub source: Source,
    pub error: Option<String>,
    #[serde(skip)]
    pub code: ExitCode,
}

impl Outcome {
    pub fn new(d: &Described, region: &str) -> Self {
        Outcome {
            instance_id: d.instance_id.clone(),
            account_id: None,
            account: None,
            region: region.to_string(),
            state: Some(d.state),
            before: Some(d.options.clone()),
            after: None,
            action: Action::Unchanged,
            verified: false,
            change: None,
            source: d.source.clone(),
            error: None,
            code: ExitCode::Compliant,
        }
    }

    /// An instance that was asked for by id and not found.
    pub fn missing(id: &InstanceId, region: &str) -> Self {
        Outcome {
            instance_id: id.clone(),
            account_id: None,
            account: None,
            region: region.to_string(),
            state: None,
            before: None,
            after: None,
            action: Action::Failed,
            verified: false,
            change: None,
            source: Source::default(),
            error: None,
            code: ExitCode::InstanceNotFound,
        }
    }

    pub fn fail(&mut self, err: &Error) {
        self.action = Action::Failed;
        self.code = err.exit_code();
        self.error = Some(err.to_string());
    }
}

/// `1 -> 2`, or `2` when it did not change.
fn before_after<T: std::fmt::Display + PartialEq + Copy>(before: Option<T>, after: Option<T>) -> String {
    let show = |v| plan::show(v, Absent::Unknown);
    match after {
        Some(a) if Some(a) != before => format!("{} -> {a}", show(before)),
        _ => show(before),
    }
}

fn result(o: &Outcome) -> String {
    match o.action {
        Action::Unchanged => "compliant".into(),
        Action::NotCompliant => "not compliant".into(),
        Action::WouldChange => "would change (--dry-run)".into(),
        Action::Accepted => "changed, accepted (not verified)".into(),
        Action::Changed => "changed, applied".into(),
        Action::AppliesAtStart => "changed; applies when it starts".into(),
        Action::Failed | Action::ManagedElsewhere => format!("failed (exit {})", o.code as u8),
    }
}

/// A whole fleet run, as its report shows it: every account's instances, failed regions and failures, in the
/// order the accounts were listed (the credentials' own alone, when the run is not org-wide).
#[derive(Debug, Default)]
pub struct Run {
    /// `--organization`, `--accounts`: the table and the JSON name each instance's account.
    pub org_wide: bool,
    pub outcomes: Vec<Outcome>,
    /// Regions whose selection could not be read.
    pub failures: Vec<RegionFailure>,
    /// Accounts that could not be worked in (not entered, regions not resolved, not reached).
    pub account_failures: Vec<AccountFailure>,
    /// Each account worked in (or tried), with its regions.
    pub accounts: Vec<AccountRun>,
    /// Where the instances that needed a change came from, each source with the fix that makes it stick.
    pub sources: Vec<SourceGroup>,
}

/// The instances of one account and region that needed a change and came from one source, and what fixes
/// it there (`Source::fix`), so that the owner of the source, not of the instances, can act.
#[derive(Debug, Clone, Serialize)]
pub struct SourceGroup {
    pub account_id: Option<AccountId>,
    #[serde(skip)]
    pub account: Option<String>,
    pub region: String,
    pub source: Source,
    pub instances: usize,
    pub fix: String,
}

/// The sources of the instances that needed a change (whatever became of it), grouped by account, region and
/// source, in the order first met; `hop_limit`: the wanted one, for the fix.
pub fn sources(outcomes: &[Outcome], hop_limit: HopLimit) -> Vec<SourceGroup> {
    let mut groups: Vec<SourceGroup> = Vec::new();
    for o in outcomes.iter().filter(|o| o.change.is_some()) {
        let same = |g: &&mut SourceGroup| g.account_id == o.account_id && g.region == o.region && g.source == o.source;
        match groups.iter_mut().find(same) {
            Some(group) => group.instances += 1,
            None => groups.push(SourceGroup {
                account_id: o.account_id.clone(),
                account: o.account.clone(),
                region: o.region.clone(),
                source: o.source.clone(),
                instances: 1,
                fix: o.source.fix(hop_limit),
            }),
        }
    }
    groups
}

impl Run {
    /// Every region of the run, each once, in order.
    pub fn regions(&self) -> Vec<Region> {
        let mut regions: Vec<Region> = Vec::new();
        for region in self.accounts.iter().flat_map(|a| &a.regions) {
            if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
        regions
    }
}

/// An account of an org-wide run: who it is, and what the run did there.
#[derive(Debug, Clone)]
pub struct AccountRun {
    pub member: Member,
    pub regions: Vec<Region>,
}

/// The final text report: a row for each instance that is not simply compliant (with its account, where the
/// run is org-wide), the counts per account and region, and each failure's message.
pub fn render(run: &Run, act_is_check: bool) -> String {
    let outcomes = &run.outcomes;
    let mut out = String::new();
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .filter(|o| o.action != Action::Unchanged)
        .map(|o| {
            let before = o.before.clone().unwrap_or_default();
            // Not compliant or a dry run: before -> what the change would make it. Failed: as it was last read
            // (what EC2 answered to a change that then failed to apply in time, or as before).
            let would = matches!(o.action, Action::NotCompliant | Action::WouldChange);
            let after = o.after.clone().or_else(|| o.change.filter(|_| would).map(|c| c.applied_to(&before)));
            let after = after.unwrap_or_else(|| before.clone());
            let hop = before_after(before.hop_limit, after.hop_limit);
            let endpoint = before_after(before.http_endpoint, after.http_endpoint);
            let account = run.org_wide.then(|| o.account.clone().unwrap_or_else(|| "-".into()));
            account
                .into_iter()
                .chain([
                    o.instance_id.to_string(),
                    o.region.clone(),
                    o.state.map_or("not found".into(), |s| s.to_string()),
                    hop,
                    endpoint,
                    result(o),
                    o.source.label(),
                ])
                .map(cell)
                .collect()
        })
        .collect();
    let account = run.org_wide.then_some("ACCOUNT");
    let header: Vec<String> = account
        .into_iter()
        .chain(["INSTANCE", "REGION", "STATE", "HOP LIMIT", "ENDPOINT", "RESULT", "SOURCE"])
        .map(String::from)
        .collect();
    out.push_str(&crate::table::render(&header, &rows));
    let unchanged = outcomes.iter().filter(|o| o.action == Action::Unchanged).count();
    if unchanged > 0 {
        let _ = writeln!(
            out,
            "{unchanged} compliant instance{} not listed (--output json lists every one)",
            plural(unchanged)
        );
    }
    for (member, region) in run.accounts.iter().flat_map(|a| a.regions.iter().map(move |r| (&a.member, r))) {
        let label = member.label();
        let failed = run.failures.iter().any(|f| &f.region == region && f.account_id == member.id);
        if failed {
            continue;
        }
        let of = outcomes.iter().filter(|o| &o.region == region && o.account_id == member.id && o.before.is_some());
        let place = match (run.org_wide, label) {
            (true, Some(label)) => format!("{} {region}", cell(label)),
            _ => region.to_string(),
        };
        let _ = writeln!(out, "{place}: {}", Tally::of(of));
    }
    for f in &run.failures {
        let place = match (&f.account, run.org_wide) {
            (Some(account), true) => format!("{} {}", cell(account.clone()), f.region),
            _ => f.region.to_string(),
        };
        let _ = writeln!(out, "{place}: could not read the selection: {}", f.error);
    }
    for f in &run.account_failures {
        let _ = writeln!(
            out,
            "account {}: not worked in: {}",
            cell(f.member.label().unwrap_or_else(|| "-".into())),
            f.error
        );
    }
    if !run.sources.is_empty() {
        let needed: usize = run.sources.iter().map(|g| g.instances).sum();
        let _ = writeln!(
            out,
            "Where the {needed} instance{} that needed a change came from, and the fix that makes it stick (the next \
             instance from a source left as it is has the hop limit it had):",
            plural(needed)
        );
        for g in &run.sources {
            let place = match (&g.account, run.org_wide) {
                (Some(account), true) => format!("{} {}", cell(account.clone()), g.region),
                _ => g.region.clone(),
            };
            let n = g.instances;
            let label = if g.source.kind.is_some() { g.source.label() } else { "(source unknown)".into() };
            let _ = writeln!(out, "  {place} {} ({n} instance{}): {}", cell(label), plural(n), g.fix);
        }
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.action == Action::Failed).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "Failures:");
        for o in failed {
            let _ = writeln!(out, "  {}: {}", o.instance_id, o.error.as_deref().unwrap_or("failed"));
        }
    }
    let stopped =
        outcomes.iter().filter(|o| o.state == Some(InstanceState::Stopped) && o.action != Action::Unchanged).count();
    if stopped > 0 {
        let _ = writeln!(
            out,
            "Note: {stopped} stopped instance{} {} changed too: EC2 applies metadata options to a stopped instance when it starts.",
            plural(stopped),
            match (act_is_check, stopped) {
                (true, _) => "would be",
                (false, 1) => "is",
                (false, _) => "are",
            }
        );
    }
    out
}

/// A table cell that nothing can break out of: one line, bounded. Every cell is this program's own text or
/// validated (ids, regions, typed states), so this only holds if that ever stops being true.
fn cell(text: String) -> String {
    if text.chars().any(char::is_control) || text.chars().count() > 80 {
        crate::remote::sanitize(&text, 80)
    } else {
        text
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// How many outcomes ended each way: the one count, which the live view, the per-region lines, the log's last
/// word and the JSON summary all show.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Instances read from EC2 (an `--instance-id` not found is not one).
    pub selected: usize,
    pub compliant: usize,
    /// Instances that needed a change when they were read (whatever became of it).
    pub to_change: usize,
    /// Left to change: `check`, or `--dry-run`.
    pub not_compliant: usize,
    /// Changes EC2 accepted: applied, applying at start, or not verified (`--no-wait`, an interrupted run).
    pub changed: usize,
    pub applied: usize,
    pub applies_at_start: usize,
    pub failed: usize,
}

impl Tally {
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Self {
        let mut t = Tally::default();
        t.add(outcomes);
        t
    }

    pub fn add<'a>(&mut self, outcomes: impl IntoIterator<Item = &'a Outcome>) {
        for o in outcomes {
            self.selected += usize::from(o.before.is_some());
            self.to_change += usize::from(o.change.is_some());
            match o.action {
                Action::Unchanged => self.compliant += 1,
                Action::NotCompliant | Action::WouldChange => self.not_compliant += 1,
                Action::Accepted => self.changed += 1,
                Action::Changed => {
                    self.changed += 1;
                    self.applied += 1;
                }
                Action::AppliesAtStart => {
                    self.changed += 1;
                    self.applies_at_start += 1;
                }
                Action::Failed | Action::ManagedElsewhere => self.failed += 1,
            }
        }
    }

    /// Changes EC2 accepted that nobody has seen applied yet (`--no-wait`, a wait still going or cut short).
    pub fn not_verified(&self) -> usize {
        self.changed.saturating_sub(self.applied + self.applies_at_start)
    }
}

impl Tally {
    /// The one line of a count: the six counts always, in this order, then the places that failed as a whole
    /// (`places`, `runner::places_failed`: the run's summary only), then those of the rarer ends that are not
    /// zero. "to change" is what needed a change when read; "not compliant" what is left so (`check`,
    /// `--dry-run`, a change not sent).
    pub fn line(&self, places: &str) -> String {
        let mut line = format!(
            "selected {}, compliant {}, to change {}, changed {}, applied {}, failed {}",
            self.selected, self.compliant, self.to_change, self.changed, self.applied, self.failed
        );
        line.push_str(places);
        for (n, what) in [
            (self.applies_at_start, "applies at start"),
            (self.not_verified(), "not verified"),
            (self.not_compliant, "not compliant"),
        ] {
            if n > 0 {
                let _ = write!(line, ", {what} {n}");
            }
        }
        line
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line(""))
    }
}

/// The one JSON shape of a fleet run, failures included: `summary` (every count, zeros included, over every
/// account), `accounts` (one summary per account where the run is org-wide, else `[]`), `instances` (`[]`
/// when none), `sources` (where the instances that needed a change came from, with the fix; `[]` when none)
/// and `error` (what ended the run before it finished, else `null`).
#[derive(Serialize)]
pub struct Json<'a> {
    pub summary: Summary,
    pub accounts: Vec<AccountSummary>,
    pub instances: &'a [Outcome],
    pub sources: &'a [SourceGroup],
    pub error: Option<String>,
}

impl<'a> Json<'a> {
    pub fn new(summary: Summary, run: &'a Run, ended: Option<&Error>) -> Self {
        let accounts = if run.org_wide {
            run.accounts
                .iter()
                .map(|a| {
                    let mine = |id: &Option<AccountId>| *id == a.member.id;
                    let failures: Vec<RegionFailure> =
                        run.failures.iter().filter(|f| mine(&f.account_id)).cloned().collect();
                    let error = run.account_failures.iter().find(|f| f.member == a.member).map(|f| f.error.clone());
                    let outcomes = run.outcomes.iter().filter(|o| mine(&o.account_id));
                    AccountSummary {
                        member: a.member.clone(),
                        tally: Tally::of(outcomes),
                        regions: a.regions.clone(),
                        region_failures: failures,
                        error,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Json { summary, accounts, instances: &run.outcomes, sources: &run.sources, error: ended.map(Error::to_string) }
    }
}

/// One account's part of an org-wide run.
#[derive(Serialize)]
pub struct AccountSummary {
    #[serde(flatten)]
    pub member: Member,
    #[serde(flatten)]
    pub tally: Tally,
    pub regions: Vec<Region>,
    pub region_failures: Vec<RegionFailure>,
    /// Why the run could not work in it, else `null`.
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub tally: Tally,
    pub regions: Vec<Region>,
    pub region_failures: Vec<RegionFailure>,
    /// Accounts the run could not work in (org-wide runs; else `[]`).
    pub account_failures: Vec<AccountFailure>,
    pub exit_code: u8,
    pub elapsed_ms: u64,
}

impl Summary {
    /// The run's counts in one line, for the log's last word: the same numbers as the JSON's, region and
    /// account failures included.
    pub fn line(&self) -> String {
        self.tally.line(&crate::runner::places_failed(self.region_failures.len(), self.account_failures.len()))
    }

    pub fn new(run: &Run, code: ExitCode, elapsed_ms: u64) -> Self {
        Summary {
            tally: Tally::of(&run.outcomes),
            regions: run.regions(),
            region_failures: run.failures.clone(),
            account_failures: run.account_failures.clone(),
            exit_code: code as u8,
            elapsed_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::options;
    use crate::plan::{HopLimit, State};

    fn outcome(id: &str, state: InstanceState, action: Action) -> Outcome {
        let d = Described {
            instance_id: id.into(),
            state,
            options: options(1, State::Applied),
            source: Default::default(),
        };
        let mut o = Outcome::new(&d, "us-west-2");
        o.action = action;
        if action != Action::Unchanged {
            o.change = Some(Change { hop_limit: HopLimit::new(2), ..Change::default() });
        }
        // As the verification leaves them: read back with the new values.
        match action {
            Action::Changed => o.after = Some(options(2, State::Applied)),
            Action::AppliesAtStart => o.after = Some(options(2, State::Pending)),
            _ => {}
        }
        o
    }

    #[test]
    fn the_text_report_is_golden() {
        let mut failed = outcome("i-00000000000000003", InstanceState::Running, Action::Failed);
        failed.fail(&Error::NotAuthorized {
            action: "ModifyInstanceMetadataOptions",
            instance_id: "i-00000000000000003".into(),
            encoded: None,
            refusal: None,
            hint: "grant it",
        });
        let mut grouped = outcome("i-00000000000000002", InstanceState::Running, Action::Changed);
        grouped.source = Source::from_tags([
            ("aws:autoscaling:groupName", "web"),
            ("aws:ec2launchtemplate:id", "lt-0123456789abcdef0"),
            ("aws:ec2launchtemplate:version", "3"),
        ]);
        let outcomes = vec![
            outcome("i-00000000000000001", InstanceState::Running, Action::Unchanged),
            grouped,
            outcome("i-00000000000000004", InstanceState::Stopped, Action::AppliesAtStart),
            failed,
        ];
        let run = one_account(outcomes, &["us-west-2", "eu-west-1"], vec![failure("eu-west-1", "no AWS credentials")]);
        assert_eq!(
            render(&run, false),
            "INSTANCE             REGION     STATE    HOP LIMIT  ENDPOINT  RESULT                           SOURCE\n\
             i-00000000000000002  us-west-2  running  1 -> 2     enabled   changed, applied                 Auto Scaling group web\n\
             i-00000000000000004  us-west-2  stopped  1 -> 2     enabled   changed; applies when it starts  -\n\
             i-00000000000000003  us-west-2  running  1          enabled   failed (exit 5)                  -\n\
             1 compliant instance not listed (--output json lists every one)\n\
             us-west-2: selected 4, compliant 1, to change 3, changed 2, applied 1, failed 1, applies at start 1\n\
             eu-west-1: could not read the selection: no AWS credentials\n\
             Where the 3 instances that needed a change came from, and the fix that makes it stick (the next instance \
             from a source left as it is has the hop limit it had):\n  \
             us-west-2 Auto Scaling group web (1 instance): a new version of launch template lt-0123456789abcdef0 \
             version 3 with MetadataOptions.HttpPutResponseHopLimit 2 (every other setting as it is), made the default \
             version; a group pinned to a version number needs that version named too\n  \
             us-west-2 (source unknown) (2 instances): `imds-hop-limit defaults apply \
             --hop-limit 2` sets the region's default for new launches that do not set a hop limit themselves\n\
             Failures:\n  i-00000000000000003: not authorized to call ec2:ModifyInstanceMetadataOptions on \
             i-00000000000000003: grant it\n\
             Note: 1 stopped instance is changed too: EC2 applies metadata options to a stopped instance when it starts.\n"
        );
    }

    fn failure(region: &str, error: &str) -> RegionFailure {
        RegionFailure {
            account_id: None,
            account: None,
            region: region.into(),
            error: error.into(),
            code: ExitCode::NotAuthorized,
        }
    }

    /// A run in the credentials' own account, as `gather_accounts` makes it.
    fn one_account(outcomes: Vec<Outcome>, regions: &[&str], failures: Vec<RegionFailure>) -> Run {
        let regions: Vec<Region> = regions.iter().map(|r| Region::from(*r)).collect();
        Run {
            org_wide: false,
            accounts: vec![AccountRun { member: Member { id: None, name: None }, regions }],
            sources: sources(&outcomes, HopLimit::new(2).unwrap()),
            outcomes,
            failures,
            account_failures: Vec::new(),
        }
    }

    /// Org-wide: an ACCOUNT column (the organization's name, else the id), a line per account and region,
    /// and the account that could not be entered, with why; in the JSON, each instance's `account_id` and a
    /// summary per account.
    #[test]
    fn an_org_wide_report_names_each_account() {
        let web = Member { id: Some("111111111111".into()), name: Some("web-prod".into()) };
        let batch = Member { id: Some("222222222222".into()), name: None };
        let refused = Member { id: Some("333333333333".into()), name: Some("sandbox".into()) };
        let mut a = outcome("i-00000000000000001", InstanceState::Running, Action::Changed);
        (a.account_id, a.account) = (web.id.clone(), web.label());
        let mut b = outcome("i-00000000000000002", InstanceState::Running, Action::Changed);
        (b.account_id, b.account) = (batch.id.clone(), batch.label());
        let account = |member: &Member| AccountRun { member: member.clone(), regions: vec!["us-west-2".into()] };
        let run = Run {
            org_wide: true,
            outcomes: vec![a, b],
            failures: Vec::new(),
            account_failures: vec![AccountFailure {
                member: refused.clone(),
                error: "could not assume arn:aws:iam::333333333333:role/r: AccessDenied".into(),
                code: ExitCode::NotAuthorized,
            }],
            accounts: vec![account(&web), account(&batch), AccountRun { regions: vec![], ..account(&refused) }],
            sources: Vec::new(),
        };
        assert_eq!(
            render(&run, false),
            "ACCOUNT       INSTANCE             REGION     STATE    HOP LIMIT  ENDPOINT  RESULT            SOURCE\n\
             web-prod      i-00000000000000001  us-west-2  running  1 -> 2     enabled   changed, applied  -\n\
             222222222222  i-00000000000000002  us-west-2  running  1 -> 2     enabled   changed, applied  -\n\
             web-prod us-west-2: selected 1, compliant 0, to change 1, changed 1, applied 1, failed 0\n\
             222222222222 us-west-2: selected 1, compliant 0, to change 1, changed 1, applied 1, failed 0\n\
             account sandbox: not worked in: could not assume arn:aws:iam::333333333333:role/r: AccessDenied\n"
        );
        let summary = Summary::new(&run, ExitCode::NotAuthorized, 5);
        assert!(summary.line().ends_with(", failed 0, 1 account failed"), "{}", summary.line());
        let json = serde_json::to_value(Json::new(summary, &run, None)).unwrap();
        assert_eq!(json["instances"][0]["account_id"], "111111111111");
        assert_eq!(json["accounts"][0]["name"], "web-prod");
        assert_eq!(json["accounts"][0]["changed"], 1);
        assert_eq!(json["accounts"][2]["account_id"], "333333333333");
        assert!(json["accounts"][2]["error"].as_str().unwrap().contains("AccessDenied"));
        assert_eq!(json["summary"]["account_failures"][0]["account_id"], "333333333333");
        assert_eq!(json["summary"]["changed"], 2);
    }

    #[test]
    fn the_summary_counts_each_outcome_once() {
        let outcomes = vec![
            outcome("i-00000000000000001", InstanceState::Running, Action::Unchanged),
            outcome("i-00000000000000002", InstanceState::Running, Action::NotCompliant),
            outcome("i-00000000000000003", InstanceState::Running, Action::Changed),
            Outcome::missing(&"i-00000000000000009".into(), "us-west-2"),
        ];
        let run = one_account(outcomes, &["us-west-2"], Vec::new());
        let s = Summary::new(&run, ExitCode::InstanceNotFound, 5);
        let t = &s.tally;
        assert_eq!((t.selected, t.compliant, t.not_compliant, t.changed, t.applied, t.failed), (3, 1, 1, 1, 1, 1));
        assert_eq!(t.to_change, 2, "the one not compliant and the one changed");
        assert_eq!(s.exit_code, 7);
        assert_eq!(s.line(), "selected 3, compliant 1, to change 2, changed 1, applied 1, failed 1, not compliant 1");
        let run = one_account(run.outcomes, &["us-west-2"], vec![failure("eu-west-1", "hung")]);
        let s = Summary::new(&run, ExitCode::Throttled, 5);
        assert!(s.line().contains(", failed 1, 1 region failed, not compliant 1"), "{}", s.line());
    }
}
