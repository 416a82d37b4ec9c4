//! NDJSON into rows: one JSON object per non-blank line; values keep their JSON types.
//!
//! A key repeated within one object is refused rather than resolved (serde_json would keep the
//! last): two readers of the same line could otherwise disagree on its value.

use crate::error::{Limit, TabularError};
use crate::{Row, TabularLimits};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;

pub(crate) fn read(bytes: &[u8], limits: &TabularLimits) -> Result<Vec<Row>, TabularError> {
    let mut rows = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if rows.len() == limits.max_rows {
            return Err(TabularError::LimitExceeded {
                limit: Limit::Rows,
                max: limits.max_rows,
            });
        }
        rows.push(object(line, line_number, limits)?);
    }
    Ok(rows)
}

/// What went wrong inside the object visitor, kept aside because serde's error text for a
/// wrong type quotes the value.
enum Problem {
    NotAnObject,
    DuplicateKey(String),
    TooManyKeys,
    CellTooLong(String),
}

fn object(line: &[u8], line_number: usize, limits: &TabularLimits) -> Result<Row, TabularError> {
    let mut problem = None;
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let parsed = RowSeed {
        limits,
        problem: &mut problem,
    }
    .deserialize(&mut deserializer)
    .and_then(|row| deserializer.end().map(|()| row));
    let line_error = |column: Option<String>, reason: String| TabularError::Line {
        line: line_number,
        column,
        reason,
    };
    match (parsed, problem) {
        (Ok(row), _) => Ok(row),
        (Err(_), Some(Problem::NotAnObject)) => {
            Err(line_error(None, "expected a JSON object".into()))
        }
        (Err(_), Some(Problem::DuplicateKey(key))) => {
            Err(line_error(Some(key), "the key appears twice".into()))
        }
        (Err(_), Some(Problem::TooManyKeys)) => Err(TabularError::LimitExceeded {
            limit: Limit::Columns,
            max: limits.max_columns,
        }),
        (Err(_), Some(Problem::CellTooLong(key))) => Err(line_error(
            Some(key),
            format!("the value is longer than {} bytes", limits.max_cell_bytes),
        )),
        // Syntax errors: serde_json's own text for these names no value, but only the category
        // and column are kept so that this stays true whatever serde_json prints.
        (Err(e), None) => Err(line_error(
            None,
            match e.classify() {
                serde_json::error::Category::Eof => "the JSON ends early".into(),
                _ => format!("not valid JSON (at character {})", e.column()),
            },
        )),
    }
}

struct RowSeed<'p> {
    limits: &'p TabularLimits,
    problem: &'p mut Option<Problem>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Row, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut row = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if row.contains_key(&key) {
                *self.problem = Some(Problem::DuplicateKey(key));
                return Err(de::Error::custom("duplicate key"));
            }
            if row.len() == self.limits.max_columns {
                *self.problem = Some(Problem::TooManyKeys);
                return Err(de::Error::custom("too many keys"));
            }
            let value: Value = map.next_value()?;
            if json_len(&value, self.limits.max_cell_bytes) > self.limits.max_cell_bytes {
                *self.problem = Some(Problem::CellTooLong(key));
                return Err(de::Error::custom("value too long"));
            }
            row.insert(key, value);
        }
        Ok(row)
    }

    // Every other JSON value at the top of a line is the wrong shape; serde's default message
    // for these would quote the value, so the problem is recorded here instead.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Row, E> {
        self.not_an_object()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Row, E> {
        self.not_an_object()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Row, E> {
        self.not_an_object()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Row, E> {
        self.not_an_object()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Row, E> {
        self.not_an_object()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Row, E> {
        self.not_an_object()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Row, A::Error> {
        self.not_an_object()
    }
}

impl RowSeed<'_> {
    fn not_an_object<E: de::Error>(self) -> Result<Row, E> {
        *self.problem = Some(Problem::NotAnObject);
        Err(E::custom("not an object"))
    }
}

/// The size of a value as the limit sees it: a string's bytes, or a nested value's JSON text
/// (counted up to just past `cap`, not built).
fn json_len(value: &Value, cap: usize) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(_) | Value::Object(_) => {
            let mut counter = Counter { count: 0, cap };
            // The writer stops with an error once past the cap; either way the count is right
            // enough to compare.
            let _ = serde_json::to_writer(&mut counter, value);
            counter.count
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

struct Counter {
    count: usize,
    cap: usize,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count = self.count.saturating_add(buf.len());
        if self.count > self.cap {
            return Err(std::io::Error::other("over the cap"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
