//! `read_rows` end to end for the three formats: happy paths, every refusal (with the row and
//! column named and no value echoed), hostile bytes, and a real NannyML Parquet file.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Date64Array, Decimal128Array, Float32Array,
    Float64Array, Int8Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
    UInt64Array,
};
use custos_tabular::{
    ColumnHint, Limit, Row, TabularError, TabularFormat, TabularLimits, read_rows,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// A value that must never appear in an error message.
const SECRET: &str = "SECRET-4242";

fn no_hints() -> HashMap<String, ColumnHint> {
    HashMap::new()
}

fn rows_json(rows: Vec<Row>) -> Value {
    Value::Array(rows.into_iter().map(Value::Object).collect())
}

fn csv(text: &str) -> Result<Vec<Row>, TabularError> {
    read_rows(
        text.as_bytes(),
        TabularFormat::Csv,
        &no_hints(),
        &TabularLimits::default(),
    )
}

fn csv_with(text: &[u8], hints: &[(&str, ColumnHint)], limits: &TabularLimits) -> TabularError {
    let hints = hints
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect::<HashMap<_, _>>();
    let err = read_rows(text, TabularFormat::Csv, &hints, limits).unwrap_err();
    assert_no_secret(&err);
    err
}

fn ndjson(text: &str, limits: &TabularLimits) -> Result<Vec<Row>, TabularError> {
    read_rows(text.as_bytes(), TabularFormat::Ndjson, &no_hints(), limits)
}

fn parquet(bytes: &[u8], limits: &TabularLimits) -> Result<Vec<Row>, TabularError> {
    read_rows(bytes, TabularFormat::Parquet, &no_hints(), limits)
}

fn assert_no_secret(err: &TabularError) {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "value echoed in {shown}");
}

fn row_error(row: usize, column: Option<&str>, reason: &str) -> TabularError {
    TabularError::Row {
        row,
        column: column.map(str::to_owned),
        reason: reason.to_owned(),
    }
}

fn line_error(line: usize, column: Option<&str>, reason: &str) -> TabularError {
    TabularError::Line {
        line,
        column: column.map(str::to_owned),
        reason: reason.to_owned(),
    }
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_happy_path_with_hints_quoting_bom_and_crlf() {
    let text = "\u{feff}id,amount,flag,zip,note,guess\r\n\
                1,12.5,TRUE,00123,\"a, \"\"quoted\"\"\nline\",true\r\n\
                2,,0,02134,,x\r\n\
                3,-7,False,,plain,4.5\r\n";
    let hints = HashMap::from([
        ("amount".to_owned(), ColumnHint::Number),
        ("flag".to_owned(), ColumnHint::Bool),
        ("zip".to_owned(), ColumnHint::String),
    ]);
    let rows = read_rows(
        text.as_bytes(),
        TabularFormat::Csv,
        &hints,
        &TabularLimits::default(),
    )
    .unwrap();
    assert_eq!(
        rows_json(rows),
        json!([
            {"id": 1, "amount": 12.5, "flag": true, "zip": "00123",
             "note": "a, \"quoted\"\nline", "guess": true},
            {"id": 2, "amount": null, "flag": false, "zip": "02134", "note": null, "guess": "x"},
            {"id": 3, "amount": -7, "flag": false, "zip": null, "note": "plain", "guess": 4.5},
        ])
    );
}

#[test]
fn csv_integers_stay_integers() {
    let rows = csv("n\n7\n").unwrap();
    assert!(rows[0]["n"].is_i64());
}

#[test]
fn csv_header_only_is_no_rows_and_blank_lines_are_skipped() {
    assert_eq!(csv("a,b\n").unwrap().len(), 0);
    let rows = csv("a,b\n1,2\n\n3,4\n").unwrap();
    assert_eq!(rows_json(rows), json!([{"a": 1, "b": 2}, {"a": 3, "b": 4}]));
}

#[test]
fn csv_refuses_a_missing_empty_or_duplicate_header() {
    let limits = TabularLimits::default();
    assert!(matches!(
        csv_with(b"", &[], &limits),
        TabularError::Malformed(m) if m.contains("header row is required")
    ));
    assert!(matches!(
        csv_with(b"a,,c\n1,2,3\n", &[], &limits),
        TabularError::Malformed(m) if m.contains("header field 2 is empty")
    ));
    assert!(matches!(
        csv_with(b"a, ,c\n", &[], &limits),
        TabularError::Malformed(m) if m.contains("header field 2 is empty")
    ));
    assert!(matches!(
        csv_with(b"a,b,a\n1,2,3\n", &[], &limits),
        TabularError::Malformed(m) if m.contains("column 'a' twice")
    ));
    assert!(matches!(
        csv_with(b"a,\xff\n1,2\n", &[], &limits),
        TabularError::Malformed(m) if m.contains("header field 2 is not valid UTF-8")
    ));
}

#[test]
fn csv_wrong_field_count_names_the_row() {
    let limits = TabularLimits::default();
    let text = format!("a,b,c\n1,2,3\n1,2,3,{SECRET}\n");
    assert_eq!(
        csv_with(text.as_bytes(), &[], &limits),
        row_error(2, None, "expected 3 fields (as in the header), found 4")
    );
    assert_eq!(
        csv_with(b"a,b,c\n1,2\n", &[], &limits),
        row_error(1, None, "expected 3 fields (as in the header), found 2")
    );
}

#[test]
fn csv_bad_cells_name_row_and_column_but_not_the_value() {
    let limits = TabularLimits::default();
    let text = format!("id,amount\n1,2\n2,{SECRET}\n");
    let err = csv_with(text.as_bytes(), &[("amount", ColumnHint::Number)], &limits);
    assert_eq!(err, row_error(2, Some("amount"), "expected a number"));
    assert_eq!(err.to_string(), "row 2, column 'amount': expected a number");

    let text = format!("id,flag\n1,{SECRET}\n");
    assert_eq!(
        csv_with(text.as_bytes(), &[("flag", ColumnHint::Bool)], &limits),
        row_error(1, Some("flag"), "expected a boolean (true, false, 1 or 0)")
    );

    let mut bytes = b"id,name\n1,ok\n2,".to_vec();
    bytes.extend_from_slice(SECRET.as_bytes());
    bytes.extend_from_slice(b"\xc3\x28\n");
    assert_eq!(
        csv_with(&bytes, &[], &limits),
        row_error(2, Some("name"), "not valid UTF-8")
    );

    let small = TabularLimits {
        max_cell_bytes: 8,
        ..TabularLimits::default()
    };
    let text = format!("id,name\n1,{SECRET}\n");
    assert_eq!(
        csv_with(text.as_bytes(), &[], &small),
        row_error(1, Some("name"), "the value is longer than 8 bytes")
    );
}

#[test]
fn csv_limits() {
    let limits = TabularLimits {
        max_rows: 2,
        max_columns: 2,
        max_bytes: 64,
        ..TabularLimits::default()
    };
    assert_eq!(
        csv_with(b"a,b\n1,2\n3,4\n5,6\n", &[], &limits),
        TabularError::LimitExceeded {
            limit: Limit::Rows,
            max: 2
        }
    );
    assert!(read_rows(b"a,b\n1,2\n3,4\n", TabularFormat::Csv, &no_hints(), &limits).is_ok());
    assert_eq!(
        csv_with(b"a,b,c\n", &[], &limits),
        TabularError::LimitExceeded {
            limit: Limit::Columns,
            max: 2
        }
    );
    let big = format!("a\n{}\n", "1\n".repeat(40));
    let err = csv_with(big.as_bytes(), &[], &limits);
    assert_eq!(
        err,
        TabularError::LimitExceeded {
            limit: Limit::Bytes,
            max: 64
        }
    );
    assert_eq!(
        err.to_string(),
        "the file has more than 64 bytes, the most one upload may have"
    );
}

// ---------------------------------------------------------------- NDJSON

#[test]
fn ndjson_happy_path_keeps_types_and_skips_blank_lines() {
    let text = "{\"id\": 1, \"score\": 0.5, \"ok\": true, \"name\": \"a\", \"tags\": [1, 2], \"none\": null}\r\n\
                \n   \n\
                {\"id\": 18446744073709551615, \"nested\": {\"k\": \"v\"}}";
    let rows = ndjson(text, &TabularLimits::default()).unwrap();
    assert_eq!(
        rows_json(rows),
        json!([
            {"id": 1, "score": 0.5, "ok": true, "name": "a", "tags": [1, 2], "none": null},
            {"id": u64::MAX, "nested": {"k": "v"}},
        ])
    );
}

#[test]
fn ndjson_errors_name_the_line_and_not_the_value() {
    let limits = TabularLimits::default();
    let check = |text: String, want: TabularError| {
        let err = ndjson(&text, &limits).unwrap_err();
        assert_no_secret(&err);
        assert_eq!(err, want, "{text}");
    };
    check(
        format!("{{\"a\": 1}}\n\n\"{SECRET}\"\n"),
        line_error(3, None, "expected a JSON object"),
    );
    check(
        format!("[\"{SECRET}\"]\n"),
        line_error(1, None, "expected a JSON object"),
    );
    check("42\n".into(), line_error(1, None, "expected a JSON object"));
    check(
        format!("{{\"a\": \"{SECRET}\", \"a\": 2}}\n"),
        line_error(1, Some("a"), "the key appears twice"),
    );
    check(
        format!("{{\"a\": {SECRET}}}\n"),
        line_error(1, None, "not valid JSON (at character 7)"),
    );
    check(
        format!("{{\"a\": \"{SECRET}\"}} trailing\n"),
        line_error(1, None, "not valid JSON (at character 22)"),
    );
    check(
        format!("{{\"a\": \"{SECRET}"),
        line_error(1, None, "the JSON ends early"),
    );
    // One object split over two lines is two broken lines, not one row.
    check(
        "{\"a\":\n 1}\n".into(),
        line_error(1, None, "the JSON ends early"),
    );
    let mut bytes = b"{\"a\": \"".to_vec();
    bytes.extend_from_slice(b"\xff\xfe\"}\n");
    let err = read_rows(&bytes, TabularFormat::Ndjson, &no_hints(), &limits).unwrap_err();
    assert!(matches!(err, TabularError::Line { line: 1, .. }), "{err}");
}

#[test]
fn ndjson_limits() {
    let limits = TabularLimits {
        max_rows: 2,
        max_columns: 2,
        max_cell_bytes: 8,
        ..TabularLimits::default()
    };
    assert_eq!(
        ndjson("{}\n{}\n{}\n", &limits).unwrap_err(),
        TabularError::LimitExceeded {
            limit: Limit::Rows,
            max: 2
        }
    );
    assert_eq!(
        ndjson("{\"a\":1,\"b\":2,\"c\":3}\n", &limits).unwrap_err(),
        TabularError::LimitExceeded {
            limit: Limit::Columns,
            max: 2
        }
    );
    let err = ndjson(&format!("{{\"a\":\"{SECRET}\"}}\n"), &limits).unwrap_err();
    assert_eq!(
        err,
        line_error(1, Some("a"), "the value is longer than 8 bytes")
    );
    // Nested values count as their JSON text.
    let err = ndjson("{\"a\":[1,2,3,4,5]}\n", &limits).unwrap_err();
    assert_eq!(
        err,
        line_error(1, Some("a"), "the value is longer than 8 bytes")
    );
    assert!(ndjson("{\"a\":[1,2,3]}\n", &limits).is_ok());
}

// ---------------------------------------------------------------- Parquet

fn write_parquet(batch: &RecordBatch) -> Vec<u8> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(3))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Every supported type, with a null in each column, over more than one row group.
fn typed_batch() -> RecordBatch {
    let mut dictionary = StringDictionaryBuilder::<Int32Type>::new();
    for v in [Some("red"), Some("blue"), None, Some("red")] {
        dictionary.append_option(v);
    }
    batch(vec![
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(-2),
                None,
                Some(i64::MAX),
            ])),
        ),
        (
            "i8",
            Arc::new(Int8Array::from(vec![Some(1), None, Some(-3), Some(4)])),
        ),
        (
            "u64",
            Arc::new(UInt64Array::from(vec![
                Some(u64::MAX),
                None,
                Some(0),
                Some(1),
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(0.25),
                None,
                Some(-1e300),
                Some(3.0),
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(0.1),
                Some(1.5),
                None,
                Some(-2.0),
            ])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
        ),
        (
            "utf8",
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some(""),
                Some("é"),
            ])),
        ),
        (
            "large",
            Arc::new(LargeStringArray::from(vec![
                None,
                Some("b"),
                Some("c"),
                Some("d"),
            ])),
        ),
        (
            "view",
            Arc::new(StringViewArray::from(vec![
                Some("a long string beyond twelve bytes"),
                Some("v"),
                None,
                Some("w"),
            ])),
        ),
        ("dict", Arc::new(dictionary.finish())),
        (
            "ts_ms_tz",
            Arc::new(
                TimestampMillisecondArray::from(vec![
                    Some(1_700_000_000_123),
                    None,
                    Some(0),
                    Some(-1),
                ])
                .with_timezone("+02:00"),
            ),
        ),
        (
            "ts_s_utc",
            Arc::new(
                TimestampSecondArray::from(vec![Some(1_700_000_000), Some(0), None, Some(86_400)])
                    .with_timezone("UTC"),
            ),
        ),
        (
            "ts_ns",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_700_000_000_000_000_001),
                None,
                Some(0),
                Some(5),
            ])),
        ),
        (
            "d32",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(19_723),
                None,
                Some(-1),
            ])),
        ),
        (
            "d64",
            Arc::new(Date64Array::from(vec![
                Some(86_400_000),
                None,
                Some(0),
                Some(1_704_067_200_000),
            ])),
        ),
        (
            "dec",
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), Some(-5), None, Some(100)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
    ])
}

#[test]
fn parquet_happy_path_maps_every_supported_type() {
    let bytes = write_parquet(&typed_batch());
    let rows = parquet(&bytes, &TabularLimits::default()).unwrap();
    assert_eq!(
        rows_json(rows),
        json!([
            {"i64": 1, "i8": 1, "u64": u64::MAX, "f64": 0.25, "f32": 0.1, "flag": true,
             "utf8": "a", "large": null, "view": "a long string beyond twelve bytes", "dict": "red",
             "ts_ms_tz": "2023-11-14T22:13:20.123Z", "ts_s_utc": "2023-11-14T22:13:20Z",
             "ts_ns": "2023-11-14T22:13:20.000000001Z", "d32": "1970-01-01", "d64": "1970-01-02",
             "dec": 123.45},
            {"i64": -2, "i8": null, "u64": null, "f64": null, "f32": 1.5, "flag": false,
             "utf8": null, "large": "b", "view": "v", "dict": "blue",
             "ts_ms_tz": null, "ts_s_utc": "1970-01-01T00:00:00Z", "ts_ns": null,
             "d32": "2024-01-01", "d64": null, "dec": -0.05},
            {"i64": null, "i8": -3, "u64": 0, "f64": -1e300, "f32": null, "flag": null,
             "utf8": "", "large": "c", "view": null, "dict": null,
             "ts_ms_tz": "1970-01-01T00:00:00Z", "ts_s_utc": null, "ts_ns": "1970-01-01T00:00:00Z",
             "d32": null, "d64": "1970-01-01", "dec": null},
            {"i64": i64::MAX, "i8": 4, "u64": 1, "f64": 3.0, "f32": -2.0, "flag": true,
             "utf8": "é", "large": "d", "view": "w", "dict": "red",
             "ts_ms_tz": "1969-12-31T23:59:59.999Z", "ts_s_utc": "1970-01-02T00:00:00Z",
             "ts_ns": "1970-01-01T00:00:00.000000005Z", "d32": "1969-12-31", "d64": "2024-01-01",
             "dec": 1},
        ])
    );
}

#[test]
fn parquet_non_finite_floats_name_row_and_column() {
    let bytes = write_parquet(&batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))),
        (
            "score",
            Arc::new(Float64Array::from(vec![0.5, 1.0, 2.0, 3.0, f64::NAN])),
        ),
    ]));
    let err = parquet(&bytes, &TabularLimits::default()).unwrap_err();
    assert_eq!(
        err,
        row_error(
            5,
            Some("score"),
            "not a finite number (JSON cannot carry NaN or infinity)"
        )
    );
    let bytes = write_parquet(&batch(vec![(
        "f",
        Arc::new(Float32Array::from(vec![f32::NEG_INFINITY])),
    )]));
    assert!(matches!(
        parquet(&bytes, &TabularLimits::default()).unwrap_err(),
        TabularError::Row { row: 1, column: Some(c), .. } if c == "f"
    ));
}

#[test]
fn parquet_unsupported_types_name_the_column_and_type() {
    let binary = BinaryArray::from(vec![Some(b"x".as_ref())]);
    let bytes = write_parquet(&batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1]))),
        ("blob", Arc::new(binary)),
    ]));
    let err = parquet(&bytes, &TabularLimits::default()).unwrap_err();
    assert_eq!(
        err,
        TabularError::UnsupportedType {
            column: "blob".into(),
            data_type: "Binary".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "column 'blob' has the Arrow type Binary, which is not supported"
    );

    let mut list = ListBuilder::new(arrow_array::builder::Int64Builder::new());
    list.values().append_value(1);
    list.append(true);
    let bytes = write_parquet(&batch(vec![("tags", Arc::new(list.finish()))]));
    assert!(matches!(
        parquet(&bytes, &TabularLimits::default()).unwrap_err(),
        TabularError::UnsupportedType { column, data_type } if column == "tags" && data_type.starts_with("List")
    ));
}

#[test]
fn parquet_limits_are_checked_from_the_metadata_and_per_cell() {
    let bytes = write_parquet(&typed_batch());
    fn limits(f: impl FnOnce(&mut TabularLimits)) -> TabularLimits {
        let mut l = TabularLimits::default();
        f(&mut l);
        l
    }
    assert_eq!(
        parquet(&bytes, &limits(|l| l.max_rows = 3)).unwrap_err(),
        TabularError::LimitExceeded {
            limit: Limit::Rows,
            max: 3
        }
    );
    assert_eq!(
        parquet(&bytes, &limits(|l| l.max_columns = 15)).unwrap_err(),
        TabularError::LimitExceeded {
            limit: Limit::Columns,
            max: 15
        }
    );

    // A small file whose data expands a hundredfold: refused from its metadata, before decoding.
    let repeated = StringArray::from(vec!["x".repeat(100); 20_000]);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .build();
    let mut bomb = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut bomb,
        batch(vec![("s", Arc::new(repeated.clone()))]).schema(),
        Some(props),
    )
    .unwrap();
    writer
        .write(&batch(vec![("s", Arc::new(repeated))]))
        .unwrap();
    writer.close().unwrap();
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let cap = 10 * bomb.len();
    assert_eq!(
        parquet(&bomb, &limits(|l| l.max_bytes = cap)).unwrap_err(),
        TabularError::LimitExceeded {
            limit: Limit::Bytes,
            max: cap
        },
        "the declared uncompressed size is over the cap"
    );
    assert_eq!(
        parquet(&bomb, &TabularLimits::default()).unwrap().len(),
        20_000
    );

    let secret = StringArray::from(vec!["ok", SECRET]);
    let bytes = write_parquet(&batch(vec![("name", Arc::new(secret))]));
    let err = parquet(&bytes, &limits(|l| l.max_cell_bytes = 4)).unwrap_err();
    assert_no_secret(&err);
    assert_eq!(
        err,
        row_error(2, Some("name"), "the value is longer than 4 bytes")
    );
}

#[test]
fn parquet_refuses_what_is_not_parquet() {
    let bytes = write_parquet(&typed_batch());
    for bad in [
        &b""[..],
        b"PAR1",
        b"a,b\n1,2\n",
        &bytes[..bytes.len() - 1],
        &bytes[..bytes.len() / 2],
    ] {
        let err = parquet(bad, &TabularLimits::default()).unwrap_err();
        assert!(matches!(err, TabularError::Malformed(_)), "{err}");
    }
}

#[test]
fn nannyml_multiclass_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/nannyml/mc_reference.parquet"
    );
    let bytes = std::fs::read(path).unwrap();
    let rows = parquet(&bytes, &TabularLimits::default()).unwrap();
    assert_eq!(rows.len(), 60_000);
    let mut columns: Vec<&str> = rows[0].keys().map(String::as_str).collect();
    columns.sort_unstable();
    let mut want = vec![
        "id",
        "acq_channel",
        "app_behavioral_score",
        "requested_credit_limit",
        "app_channel",
        "credit_bureau_score",
        "stated_income",
        "is_customer",
        "timestamp",
        "y_pred_proba_prepaid_card",
        "y_pred_proba_highstreet_card",
        "y_pred_proba_upmarket_card",
        "y_pred",
        "y_true",
    ];
    want.sort_unstable();
    assert_eq!(columns, want);
    for row in &rows {
        assert_eq!(row.len(), 14);
    }
    let first = &rows[0];
    assert!(first["id"].is_i64());
    assert!(first["requested_credit_limit"].is_i64());
    assert!(first["app_behavioral_score"].is_f64());
    assert!(first["is_customer"].is_boolean());
    assert!(first["acq_channel"].is_string());
    assert!(first["y_pred"].is_string());
    assert!(first["timestamp"].is_string());
}

// ---------------------------------------------------------------- hostile input

static VALID_PARQUET: LazyLock<Vec<u8>> = LazyLock::new(|| write_parquet(&typed_batch()));
const VALID_CSV: &str = "id,amount,flag,name\n1,2.5,true,\"a,b\"\n2,,0,x\n";
const VALID_NDJSON: &str = "{\"id\":1,\"x\":[1,{\"y\":null}],\"s\":\"a\\u00e9\"}\n{\"id\":2}\n";

/// Small limits so that the limit paths are reached too.
fn fuzz_limits() -> TabularLimits {
    TabularLimits {
        max_rows: 1_000,
        max_columns: 64,
        max_cell_bytes: 1_024,
        max_bytes: 1 << 20,
    }
}

fn all_formats(bytes: &[u8]) {
    let hints = HashMap::from([("amount".to_owned(), ColumnHint::Number)]);
    for format in TabularFormat::ALL {
        // Ok or Err are both fine; returning at all is the property.
        let _ = read_rows(bytes, format, &hints, &fuzz_limits());
    }
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for (at, value) in edits {
        let len = bytes.len();
        bytes[at % len] = *value;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

// 256 cases each by default; PROPTEST_CASES=100000 for a longer hunt.
proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_formats(&bytes);
        let mut framed = b"PAR1".to_vec();
        framed.extend_from_slice(&bytes);
        framed.extend_from_slice(b"PAR1");
        all_formats(&framed);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        for valid in [VALID_PARQUET.clone(), VALID_CSV.as_bytes().to_vec(), VALID_NDJSON.as_bytes().to_vec()] {
            all_formats(&mutate(valid, &edits, cut));
        }
    }

    #[test]
    fn mutated_parquet_footers_never_panic(
        edits in proptest::collection::vec((0usize..256, any::<u8>()), 1..6),
    ) {
        // Most of a Parquet file's structure is in the footer, at the end: aim the edits there.
        let valid = VALID_PARQUET.clone();
        let len = valid.len();
        let edits: Vec<(usize, u8)> = edits.iter().map(|(back, v)| (len - 1 - back % len, *v)).collect();
        let _ = read_rows(&mutate(valid, &edits, None), TabularFormat::Parquet, &HashMap::new(), &fuzz_limits());
    }
}
