//! The progress bar of the long maintenance commands (`audit verify`,
//! `projections rebuild`): drawn on a terminal's stderr, hidden when
//! stderr is not a terminal (a pipe, a log), so scripts see only the
//! result lines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the bar reads the counter.
const TICK: Duration = Duration::from_millis(200);

/// A bar that follows a counter of events done, out of about `total`.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Shows `what` with a bar over `total` events, fed by `done`.
    pub fn show(what: &'static str, total: u64, done: Arc<AtomicU64>) -> Self {
        let bar = if std::io::stderr().is_terminal() { ProgressBar::new(total) } else { ProgressBar::hidden() };
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({per_sec}, {eta} left)",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what);
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                ticking.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(TICK).await;
            }
        });
        Self { bar, ticker }
    }

    /// Takes the bar off the terminal.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
