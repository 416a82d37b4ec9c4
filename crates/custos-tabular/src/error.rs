//! The one error type of this crate. Messages name positions, columns and reasons, never values.

use std::fmt;

/// Which of [`crate::TabularLimits`] was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The file's size in bytes (for Parquet, also the uncompressed size its metadata declares).
    Bytes,
    /// The number of data rows.
    Rows,
    /// The number of columns (for Parquet, leaf columns).
    Columns,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Bytes => "bytes",
            Limit::Rows => "rows",
            Limit::Columns => "columns",
        })
    }
}

/// Why a file could not be turned into rows.
///
/// `Row` and `Line` carry the column name as found in the file (so a caller can match it against a
/// schema); their `Display` shows it quoted, with control characters escaped and long names cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TabularError {
    /// The file is larger than a limit allows: the whole upload is refused.
    #[error("the file has more than {max} {limit}, the most one upload may have")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The limit's value.
        max: usize,
    },
    /// The file as a whole cannot be read (not the format it claims, a bad header, a corrupt
    /// Parquet structure). The message is this crate's own text.
    #[error("{0}")]
    Malformed(String),
    /// One CSV or Parquet data row is wrong. `row` is 1-based, header not counted.
    #[error("row {row}{}: {reason}", column_suffix(column.as_deref()))]
    Row {
        /// 1-based data row.
        row: usize,
        /// The column at fault, when one is.
        column: Option<String>,
        /// What is wrong (never the value).
        reason: String,
    },
    /// One NDJSON line is wrong. `line` is the 1-based line of the file.
    #[error("line {line}{}: {reason}", column_suffix(column.as_deref()))]
    Line {
        /// 1-based line number in the file.
        line: usize,
        /// The key at fault, when one is.
        column: Option<String>,
        /// What is wrong (never the value).
        reason: String,
    },
    /// A Parquet column has an Arrow type that has no JSON form here (lists, structs, binary, …).
    #[error(
        "column {} has the Arrow type {data_type}, which is not supported",
        quoted(column)
    )]
    UnsupportedType {
        /// The column.
        column: String,
        /// The Arrow type, as Arrow names it.
        data_type: String,
    },
}

/// The longest column name shown in a message; longer ones are cut (a hostile header could be
/// megabytes long and would flood logs).
const MAX_SHOWN_NAME: usize = 100;

fn column_suffix(column: Option<&str>) -> String {
    match column {
        Some(name) => format!(", column {}", quoted(name)),
        None => String::new(),
    }
}

/// Quotes a column name for a message: control characters escaped, at most [`MAX_SHOWN_NAME`]
/// characters.
pub(crate) fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_SHOWN_NAME) + 2);
    out.push('\'');
    for (i, c) in name.chars().enumerate() {
        if i == MAX_SHOWN_NAME {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_row_column_and_reason() {
        let e = TabularError::Row {
            row: 17,
            column: Some("amount".into()),
            reason: "expected a number".into(),
        };
        assert_eq!(e.to_string(), "row 17, column 'amount': expected a number");
        let e = TabularError::Line {
            line: 3,
            column: None,
            reason: "not a JSON object".into(),
        };
        assert_eq!(e.to_string(), "line 3: not a JSON object");
        let e = TabularError::LimitExceeded {
            limit: Limit::Rows,
            max: 10,
        };
        assert_eq!(
            e.to_string(),
            "the file has more than 10 rows, the most one upload may have"
        );
    }

    #[test]
    fn column_names_are_escaped_and_cut() {
        assert_eq!(quoted("a\nb"), "'a\\nb'");
        let long = "x".repeat(500);
        let shown = quoted(&long);
        assert!(shown.chars().count() < 110);
        assert!(shown.ends_with("…'"));
    }
}
