//! The three upload formats and how they are recognised: by HTTP media type on the server, by
//! file extension in the CLI. One table here so that both sides agree.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// An upload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TabularFormat {
    /// Comma-separated values, RFC 4180, UTF-8, with a header row.
    Csv,
    /// Newline-delimited JSON: one JSON object per non-blank line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

impl TabularFormat {
    /// Every format, for listing in help and errors.
    pub const ALL: [TabularFormat; 3] = [Self::Csv, Self::Ndjson, Self::Parquet];

    /// The format of an HTTP `Content-Type`. Parameters (`; charset=utf-8`) are ignored and the
    /// media type is matched without regard to case. Unknown types give `None`.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "text/csv" => Some(Self::Csv),
            "application/x-ndjson" | "application/jsonl" => Some(Self::Ndjson),
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The format of a file name's extension (`.csv`, `.ndjson`/`.jsonl`, `.parquet`), without
    /// regard to case. Anything else gives `None`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" | "jsonl" => Some(Self::Ndjson),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The media type to send this format with. The server accepts it back through
    /// [`TabularFormat::from_content_type`].
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ndjson => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The short name used on the command line (`csv`, `ndjson`, `parquet`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
            Self::Parquet => "parquet",
        }
    }
}

impl fmt::Display for TabularFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format (expected csv, ndjson or parquet)")]
pub struct UnknownFormat;

impl FromStr for TabularFormat {
    type Err = UnknownFormat;

    /// Accepts `csv`, `ndjson`, `jsonl` and `parquet`, without regard to case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "ndjson" | "jsonl" => Ok(Self::Ndjson),
            "parquet" => Ok(Self::Parquet),
            _ => Err(UnknownFormat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_ignore_parameters_and_case() {
        use TabularFormat::*;
        for (ct, want) in [
            ("text/csv", Some(Csv)),
            ("text/csv; charset=utf-8", Some(Csv)),
            ("Text/CSV ;header=present", Some(Csv)),
            ("application/x-ndjson", Some(Ndjson)),
            ("application/jsonl", Some(Ndjson)),
            ("application/vnd.apache.parquet", Some(Parquet)),
            ("application/x-parquet", Some(Parquet)),
            ("application/json", None),
            ("", None),
            ("text/csvx", None),
        ] {
            assert_eq!(TabularFormat::from_content_type(ct), want, "{ct}");
        }
    }

    #[test]
    fn content_type_round_trips() {
        for f in TabularFormat::ALL {
            assert_eq!(TabularFormat::from_content_type(f.content_type()), Some(f));
            assert_eq!(f.name().parse::<TabularFormat>(), Ok(f));
        }
    }

    #[test]
    fn extensions() {
        use TabularFormat::*;
        for (p, want) in [
            ("a/b.csv", Some(Csv)),
            ("B.CSV", Some(Csv)),
            ("x.ndjson", Some(Ndjson)),
            ("x.jsonl", Some(Ndjson)),
            ("x.parquet", Some(Parquet)),
            ("x.json", None),
            ("csv", None),
            ("x.csv.gz", None),
        ] {
            assert_eq!(TabularFormat::from_path(Path::new(p)), want, "{p}");
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!("JSONL".parse::<TabularFormat>(), Ok(TabularFormat::Ndjson));
        assert_eq!("xlsx".parse::<TabularFormat>(), Err(UnknownFormat));
    }
}
