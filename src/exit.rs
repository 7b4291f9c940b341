//! The process exit codes, documented in README.md, and their merge: many outcomes (instances, regions,
//! accounts) as one code.

/// The process exit codes, documented in README.md and each locked by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Compliant: already, or changed and verified (or accepted, with `--no-wait`).
    Compliant = 0,
    Unexpected = 1,
    Usage = 2,
    /// `check` or `--dry-run` found a change to make.
    NotCompliant = 3,
    MetadataUnreachable = 4,
    NotAuthorized = 5,
    WaitTimeout = 6,
    InstanceNotFound = 7,
    /// EC2 throttled this account's requests (or kept failing) until the deadline, before any change.
    Throttled = 8,
    /// `defaults`: an AWS Organizations declarative policy manages the account's metadata defaults, so
    /// nothing was changed.
    ManagedElsewhere = 9,
    /// `--organization`: the organization's accounts could not be listed (the account is in no organization,
    /// or the credentials may not call organizations:ListAccounts there).
    Organization = 10,
    /// 128 + SIGINT, as shells report it.
    Interrupted = 130,
    /// 128 + SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// Failures from most to least severe, for merging many outcomes into one code: a refusal (credentials,
    /// authorization) blocks everything and needs the operator first; an unexpected failure next; then EC2's
    /// throttling (run again later), a change not yet applied, an instance not found, the rest.
    const SEVERITY: [ExitCode; 9] = [
        ExitCode::Organization,
        ExitCode::NotAuthorized,
        ExitCode::Unexpected,
        ExitCode::Throttled,
        ExitCode::WaitTimeout,
        ExitCode::InstanceNotFound,
        ExitCode::ManagedElsewhere,
        ExitCode::MetadataUnreachable,
        ExitCode::Usage,
    ];

    /// Many outcomes as one exit code: the most severe failure if any; else 3 if anything is (or would be)
    /// left to change; else 0. Signals end a run before there is anything to merge.
    pub fn merge(codes: impl IntoIterator<Item = ExitCode>) -> ExitCode {
        let mut worst = ExitCode::Compliant;
        let rank = |c: ExitCode| match c {
            ExitCode::Compliant => 0,
            ExitCode::NotCompliant => 1,
            other => 2 + Self::SEVERITY.iter().rev().position(|s| *s == other).unwrap_or(Self::SEVERITY.len()),
        };
        for code in codes {
            if rank(code) > rank(worst) {
                worst = code;
            }
        }
        worst
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        let table = [
            (ExitCode::Compliant, 0),
            (ExitCode::Unexpected, 1),
            (ExitCode::Usage, 2),
            (ExitCode::NotCompliant, 3),
            (ExitCode::MetadataUnreachable, 4),
            (ExitCode::NotAuthorized, 5),
            (ExitCode::WaitTimeout, 6),
            (ExitCode::InstanceNotFound, 7),
            (ExitCode::Throttled, 8),
            (ExitCode::ManagedElsewhere, 9),
            (ExitCode::Organization, 10),
            (ExitCode::Interrupted, 130),
            (ExitCode::Terminated, 143),
        ];
        for (code, n) in table {
            assert_eq!(code as u8, n, "{code:?}");
        }
    }

    #[test]
    fn merging_takes_the_most_severe_failure_then_not_compliant_then_compliant() {
        use ExitCode::*;
        assert_eq!(ExitCode::merge([]), Compliant);
        assert_eq!(ExitCode::merge([Compliant, Compliant]), Compliant);
        assert_eq!(ExitCode::merge([Compliant, NotCompliant, Compliant]), NotCompliant);
        assert_eq!(ExitCode::merge([NotCompliant, InstanceNotFound]), InstanceNotFound, "a failure beats 3");
        assert_eq!(ExitCode::merge([WaitTimeout, Throttled, InstanceNotFound]), Throttled);
        assert_eq!(ExitCode::merge([Throttled, Unexpected]), Unexpected);
        assert_eq!(ExitCode::merge([Unexpected, NotAuthorized, Compliant]), NotAuthorized);
        // Order does not matter.
        let all = [Compliant, NotCompliant, WaitTimeout, InstanceNotFound, Throttled, NotAuthorized, Unexpected];
        for rotation in 0..all.len() {
            let mut codes = all.to_vec();
            codes.rotate_left(rotation);
            assert_eq!(ExitCode::merge(codes), NotAuthorized);
        }
    }
}
