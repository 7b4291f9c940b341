//! What a fleet run shows while it runs: the live counts, on a progress bar when stderr is a terminal, else a
//! log line per milestone. The final report counts from the outcomes themselves (`report::Tally`).

use std::cell::Cell;

/// The live counts, shown as they change.
pub struct Counts {
    selected: Cell<usize>,
    compliant: Cell<usize>,
    to_change: Cell<usize>,
    changed: Cell<usize>,
    applied: Cell<usize>,
    failed: Cell<usize>,
    bar: Option<indicatif::ProgressBar>,
    /// The last line logged (without a bar), with the span it was logged in (an account of an org-wide run),
    /// so that an unchanged round is not logged again, and the same line of another account is.
    last: std::cell::RefCell<(Option<u64>, String)>,
}

impl Counts {
    /// With a progress bar when stderr is a terminal and `quiet` is not set.
    pub fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Counts {
            selected: 0.into(),
            compliant: 0.into(),
            to_change: 0.into(),
            changed: 0.into(),
            applied: 0.into(),
            failed: 0.into(),
            bar,
            last: Default::default(),
        }
    }

    pub fn add_selected(&self, n: usize) {
        self.selected.set(self.selected.get() + n);
    }
    pub fn add_compliant(&self) {
        self.compliant.set(self.compliant.get() + 1);
    }
    pub fn add_to_change(&self) {
        self.to_change.set(self.to_change.get() + 1);
    }
    pub fn add_changed(&self) {
        self.changed.set(self.changed.get() + 1);
    }
    pub fn add_applied(&self) {
        self.applied.set(self.applied.get() + 1);
    }
    pub fn add_failed(&self) {
        self.failed.set(self.failed.get() + 1);
    }
    /// A change EC2 accepted that then failed (not applied in time, read back refused): counted once, as
    /// failed, as the report counts it.
    pub fn changed_then_failed(&self) {
        self.changed.set(self.changed.get().saturating_sub(1));
        self.add_failed();
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "selected {}, compliant {}, to change {}, changed {}, applied {}, failed {}",
            self.selected.get(),
            self.compliant.get(),
            self.to_change.get(),
            self.changed.get(),
            self.applied.get(),
            self.failed.get()
        )
    }
}

/// Says where the run is: the totals on the bar, or `line` in the log when it differs from the last one.
pub fn milestone(counts: &Counts, line: &str) {
    match &counts.bar {
        Some(bar) => bar.set_message(counts.to_string()),
        None => {
            let span = tracing::Span::current().id().map(|id| id.into_u64());
            let mut last = counts.last.borrow_mut();
            if last.0 != span || last.1 != line {
                tracing::info!("{line}");
                *last = (span, line.to_string());
            }
        }
    }
}
