//! Golden files: a test's output compared with a checked-in file, and rewritten instead when
//! `GOLDEN_UPDATE=1` is set (then review the change with `git diff` before committing it).

use std::path::Path;

/// The variable that rewrites golden files instead of comparing with them.
pub const UPDATE_VARIABLE: &str = "GOLDEN_UPDATE";

/// Compares `actual` with the golden file at `path`: `None` when they are equal (or the file
/// was just rewritten), otherwise a report naming the file with a line diff around each change.
pub fn compare(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os(UPDATE_VARIABLE).is_some() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("rewrite {}: {e}", path.display()));
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| {
        format!("--- {} (- golden, + now)\n{}", path.display(), line_diff(&expected, actual))
    })
}

/// Panics with the report of [`compare`] when `actual` differs from the golden file at `path`.
pub fn must_match(path: &Path, actual: &str) {
    if let Some(report) = compare(path, actual) {
        panic!("{report}\n({UPDATE_VARIABLE}=1 rewrites the golden file; review the diff)");
    }
}

/// Panics with every report when some of the golden files differ.
pub fn must_all_match(reports: Vec<String>, what: &str) {
    assert!(
        reports.is_empty(),
        "{what} differ from the golden files ({UPDATE_VARIABLE}=1 rewrites them; review the diff):\n{}",
        reports.join("\n")
    );
}

/// A line diff of `expected` to `actual` (longest common subsequence): changed lines marked `-`
/// and `+`, two lines of context around each change, `...` for what is left out.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // Longest common subsequence table, from the ends.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        lines[k.saturating_sub(2)..(k + 3).min(lines.len())].iter().any(|(tag, _)| *tag != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (tag, line)) in lines.iter().enumerate() {
        if near_change(k) {
            out.push_str(&format!("{tag} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("  ...\n");
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_changed_lines_with_context_and_elides_the_rest() {
        let expected = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let actual = "a\nb\nc\nd\ne\nf\nG\nh\n";
        assert_eq!(line_diff(expected, actual), "  ...\n  e\n  f\n- g\n+ G\n  h\n");
        assert_eq!(line_diff("x\n", "x\ny\n"), "  x\n+ y\n");
    }
}
