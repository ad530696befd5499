//! `--watch`: draws a view again and again until Ctrl-C (or `--watch-count` views). On a
//! terminal the screen is redrawn in place every interval with a footer saying when; on a pipe a
//! new view is printed, after a blank line, only when it changed (ages alone do not count), so a
//! script reading it sees each change once.
//!
//! The first view must succeed (a wrong address or a refusal exits 1 at once). Later, an error
//! the next attempt may not have (the control plane unreachable or unavailable) is reported on
//! stderr in one line and retried with backoff; any other error ends the watch with it.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use crate::cells;
use crate::error::CliError;
use crate::terminal::{Terminal, CLEAR};

/// The longest pause between attempts while the control plane fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WatchOptions {
    pub interval: Duration,
    /// Stop after this many views were printed.
    pub count: Option<u64>,
}

/// One view: what a terminal shows, what a pipe gets, and what counts as a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub painted: String,
    pub plain: String,
    /// The view without what changes by itself (ages).
    pub key: String,
}

/// Prints `draw()`'s views to `out` as the module says, until Ctrl-C or `options.count`.
pub(crate) async fn watch<F, Fut>(
    mut draw: F,
    options: WatchOptions,
    terminal: Terminal,
    out: &mut dyn Write,
) -> Result<(), CliError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<View, CliError>>,
{
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0u64;
    let mut last_key: Option<String> = None;
    let mut pause = options.interval;
    loop {
        let view = tokio::select! {
            view = draw() => view,
            _ = &mut interrupted => return Ok(()),
        };
        match view {
            Ok(view) => {
                pause = options.interval;
                if terminal.interactive {
                    let every = cells::age(options.interval.as_secs() as i64);
                    let now = chrono::Local::now().format("%H:%M:%S");
                    write!(
                        out,
                        "{CLEAR}{}\nEvery {every}, last at {now}; Ctrl-C stops.\n",
                        view.painted
                    )?;
                    printed += 1;
                } else if last_key.as_deref() != Some(view.key.as_str()) {
                    if printed > 0 {
                        writeln!(out)?;
                    }
                    write!(out, "{}", view.plain)?;
                    printed += 1;
                    last_key = Some(view.key);
                }
                out.flush()?;
            }
            Err(CliError::Client(e)) if printed > 0 && e.is_retryable() => {
                pause = (pause * 2).min(MAX_BACKOFF);
                // The view on stdout stays clean for scripts; the hiccup goes to stderr.
                eprintln!("kumactl: {e}; trying again in {}", cells::age(pause.as_secs() as i64));
            }
            Err(e) => return Err(e),
        }
        if options.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut interrupted => return Ok(()),
        }
    }
}
