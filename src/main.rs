mod cli;
mod config;
mod defaults;
mod doctor;
mod ec2;
mod error;
#[cfg(test)]
mod fakes;
mod fleet;
mod hops;
mod imds;
mod logging;
mod plan;
mod reconcile;
mod remote;
mod report;
mod run;
mod sense;
mod wait;
mod watch;

use std::process::ExitCode;

fn main() -> ExitCode {
    drop_empty_aws_variables();
    let cli = match cli::Cli::parse_or_explain(std::env::args_os().collect()) {
        Ok(cli) => cli,
        // --help and --version are "errors" that print to stdout and succeed.
        Err((message, help)) => return run::emit_usage(&message, help).into(),
    };
    logging::init(cli.options.verbose, cli.options.quiet);
    let code = match &cli.command {
        Some(cli::Command::Fleet(args)) => fleet::main(&cli, args),
        Some(cli::Command::Defaults(args)) => defaults::main(&cli, args),
        _ => match config::Config::from_cli(&cli) {
            Ok(config) => run::main(config),
            Err(err) => {
                tracing::error!("{err}");
                err.exit_code()
            }
        },
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
