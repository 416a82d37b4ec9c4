//! Shared by the `drift_report` and `profiling` benches: the benchmark table, a columnar
//! in-memory copy of it, profiling it into one [`FeatureProfile`] per column, and Linux memory
//! probes.
//!
//! Owns: reading the CSV files that `scripts/bench/peers.py gen` writes into
//! `target/bench-data/` (or `$CUSTOS_BENCH_DATA`), so that Custos and the Python peers
//! (Evidently, whylogs) see exactly the same values. Must not: generate data of its own (one
//! generator, in Python, keeps both sides identical) or be used outside the benches.
//!
//! The CSV is simple by construction (peers.py checks it): no quoting except the header, no comma
//! inside a value, an empty field is a missing value, booleans are `true` / `false`, floats are
//! in shortest round-trip form (so `str::parse::<f64>` gives the same bits numpy wrote). Column
//! kinds come from the name prefix: `num_`, `cat_`, `bool_`. Anything else is an error, never a
//! guess.
//!
//! In memory, numeric columns are `f64` with NaN for missing (the generator writes no NaN value,
//! only empty fields), categorical columns are dictionary-encoded (`u32` codes into the distinct
//! strings, like Arrow dictionaries or pandas `category`; each observation still hands the full
//! string to the profile), booleans are one byte. Profiling walks column by column, like whylogs
//! does on a DataFrame.

#![allow(dead_code)] // each bench uses a different part

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use custos_stats::{CategoricalProfile, FeatureProfile, NumericProfile};

/// Code of a missing categorical value.
pub const MISSING_CODE: u32 = u32::MAX;
/// Byte of a missing boolean value (0 = false, 1 = true).
pub const BOOL_MISSING: u8 = 2;

/// Values of one column.
pub enum Values {
    /// NaN = missing.
    Numeric(Vec<f64>),
    /// `codes[i]` indexes `dict`; [`MISSING_CODE`] = missing.
    Categorical { dict: Vec<String>, codes: Vec<u32> },
    /// 0 / 1 / [`BOOL_MISSING`].
    Boolean(Vec<u8>),
}

/// One named column.
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// The whole table, column-major.
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: usize,
}

/// `$CUSTOS_BENCH_DATA`, else `<workspace>/target/bench-data`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("CUSTOS_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data"))
}

/// Whether the generated data is there; benches print a hint and exit 0 when it is not, so that
/// `cargo bench -p custos-stats` still runs the other benches on a fresh checkout.
pub fn data_present(dir: &Path) -> bool {
    dir.join("reference.csv").is_file() && dir.join("current.csv").is_file()
}

enum Builder {
    Numeric(Vec<f64>),
    Categorical {
        dict: Vec<String>,
        index: HashMap<String, u32>,
        codes: Vec<u32>,
    },
    Boolean(Vec<u8>),
}

impl Builder {
    fn for_name(name: &str) -> Result<Self, String> {
        if name.starts_with("num_") {
            Ok(Self::Numeric(Vec::new()))
        } else if name.starts_with("cat_") {
            Ok(Self::Categorical {
                dict: Vec::new(),
                index: HashMap::new(),
                codes: Vec::new(),
            })
        } else if name.starts_with("bool_") {
            Ok(Self::Boolean(Vec::new()))
        } else {
            Err(format!(
                "column {name:?}: unknown kind (expected num_, cat_ or bool_)"
            ))
        }
    }

    fn push(&mut self, field: &str) -> Result<(), String> {
        match self {
            Self::Numeric(v) => {
                let x = if field.is_empty() {
                    f64::NAN
                } else {
                    let x: f64 = field
                        .parse()
                        .map_err(|e| format!("bad number {field:?}: {e}"))?;
                    if x.is_nan() {
                        return Err("NaN in the data: missing values must be empty".into());
                    }
                    x
                };
                v.push(x);
            }
            Self::Categorical { dict, index, codes } => {
                let code = if field.is_empty() {
                    MISSING_CODE
                } else if let Some(code) = index.get(field) {
                    *code
                } else {
                    let code = u32::try_from(dict.len())
                        .ok()
                        .filter(|c| *c != MISSING_CODE)
                        .ok_or("too many categories")?;
                    dict.push(field.to_owned());
                    index.insert(field.to_owned(), code);
                    code
                };
                codes.push(code);
            }
            Self::Boolean(v) => v.push(match field {
                "false" => 0,
                "true" => 1,
                "" => BOOL_MISSING,
                other => return Err(format!("bad boolean {other:?}")),
            }),
        }
        Ok(())
    }

    fn finish(self) -> Values {
        match self {
            Self::Numeric(v) => Values::Numeric(v),
            Self::Categorical { dict, codes, .. } => Values::Categorical { dict, codes },
            Self::Boolean(v) => Values::Boolean(v),
        }
    }
}

/// Reads one CSV file written by `peers.py gen`.
pub fn load(path: &Path) -> Result<Table, String> {
    let err = |e: String| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| err(e.to_string()))?;
    let names: Vec<String> = line
        .trim_end()
        .split(',')
        .map(|s| s.trim_matches('"').to_owned())
        .collect();
    let mut builders = names
        .iter()
        .map(|n| Builder::for_name(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let mut rows = 0usize;
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .map_err(|e| err(e.to_string()))?
            == 0
        {
            break;
        }
        let mut fields = line.trim_end_matches(['\n', '\r']).split(',');
        for builder in &mut builders {
            let field = fields
                .next()
                .ok_or_else(|| err(format!("row {}: too few fields", rows + 1)))?;
            builder
                .push(field)
                .map_err(|e| err(format!("row {}: {e}", rows + 1)))?;
        }
        if fields.next().is_some() {
            return Err(err(format!("row {}: too many fields", rows + 1)));
        }
        rows += 1;
    }
    let columns = names
        .into_iter()
        .zip(builders)
        .map(|(name, b)| Column {
            name,
            values: b.finish(),
        })
        .collect();
    Ok(Table { columns, rows })
}

/// Profiles one column: every value goes through `observe*`, as on ingest.
pub fn profile_column(values: &Values) -> FeatureProfile {
    match values {
        Values::Numeric(v) => {
            let mut p = NumericProfile::new();
            for &x in v {
                if x.is_nan() {
                    p.observe_missing();
                } else {
                    p.observe(x);
                }
            }
            p.into()
        }
        Values::Categorical { dict, codes } => {
            let mut p = CategoricalProfile::new();
            for &code in codes {
                match dict.get(code as usize) {
                    Some(s) => p.observe(s),
                    None => p.observe_missing(),
                }
            }
            p.into()
        }
        Values::Boolean(v) => {
            let mut p = CategoricalProfile::new();
            for &b in v {
                match b {
                    0 => p.observe_bool(false),
                    1 => p.observe_bool(true),
                    _ => p.observe_missing(),
                }
            }
            p.into()
        }
    }
}

/// One profile per column, column by column, on the calling thread.
pub fn profile_table(table: &Table) -> Vec<FeatureProfile> {
    table
        .columns
        .iter()
        .map(|c| profile_column(&c.values))
        .collect()
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux >= 4.0); `false` where not allowed.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Prints `msg` and exits with status 1 (benches may not panic under the workspace lints).
pub fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
