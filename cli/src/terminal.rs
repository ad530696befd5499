//! `Terminal`: what kumactl's standard output is. A terminal gets colours (unless `NO_COLOR` is
//! set) and `--watch` redraws in place; a pipe or a file gets plain text, a new table only when
//! something changed.

use std::io::IsTerminal;

/// Green, for what is well (a dataplane Online).
pub(crate) const GREEN: &str = "\x1b[32m";
/// Red, for what is not (a dataplane Offline).
pub(crate) const RED: &str = "\x1b[31m";
/// Back to the terminal's own colour.
pub(crate) const RESET: &str = "\x1b[0m";
/// Cursor to the top left, then clear the screen.
pub(crate) const CLEAR: &str = "\x1b[H\x1b[2J";

/// Where kumactl's output goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    /// A person watches it: `--watch` redraws the screen instead of appending.
    pub interactive: bool,
    /// It shows ANSI colours.
    pub colour: bool,
}

impl Terminal {
    /// Plain text: a pipe, a file, a test's buffer.
    pub fn plain() -> Terminal {
        Terminal::default()
    }

    /// What the process's standard output is, with `NO_COLOR` (any non-empty value, see
    /// no-color.org) turning colours off.
    pub fn detect() -> Terminal {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Terminal::of(std::io::stdout().is_terminal(), no_colour)
    }

    /// A terminal when `is_terminal`, with colours unless `no_colour`.
    pub fn of(is_terminal: bool, no_colour: bool) -> Terminal {
        Terminal { interactive: is_terminal, colour: is_terminal && !no_colour }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_and_never_with_no_color() {
        assert_eq!(Terminal::of(true, false), Terminal { interactive: true, colour: true });
        assert_eq!(Terminal::of(true, true), Terminal { interactive: true, colour: false });
        assert_eq!(Terminal::of(false, false), Terminal::plain());
        assert_eq!(Terminal::of(false, true), Terminal::plain());
    }
}
