//! Custos tabular uploads: an uploaded CSV, NDJSON or Parquet file, as bytes, into JSON row objects.
//!
//! Owns: recognising the three formats (by media type or file extension), turning CSV text cells
//! into typed JSON values under per-column hints, mapping Parquet's Arrow types to JSON, and the
//! size limits that bound the work one upload can cause. The result is plain
//! `serde_json::Map` rows; checking them against a model's schema and masking them is the
//! caller's job (`custos-core`), as it is for records sent to the ingest endpoint.
//!
//! Must not: do IO, async, logging, or depend on other Custos crates. Library code never panics
//! on input (the workspace lints deny unwrap/expect/panic/indexing), and the Parquet decoder,
//! which upstream may panic on hostile files, runs under `catch_unwind`.
//!
//! Errors never contain a cell value (values may be personal data): they name the row or line,
//! the column, and the reason only. Row numbers are 1-based data rows: for CSV the header is not
//! counted, so "row 1" is the first record after the header; for NDJSON errors name the 1-based
//! line of the file (blank lines included); for Parquet, row 1 is the file's first row.
//!
//! Decoding is CPU-bound and a large file takes seconds: the server must call [`read_rows`] on its
//! blocking pool (`tokio::task::spawn_blocking`), never on an async worker thread.

mod cell;
mod delimited;
mod error;
mod format;
mod limits;
mod ndjson;
mod parquet_rows;

pub use cell::ColumnHint;
pub use error::{Limit, TabularError};
pub use format::{TabularFormat, UnknownFormat};
pub use limits::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_CELL_BYTES, DEFAULT_MAX_COLUMNS, DEFAULT_MAX_ROWS, TabularLimits,
};

use std::collections::HashMap;

/// One decoded row: column name → JSON value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// Decodes a whole uploaded file into rows.
///
/// `hints` applies to CSV only (a CSV cell is always text, so something must say what it is);
/// columns without a hint are [`ColumnHint::Any`]. NDJSON and Parquet values keep the types they
/// carry. Every limit in `limits` is checked, the byte size first.
///
/// Run this on a blocking thread: see the crate documentation. The Parquet path copies the input
/// once (the Parquet reader needs an owned buffer), so peak memory is about twice the file plus
/// the decoded rows.
pub fn read_rows(
    bytes: &[u8],
    format: TabularFormat,
    hints: &HashMap<String, ColumnHint>,
    limits: &TabularLimits,
) -> Result<Vec<Row>, TabularError> {
    if bytes.len() > limits.max_bytes {
        return Err(TabularError::LimitExceeded {
            limit: Limit::Bytes,
            max: limits.max_bytes,
        });
    }
    match format {
        TabularFormat::Csv => delimited::read(bytes, hints, limits),
        TabularFormat::Ndjson => ndjson::read(bytes, limits),
        TabularFormat::Parquet => parquet_rows::read(bytes, limits),
    }
}
