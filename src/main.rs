mod accounts;
mod agent;
mod cli;
mod commands;
mod config;
mod duration;
mod ec2;
mod error;
mod exit;
#[cfg(test)]
mod fakes;
mod hops;
mod ids;
mod imds;
mod logging;
mod outcome;
mod plan;
mod process;
mod reconcile;
mod regions;
mod remote;
mod retry;
mod runner;
mod sense;
mod source;
mod table;
mod verify;
mod wait;

use std::process::ExitCode;

fn main() -> ExitCode {
    drop_empty_aws_variables();
    let cli = match cli::Cli::parse_or_explain(std::env::args_os().collect()) {
        Ok(cli) => cli,
        // --help and --version are "errors" that print to stdout and succeed.
        Err((message, help)) => return process::emit_usage(&message, help).into(),
    };
    logging::init(cli.log.verbose, cli.log.quiet);
    let code = match commands::run(&cli) {
        Ok(code) => code,
        // The one path from an error to its exit code; `--output json` gets its one object on a failure too.
        Err(err) => {
            tracing::error!("{err}");
            let code = err.exit_code();
            if cli.output() == cli::Output::Json {
                if let Some(report) = commands::failed(&cli, &err) {
                    process::emit_json(&report);
                }
            }
            code
        }
    };
    code.into()
}

/// An empty `AWS_*` variable (a templating leftover in a unit file or `docker run -e`) counts as unset, as
/// for the AWS CLI; the SDK would otherwise abort on an empty `AWS_ENDPOINT_URL`.
fn drop_empty_aws_variables() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(k, v)| k.to_str().is_some_and(|k| k.starts_with("AWS_")) && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for name in empty {
        // SAFETY: first thing in main, before the runtime, logging or anything else starts a thread.
        unsafe { std::env::remove_var(name) };
    }
}
