//! Logs go to stderr, readable, without colour when stderr is not a terminal, without a timestamp when
//! journald adds its own.

use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets, filter_fn};
use tracing_subscriber::prelude::*;

/// `-v`/`-q` set the level of this program's own logs; `RUST_LOG`, when set, replaces that filter (levels and
/// `target=level` directives; only this program's own events are ever shown, so no finer filter is needed, and
/// none is parsed: `Targets` needs no regex engine in the binary).
pub fn init(verbose: u8, quiet: u8) {
    let ours = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (2.., _) => "trace",
        (_, 1) => "warn",
        (_, _) => "error",
    };
    let from_env =
        std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()).and_then(|v| v.parse::<Targets>().ok());
    let filter = from_env.unwrap_or_else(|| {
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("imds_hop_limit", ours.parse().unwrap_or(LevelFilter::INFO))
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Under systemd, journald stamps every line itself: a second timestamp is noise.
    let layer = if std::env::var_os("JOURNAL_STREAM").is_some() { layer.without_time().boxed() } else { layer.boxed() };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(ours_only()).with_filter(LevelFilter::TRACE))
        .init();
}

/// Only this program's own events are shown, at any level and whatever RUST_LOG asks. Other crates' events
/// carry secrets and raw remote text: the endpoint resolver prints the access key id at debug, trace dumps
/// raw requests and responses, and even a WARN of the credentials provider renders IMDS's whole error
/// response (an error page can echo the request's token header). Every failure the SDK reports reaches this
/// program as an error value, which it shows through `remote`, bounded and redacted.
fn ours_only<S>() -> impl tracing_subscriber::layer::Filter<S> {
    filter_fn(|meta| meta.target().starts_with("imds_hop_limit"))
}
