//! What a fleet run shows while it runs: on a progress bar when stderr is a terminal, the run's totals so far,
//! counted from the run's one store of outcomes by the report's own count (`report::Tally`); else a log line
//! per milestone, in the same words.

use super::report::Tally;

/// The live view of a run: the bar (or the last line logged) and where its totals come from.
pub struct Live<'a> {
    /// The totals so far, from the outcomes themselves: asked only when there is a bar to show them on.
    totals: Box<dyn Fn() -> Tally + 'a>,
    bar: Option<indicatif::ProgressBar>,
    /// The last line logged (without a bar), with the span it was logged in (an account of an org-wide run),
    /// so that an unchanged round is not logged again, and the same line of another account is.
    last: std::cell::RefCell<(Option<u64>, String)>,
}

impl<'a> Live<'a> {
    /// With a progress bar when stderr is a terminal and `quiet` is not set.
    pub fn new(quiet: bool, totals: impl Fn() -> Tally + 'a) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Live { totals: Box::new(totals), bar, last: Default::default() }
    }

    /// The run's totals so far.
    pub fn totals(&self) -> Tally {
        (self.totals)()
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Says where the run is: the run's totals on the bar, or `line` in the log when it differs from the last one.
pub fn milestone(live: &Live, line: &str) {
    match &live.bar {
        Some(bar) => bar.set_message(live.totals().to_string()),
        None => {
            let span = tracing::Span::current().id().map(|id| id.into_u64());
            let mut last = live.last.borrow_mut();
            if last.0 != span || last.1 != line {
                tracing::info!("{line}");
                *last = (span, line.to_string());
            }
        }
    }
}
