//! What a fleet run tells the operator: live counts (a progress bar on a terminal, a log line per milestone
//! otherwise), and the final report, as a text table or one JSON object. Pure rendering over `Outcome`s, so
//! the whole text is checked in tests.

use crate::ec2::Described;
use crate::error::{Error, ExitCode};
use crate::ids::{InstanceId, Region};
use crate::outcome::Action;
use crate::plan::{self, Absent, Change, InstanceState, MetadataOptions};
use serde::Serialize;
use std::cell::Cell;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub instance_id: InstanceId,
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
    pub error: Option<String>,
    #[serde(skip)]
    pub code: ExitCode,
}

impl Outcome {
    pub fn new(d: &Described, region: &str) -> Self {
        Outcome {
            instance_id: d.instance_id.clone(),
            region: region.to_string(),
            state: Some(d.state),
            before: Some(d.options.clone()),
            after: None,
            action: Action::Unchanged,
            verified: false,
            change: None,
            error: None,
            code: ExitCode::Compliant,
        }
    }

    /// An instance that was asked for by id and not found.
    pub fn missing(id: &InstanceId, region: &str) -> Self {
        Outcome {
            instance_id: id.clone(),
            region: region.to_string(),
            state: None,
            before: None,
            after: None,
            action: Action::Failed,
            verified: false,
            change: None,
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

/// A region whose selection could not be read: none of its instances are in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RegionFailure {
    pub region: Region,
    pub error: String,
    #[serde(skip)]
    pub code: ExitCode,
}

/// The live counts, shown as they change.
pub struct Counts {
    selected: Cell<usize>,
    compliant: Cell<usize>,
    to_change: Cell<usize>,
    changed: Cell<usize>,
    applied: Cell<usize>,
    failed: Cell<usize>,
    bar: Option<indicatif::ProgressBar>,
    /// The last line logged (without a bar), so that an unchanged round is not logged again.
    last: std::cell::RefCell<String>,
}

impl Counts {
    /// With a progress bar when stderr is a terminal and `quiet` is not set.
    pub fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Counts {
            selected: 0.into(),
            compliant: 0.into(),
            to_change: 0.into(),
            changed: 0.into(),
            applied: 0.into(),
            failed: 0.into(),
            bar,
            last: String::new().into(),
        }
    }

    pub fn add_selected(&self, n: usize) {
        self.selected.set(self.selected.get() + n);
    }
    pub fn add_compliant(&self) {
        self.compliant.set(self.compliant.get() + 1);
    }
    pub fn add_to_change(&self) {
        self.to_change.set(self.to_change.get() + 1);
    }
    pub fn add_changed(&self) {
        self.changed.set(self.changed.get() + 1);
    }
    pub fn add_applied(&self) {
        self.applied.set(self.applied.get() + 1);
    }
    pub fn add_failed(&self) {
        self.failed.set(self.failed.get() + 1);
    }
    /// A change EC2 accepted that then failed (not applied in time, read back refused): counted once, as
    /// failed, as the report counts it.
    pub fn changed_then_failed(&self) {
        self.changed.set(self.changed.get().saturating_sub(1));
        self.add_failed();
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "selected {}, compliant {}, to change {}, changed {}, applied {}, failed {}",
            self.selected.get(),
            self.compliant.get(),
            self.to_change.get(),
            self.changed.get(),
            self.applied.get(),
            self.failed.get()
        )
    }
}

/// Says where the run is: the totals on the bar, or `line` in the log when it differs from the last one.
pub fn milestone(counts: &Counts, line: &str) {
    match &counts.bar {
        Some(bar) => bar.set_message(counts.to_string()),
        None => {
            if *counts.last.borrow() != line {
                tracing::info!("{line}");
                line.clone_into(&mut counts.last.borrow_mut());
            }
        }
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

/// The final text report: a row for each instance that is not simply compliant, the counts per region, and
/// each failure's message.
pub fn render(outcomes: &[Outcome], regions: &[Region], failures: &[RegionFailure], act_is_check: bool) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 6]> = outcomes
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
            [
                o.instance_id.to_string(),
                o.region.clone(),
                o.state.map_or("not found".into(), |s| s.to_string()),
                hop,
                endpoint,
                result(o),
            ]
            .map(cell)
        })
        .collect();
    if !rows.is_empty() {
        let header = ["INSTANCE", "REGION", "STATE", "HOP LIMIT", "ENDPOINT", "RESULT"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    }
    let unchanged = outcomes.iter().filter(|o| o.action == Action::Unchanged).count();
    if unchanged > 0 {
        let _ = writeln!(
            out,
            "{unchanged} compliant instance{} not listed (--output json lists every one)",
            plural(unchanged)
        );
    }
    for region in regions.iter().filter(|r| !failures.iter().any(|f| &f.region == *r)) {
        let of = outcomes.iter().filter(|o| &o.region == region && o.before.is_some());
        let _ = writeln!(out, "{region}: {}", summary_line(&Tally::of(of), act_is_check));
    }
    for f in failures {
        let _ = writeln!(out, "{}: could not read the selection: {}", f.region, f.error);
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

/// How many outcomes ended each way: the per-region line and the JSON summary count the same things.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
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
        for o in outcomes {
            t.selected += usize::from(o.before.is_some());
            t.to_change += usize::from(o.change.is_some());
            match o.action {
                Action::Unchanged => t.compliant += 1,
                Action::NotCompliant | Action::WouldChange => t.not_compliant += 1,
                Action::Accepted => t.changed += 1,
                Action::Changed => {
                    t.changed += 1;
                    t.applied += 1;
                }
                Action::AppliesAtStart => {
                    t.changed += 1;
                    t.applies_at_start += 1;
                }
                Action::Failed | Action::ManagedElsewhere => t.failed += 1,
            }
        }
        t
    }
}

fn summary_line(t: &Tally, act_is_check: bool) -> String {
    let mut parts = vec![format!("{} selected", t.selected), format!("{} compliant", t.compliant)];
    if t.not_compliant > 0 || act_is_check {
        parts.push(format!("{} to change", t.not_compliant));
    }
    if t.changed > 0 {
        let mut changed = format!("{} changed ({} applied", t.changed, t.applied);
        if t.applies_at_start > 0 {
            let _ = write!(changed, ", {} stopped: applies at start", t.applies_at_start);
        }
        let unverified = t.changed - t.applied - t.applies_at_start;
        if unverified > 0 {
            let _ = write!(changed, ", {unverified} not verified");
        }
        changed.push(')');
        parts.push(changed);
    }
    parts.push(format!("{} failed", t.failed));
    parts.join(", ")
}

/// The one JSON shape of a fleet run, failures included: `summary` (every count, zeros included),
/// `instances` (`[]` when none) and `error` (what ended the run before it finished, else `null`).
#[derive(Serialize)]
pub struct Json<'a> {
    pub summary: Summary,
    pub instances: &'a [Outcome],
    pub error: Option<String>,
}

impl<'a> Json<'a> {
    pub fn new(summary: Summary, instances: &'a [Outcome], ended: Option<&Error>) -> Self {
        Json { summary, instances, error: ended.map(Error::to_string) }
    }
}

#[derive(Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub tally: Tally,
    pub regions: Vec<Region>,
    pub region_failures: Vec<RegionFailure>,
    pub exit_code: u8,
    pub elapsed_ms: u64,
}

impl Summary {
    /// The run's counts in one line, for the log's last word: the same numbers as the JSON's, region
    /// failures included.
    pub fn line(&self) -> String {
        let t = &self.tally;
        let mut line = format!(
            "selected {}, compliant {}, to change {}, changed {}, applied {}",
            t.selected, t.compliant, t.to_change, t.changed, t.applied
        );
        if t.applies_at_start > 0 {
            let _ = write!(line, ", applies at start {}", t.applies_at_start);
        }
        let _ = write!(line, ", failed {}", t.failed);
        let regions = self.region_failures.len();
        if regions > 0 {
            let _ = write!(line, ", {regions} region{} failed", plural(regions));
        }
        line
    }

    pub fn new(
        outcomes: &[Outcome],
        regions: Vec<Region>,
        failures: &[RegionFailure],
        code: ExitCode,
        elapsed_ms: u64,
    ) -> Self {
        Summary {
            tally: Tally::of(outcomes),
            regions,
            region_failures: failures.to_vec(),
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
        let d = Described { instance_id: id.into(), state, options: options(1, State::Applied) };
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
        let outcomes = vec![
            outcome("i-00000000000000001", InstanceState::Running, Action::Unchanged),
            outcome("i-00000000000000002", InstanceState::Running, Action::Changed),
            outcome("i-00000000000000004", InstanceState::Stopped, Action::AppliesAtStart),
            failed,
        ];
        let regions = ["us-west-2".into(), "eu-west-1".into()];
        let failures = [RegionFailure {
            region: "eu-west-1".into(),
            error: "no AWS credentials".into(),
            code: ExitCode::NotAuthorized,
        }];
        assert_eq!(
            render(&outcomes, &regions, &failures, false),
            "INSTANCE             REGION     STATE    HOP LIMIT  ENDPOINT  RESULT\n\
             i-00000000000000002  us-west-2  running  1 -> 2     enabled   changed, applied\n\
             i-00000000000000004  us-west-2  stopped  1 -> 2     enabled   changed; applies when it starts\n\
             i-00000000000000003  us-west-2  running  1          enabled   failed (exit 5)\n\
             1 compliant instance not listed (--output json lists every one)\n\
             us-west-2: 4 selected, 1 compliant, 2 changed (1 applied, 1 stopped: applies at start), 1 failed\n\
             eu-west-1: could not read the selection: no AWS credentials\n\
             Failures:\n  i-00000000000000003: not authorized to call ec2:ModifyInstanceMetadataOptions on \
             i-00000000000000003: grant it\n\
             Note: 1 stopped instance is changed too: EC2 applies metadata options to a stopped instance when it starts.\n"
        );
    }

    #[test]
    fn the_summary_counts_each_outcome_once() {
        let outcomes = vec![
            outcome("i-00000000000000001", InstanceState::Running, Action::Unchanged),
            outcome("i-00000000000000002", InstanceState::Running, Action::NotCompliant),
            outcome("i-00000000000000003", InstanceState::Running, Action::Changed),
            Outcome::missing(&"i-00000000000000009".into(), "us-west-2"),
        ];
        let s = Summary::new(&outcomes, vec!["us-west-2".into()], &[], ExitCode::InstanceNotFound, 5);
        let t = &s.tally;
        assert_eq!((t.selected, t.compliant, t.not_compliant, t.changed, t.applied, t.failed), (3, 1, 1, 1, 1, 1));
        assert_eq!(t.to_change, 2, "the one not compliant and the one changed");
        assert_eq!(s.exit_code, 7);
        assert_eq!(s.line(), "selected 3, compliant 1, to change 2, changed 1, applied 1, failed 1");
        let failure = RegionFailure { region: "eu-west-1".into(), error: "hung".into(), code: ExitCode::Throttled };
        let s = Summary::new(&outcomes, vec!["us-west-2".into()], &[failure], ExitCode::Throttled, 5);
        assert!(s.line().ends_with(", failed 1, 1 region failed"), "{}", s.line());
    }
}
