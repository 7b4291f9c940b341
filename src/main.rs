mod cli;
mod config;
mod doctor;
mod ec2;
mod error;
mod imds;
mod logging;
mod plan;
mod reconcile;
mod run;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.options.verbose, cli.options.quiet);
    let code = match config::Config::from_cli(&cli) {
        Ok(config) => run::main(config),
        Err(err) => {
            tracing::error!("{err}");
            err.exit_code()
        }
    };
    code.into()
}
