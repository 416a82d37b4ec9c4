//! Parquet into rows, through the `parquet` crate's Arrow reader, with Arrow types mapped to JSON.
//!
//! Upstream readers can panic (not error) on hostile files (apache/arrow-rs#9874 and others,
//! treated upstream as bugs, not vulnerabilities), so the whole decode runs under
//! `catch_unwind` and a panic becomes [`TabularError::Malformed`]. This relies on the binary
//! being built with `panic = "unwind"` (the default; the workspace does not change it). The
//! process's panic hook still prints the panic message to stderr. An allocation failure aborts
//! rather than panics, so the file's own claims (rows, columns, uncompressed bytes) are checked
//! against the limits before any batch is decoded, and batches are small.

use crate::error::{Limit, TabularError};
use crate::{Row, TabularLimits};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Number, Value};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Rows per decoded batch: small, so that one batch's memory stays small whatever the file.
const BATCH_ROWS: usize = 4096;

const MALFORMED: &str = "the Parquet file is malformed";

pub(crate) fn read(bytes: &[u8], limits: &TabularLimits) -> Result<Vec<Row>, TabularError> {
    // The reader needs an owned, 'static buffer.
    let data = Bytes::copy_from_slice(bytes);
    guarded(|| decode(data, limits))
}

/// Runs `work`, turning a panic into [`TabularError::Malformed`].
fn guarded<T>(work: impl FnOnce() -> Result<T, TabularError>) -> Result<T, TabularError> {
    // AssertUnwindSafe: nothing the closure touches outlives a panic except `limits` (read-only);
    // the half-built rows are dropped with the closure's frame.
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(TabularError::Malformed(MALFORMED.into())))
}

fn decode(data: Bytes, limits: &TabularLimits) -> Result<Vec<Row>, TabularError> {
    // The parquet crate's error text is not shown: it is not written for end users and nothing
    // promises it never includes bytes of the file.
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|_| TabularError::Malformed("not a readable Parquet file".into()))?;
    check_metadata(&builder, limits)?;
    let schema = builder.schema().clone();
    let names = column_names(&schema)?;
    for field in schema.fields() {
        if !supported(field.data_type()) {
            return Err(TabularError::UnsupportedType {
                column: field.name().clone(),
                data_type: field.data_type().to_string(),
            });
        }
    }
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|_| TabularError::Malformed(MALFORMED.into()))?;

    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|_| {
            TabularError::Malformed(format!(
                "{MALFORMED}: the data after row {} cannot be decoded",
                rows.len()
            ))
        })?;
        if rows.len().saturating_add(batch.num_rows()) > limits.max_rows {
            return Err(TabularError::LimitExceeded {
                limit: Limit::Rows,
                max: limits.max_rows,
            });
        }
        append_rows(&batch, &names, rows.len(), limits, &mut rows)?;
    }
    Ok(rows)
}

/// Checks what the footer claims before anything is decoded: a lying footer is still caught
/// later (the row cap is also enforced on decoded batches), but an honest large file is refused
/// without the work.
fn check_metadata(
    builder: &ParquetRecordBatchReaderBuilder<Bytes>,
    limits: &TabularLimits,
) -> Result<(), TabularError> {
    let metadata = builder.metadata();
    let leaf_columns = metadata.file_metadata().schema_descr().num_columns();
    if leaf_columns > limits.max_columns || builder.schema().fields().len() > limits.max_columns {
        return Err(TabularError::LimitExceeded {
            limit: Limit::Columns,
            max: limits.max_columns,
        });
    }
    let mut rows: u64 = 0;
    let mut uncompressed: u64 = 0;
    let negative = || TabularError::Malformed(format!("{MALFORMED}: a negative size"));
    for group in metadata.row_groups() {
        let group_rows = u64::try_from(group.num_rows()).map_err(|_| negative())?;
        rows = rows.saturating_add(group_rows);
        for column in group.columns() {
            let size = u64::try_from(column.uncompressed_size()).map_err(|_| negative())?;
            uncompressed = uncompressed.saturating_add(size);
        }
    }
    let declared = u64::try_from(metadata.file_metadata().num_rows()).map_err(|_| negative())?;
    if rows.max(declared) > limits.max_rows as u64 {
        return Err(TabularError::LimitExceeded {
            limit: Limit::Rows,
            max: limits.max_rows,
        });
    }
    if uncompressed > limits.max_bytes as u64 {
        return Err(TabularError::LimitExceeded {
            limit: Limit::Bytes,
            max: limits.max_bytes,
        });
    }
    Ok(())
}

/// The top-level column names: none empty, none repeated (a row is a map by name).
fn column_names(schema: &arrow_schema::Schema) -> Result<Vec<String>, TabularError> {
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let name = field.name();
        if name.trim().is_empty() {
            return Err(TabularError::Malformed(format!(
                "column {} of the Parquet file has no name",
                index + 1
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(TabularError::Malformed(format!(
                "the Parquet file has two columns named {}",
                crate::error::quoted(name)
            )));
        }
        names.push(name.clone());
    }
    Ok(names)
}

fn supported(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _) => true,
        DataType::Dictionary(_, values) => {
            matches!(
                values.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// Why one cell cannot be JSON (never the value).
type CellResult = Result<Value, String>;

/// Reads cell `i` of one column of one batch. Built once per column per batch so that the type
/// dispatch is not repeated per cell.
type CellReader<'a> = Box<dyn Fn(usize) -> CellResult + 'a>;

/// Appends the batch's rows to `out`. `before` is the number of rows of earlier batches, for
/// 1-based row numbers in errors. Also used by tests on in-memory batches.
pub(crate) fn append_rows(
    batch: &RecordBatch,
    names: &[String],
    before: usize,
    limits: &TabularLimits,
    out: &mut Vec<Row>,
) -> Result<(), TabularError> {
    let mut readers = Vec::with_capacity(batch.num_columns());
    for (column, name) in batch.columns().iter().zip(names) {
        let reader =
            cell_reader(column.as_ref(), limits).ok_or_else(|| TabularError::UnsupportedType {
                column: name.clone(),
                data_type: column.data_type().to_string(),
            })?;
        readers.push((column.as_ref(), name, reader));
    }
    out.reserve(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut row = Map::new();
        for (column, name, reader) in &readers {
            let value = if column.is_null(i) {
                Value::Null
            } else {
                reader(i).map_err(|reason| TabularError::Row {
                    row: before + i + 1,
                    column: Some((*name).clone()),
                    reason,
                })?
            };
            row.insert((*name).clone(), value);
        }
        out.push(row);
    }
    Ok(())
}

/// The reader for a column, or `None` for a type with no JSON form here.
fn cell_reader<'a>(array: &'a dyn Array, limits: &TabularLimits) -> Option<CellReader<'a>> {
    let max_cell = limits.max_cell_bytes;
    let reader: CellReader<'a> = match array.data_type() {
        DataType::Null => Box::new(|_| Ok(Value::Null)),
        DataType::Boolean => {
            let a = array.as_boolean_opt()?;
            Box::new(move |i| Ok(Value::Bool(a.value(i))))
        }
        DataType::Int8 => integer::<Int8Type>(array)?,
        DataType::Int16 => integer::<Int16Type>(array)?,
        DataType::Int32 => integer::<Int32Type>(array)?,
        DataType::Int64 => integer::<Int64Type>(array)?,
        DataType::UInt8 => integer::<UInt8Type>(array)?,
        DataType::UInt16 => integer::<UInt16Type>(array)?,
        DataType::UInt32 => integer::<UInt32Type>(array)?,
        DataType::UInt64 => integer::<UInt64Type>(array)?,
        DataType::Float16 => {
            let a = array.as_primitive_opt::<Float16Type>()?;
            Box::new(move |i| float(a.value(i).to_f64()))
        }
        DataType::Float32 => {
            let a = array.as_primitive_opt::<Float32Type>()?;
            Box::new(move |i| float32(a.value(i)))
        }
        DataType::Float64 => {
            let a = array.as_primitive_opt::<Float64Type>()?;
            Box::new(move |i| float(a.value(i)))
        }
        DataType::Utf8 => {
            let a = array.as_string_opt::<i32>()?;
            Box::new(move |i| string(a.value(i), max_cell))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string_opt::<i64>()?;
            Box::new(move |i| string(a.value(i), max_cell))
        }
        DataType::Utf8View => {
            let a = array.as_string_view_opt()?;
            Box::new(move |i| string(a.value(i), max_cell))
        }
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary_opt()?;
            let values = dictionary.values().as_ref();
            let value_reader = cell_reader(values, limits)?;
            // Keys are clamped into the values' range by arrow; a file with keys but no values
            // is still caught by the bounds check below.
            let keys = dictionary.normalized_keys();
            Box::new(move |i| {
                let key = keys
                    .get(i)
                    .copied()
                    .filter(|k| *k < values.len())
                    .ok_or_else(|| "a dictionary key is out of range".to_owned())?;
                if values.is_null(key) {
                    Ok(Value::Null)
                } else {
                    value_reader(key)
                }
            })
        }
        DataType::Timestamp(unit, _) => {
            // The stored value counts from the Unix epoch in UTC whatever the column's time zone,
            // so the zone only changes how a value would be displayed, not which instant it is.
            let unit = *unit;
            let to_time: Box<dyn Fn(usize) -> Option<DateTime<Utc>> + 'a> = match unit {
                TimeUnit::Second => {
                    let a = array.as_primitive_opt::<TimestampSecondType>()?;
                    Box::new(move |i| DateTime::from_timestamp(a.value(i), 0))
                }
                TimeUnit::Millisecond => {
                    let a = array.as_primitive_opt::<TimestampMillisecondType>()?;
                    Box::new(move |i| DateTime::from_timestamp_millis(a.value(i)))
                }
                TimeUnit::Microsecond => {
                    let a = array.as_primitive_opt::<TimestampMicrosecondType>()?;
                    Box::new(move |i| DateTime::from_timestamp_micros(a.value(i)))
                }
                TimeUnit::Nanosecond => {
                    let a = array.as_primitive_opt::<TimestampNanosecondType>()?;
                    Box::new(move |i| Some(DateTime::from_timestamp_nanos(a.value(i))))
                }
            };
            Box::new(move |i| {
                to_time(i)
                    .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
                    .ok_or_else(|| "the timestamp is out of range".to_owned())
            })
        }
        DataType::Date32 => {
            let a = array.as_primitive_opt::<Date32Type>()?;
            Box::new(move |i| date(days_to_date(a.value(i))))
        }
        DataType::Date64 => {
            let a = array.as_primitive_opt::<Date64Type>()?;
            Box::new(move |i| {
                date(DateTime::from_timestamp_millis(a.value(i)).map(|t| t.date_naive()))
            })
        }
        DataType::Decimal32(_, scale) => {
            let (a, scale) = (array.as_primitive_opt::<Decimal32Type>()?, *scale);
            Box::new(move |i| decimal(i128::from(a.value(i)), scale))
        }
        DataType::Decimal64(_, scale) => {
            let (a, scale) = (array.as_primitive_opt::<Decimal64Type>()?, *scale);
            Box::new(move |i| decimal(i128::from(a.value(i)), scale))
        }
        DataType::Decimal128(_, scale) => {
            let (a, scale) = (array.as_primitive_opt::<Decimal128Type>()?, *scale);
            Box::new(move |i| decimal(a.value(i), scale))
        }
        _ => return None,
    };
    Some(reader)
}

fn integer<'a, T>(array: &'a dyn Array) -> Option<CellReader<'a>>
where
    T: ArrowPrimitiveType,
    T::Native: Into<Number>,
{
    let a = array.as_primitive_opt::<T>()?;
    Some(Box::new(move |i| Ok(Value::Number(a.value(i).into()))))
}

fn float(v: f64) -> CellResult {
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| "not a finite number (JSON cannot carry NaN or infinity)".to_owned())
}

/// Through the shortest decimal text of the f32, so that 0.1f32 becomes 0.1 and not
/// 0.10000000149011612.
fn float32(v: f32) -> CellResult {
    if !v.is_finite() {
        return float(f64::from(v));
    }
    float(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
}

fn string(s: &str, max_cell: usize) -> CellResult {
    if s.len() > max_cell {
        return Err(format!("the value is longer than {max_cell} bytes"));
    }
    Ok(Value::String(s.to_owned()))
}

/// Days since 1970-01-01 to a date.
fn days_to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_signed(chrono::TimeDelta::try_days(days.into())?)
}

fn date(d: Option<NaiveDate>) -> CellResult {
    d.map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
        .ok_or_else(|| "the date is out of range".to_owned())
}

/// A decimal as a JSON number: an integer when it has no fraction and fits 64 bits, else the
/// nearest float (JSON numbers are read as floats by most consumers anyway).
fn decimal(unscaled: i128, scale: i8) -> CellResult {
    decimal_number(unscaled, scale)
        .map(Value::Number)
        .ok_or_else(|| "the decimal is out of range".to_owned())
}

fn decimal_number(unscaled: i128, scale: i8) -> Option<Number> {
    let power = 10i128.checked_pow(u32::from(scale.unsigned_abs()))?;
    if scale <= 0 {
        return whole_number(unscaled.checked_mul(power)?);
    }
    if unscaled % power == 0 {
        return whole_number(unscaled / power);
    }
    // Through text, so that the float is the correctly rounded nearest one.
    let sign = if unscaled < 0 { "-" } else { "" };
    let magnitude = unscaled.unsigned_abs();
    let power = power.unsigned_abs();
    let text = format!(
        "{sign}{}.{:0width$}",
        magnitude / power,
        magnitude % power,
        width = usize::from(scale.unsigned_abs())
    );
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

fn whole_number(n: i128) -> Option<Number> {
    if let Ok(i) = i64::try_from(n) {
        return Some(Number::from(i));
    }
    if let Ok(u) = u64::try_from(n) {
        return Some(Number::from(u));
    }
    // Beyond 64 bits: the nearest float; `as` is the rounding conversion wanted here.
    #[allow(clippy::cast_precision_loss)]
    Number::from_f64(n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        ArrayRef, DictionaryArray, Float32Array, Int8Array, Int32Array, StringArray,
        types::Int8Type,
    };
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn a_panic_in_the_decoder_becomes_malformed() {
        let result: Result<(), _> = guarded(|| panic!("hostile file"));
        assert_eq!(
            result,
            Err(TabularError::Malformed(
                "the Parquet file is malformed".into()
            ))
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(
            decimal_number(12345, 2),
            Some(Number::from_f64(123.45).unwrap())
        );
        assert_eq!(decimal_number(-5, 1), Some(Number::from_f64(-0.5).unwrap()));
        assert_eq!(decimal_number(12300, 2), Some(Number::from(123)));
        assert_eq!(decimal_number(7, -2), Some(Number::from(700)));
        assert_eq!(decimal_number(1, 39), None);
        assert_eq!(decimal_number(i128::MAX, -1), None);
        assert!(decimal_number(i128::MAX, 0).unwrap().is_f64());
        assert!(decimal_number(i128::MIN, 3).is_some());
    }

    #[test]
    fn dates() {
        assert_eq!(date(days_to_date(0)), Ok(json!("1970-01-01")));
        assert_eq!(date(days_to_date(19723)), Ok(json!("2024-01-01")));
        assert!(date(days_to_date(i32::MAX)).is_err());
    }

    #[test]
    fn dictionary_of_strings_and_float32() {
        let keys = Int8Array::from(vec![Some(1), None, Some(0)]);
        let values = StringArray::from(vec![Some("a"), Some("b")]);
        let dictionary: DictionaryArray<Int8Type> =
            DictionaryArray::try_new(keys, Arc::new(values)).unwrap();
        let floats = Float32Array::from(vec![0.1, 2.5, -1.0]);
        let ints = Int32Array::from(vec![1, 2, 3]);
        let batch = RecordBatch::try_from_iter(vec![
            ("d", Arc::new(dictionary) as ArrayRef),
            ("f", Arc::new(floats) as ArrayRef),
            ("i", Arc::new(ints) as ArrayRef),
        ])
        .unwrap();
        let names = vec!["d".to_owned(), "f".to_owned(), "i".to_owned()];
        let mut rows = Vec::new();
        append_rows(&batch, &names, 0, &TabularLimits::default(), &mut rows).unwrap();
        assert_eq!(
            Value::Array(rows.into_iter().map(Value::Object).collect()),
            json!([
                {"d": "b", "f": 0.1, "i": 1},
                {"d": null, "f": 2.5, "i": 2},
                {"d": "a", "f": -1.0, "i": 3},
            ])
        );
    }
}
