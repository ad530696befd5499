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
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
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
    fn empty_cells_still_take_the_padding() {
        let mut table = Table::new(["NAME", "TAGS", "AGE"]);
        table.push(["gw", "", "1s"]);
        assert_eq!(table.to_string(), "NAME   TAGS   AGE\ngw            1s\n");
    }
}
