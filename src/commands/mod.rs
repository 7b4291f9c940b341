//! One module per command, each a leaf: it turns its arguments into settings, runs under `process` (runtime,
//! signals, deadline), and reports. No command imports another; what two share lives below them (`agent`,
//! `reconcile`, `regions`, the AWS sides).
//!
//! To add a command: a variant (with its `Args`) in `cli::Command`, a module here with
//! `pub fn run(cli, args) -> Result<ExitCode>`, and one arm in `run` below; `cli::not_used_by` names the
//! shared flags it does not take.

mod apply;
mod defaults;
mod doctor;
mod fleet;
mod watch;

use crate::cli::{Cli, Command};
use crate::error::{ExitCode, Result};

/// Runs the command the command line names (`apply` when none): its exit code, or the error that ended it
/// before it could report.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        None | Some(Command::Apply | Command::Check) => apply::run(cli),
        Some(Command::Doctor) => doctor::run(cli),
        Some(Command::Watch(_)) => watch::run(cli),
        Some(Command::Fleet(args)) => fleet::run(cli, args),
        Some(Command::Defaults(args)) => defaults::run(cli, args),
    }
}
