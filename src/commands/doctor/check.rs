//! The check model and its renderer: one step's status, detail and hint; the exit code of a diagnosis; the text.

use crate::error::Error;
use crate::exit::ExitCode;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub step: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The exit code a failure of this step means (the table apply uses).
    #[serde(skip)]
    pub code: Option<ExitCode>,
}

impl Check {
    pub(super) fn ok(step: &'static str, detail: impl Into<String>) -> Self {
        Check { step, status: Status::Ok, detail: detail.into(), hint: None, code: None }
    }
    pub(super) fn warn(step: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Check { step, status: Status::Warn, detail: detail.into(), hint: Some(hint.into()), code: None }
    }
    pub(super) fn skip(step: &'static str, why: &str) -> Self {
        Check { step, status: Status::Skip, detail: format!("skipped: {why}"), hint: None, code: None }
    }
    pub(super) fn fail(step: &'static str, err: &Error, hint: Option<String>) -> Self {
        Check { step, status: Status::Fail, detail: err.to_string(), hint, code: Some(err.exit_code()) }
    }
}

/// The exit code of the first blocking failure, else 0.
pub fn exit_code(checks: &[Check]) -> ExitCode {
    checks.iter().find_map(|c| c.code.filter(|_| c.status == Status::Fail)).unwrap_or(ExitCode::Compliant)
}

/// One line per step, the hint under a failure or warning.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Ok => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        };
        out.push_str(&format!("{mark} {:<34} {}\n", c.step, c.detail));
        if let Some(hint) = &c.hint {
            if c.status != Status::Ok {
                out.push_str(&format!("       {:<34} -> {hint}\n", ""));
            }
        }
    }
    out
}
