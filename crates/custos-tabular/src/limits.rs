//! The bounds on one upload. They exist so that one request's memory and CPU are bounded whatever
//! the file claims; the server sets them from its configuration.

/// Default [`TabularLimits::max_rows`].
pub const DEFAULT_MAX_ROWS: usize = 5_000_000;
/// Default [`TabularLimits::max_columns`].
pub const DEFAULT_MAX_COLUMNS: usize = 2_000;
/// Default [`TabularLimits::max_cell_bytes`] (64 KiB).
pub const DEFAULT_MAX_CELL_BYTES: usize = 64 * 1024;
/// Default [`TabularLimits::max_bytes`] (1 GiB).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024 * 1024;

/// Limits on one decoded file. Exceeding `max_bytes`, `max_rows` or `max_columns` refuses the
/// whole file ([`crate::TabularError::LimitExceeded`]); a cell over `max_cell_bytes` is a row
/// error naming its row and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TabularLimits {
    /// Most data rows (CSV header not counted).
    pub max_rows: usize,
    /// Most columns (CSV header fields, keys of one NDJSON object, Parquet leaf columns).
    pub max_columns: usize,
    /// Most bytes in one cell: a CSV field, an NDJSON value (as JSON text for nested values), a
    /// Parquet string.
    pub max_cell_bytes: usize,
    /// Most bytes in the file. For Parquet it also bounds the uncompressed size the file's
    /// metadata declares, so that a small, highly compressed file cannot expand without bound.
    pub max_bytes: usize,
}

impl Default for TabularLimits {
    fn default() -> Self {
        Self {
            max_rows: DEFAULT_MAX_ROWS,
            max_columns: DEFAULT_MAX_COLUMNS,
            max_cell_bytes: DEFAULT_MAX_CELL_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}
