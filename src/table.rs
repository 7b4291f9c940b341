//! The text reports' tables: a header and rows, each column as wide as its widest cell, two spaces between,
//! no trailing space. The cells are the caller's, already made safe to show.

use std::fmt::Write as _;

/// The table, a line each for the header and every row; nothing when there is no row.
pub fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_as_wide_as_their_widest_cell_with_no_trailing_space() {
        let header = ["ID", "NAME"].map(String::from).to_vec();
        let rows = vec![vec!["i-1".to_string(), "web".to_string()], vec!["i-22".to_string(), String::new()]];
        assert_eq!(super::render(&header, &rows), "ID    NAME\ni-1   web\ni-22\n");
        assert_eq!(super::render(&header, &[]), "");
    }
}
