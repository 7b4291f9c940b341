//! Logs go to stderr, readable, without colour when stderr is not a terminal, without a timestamp when
//! journald adds its own.

use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::prelude::*;

/// `-v`/`-q` set the level of this program's own logs; `RUST_LOG`, when set, replaces that filter.
pub fn init(verbose: u8, quiet: u8) {
    let ours = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (2.., _) => "trace",
        (_, 1) => "warn",
        (_, _) => "error",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("warn,imds_hop_limit={ours}")));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Under systemd, journald stamps every line itself: a second timestamp is noise.
    let layer = if std::env::var_os("JOURNAL_STREAM").is_some() { layer.without_time().boxed() } else { layer.boxed() };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(third_party_at_most_info()).with_filter(LevelFilter::TRACE))
        .init();
}

/// The SDK's debug and trace events carry secrets: the endpoint resolver prints the access key id at
/// debug, and at trace the raw requests and responses hold the IMDS token and the role's credentials.
/// So they are never shown, whatever RUST_LOG asks; `-v` and `-vv` raise this program's own detail.
fn third_party_at_most_info<S>() -> impl tracing_subscriber::layer::Filter<S> {
    filter_fn(|meta| *meta.level() <= Level::INFO || meta.target().starts_with("imds_hop_limit"))
}
