//! One module per command, each a leaf: it turns its arguments into settings, runs under `process` (runtime,
//! signals, deadline), and reports. No command imports another; what two share lives below them (`agent`,
//! `reconcile`, `regions`, the AWS sides).
//!
//! To add a command: a variant with its `Args` (its own flags, and the shared groups it takes, flattened) in
//! `cli::Command`, a module here with `pub fn run(args) -> Result<ExitCode>`, and one arm in `run` below.

mod apply;
mod defaults;
mod doctor;
mod fleet;
mod templates;
mod watch;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exit::ExitCode;

/// Runs the command the command line names (`apply` when none): its exit code, or the error that ended it
/// before it could report.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    match cli.chosen() {
        Command::Apply(args) => apply::run(Config::apply(&args)?),
        Command::Check(args) => apply::run(Config::check(&args)?),
        Command::Doctor(args) => doctor::run(Config::doctor(&args)?),
        Command::Watch(args) => {
            let (config, watch) = Config::watch(&args)?;
            watch::run(config, watch)
        }
        Command::Fleet(args) => fleet::run(&args, cli.log.quiet > 0),
        Command::Defaults(args) => defaults::run(&args),
        Command::Templates(args) => templates::run(&args),
    }
}

/// The report of a run that ended before its command could report (its settings refused), in that command's
/// own `--output json` shape, so that a consumer reads the same keys on every path; `None` for `watch`,
/// which reports by its log.
pub fn failed(cli: &Cli, err: &Error) -> Option<serde_json::Value> {
    let agent =
        |t: &crate::cli::TargetArgs| apply::failed(t.instance_id.as_ref(), t.region.as_ref(), err, Default::default());
    match cli.chosen() {
        Command::Apply(args) => Some(agent(&args.target)),
        Command::Check(args) => Some(agent(&args.target)),
        Command::Doctor(_) => Some(doctor::failed(err)),
        Command::Fleet(_) => Some(fleet::failed(err)),
        Command::Defaults(_) => Some(defaults::failed(err)),
        Command::Templates(_) => Some(templates::failed(err)),
        Command::Watch(_) => None,
    }
}
