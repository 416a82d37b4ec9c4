//! How one CSV cell, which is always text, becomes a JSON value.

use serde_json::{Number, Value};

/// What a CSV column holds, so its text cells become the right JSON values.
///
/// An empty cell is JSON `null` under every hint. Surrounding spaces are ignored when a cell is
/// read as a number or a boolean, and kept when it is read as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ColumnHint {
    /// A JSON number; text that is not a finite number is a row error. Integers that fit 64 bits
    /// stay integers, other numbers become floats.
    Number,
    /// `true`/`false` from `true`, `false`, `True`, `False`, `TRUE`, `FALSE`, `1`, `0`; anything
    /// else is a row error.
    Bool,
    /// The text as a JSON string.
    String,
    /// Guess: a number if the text is a finite number, else a boolean if it is one of the
    /// literals `true`/`false` (in the three spellings above), else a string. An integer too long
    /// for 64 bits stays a string here, so a long identifier is never rounded to a float.
    #[default]
    Any,
}

/// Turns one non-empty-checked cell into JSON, or says why it cannot (never quoting it).
pub(crate) fn csv_cell(text: &str, hint: ColumnHint) -> Result<Value, &'static str> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    match hint {
        ColumnHint::String => Ok(Value::String(text.to_owned())),
        ColumnHint::Number => parse_number(text.trim(), true)
            .map(Value::Number)
            .ok_or("expected a number"),
        ColumnHint::Bool => parse_bool(text.trim(), true)
            .map(Value::Bool)
            .ok_or("expected a boolean (true, false, 1 or 0)"),
        ColumnHint::Any => {
            let trimmed = text.trim();
            if let Some(n) = parse_number(trimmed, false) {
                Ok(Value::Number(n))
            } else if let Some(b) = parse_bool(trimmed, false) {
                Ok(Value::Bool(b))
            } else {
                Ok(Value::String(text.to_owned()))
            }
        }
    }
}

/// A finite number, integers kept as integers. `wide_integers_as_float` says what to do with an
/// integer beyond 64 bits: a float when the column is declared numeric, nothing (so the caller
/// keeps the text) when guessing.
fn parse_number(text: &str, wide_integers_as_float: bool) -> Option<Number> {
    // Rust's float parser also accepts "inf", "NaN" and "infinity"; only digits, signs, a point
    // and an exponent make a number here, so words are never numbers.
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        || !text.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(Number::from(u));
    }
    let integer_like = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-'));
    if integer_like && !wide_integers_as_float {
        return None;
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

fn parse_bool(text: &str, digits: bool) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        "1" if digits => Some(true),
        "0" if digits => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers() {
        assert_eq!(csv_cell("42", ColumnHint::Number), Ok(json!(42)));
        assert!(csv_cell("42", ColumnHint::Number).unwrap().is_i64());
        assert_eq!(csv_cell(" -7 ", ColumnHint::Number), Ok(json!(-7)));
        assert_eq!(csv_cell("1.5e3", ColumnHint::Number), Ok(json!(1500.0)));
        assert_eq!(
            csv_cell("18446744073709551615", ColumnHint::Number),
            Ok(json!(u64::MAX))
        );
        assert!(
            csv_cell("123456789012345678901234", ColumnHint::Number)
                .unwrap()
                .is_f64()
        );
        for bad in [
            "abc", "NaN", "inf", "infinity", "1e999", "-", ".", "1,5", "0x10",
        ] {
            assert_eq!(
                csv_cell(bad, ColumnHint::Number),
                Err("expected a number"),
                "{bad}"
            );
        }
    }

    #[test]
    fn bools() {
        for (t, b) in [
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("False", false),
            ("FALSE", false),
            ("0", false),
        ] {
            assert_eq!(csv_cell(t, ColumnHint::Bool), Ok(Value::Bool(b)), "{t}");
        }
        assert!(csv_cell("yes", ColumnHint::Bool).is_err());
        assert!(csv_cell("tRuE", ColumnHint::Bool).is_err());
    }

    #[test]
    fn any_guesses_and_strings_stay_strings() {
        assert_eq!(csv_cell("3", ColumnHint::Any), Ok(json!(3)));
        assert_eq!(csv_cell("3.25", ColumnHint::Any), Ok(json!(3.25)));
        assert_eq!(csv_cell("TRUE", ColumnHint::Any), Ok(json!(true)));
        assert_eq!(csv_cell("NaN", ColumnHint::Any), Ok(json!("NaN")));
        assert_eq!(csv_cell("inf", ColumnHint::Any), Ok(json!("inf")));
        assert_eq!(
            csv_cell("123456789012345678901234", ColumnHint::Any),
            Ok(json!("123456789012345678901234"))
        );
        assert_eq!(csv_cell(" x ", ColumnHint::Any), Ok(json!(" x ")));
        assert_eq!(csv_cell("42", ColumnHint::String), Ok(json!("42")));
        for hint in [
            ColumnHint::Any,
            ColumnHint::Number,
            ColumnHint::Bool,
            ColumnHint::String,
        ] {
            assert_eq!(csv_cell("", hint), Ok(Value::Null));
        }
    }
}
