//! `Table`: column-aligned text the way Kuma prints it (Go's `tabwriter` with padding 3): every
//! column but the last is padded to its widest cell plus three spaces.

use std::fmt;

/// Spaces between the widest cell of a column and the next column.
const PADDING: usize = 3;

/// A header row and data rows, rendered with aligned columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table { rows: vec![header.into_iter().map(Into::into).collect()] }
    }

    /// Appends a data row.
    pub fn push<I, S>(&mut self, row: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// Number of data rows (the header is not counted).
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indices of the columns whose header is `title`.
    pub fn columns_titled(&self, title: &str) -> Vec<usize> {
        let header = self.rows.first().map(Vec::as_slice).unwrap_or_default();
        header.iter().enumerate().filter(|(_, h)| *h == title).map(|(i, _)| i).collect()
    }

    /// The same table without the given columns (e.g. ages, to tell whether anything else
    /// changed).
    pub fn without_columns(&self, columns: &[usize]) -> Table {
        let rows = self
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(i, _)| !columns.contains(i))
                    .map(|(_, cell)| cell.clone())
                    .collect()
            })
            .collect();
        Table { rows }
    }

    /// The table as text with data cells coloured by `colour(column, cell)` (an ANSI escape, or
    /// `None` for none); widths are those of the plain text, so columns stay aligned.
    pub fn painted(&self, colour: impl Fn(usize, &str) -> Option<&'static str>) -> String {
        let mut text = String::new();
        self.render(
            &mut text,
            |row, column, cell| if row == 0 { None } else { colour(column, cell) },
        )
        .expect("writing to a String cannot fail");
        text
    }

    fn render(
        &self,
        f: &mut dyn fmt::Write,
        colour: impl Fn(usize, usize, &str) -> Option<&'static str>,
    ) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for (r, row) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                match colour(r, i, cell) {
                    Some(code) => {
                        line.push_str(code);
                        line.push_str(cell);
                        line.push_str(crate::terminal::RESET);
                    }
                    None => line.push_str(cell),
                }
                if i + 1 < row.len() {
                    let pad = widths[i] + PADDING - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(f, |_, _, _| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_plus_three_except_the_last() {
        let mut table = Table::new([
            "MESH",
            "NAME",
            "TAGS",
            "STATUS",
            "LAST CONNECTED AGO",
            "LAST UPDATED AGO",
            "TOTAL UPDATES",
            "TOTAL ERRORS",
        ]);
        table.push(["default", "dp-echo-1", "service=echo", "Offline", "never", "never", "0", "0"]);
        // Kuma's output in the seeds (003), byte for byte.
        assert_eq!(
            table.to_string(),
            "MESH      NAME        TAGS           STATUS    LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS\n\
             default   dp-echo-1   service=echo   Offline   never                never              0               0\n"
        );
    }

    #[test]
    fn an_empty_table_is_just_the_header() {
        let table = Table::new(["MESH", "NAME", "AGE"]);
        assert!(table.is_empty());
        assert_eq!(table.to_string(), "MESH   NAME   AGE\n");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::new(["A", "B"]);
        table.push(["ünï", "x"]);
        assert_eq!(table.to_string(), "A     B\nünï   x\n");
    }

    #[test]
    fn painted_cells_keep_the_columns_of_the_plain_table() {
        let mut table = Table::new(["NAME", "STATUS", "AGE"]);
        table.push(["a", "Online", "1s"]);
        let painted = table.painted(|column, _| (column == 1).then_some("\x1b[32m"));
        assert_eq!(painted, "NAME   STATUS   AGE\na      \x1b[32mOnline\x1b[0m   1s\n");
        assert_eq!(table.without_columns(&[2]).to_string(), "NAME   STATUS\na      Online\n");
        assert_eq!(table.columns_titled("AGE"), [2]);
    }

    #[test]
    fn empty_cells_still_take_the_padding() {
        let mut table = Table::new(["NAME", "TAGS", "AGE"]);
        table.push(["gw", "", "1s"]);
        assert_eq!(table.to_string(), "NAME   TAGS   AGE\ngw            1s\n");
    }
}
