//! What a run did with one instance, or with one region's defaults: the `action` every report prints, and
//! the exit code it stands for. One vocabulary for the agent, the fleet and the defaults, one mapping from the
//! planner's step to what is reported before anything is sent, and one from an outcome to its exit code.

use crate::exit::ExitCode;
use crate::plan::{MetadataOptions, State, Step};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Already compliant (or the wanted values, pending): nothing was sent.
    Unchanged,
    /// `check`: a change is needed.
    NotCompliant,
    /// `--dry-run`: EC2 says the change would be authorized.
    WouldChange,
    /// EC2 took the change, not verified: the fleet's `--no-wait`, or an interrupted fleet run. (The agent
    /// says `changed` with `"verified": false` for its `--no-wait`.)
    Accepted,
    /// Changed, and read back applied (the agent's `--no-wait`: accepted, `verified` false).
    Changed,
    /// A stopped instance, changed and read back with the new values: EC2 applies them when it starts.
    #[serde(rename = "changed-applies-at-start")]
    AppliesAtStart,
    /// `defaults`: an AWS Organizations declarative policy manages them; nothing was sent.
    ManagedElsewhere,
    Failed,
}

impl Action {
    /// The exit code this outcome stands for: compliant, not compliant, or (managed elsewhere, failed) the
    /// code of what went wrong, `failed`.
    pub fn exit_code(self, failed: ExitCode) -> ExitCode {
        match self {
            Action::Unchanged | Action::Accepted | Action::Changed | Action::AppliesAtStart => ExitCode::Compliant,
            Action::NotCompliant | Action::WouldChange => ExitCode::NotCompliant,
            Action::ManagedElsewhere | Action::Failed => failed,
        }
    }
}

/// What a step reports before anything is sent, `(action, verified)`: verified only where EC2's read said
/// `applied`. `None` where the run goes on: a change to send, or somebody's pending one to see through.
pub fn before_sending(step: &Step, read: &MetadataOptions) -> Option<(Action, bool)> {
    match step {
        Step::Nothing => Some((Action::Unchanged, read.state == Some(State::Applied))),
        Step::NotCompliant => Some((Action::NotCompliant, false)),
        Step::LeavePending => Some((Action::Unchanged, false)),
        Step::SeeThrough | Step::Send { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, HopLimit};

    #[test]
    fn each_outcome_has_its_exit_code_and_each_step_its_report() {
        use Action::*;
        for a in [Unchanged, Accepted, Changed, AppliesAtStart] {
            assert_eq!(a.exit_code(ExitCode::Unexpected), ExitCode::Compliant, "{a:?}");
        }
        for a in [NotCompliant, WouldChange] {
            assert_eq!(a.exit_code(ExitCode::Unexpected), ExitCode::NotCompliant, "{a:?}");
        }
        assert_eq!(Failed.exit_code(ExitCode::Throttled), ExitCode::Throttled);
        assert_eq!(ManagedElsewhere.exit_code(ExitCode::ManagedElsewhere), ExitCode::ManagedElsewhere);
        let applied = MetadataOptions { state: Some(State::Applied), ..MetadataOptions::default() };
        let pending = MetadataOptions { state: Some(State::Pending), ..MetadataOptions::default() };
        assert_eq!(before_sending(&Step::Nothing, &applied), Some((Unchanged, true)));
        assert_eq!(before_sending(&Step::Nothing, &pending), Some((Unchanged, false)));
        assert_eq!(before_sending(&Step::NotCompliant, &applied), Some((NotCompliant, false)));
        assert_eq!(before_sending(&Step::LeavePending, &pending), Some((Unchanged, false)));
        assert_eq!(before_sending(&Step::SeeThrough, &pending), None);
        let change = Change { hop_limit: HopLimit::new(2), ..Change::default() };
        assert_eq!(before_sending(&Step::Send { change, dry_run: false }, &applied), None);
        // The words the reports print, the agent's, the fleet's and the defaults' alike.
        let words: Vec<String> =
            [Unchanged, NotCompliant, WouldChange, Accepted, Changed, AppliesAtStart, ManagedElsewhere, Failed]
                .iter()
                .map(|a| serde_json::to_value(a).unwrap().as_str().unwrap().to_string())
                .collect();
        assert_eq!(
            words,
            [
                "unchanged",
                "not-compliant",
                "would-change",
                "accepted",
                "changed",
                "changed-applies-at-start",
                "managed-elsewhere",
                "failed"
            ]
        );
    }
}
