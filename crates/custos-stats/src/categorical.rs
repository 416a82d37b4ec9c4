//! Categorical feature profile: exact counts while small, frequent-items + HLL sketches beyond.
//!
//! Owns: [`CategoricalProfile`] (observe, merge, exact→sketch transition, per-category counts) and
//! its payload encoding inside the profile envelope. Must not: compute drift (`drift.rs`), write
//! the envelope header (`profile.rs`), or put category names into error messages.
//!
//! Exact mode keeps a `HashMap<String, u64>` while at most [`EXACT_LIMIT`] distinct values have
//! been seen (std's SipHash with per-process random keys, so crafted category names cannot force
//! collisions; a lookup costs a fraction of the ~10 string comparisons of a B-tree search at
//! 1,000 categories). The map's order is never observable: encoding and feeding the
//! frequent-items sketch go through `by_name`, i.e. ascending byte order, exactly as when this
//! was a `BTreeMap`, so encoded bytes and sketch states are unchanged. Maps of at most
//! `SCAN_LIMIT` categories (booleans) are searched by a scan, which is cheaper than hashing.
//!
//! The first value past the limit (by observe or by merge) converts the profile to sketch mode for
//! good: a datasketches frequent-items sketch (map size [`SKETCH_MAP_SIZE`], per-item count error
//! ≤ 3.5 / 1024 ≈ 0.34 % of the total) plus a HyperLogLog distinct counter (`distinct.rs`, ~1.6 %
//! relative standard error), since frequent items cannot count distinct values.
//!
//! Per-category counts reported in sketch mode are the sketch's retained counters, i.e. its lower
//! bounds: they never sum past the total, so the unexplained rest can be reported as "other".

use std::collections::HashMap;

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};

use crate::MAX_COUNT;
use crate::codec::{Reader, Writer, corrupt};
use crate::distinct::DistinctSketch;
use crate::error::StatsError;

/// Most distinct values kept as exact counts; one more converts the profile to sketch mode.
pub const EXACT_LIMIT: usize = 1000;

/// Maximum map size of the frequent-items sketch (power of two; tracks up to 768 items).
pub const SKETCH_MAP_SIZE: usize = 1024;
const LG_SKETCH_MAP_SIZE: u8 = 10;

/// Exact maps with at most this many categories are searched by scanning instead of hashing.
const SCAN_LIMIT: usize = 4;

/// Sketch mode is only ever entered with more than `EXACT_LIMIT` distinct values, hence at least
/// that many observations; decoding uses this as a plausibility check.
const MIN_SKETCH_WEIGHT: u64 = EXACT_LIMIT as u64 + 1;

/// Mergeable profile of one categorical (string or boolean) feature.
#[derive(Debug, Clone)]
pub struct CategoricalProfile {
    count: u64,
    missing: u64,
    counts: Counts,
}

#[derive(Debug, Clone)]
enum Counts {
    Exact(HashMap<String, u64>),
    Sketch(Box<Sketched>),
}

#[derive(Debug, Clone)]
struct Sketched {
    items: FrequentItemsSketch<String>,
    distinct: DistinctSketch,
}

impl Sketched {
    /// `None` only if datasketches rejects the constant configuration, which a unit test rules
    /// out. Callers then keep exact counts rather than panic: still correct in memory, though
    /// such a profile would fail to decode after encoding (more than `EXACT_LIMIT` entries).
    fn from_exact(map: &HashMap<String, u64>) -> Option<Self> {
        let items = FrequentItemsSketch::new(SKETCH_MAP_SIZE).ok()?;
        let mut sketched = Self {
            items,
            distinct: DistinctSketch::new(),
        };
        sketched.add_exact(map);
        Some(sketched)
    }

    /// In name order: the frequent-items sketch's state depends on insertion order.
    fn add_exact(&mut self, map: &HashMap<String, u64>) {
        for (value, n) in by_name(map) {
            self.items.update_with_count_ref(value, n);
            self.distinct.insert(value);
        }
    }

    fn observe(&mut self, v: &str) {
        self.items.update_ref(v);
        self.distinct.insert(v);
    }

    fn merge(&mut self, other: &Sketched) {
        self.distinct.merge(&other.distinct);
        self.items.merge(&other.items);
    }
}

impl Default for CategoricalProfile {
    fn default() -> Self {
        Self::new()
    }
}

impl CategoricalProfile {
    /// An empty profile in exact mode.
    pub fn new() -> Self {
        Self {
            count: 0,
            missing: 0,
            counts: Counts::Exact(HashMap::new()),
        }
    }

    /// Records one value. The empty string is a category like any other.
    pub fn observe(&mut self, v: &str) {
        self.count += 1;
        match &mut self.counts {
            Counts::Exact(map) => {
                // Booleans and other tiny domains: comparing a few strings beats hashing one.
                let known = if map.len() <= SCAN_LIMIT {
                    map.iter_mut()
                        .find(|(k, _)| k.as_str() == v)
                        .map(|(_, n)| n)
                } else {
                    map.get_mut(v)
                };
                if let Some(n) = known {
                    *n += 1;
                    return;
                }
                map.insert(v.to_owned(), 1);
                if map.len() > EXACT_LIMIT
                    && let Some(sketched) = Sketched::from_exact(map)
                {
                    self.counts = Counts::Sketch(Box::new(sketched));
                }
            }
            Counts::Sketch(sketched) => sketched.observe(v),
        }
    }

    /// Records a boolean as the category `"true"` or `"false"`.
    pub fn observe_bool(&mut self, v: bool) {
        self.observe(if v { "true" } else { "false" });
    }

    /// Records one missing value (null / absent field).
    pub fn observe_missing(&mut self) {
        self.count += 1;
        self.missing += 1;
    }

    /// Merges `other` into `self`. On error `self` is unchanged.
    pub fn merge(&mut self, other: &CategoricalProfile) -> Result<(), StatsError> {
        // The cap keeps every later sum inside the sketches (which panic on u64 overflow) safe.
        let count = self
            .count
            .checked_add(other.count)
            .filter(|c| *c <= MAX_COUNT)
            .ok_or_else(|| corrupt("merged observation count exceeds the supported maximum"))?;
        match (&mut self.counts, &other.counts) {
            (Counts::Exact(mine), Counts::Exact(theirs)) => {
                for (value, n) in theirs {
                    *mine.entry(value.clone()).or_insert(0) += n;
                }
                if mine.len() > EXACT_LIMIT
                    && let Some(sketched) = Sketched::from_exact(mine)
                {
                    self.counts = Counts::Sketch(Box::new(sketched));
                }
            }
            (Counts::Exact(mine), Counts::Sketch(theirs)) => {
                // Starting from a copy of the other sketch keeps its configuration and avoids a
                // fallible constructor.
                let mut sketched = theirs.clone();
                sketched.add_exact(mine);
                self.counts = Counts::Sketch(sketched);
            }
            (Counts::Sketch(mine), Counts::Exact(theirs)) => mine.add_exact(theirs),
            (Counts::Sketch(mine), Counts::Sketch(theirs)) => mine.merge(theirs),
        }
        self.count = count;
        self.missing += other.missing;
        Ok(())
    }

    /// All observations, including missing ones.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Observations recorded with [`observe_missing`](Self::observe_missing).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Non-missing observations.
    pub fn present(&self) -> u64 {
        self.count - self.missing
    }

    /// `true` while counts are exact (at most [`EXACT_LIMIT`] distinct values seen).
    pub fn is_exact(&self) -> bool {
        matches!(self.counts, Counts::Exact(_))
    }

    /// Distinct values: exact in exact mode, otherwise the HLL estimate, never below
    /// `EXACT_LIMIT + 1` (sketch mode proves that many were seen).
    pub fn distinct_estimate(&self) -> u64 {
        match &self.counts {
            Counts::Exact(map) => map.len() as u64,
            Counts::Sketch(sketched) => {
                let estimate = sketched.distinct.estimate().round();
                // `as` saturates for floats; NaN maps to 0 and is then lifted by the floor.
                (estimate as u64)
                    .max(MIN_SKETCH_WEIGHT)
                    .max(sketched.items.num_active_items() as u64)
            }
        }
    }

    /// Known per-category counts, largest first, ties by name. Exact mode: every category.
    /// Sketch mode: the tracked ones with their retained (lower-bound) counters.
    pub fn category_counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = match &self.counts {
            Counts::Exact(map) => map.iter().map(|(k, n)| (k.clone(), *n)).collect(),
            Counts::Sketch(sketched) => sketched
                .items
                .frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
                .into_iter()
                .map(|row| (row.item().clone(), row.lower_bound()))
                .filter(|(_, n)| *n > 0)
                .collect(),
        };
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.count);
        w.u64(self.missing);
        match &self.counts {
            Counts::Exact(map) => {
                w.u8(MODE_EXACT);
                w.u32(u32::try_from(map.len()).unwrap_or(u32::MAX));
                for (value, n) in by_name(map) {
                    w.blob(value.as_bytes());
                    w.u64(n);
                }
            }
            Counts::Sketch(sketched) => {
                w.u8(MODE_SKETCH);
                w.blob(&sketched.items.serialize());
                w.blob(sketched.distinct.as_bytes());
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, StatsError> {
        let count = r.u64("categorical count")?;
        let missing = r.u64("categorical missing count")?;
        if count > MAX_COUNT {
            return Err(corrupt("observation count exceeds the supported maximum"));
        }
        let present = count
            .checked_sub(missing)
            .ok_or_else(|| corrupt("missing count exceeds total count"))?;
        let counts = match r.u8("categorical mode")? {
            MODE_EXACT => Counts::Exact(decode_exact(r, present)?),
            MODE_SKETCH => Counts::Sketch(Box::new(decode_sketch(r, present)?)),
            other => return Err(corrupt(format!("unknown categorical mode {other}"))),
        };
        Ok(Self {
            count,
            missing,
            counts,
        })
    }
}

const MODE_EXACT: u8 = 0;
const MODE_SKETCH: u8 = 1;

/// Exact counts in ascending byte order of the names (the encoding's order; names are unique).
fn by_name(map: &HashMap<String, u64>) -> Vec<(&str, u64)> {
    let mut entries: Vec<(&str, u64)> = map.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

fn decode_exact(r: &mut Reader<'_>, present: u64) -> Result<HashMap<String, u64>, StatsError> {
    let entries = r.u32("category entry count")?;
    if entries as usize > EXACT_LIMIT {
        return Err(corrupt(format!(
            "{entries} exact categories exceed the limit of {EXACT_LIMIT}"
        )));
    }
    let mut map = HashMap::with_capacity(entries as usize);
    let mut sum = 0u64;
    let mut previous: Option<&str> = None;
    for _ in 0..entries {
        let value = std::str::from_utf8(r.blob("category name")?)
            .map_err(|_| corrupt("category name is not valid UTF-8"))?;
        let n = r.u64("category count")?;
        if n == 0 {
            return Err(corrupt("category with zero count"));
        }
        // Requiring ascending order (as written) rejects duplicates and keeps the encoding canonical.
        if previous.is_some_and(|p| p >= value) {
            return Err(corrupt("categories are not strictly ordered"));
        }
        previous = Some(value);
        sum = sum
            .checked_add(n)
            .ok_or_else(|| corrupt("category counts overflow"))?;
        map.insert(value.to_owned(), n);
    }
    if sum != present {
        return Err(corrupt(
            "category counts do not add up to the non-missing count",
        ));
    }
    Ok(map)
}

fn decode_sketch(r: &mut Reader<'_>, present: u64) -> Result<Sketched, StatsError> {
    let items_bytes = r.blob("frequent-items sketch")?;
    let distinct = DistinctSketch::from_bytes(r.blob("distinct sketch")?)?;
    // The map-size byte is checked before handing the image to datasketches: its decoder
    // allocates tables sized by it (up to 2^30 entries), so a hostile header must not reach it.
    if items_bytes.get(3) != Some(&LG_SKETCH_MAP_SIZE) {
        return Err(corrupt("frequent-items sketch has an unexpected map size"));
    }
    let items = FrequentItemsSketch::<String>::deserialize(items_bytes).map_err(|e| {
        corrupt(format!(
            "frequent-items sketch image rejected: {}",
            e.message()
        ))
    })?;
    if items.lg_max_map_size() != LG_SKETCH_MAP_SIZE {
        return Err(corrupt("frequent-items sketch has an unexpected map size"));
    }
    if items.total_weight() != present {
        return Err(corrupt(
            "frequent-items weight does not match the non-missing count",
        ));
    }
    if present < MIN_SKETCH_WEIGHT {
        return Err(corrupt(
            "sketch mode with fewer observations than the exact limit",
        ));
    }
    if items.maximum_error() > present {
        return Err(corrupt(
            "frequent-items error bound exceeds the total weight",
        ));
    }
    Ok(Sketched { items, distinct })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_configuration_is_accepted_by_datasketches() {
        assert!(FrequentItemsSketch::<String>::new(SKETCH_MAP_SIZE).is_ok());
        assert_eq!(1usize << LG_SKETCH_MAP_SIZE, SKETCH_MAP_SIZE);
        assert!(Sketched::from_exact(&HashMap::new()).is_some());
    }

    #[test]
    fn booleans_are_categories() {
        let mut p = CategoricalProfile::new();
        p.observe_bool(true);
        p.observe_bool(true);
        p.observe_bool(false);
        assert_eq!(
            p.category_counts(),
            vec![("true".to_owned(), 2), ("false".to_owned(), 1)]
        );
    }
}
