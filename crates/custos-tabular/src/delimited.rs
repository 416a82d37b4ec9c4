//! CSV into rows: a required header row, RFC 4180 quoting, UTF-8, one typed JSON value per cell.

use crate::cell::{ColumnHint, csv_cell};
use crate::error::{Limit, TabularError, quoted};
use crate::{Row, TabularLimits};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

pub(crate) fn read(
    bytes: &[u8],
    hints: &HashMap<String, ColumnHint>,
    limits: &TabularLimits,
) -> Result<Vec<Row>, TabularError> {
    // Headers are read as an ordinary record so that their checks (UTF-8, empty, duplicate)
    // are ours, and `flexible` so that a short or long row is reported by us with its row number
    // rather than as the csv crate's error.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();

    let has_header = reader
        .read_byte_record(&mut record)
        .map_err(|_| malformed("the CSV header row cannot be read"))?;
    if !has_header {
        return Err(malformed("the CSV file is empty: a header row is required"));
    }
    let columns = header(&record, limits)?;
    let column_hints: Vec<ColumnHint> = columns
        .iter()
        .map(|name| hints.get(name).copied().unwrap_or_default())
        .collect();

    let mut rows = Vec::new();
    let mut row_number = 0usize;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // The csv crate's error text can quote the input; only the position is kept.
            Err(_) => {
                return Err(TabularError::Row {
                    row: row_number + 1,
                    column: None,
                    reason: "the CSV record cannot be read".into(),
                });
            }
        }
        row_number += 1;
        if row_number > limits.max_rows {
            return Err(TabularError::LimitExceeded {
                limit: Limit::Rows,
                max: limits.max_rows,
            });
        }
        if record.len() != columns.len() {
            return Err(TabularError::Row {
                row: row_number,
                column: None,
                reason: format!(
                    "expected {} fields (as in the header), found {}",
                    columns.len(),
                    record.len()
                ),
            });
        }
        let mut row = Map::new();
        for ((raw, name), hint) in record.iter().zip(&columns).zip(&column_hints) {
            let cell_error = |reason: String| TabularError::Row {
                row: row_number,
                column: Some(name.clone()),
                reason,
            };
            if raw.len() > limits.max_cell_bytes {
                return Err(cell_error(format!(
                    "the value is longer than {} bytes",
                    limits.max_cell_bytes
                )));
            }
            let text =
                std::str::from_utf8(raw).map_err(|_| cell_error("not valid UTF-8".into()))?;
            let value: Value = csv_cell(text, *hint).map_err(|r| cell_error(r.into()))?;
            row.insert(name.clone(), value);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The column names: UTF-8, none empty, none repeated, not too many.
fn header(record: &csv::ByteRecord, limits: &TabularLimits) -> Result<Vec<String>, TabularError> {
    if record.len() > limits.max_columns {
        return Err(TabularError::LimitExceeded {
            limit: Limit::Columns,
            max: limits.max_columns,
        });
    }
    let mut names = Vec::with_capacity(record.len());
    let mut seen = HashSet::with_capacity(record.len());
    for (index, raw) in record.iter().enumerate() {
        let position = index + 1;
        if raw.len() > limits.max_cell_bytes {
            return Err(malformed(&format!(
                "header field {position} is longer than {} bytes",
                limits.max_cell_bytes
            )));
        }
        let name = std::str::from_utf8(raw)
            .map_err(|_| malformed(&format!("header field {position} is not valid UTF-8")))?;
        if name.trim().is_empty() {
            return Err(malformed(&format!(
                "header field {position} is empty: every column needs a name"
            )));
        }
        if !seen.insert(name) {
            return Err(malformed(&format!(
                "the header names column {} twice",
                quoted(name)
            )));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

fn malformed(message: &str) -> TabularError {
    TabularError::Malformed(message.to_owned())
}
