//! A report as a table, written as CSV or XLSX from the same rows: the same columns in both. Text
//! that a spreadsheet would run as a formula is made safe in both: in CSV with a leading `'`
//! (`analytics::csv_field`); in XLSX every text is a string cell, which a spreadsheet never
//! evaluates.

use crate::analytics::csv_field;

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Int(u64),
    Num(f64),
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<Option<&str>> for Cell {
    fn from(s: Option<&str>) -> Cell {
        s.map_or(Cell::Empty, Cell::from)
    }
}

impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        Cell::Int(n)
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Cell {
        Cell::Int(u64::from(b))
    }
}

pub struct Table {
    pub sheet: &'static str,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn csv(&self) -> String {
        debug_assert!(self.rows.iter().all(|r| r.len() == self.header.len()), "a row as wide as the header");
        let mut out = self.header.join(",");
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    Cell::Text(s) => csv_field(s),
                    Cell::Int(n) => n.to_string(),
                    Cell::Num(x) => format!("{x:.4}"),
                    Cell::Empty => String::new(),
                })
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// The XLSX file: one sheet, the header in bold and frozen, text as text.
    pub fn xlsx(&self) -> Result<Vec<u8>, String> {
        use rust_xlsxwriter::{Format, Workbook};
        debug_assert!(self.rows.iter().all(|r| r.len() == self.header.len()), "a row as wide as the header");
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        let e = |e: rust_xlsxwriter::XlsxError| e.to_string();
        sheet.set_name(self.sheet).map_err(e)?;
        let bold = Format::new().set_bold();
        for (col, h) in self.header.iter().enumerate() {
            sheet.write_string_with_format(0, col as u16, *h, &bold).map_err(e)?;
        }
        for (i, row) in self.rows.iter().enumerate() {
            let r = u32::try_from(i + 1).map_err(|_| "too many rows".to_owned())?;
            for (col, cell) in row.iter().enumerate() {
                let col = col as u16;
                match cell {
                    // Excel's cells hold at most 32,767 characters.
                    Cell::Text(s) => {
                        let s: String = s.chars().take(32_767).collect();
                        sheet.write_string(r, col, s).map_err(e)?;
                    }
                    Cell::Int(n) => {
                        sheet.write_number(r, col, *n as f64).map_err(e)?;
                    }
                    Cell::Num(x) => {
                        sheet.write_number(r, col, *x).map_err(e)?;
                    }
                    Cell::Empty => {}
                }
            }
        }
        sheet.set_freeze_panes(1, 0).map_err(e)?;
        book.save_to_buffer().map_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_xlsx_hold_the_same_rows_and_no_formula() {
        let t = Table {
            sheet: "calls",
            header: vec!["source", "calls", "rate"],
            rows: vec![
                vec![Cell::from("=HYPERLINK(\"x\")"), Cell::Int(2), Cell::Num(0.5)],
                vec![Cell::Empty, 0.into(), Cell::Empty],
            ],
        };
        assert_eq!(t.csv(), "source,calls,rate\n\"'=HYPERLINK(\"\"x\"\")\",2,0.5000\n,0,\n");
        let xlsx = t.xlsx().unwrap();
        assert_eq!(&xlsx[..2], b"PK", "a zip file");
    }
}
