//! The pure core of configuration history: what changed between two versions of a
//! configuration, and which of those changes make monitoring or masking weaker.
//!
//! Owns the structural JSON [`diff`] (the `Change` list a history view shows), the weakening
//! rules behind the two-person rule ([`monitoring_weakenings`], [`masking_weakenings`]), and the
//! [`ConfigKind`] tag under which versions of different configurations share one history table.
//! Must not store versions, read the clock or decide who may approve: the store and server do
//! that. Every function here is total and bounded: [`diff`] refuses documents nested deeper
//! than [`MAX_DIFF_DEPTH`] instead of recursing without limit.
//!
//! The weakening rules lean towards reporting: a change whose effect on alarms cannot be ranked
//! (another statistic, the default rule taking over, a baseline of another length) counts as a
//! weakening, with a reason that says the direction is unknown. A false alarm costs a second
//! approver a minute; a missed weakening silently blinds monitoring.

use crate::monitoring::{DriftConfig, MethodSetting, MonitoringConfig, default_threshold};
use crate::schema::{Masking, ModelSpec};
use custos_stats::StatMethod;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Number, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

// ---------------------------------------------------------------------------------------------
// Structural diff
// ---------------------------------------------------------------------------------------------

/// Deepest nesting [`diff`] accepts: a scalar has depth 0, `[]` and `{}` depth 1, `[[1]]`
/// depth 2. Configuration documents are a handful of levels deep; the bound keeps a hostile
/// document from exhausting the stack.
pub const MAX_DIFF_DEPTH: usize = 64;

/// What happened at a [`Change`]'s path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present only in the later document (`after` is set, `before` is not).
    Added,
    /// Present only in the earlier document (`before` is set, `after` is not).
    Removed,
    /// Present in both with another value (both are set).
    Changed,
}

/// One difference between two JSON documents.
///
/// `path` is an RFC 6901 JSON pointer (`""` is the whole document; `~` and `/` inside a token
/// are written `~0` and `~1`) with one extension: in an array compared as a set (see [`diff`]),
/// the last token is the element itself, not an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// Where the difference is.
    pub path: String,
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// The earlier value (removed and changed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The later value (added and changed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// A present field is `Some` even when it holds `null`: plain `Option<Value>` would read an
/// added `null` back as "no value" and lose the change.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Which of the two documents given to [`diff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The earlier document.
    Before,
    /// The later document.
    After,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Before => "earlier",
            Self::After => "later",
        })
    }
}

/// Why [`diff`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// A document is nested deeper than [`MAX_DIFF_DEPTH`].
    #[error("the {0} document is nested deeper than {MAX_DIFF_DEPTH} levels")]
    TooDeep(Side),
}

/// Escapes one reference token of a JSON pointer (RFC 6901: `~` → `~0`, then `/` → `~1`).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn push_token(path: &mut String, token: &str) {
    path.push('/');
    path.push_str(&escape_pointer_token(token));
}

/// The structural differences that turn `before` into `after`.
///
/// * Objects are compared key by key, keys in byte order; a key on one side only is one
///   `Added` or `Removed` change carrying the whole value.
/// * Arrays in which every element on both sides is a string (an empty array qualifies) are
///   compared as sets: order and repeats do not matter, and each element only on one side is
///   one change at `<array path>/<escaped element>`, elements in byte order. Such arrays are
///   name lists (excluded features, token scopes, role members) whose order means nothing.
/// * Other arrays are compared index by index: the common prefix element by element, then
///   extra later elements as `Added` in ascending index order, or extra earlier elements as
///   `Removed` in descending index order.
/// * Values of different JSON types, and scalars that differ, are one `Changed` change.
///   Numbers are compared by mathematical value, so `1` equals `1.0` and `-0.0` equals `0`;
///   two integers are compared exactly rather than through `f64`, so `2^53` and `2^53 + 1`
///   still differ.
///
/// Applying the changes one after another in the returned order to `before` yields `after`
/// (up to the order and repeats of set-compared arrays and the spelling of equal numbers).
///
/// Errors: [`DiffError::TooDeep`] when either document is nested deeper than
/// [`MAX_DIFF_DEPTH`]; both are measured before anything is compared.
pub fn diff(before: &Value, after: &Value) -> Result<Vec<Change>, DiffError> {
    if deeper_than(before, MAX_DIFF_DEPTH) {
        return Err(DiffError::TooDeep(Side::Before));
    }
    if deeper_than(after, MAX_DIFF_DEPTH) {
        return Err(DiffError::TooDeep(Side::After));
    }
    let mut changes = Vec::new();
    let mut path = String::new();
    walk(&mut path, before, after, &mut changes);
    Ok(changes)
}

/// Whether `value` nests containers more than `limit` deep. Iterative, so measuring cannot
/// itself overflow the stack; it stops at the first container past the limit.
fn deeper_than(value: &Value, limit: usize) -> bool {
    // Each entry: a value and how many containers enclose it.
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, enclosing)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if enclosing + 1 > limit {
            return true;
        }
        stack.extend(children.map(|child| (child, enclosing + 1)));
    }
    false
}

/// Recursion is bounded by the depth check in [`diff`].
fn walk(path: &mut String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let len = path.len();
                push_token(path, key);
                match (b.get(key), a.get(key)) {
                    (Some(bv), Some(av)) => walk(path, bv, av, out),
                    (Some(bv), None) => out.push(removed(path, bv)),
                    (None, Some(av)) => out.push(added(path, av)),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(b), Value::Array(a)) => match (strings(b), strings(a)) {
            (Some(b), Some(a)) => {
                for element in b.union(&a) {
                    let len = path.len();
                    push_token(path, element);
                    let value = Value::String((*element).to_owned());
                    match (b.contains(element), a.contains(element)) {
                        (true, false) => out.push(removed(path, &value)),
                        (false, true) => out.push(added(path, &value)),
                        _ => {}
                    }
                    path.truncate(len);
                }
            }
            _ => {
                for (index, (bv, av)) in b.iter().zip(a).enumerate() {
                    let len = path.len();
                    push_token(path, &index.to_string());
                    walk(path, bv, av, out);
                    path.truncate(len);
                }
                for (index, av) in a.iter().enumerate().skip(b.len()) {
                    out.push(added(&format!("{path}/{index}"), av));
                }
                // Descending, so that removing one after another never shifts a later index.
                for (index, bv) in b.iter().enumerate().skip(a.len()).rev() {
                    out.push(removed(&format!("{path}/{index}"), bv));
                }
            }
        },
        _ => {
            if !scalars_equal(before, after) {
                out.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Changed,
                    before: Some(before.clone()),
                    after: Some(after.clone()),
                });
            }
        }
    }
}

fn added(path: &str, value: &Value) -> Change {
    Change {
        path: path.to_owned(),
        kind: ChangeKind::Added,
        before: None,
        after: Some(value.clone()),
    }
}

fn removed(path: &str, value: &Value) -> Change {
    Change {
        path: path.to_owned(),
        kind: ChangeKind::Removed,
        before: Some(value.clone()),
        after: None,
    }
}

/// The elements of an array made only of strings, as a set; `None` if any element is not one.
fn strings(items: &[Value]) -> Option<BTreeSet<&str>> {
    items.iter().map(Value::as_str).collect()
}

/// Equality of two values of which at least one is not a container (containers of the same
/// kind never reach here).
fn scalars_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        _ => false,
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Same mathematical value. Integers are compared exactly; an integer equals a float only when
/// the float is integral and converts to exactly that integer.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x == y,
        (Some(i), None) => b.as_f64().is_some_and(|f| float_is_integer(f, i)),
        (None, Some(i)) => a.as_f64().is_some_and(|f| float_is_integer(f, i)),
        (None, None) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn float_is_integer(f: f64, i: i128) -> bool {
    // Every i64 / u64 lies in (-2^64, 2^64), where an integral f64 converts to i128 exactly.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64
    f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT && f as i128 == i
}

// ---------------------------------------------------------------------------------------------
// Weakenings
// ---------------------------------------------------------------------------------------------

/// A change that makes an alarm less likely or protects data less, so that applying it needs
/// a second person's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Weakening {
    /// JSON pointer of the setting in the configuration document (as in [`Change::path`]; in
    /// name lists the last token is the name).
    pub path: String,
    /// Why the change weakens, in words, with the old and new values.
    pub reason: String,
}

fn weakening(path: &str, reason: impl Into<String>) -> Weakening {
    Weakening {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// How a number moved, seen from what alarms less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Movement {
    Same,
    Tighter,
    Weaker,
    /// NaN on a side: the two cannot be ordered.
    Unordered,
}

fn movement(before: f64, after: f64, higher_is_weaker: bool) -> Movement {
    if before == after || before.to_bits() == after.to_bits() {
        return Movement::Same;
    }
    match after.partial_cmp(&before) {
        None | Some(std::cmp::Ordering::Equal) => Movement::Unordered,
        Some(std::cmp::Ordering::Greater) if higher_is_weaker => Movement::Weaker,
        Some(std::cmp::Ordering::Less) if !higher_is_weaker => Movement::Weaker,
        Some(_) => Movement::Tighter,
    }
}

/// Pushes a weakening for a raised (or, with `higher_is_weaker` false, lowered) number.
fn number_rule(
    out: &mut Vec<Weakening>,
    path: &str,
    before: f64,
    after: f64,
    higher_is_weaker: bool,
    what: &str,
) {
    match movement(before, after, higher_is_weaker) {
        Movement::Same | Movement::Tighter => {}
        Movement::Weaker => out.push(weakening(
            path,
            format!(
                "{what} {} from {before} to {after}",
                if higher_is_weaker {
                    "raised"
                } else {
                    "lowered"
                }
            ),
        )),
        Movement::Unordered => out.push(weakening(
            path,
            format!(
                "{what} changed from {before} to {after}, which cannot be ordered; treated as \
                 weakening"
            ),
        )),
    }
}

/// The statistic's name as it is written in a configuration (`kolmogorov_smirnov`, …).
fn method_name(method: StatMethod) -> String {
    serde_json::to_value(method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{method:?}"))
}

/// Whether `after` alarms less (or unrankably differently) than `before`, setting by setting.
/// Pushes one weakening per weakened part under `prefix` (a pointer to the setting).
///
/// Direction per statistic, as `custos-stats` decides drift: a test flags drift when
/// `p < threshold`, so a LOWER p-value level alarms less; a distance flags drift when
/// `statistic >= threshold`, so a HIGHER threshold alarms less. A data-driven threshold is
/// `mean + k·σ` of the statistic over reference chunks, so a higher `k` alarms less; the fixed
/// threshold stays the fallback when the reference has too few chunks, so it is compared too.
fn setting_weakenings(
    prefix: &str,
    what: &str,
    before: &MethodSetting,
    after: &MethodSetting,
    out: &mut Vec<Weakening>,
) {
    if before.method != after.method {
        out.push(weakening(
            &format!("{prefix}/method"),
            format!(
                "{what}: statistic changed from {} to {}; thresholds of different statistics \
                 cannot be ranked, so the change is treated as weakening",
                method_name(before.method),
                method_name(after.method)
            ),
        ));
        return;
    }
    let method = before.method;
    let p_value = method.uses_p_value();
    let b = before.threshold.unwrap_or(default_threshold(method));
    let a = after.threshold.unwrap_or(default_threshold(method));
    let label = if p_value {
        format!(
            "{what}: p-value level of {} (drift when p < level)",
            method_name(method)
        )
    } else {
        format!(
            "{what}: threshold of {} (drift when statistic >= threshold)",
            method_name(method)
        )
    };
    number_rule(out, &format!("{prefix}/threshold"), b, a, !p_value, &label);
    let k_path = format!("{prefix}/data_driven_k");
    match (before.data_driven_k, after.data_driven_k) {
        (None, None) => {}
        (Some(b), Some(a)) if p_value => {
            // A data-driven p-value level is refused by the check; its direction is undefined.
            if movement(b, a, true) != Movement::Same {
                out.push(weakening(
                    &k_path,
                    format!(
                        "{what}: data_driven_k of a p-value test changed from {b} to {a}; the \
                         direction is unknown, so the change is treated as weakening"
                    ),
                ));
            }
        }
        (Some(b), Some(a)) => number_rule(
            out,
            &k_path,
            b,
            a,
            true,
            &format!("{what}: data_driven_k (threshold = mean + k·σ)"),
        ),
        (Some(b), None) => out.push(weakening(
            &k_path,
            format!(
                "{what}: data-driven threshold (k = {b}) switched off; a fixed threshold cannot \
                 be ranked against mean + k·σ, so the change is treated as weakening"
            ),
        )),
        (None, Some(a)) => out.push(weakening(
            &k_path,
            format!(
                "{what}: switched from a fixed to a data-driven threshold (k = {a}); the two \
                 cannot be ranked, so the change is treated as weakening"
            ),
        )),
    }
}

/// The kind settings a feature with this per-feature statistic may fall back to: the statistic
/// applies to the feature's kind (the check enforces it), so it narrows the kind down without
/// the schema. `None` entries stand for the default rule.
fn fallbacks(
    drift: &DriftConfig,
    method: StatMethod,
) -> Vec<(&'static str, Option<&MethodSetting>)> {
    let mut out = Vec::new();
    if method.applies_to(custos_stats::ProfileKind::Numeric) {
        out.push(("drift.numeric", drift.numeric.as_ref()));
    }
    if method.applies_to(custos_stats::ProfileKind::Categorical) {
        out.push(("drift.categorical", drift.categorical.as_ref()));
    }
    out
}

/// Whether every possible fallback exists and moving from `from` to it (or from it to `to`)
/// weakens nothing. Returns the reason it is not, if it is not.
fn fallback_reason(
    candidates: &[(&'static str, Option<&MethodSetting>)],
    compare: impl Fn(&MethodSetting) -> Vec<Weakening>,
) -> Option<String> {
    for (name, candidate) in candidates {
        match candidate {
            None => {
                return Some(format!(
                    "with no {name} setting the default rule applies, which chooses its \
                     statistic by reference size and cannot be ranked against it; treated as \
                     weakening"
                ));
            }
            Some(setting) => {
                if let Some(w) = compare(setting).into_iter().next() {
                    return Some(format!("compared with the {name} setting: {}", w.reason));
                }
            }
        }
    }
    None
}

/// Kind defaults: removing one hands its features to the default rule, adding one takes them
/// from it; neither can be ranked, and a removal is always reported.
fn kind_default_rule(
    path: &str,
    what: &str,
    before: Option<&MethodSetting>,
    after: Option<&MethodSetting>,
    out: &mut Vec<Weakening>,
) {
    match (before, after) {
        (None, None) => {}
        (Some(b), Some(a)) => setting_weakenings(path, what, b, a, out),
        (Some(b), None) => out.push(weakening(
            path,
            format!(
                "{what} ({}) removed; its features fall back to the default rule, which chooses \
                 its statistic by reference size and cannot be ranked against it",
                method_name(b.method)
            ),
        )),
        (None, Some(a)) => out.push(weakening(
            path,
            format!(
                "{what} ({}) added in place of the default rule, which chooses its statistic by \
                 reference size; the two cannot be ranked, so the change is treated as weakening",
                method_name(a.method)
            ),
        )),
    }
}

/// The changes from `before` to `after` that make monitoring less likely to alarm.
///
/// Reported, each at the pointer of the setting:
/// * `drift.drift_share` raised (more features must drift before the dataset does);
/// * a drift setting (`drift.numeric`, `drift.categorical`, `drift.features.*`) whose threshold
///   alarms less — a LOWER p-value level for `kolmogorov_smirnov`, `chi_square` and
///   `z_proportion` (drift when `p < level`), a HIGHER threshold for the distances (drift when
///   `statistic >= threshold`), a higher `data_driven_k` — or whose statistic changed, or that
///   switched between a fixed and a data-driven threshold (these cannot be ranked);
/// * a kind setting removed or added (the default rule takes over or is replaced: unrankable);
/// * a per-feature setting removed, unless every kind setting the feature can fall back to
///   exists and is at least as strict; a per-feature setting added, unless it is at least as
///   strict as every kind setting it replaces (the default rule cannot be ranked);
/// * a feature added to `drift.exclude` (at `/drift/exclude/<name>`);
/// * `quality.max_silence_minutes` or `quality.volume_k` raised;
/// * `quality.volume_baseline_hours` or `performance.decision_threshold` changed at all (their
///   effect on alarms has no direction);
/// * a feature removed from `performance.segment_by` (a breakdown is no longer watched);
/// * `retention.raw_events_days` or `retention.profiles_days` raised or removed (data is kept
///   longer).
///
/// Tightening changes (and unchanged settings) are never reported. Neither configuration is
/// checked here; a value that cannot be ordered (NaN) counts as weakening.
pub fn monitoring_weakenings(
    before: &MonitoringConfig,
    after: &MonitoringConfig,
) -> Vec<Weakening> {
    let mut out = Vec::new();
    let (bd, ad) = (&before.drift, &after.drift);
    number_rule(
        &mut out,
        "/drift/drift_share",
        bd.drift_share,
        ad.drift_share,
        true,
        "drift.drift_share (share of drifted features that makes the dataset drifted)",
    );
    kind_default_rule(
        "/drift/numeric",
        "drift.numeric",
        bd.numeric.as_ref(),
        ad.numeric.as_ref(),
        &mut out,
    );
    kind_default_rule(
        "/drift/categorical",
        "drift.categorical",
        bd.categorical.as_ref(),
        ad.categorical.as_ref(),
        &mut out,
    );
    let names: BTreeSet<&str> = bd
        .features
        .keys()
        .chain(ad.features.keys())
        .map(|n| n.as_str())
        .collect();
    let lookup = |map: &'_ BTreeMap<crate::names::FieldName, MethodSetting>, name: &str| {
        map.iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, s)| *s)
    };
    for name in names {
        let path = format!("/drift/features/{}", escape_pointer_token(name));
        let what = format!("drift.features.{name}");
        match (lookup(&bd.features, name), lookup(&ad.features, name)) {
            (None, None) => {}
            (Some(b), Some(a)) => setting_weakenings(&path, &what, &b, &a, &mut out),
            (Some(b), None) => {
                let candidates = fallbacks(ad, b.method);
                let reason = fallback_reason(&candidates, |fallback| {
                    let mut w = Vec::new();
                    setting_weakenings(&path, &what, &b, fallback, &mut w);
                    w
                });
                if let Some(reason) = reason {
                    out.push(weakening(
                        &path,
                        format!("{what} ({}) removed; {reason}", method_name(b.method)),
                    ));
                }
            }
            (None, Some(a)) => {
                let candidates = fallbacks(bd, a.method);
                let reason = fallback_reason(&candidates, |fallback| {
                    let mut w = Vec::new();
                    setting_weakenings(&path, &what, fallback, &a, &mut w);
                    w
                });
                if let Some(reason) = reason {
                    out.push(weakening(
                        &path,
                        format!("{what} ({}) added; {reason}", method_name(a.method)),
                    ));
                }
            }
        }
    }
    let excluded: BTreeSet<&str> = bd.exclude.iter().map(|n| n.as_str()).collect();
    let newly_excluded: BTreeSet<&str> = ad
        .exclude
        .iter()
        .map(|n| n.as_str())
        .filter(|n| !excluded.contains(n))
        .collect();
    for name in newly_excluded {
        out.push(weakening(
            &format!("/drift/exclude/{}", escape_pointer_token(name)),
            format!("'{name}' added to drift.exclude: its drift is no longer judged"),
        ));
    }

    let (bq, aq) = (&before.quality, &after.quality);
    number_rule(
        &mut out,
        "/quality/max_silence_minutes",
        f64::from(bq.max_silence_minutes),
        f64::from(aq.max_silence_minutes),
        true,
        "quality.max_silence_minutes (silence before the model counts as stale)",
    );
    number_rule(
        &mut out,
        "/quality/volume_k",
        bq.volume_k,
        aq.volume_k,
        true,
        "quality.volume_k (width of the volume band in σ)",
    );
    if bq.volume_baseline_hours != aq.volume_baseline_hours {
        out.push(weakening(
            "/quality/volume_baseline_hours",
            format!(
                "quality.volume_baseline_hours changed from {} to {}; a baseline of another \
                 length can widen or narrow the volume band, so the change is treated as \
                 weakening",
                bq.volume_baseline_hours, aq.volume_baseline_hours
            ),
        ));
    }

    let (bp, ap) = (&before.performance, &after.performance);
    if movement(bp.decision_threshold, ap.decision_threshold, true) != Movement::Same {
        out.push(weakening(
            "/performance/decision_threshold",
            format!(
                "performance.decision_threshold changed from {} to {}; moving it can hide or \
                 reveal a performance drop, so the change is treated as weakening",
                bp.decision_threshold, ap.decision_threshold
            ),
        ));
    }
    alert_weakenings(&before.alerts, &after.alerts, &mut out);
    retention_weakenings(&before.retention, &after.retention, &mut out);
    let segments: BTreeSet<&str> = ap.segment_by.iter().map(|n| n.as_str()).collect();
    let dropped: BTreeSet<&str> = bp
        .segment_by
        .iter()
        .map(|n| n.as_str())
        .filter(|n| !segments.contains(n))
        .collect();
    for name in dropped {
        out.push(weakening(
            &format!("/performance/segment_by/{}", escape_pointer_token(name)),
            format!(
                "'{name}' removed from performance.segment_by: that breakdown is no longer watched"
            ),
        ));
    }
    out
}

/// Keeping data longer protects it less: a retention lengthened, or removed (kept until
/// erased), is a weakening; shortening or adding one is not.
fn retention_weakenings(
    before: &crate::monitoring::RetentionConfig,
    after: &crate::monitoring::RetentionConfig,
    out: &mut Vec<Weakening>,
) {
    for (path, what, b, a) in [
        (
            "/retention/raw_events_days",
            "retention.raw_events_days (days raw events are kept)",
            before.raw_events_days,
            after.raw_events_days,
        ),
        (
            "/retention/profiles_days",
            "retention.profiles_days (days hourly profiles are kept)",
            before.profiles_days,
            after.profiles_days,
        ),
    ] {
        match (b, a) {
            (Some(b), Some(a)) if a > b => out.push(weakening(
                path,
                format!("{what} raised from {b} to {a}: data is kept longer"),
            )),
            (Some(b), None) => out.push(weakening(
                path,
                format!("{what} removed (was {b}): data is kept until erased"),
            )),
            _ => {}
        }
    }
}

/// Strength of a masking policy, higher is stronger: `drop` (nothing kept) > `redact` (only
/// presence kept) > `hmac` (equal values still join) > `none`.
///
/// `None` means the kind has no place in the order; a change to or from such a kind counts as
/// weakening. The match has no wildcard arm, so a new [`Masking`] kind fails to compile here
/// until it is placed (or deliberately mapped to `None`).
fn masking_strength(masking: Masking) -> Option<u8> {
    match masking {
        Masking::Drop => Some(3),
        Masking::Redact => Some(2),
        Masking::Hmac => Some(1),
        Masking::None => Some(0),
        // Partial masking, reversible encryption and coarsening keep different things, so
        // none of them is simply stronger than another: any change to or from them counts.
        Masking::Mask | Masking::Ff1 | Masking::Generalize | Masking::Tokenize => None,
    }
}

fn masking_name(masking: Masking) -> &'static str {
    masking.as_str()
}

/// The changes from `before` to `after` that protect a field's values less.
///
/// A feature present in both (matched by name) weakens when its effective masking (`none` when
/// unset) moves down the order `drop > redact > hmac > none` (kinds outside the order: any
/// change counts), or when it stops being marked PII. A masked feature that becomes the id,
/// timestamp or prediction field weakens too: those are never masked. Paths point into `after`
/// (`/features/<index>/masking`, `/features/<index>/pii`, `/id_field`, …); the reason names the
/// field.
///
/// Not reported: features added (new data, reviewed as a schema change) or removed (no longer
/// accepted), and the `unknown_fields` policy (both policies keep undeclared values out).
/// Being pairwise, this cannot see a field removed in one version and re-added weaker in the
/// next; compare against the older version for that.
pub fn masking_weakenings(before: &ModelSpec, after: &ModelSpec) -> Vec<Weakening> {
    let mut out = Vec::new();
    for (index, feature) in after.features.iter().enumerate() {
        let Some(old) = before.features.iter().find(|f| f.name == feature.name) else {
            continue;
        };
        let name = feature.name.as_str();
        if old.pii && !feature.pii {
            out.push(weakening(
                &format!("/features/{index}/pii"),
                format!("field '{name}' is no longer marked as personal data"),
            ));
        }
        let (b, a) = (
            old.masking.unwrap_or(Masking::None),
            feature.masking.unwrap_or(Masking::None),
        );
        let weaker = match (masking_strength(b), masking_strength(a)) {
            _ if a == b => false,
            (Some(b), Some(a)) => a < b,
            _ => true,
        };
        if weaker {
            out.push(weakening(
                &format!("/features/{index}/masking"),
                format!(
                    "masking of field '{name}' weakened from {} to {}",
                    masking_name(b),
                    masking_name(a)
                ),
            ));
        }
    }
    for (path, role, field) in [
        ("/id_field", "event id", &after.id_field),
        ("/timestamp_field", "timestamp", &after.timestamp_field),
        ("/prediction/name", "prediction", &after.prediction.name),
    ] {
        let masked = before
            .features
            .iter()
            .find(|f| &f.name == field)
            .map(|f| f.masking.unwrap_or(Masking::None))
            .filter(|m| *m != Masking::None);
        if let Some(masking) = masked {
            out.push(weakening(
                path,
                format!(
                    "field '{field}' (masking {}) is now the {role} field, which is stored \
                     unmasked",
                    masking_name(masking)
                ),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Configuration kinds
// ---------------------------------------------------------------------------------------------

/// Which configuration a stored version belongs to; versions of every kind share one history
/// table, tagged by [`ConfigKind::as_str`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    /// A model's [`MonitoringConfig`].
    Monitoring,
    /// A model's schema with its field masking ([`ModelSpec`]).
    Model,
    /// The scopes of an API token.
    TokenScopes,
    /// A role binding (who holds which role).
    RoleBinding,
    /// Retention periods.
    Retention,
    /// Alert rules.
    AlertRules,
}

/// A string that names no [`ConfigKind`] (the first 64 characters of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown configuration kind '{0}'")]
pub struct UnknownConfigKind(pub String);

impl ConfigKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Monitoring,
        Self::Model,
        Self::TokenScopes,
        Self::RoleBinding,
        Self::Retention,
        Self::AlertRules,
    ];

    /// The stored tag; the same string as its JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monitoring => "monitoring",
            Self::Model => "model",
            Self::TokenScopes => "token_scopes",
            Self::RoleBinding => "role_binding",
            Self::Retention => "retention",
            Self::AlertRules => "alert_rules",
        }
    }

    /// The kind a stored tag names.
    pub fn parse(tag: &str) -> Result<Self, UnknownConfigKind> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == tag)
            // Bounded, so a hostile tag cannot blow up an error message or a log line.
            .ok_or_else(|| UnknownConfigKind(tag.chars().take(64).collect()))
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConfigKind {
    type Err = UnknownConfigKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Alert rules: removing one, or changing what it watches, its threshold, `for`, or severity,
/// weakens (a rule can only be proven stronger in a few cases, and a missed weakening silences
/// an alert); adding one, or changing only its labels and annotations, does not.
fn alert_weakenings(
    before: &[crate::alerts::AlertRule],
    after: &[crate::alerts::AlertRule],
    out: &mut Vec<Weakening>,
) {
    for (index, old) in before.iter().enumerate() {
        let path = format!("/alerts/{index}");
        match after.iter().find(|r| r.name == old.name) {
            None => out.push(weakening(
                &path,
                format!("alert rule '{}' removed: it can no longer fire", old.name),
            )),
            Some(new) => {
                let same_watch = new.metric == old.metric
                    && new.feature == old.feature
                    && new.condition == old.condition
                    && new.threshold == old.threshold
                    && new.for_duration == old.for_duration
                    && new.severity >= old.severity;
                if !same_watch {
                    out.push(weakening(
                        &path,
                        format!(
                            "alert rule '{}' changed what it watches, its threshold, its \
                             duration or lowered its severity; the change is treated as \
                             weakening",
                            old.name
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn changes(before: Value, after: Value) -> Vec<Change> {
        diff(&before, &after).unwrap()
    }

    fn change(path: &str, kind: ChangeKind, before: Option<Value>, after: Option<Value>) -> Change {
        Change {
            path: path.into(),
            kind,
            before,
            after,
        }
    }

    // --- a test-only `apply`, independent of the diff's own pointer code -------------------

    fn tokens(path: &str) -> Vec<String> {
        if path.is_empty() {
            return Vec::new();
        }
        assert!(path.starts_with('/'), "{path:?} is not a pointer");
        path[1..]
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect()
    }

    fn resolve<'a>(doc: &'a Value, tokens: &[String]) -> &'a Value {
        tokens.iter().fold(doc, |v, t| match v {
            Value::Object(m) => &m[t.as_str()],
            Value::Array(a) => &a[t.parse::<usize>().unwrap()],
            other => panic!("cannot descend into {other}"),
        })
    }

    fn resolve_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> &'a mut Value {
        tokens.iter().fold(doc, |v, t| match v {
            Value::Object(m) => m.get_mut(t.as_str()).unwrap(),
            Value::Array(a) => &mut a[t.parse::<usize>().unwrap()],
            other => panic!("cannot descend into {other}"),
        })
    }

    fn parent(path: &str) -> Option<&str> {
        path.rfind('/').map(|i| &path[..i])
    }

    /// Applies `changes` one after another. An array is treated as a set when it held only
    /// strings in `before` and every change directly under it adds or removes a string.
    fn apply(before: &Value, changes: &[Change]) -> Value {
        let is_string_change = |c: &Change| match c.kind {
            ChangeKind::Added => c.after.as_ref().is_some_and(Value::is_string),
            ChangeKind::Removed => c.before.as_ref().is_some_and(Value::is_string),
            ChangeKind::Changed => false,
        };
        let set_mode = |p: &str| {
            let parent_value = resolve(before, &tokens(p));
            parent_value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string))
                && changes
                    .iter()
                    .filter(|c| parent(&c.path) == Some(p))
                    .all(is_string_change)
        };
        let mut doc = before.clone();
        for c in changes {
            let all = tokens(&c.path);
            let Some((last, up)) = all.split_last() else {
                assert_eq!(c.kind, ChangeKind::Changed);
                doc = c.after.clone().unwrap();
                continue;
            };
            let set = set_mode(parent(&c.path).unwrap());
            let target = resolve_mut(&mut doc, up);
            match target {
                Value::Array(items) if set => {
                    assert_eq!(
                        Some(last.as_str()),
                        c.before
                            .as_ref()
                            .or(c.after.as_ref())
                            .and_then(Value::as_str)
                    );
                    match c.kind {
                        ChangeKind::Added => items.push(c.after.clone().unwrap()),
                        ChangeKind::Removed => items.retain(|e| e.as_str() != Some(last)),
                        ChangeKind::Changed => unreachable!(),
                    }
                }
                Value::Array(items) => {
                    let index: usize = last.parse().unwrap();
                    match c.kind {
                        ChangeKind::Added => {
                            assert_eq!(index, items.len());
                            items.push(c.after.clone().unwrap());
                        }
                        ChangeKind::Removed => {
                            assert_eq!(index + 1, items.len());
                            assert_eq!(items.pop(), c.before.clone());
                        }
                        ChangeKind::Changed => items[index] = c.after.clone().unwrap(),
                    }
                }
                Value::Object(map) => match c.kind {
                    ChangeKind::Added => {
                        assert!(map.insert(last.clone(), c.after.clone().unwrap()).is_none());
                    }
                    ChangeKind::Removed => assert!(map.remove(last.as_str()).is_some()),
                    ChangeKind::Changed => {
                        assert!(map.insert(last.clone(), c.after.clone().unwrap()).is_some());
                    }
                },
                other => panic!("{} points below the scalar {other}", c.path),
            }
        }
        doc
    }

    /// Numbers as f64 and string-only arrays sorted without repeats: the equality `diff`
    /// promises.
    fn normalize(v: &Value) -> Value {
        match v {
            Value::Number(n) => json!(n.as_f64().unwrap()),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                let set: BTreeSet<&str> = items.iter().filter_map(Value::as_str).collect();
                json!(set)
            }
            Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
            }
            other => other.clone(),
        }
    }

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "~", "/", "~1", "a/b", "", "0"])
            .prop_map(str::to_owned)
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-2i64..3).prop_map(Value::from),
            prop::sample::select(vec![0.5, 1.0, -0.0, 2.0]).prop_map(Value::from),
            word().prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(word().prop_map(Value::String), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(word(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn diff_of_a_document_with_itself_is_empty(doc in json_value()) {
            prop_assert_eq!(diff(&doc, &doc).unwrap(), Vec::new());
        }

        #[test]
        fn applying_the_changes_yields_the_later_document(
            before in json_value(),
            after in json_value(),
        ) {
            let found = diff(&before, &after).unwrap();
            prop_assert_eq!(normalize(&apply(&before, &found)), normalize(&after));
            // Deterministic, and nothing left to report once applied.
            prop_assert_eq!(&diff(&before, &after).unwrap(), &found);
            prop_assert_eq!(diff(&apply(&before, &found), &after).unwrap(), Vec::new());
        }

        #[test]
        fn same_document_under_a_common_root_changes_little(
            shared in json_value(),
            before in json_value(),
            after in json_value(),
        ) {
            // Pairs sharing most of their content exercise the recursive paths.
            let b = json!({"shared": shared.clone(), "x": before, "list": ["a", "b"]});
            let a = json!({"shared": shared, "x": after, "list": ["b", "c"]});
            let found = diff(&b, &a).unwrap();
            prop_assert!(found.iter().all(|c| !c.path.starts_with("/shared")));
            prop_assert_eq!(normalize(&apply(&b, &found)), normalize(&a));
        }
    }

    #[test]
    fn identical_documents_have_no_changes() {
        assert!(
            changes(
                json!({"a": 1, "b": [1, {"c": null}]}),
                json!({"b": [1.0, {"c": null}], "a": 1.0})
            )
            .is_empty()
        );
        assert!(changes(json!(["x", "y", "x"]), json!(["y", "x"])).is_empty());
        assert!(changes(json!(0), json!(-0.0)).is_empty());
        assert!(changes(json!([]), json!([])).is_empty());
    }

    #[test]
    fn objects_are_compared_key_by_key_in_order() {
        let found = changes(
            json!({"b": 1, "a": {"x": true}, "gone": [1]}),
            json!({"b": 2, "a": {"x": true, "y": null}, "new": "v"}),
        );
        assert_eq!(
            found,
            vec![
                change("/a/y", ChangeKind::Added, None, Some(Value::Null)),
                change("/b", ChangeKind::Changed, Some(json!(1)), Some(json!(2))),
                change("/gone", ChangeKind::Removed, Some(json!([1])), None),
                change("/new", ChangeKind::Added, None, Some(json!("v"))),
            ]
        );
    }

    #[test]
    fn arrays_are_compared_by_index_with_removals_from_the_end() {
        assert_eq!(
            changes(json!([1, 2, 3, 4]), json!([1, 5])),
            vec![
                change("/1", ChangeKind::Changed, Some(json!(2)), Some(json!(5))),
                change("/3", ChangeKind::Removed, Some(json!(4)), None),
                change("/2", ChangeKind::Removed, Some(json!(3)), None),
            ]
        );
        assert_eq!(
            changes(json!([{"a": 1}]), json!([{"a": 2}, 7, "s"])),
            vec![
                change("/0/a", ChangeKind::Changed, Some(json!(1)), Some(json!(2))),
                change("/1", ChangeKind::Added, None, Some(json!(7))),
                change("/2", ChangeKind::Added, None, Some(json!("s"))),
            ]
        );
    }

    #[test]
    fn string_arrays_are_compared_as_sets() {
        assert_eq!(
            changes(
                json!({"exclude": ["id", "email", "id"]}),
                json!({"exclude": ["zip", "id"]})
            ),
            vec![
                change(
                    "/exclude/email",
                    ChangeKind::Removed,
                    Some(json!("email")),
                    None
                ),
                change("/exclude/zip", ChangeKind::Added, None, Some(json!("zip"))),
            ]
        );
        // One non-string element on either side means index by index.
        assert_eq!(
            changes(json!(["a", "b"]), json!(["b", 1])),
            vec![
                change(
                    "/0",
                    ChangeKind::Changed,
                    Some(json!("a")),
                    Some(json!("b"))
                ),
                change("/1", ChangeKind::Changed, Some(json!("b")), Some(json!(1))),
            ]
        );
    }

    #[test]
    fn type_changes_and_numbers() {
        assert_eq!(
            changes(json!({"a": [1]}), json!({"a": {"0": 1}})),
            vec![change(
                "/a",
                ChangeKind::Changed,
                Some(json!([1])),
                Some(json!({"0": 1}))
            )]
        );
        assert_eq!(changes(json!(null), json!(false)).len(), 1);
        assert_eq!(changes(json!("1"), json!(1)).len(), 1);
        assert_eq!(changes(json!(1), json!(1.5)).len(), 1);
        // Integers are compared exactly, not through f64.
        let big = 1u64 << 53;
        assert_eq!(changes(json!(big), json!(big + 1)).len(), 1);
        assert!(changes(json!(u64::MAX), json!(u64::MAX)).is_empty());
        assert!(changes(json!(-5), json!(-5.0)).is_empty());
        assert_eq!(changes(json!(u64::MAX), json!(-1)).len(), 1);
        assert_eq!(changes(json!(3), json!(1e300)).len(), 1);
    }

    #[test]
    fn pointers_are_escaped() {
        assert_eq!(escape_pointer_token("a/b~c"), "a~1b~0c");
        assert_eq!(escape_pointer_token("~1"), "~01");
        let found = changes(
            json!({"a/b": 1, "m~n": {"": 1}, "tags": ["x/y", "~"]}),
            json!({"a/b": 2, "m~n": {"": 2}, "tags": []}),
        );
        let paths: Vec<&str> = found.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/a~1b", "/m~0n/", "/tags/x~1y", "/tags/~0"]);
        assert_eq!(changes(json!(1), json!(2))[0].path, "");
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, i| {
            if i % 2 == 0 {
                json!([inner])
            } else {
                json!({ "k": inner })
            }
        })
    }

    #[test]
    fn depth_is_bounded() {
        assert!(!deeper_than(&json!(1), 0));
        assert!(deeper_than(&json!([]), 0));
        assert!(!deeper_than(&json!([[1], {"a": 2}]), 2));
        assert!(deeper_than(&json!([[1], {"a": [2]}]), 2));
        diff(&nested(MAX_DIFF_DEPTH), &nested(MAX_DIFF_DEPTH - 1)).unwrap();
        assert_eq!(
            diff(&nested(MAX_DIFF_DEPTH + 1), &json!(1)),
            Err(DiffError::TooDeep(Side::Before))
        );
        assert_eq!(
            diff(&json!({}), &json!({"a": nested(MAX_DIFF_DEPTH)})),
            Err(DiffError::TooDeep(Side::After))
        );
        // Far deeper than any stack would survive by recursion.
        let mut deep = json!(null);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(diff(&deep, &deep), Err(DiffError::TooDeep(Side::Before)));
        // Dropping it recursively is serde_json's business; leak it so the test checks ours.
        std::mem::forget(deep);
    }

    #[test]
    fn changes_round_trip_through_json_even_with_null() {
        let found = changes(json!({"a": null, "b": 1}), json!({"b": null, "c": null}));
        assert_eq!(found.len(), 3);
        let text = serde_json::to_string(&found).unwrap();
        assert!(text.contains(r#""kind":"added""#), "{text}");
        let again: Vec<Change> = serde_json::from_str(&text).unwrap();
        assert_eq!(again, found);
        let added: Change =
            serde_json::from_str(r#"{"path": "/x", "kind": "added", "after": null}"#).unwrap();
        assert_eq!(added.after, Some(Value::Null));
        assert_eq!(added.before, None);
    }

    // --- monitoring weakenings -----------------------------------------------------------

    fn config(json: Value) -> MonitoringConfig {
        serde_json::from_value(json).unwrap()
    }

    fn weakenings(before: Value, after: Value) -> Vec<Weakening> {
        monitoring_weakenings(&config(before), &config(after))
    }

    fn paths(found: &[Weakening]) -> Vec<&str> {
        found.iter().map(|w| w.path.as_str()).collect()
    }

    /// `before → after` is reported at exactly `path`, and `after → before` not at all.
    fn one_way(before: Value, after: Value, path: &str) {
        let found = weakenings(before.clone(), after.clone());
        assert_eq!(paths(&found), [path], "{found:#?}");
        let back = weakenings(after, before);
        assert!(back.is_empty(), "tightening reported: {back:#?}");
    }

    /// Reported both ways (the direction is unknown).
    fn both_ways(before: Value, after: Value, path: &str) {
        for (b, a) in [(before.clone(), after.clone()), (after, before)] {
            let found = weakenings(b, a);
            assert_eq!(paths(&found), [path], "{found:#?}");
        }
    }

    #[test]
    fn unchanged_configuration_weakens_nothing() {
        let c = json!({"drift": {"drift_share": 0.3,
                                 "numeric": {"method": "psi", "threshold": 0.2, "data_driven_k": 2},
                                 "features": {"amount": {"method": "kolmogorov_smirnov"}},
                                 "exclude": ["id"]},
                       "quality": {"volume_k": 4},
                       "performance": {"segment_by": ["country"]}});
        assert!(weakenings(c.clone(), c).is_empty());
        assert!(weakenings(json!({}), json!({})).is_empty());
        // A threshold spelled out at its default is the same threshold.
        assert!(
            weakenings(
                json!({"drift": {"numeric": {"method": "kolmogorov_smirnov"}}}),
                json!({"drift": {"numeric": {"method": "kolmogorov_smirnov", "threshold": 0.05}}})
            )
            .is_empty()
        );
    }

    #[test]
    fn raising_drift_share_weakens() {
        one_way(
            json!({"drift": {"drift_share": 0.3}}),
            json!({"drift": {"drift_share": 0.6}}),
            "/drift/drift_share",
        );
        let found = weakenings(json!({}), json!({"drift": {"drift_share": 1.0}}));
        assert!(
            found[0].reason.contains("raised from 0.5 to 1"),
            "{found:?}"
        );
    }

    #[test]
    fn p_value_tests_weaken_when_the_level_is_lowered() {
        for (slot, method) in [
            ("numeric", "kolmogorov_smirnov"),
            ("categorical", "chi_square"),
            ("categorical", "z_proportion"),
        ] {
            one_way(
                json!({"drift": {slot: {"method": method, "threshold": 0.05}}}),
                json!({"drift": {slot: {"method": method, "threshold": 0.01}}}),
                &format!("/drift/{slot}/threshold"),
            );
            // The default level (0.05) against an explicit one.
            one_way(
                json!({"drift": {slot: {"method": method}}}),
                json!({"drift": {slot: {"method": method, "threshold": 0.001}}}),
                &format!("/drift/{slot}/threshold"),
            );
        }
        let found = weakenings(
            json!({"drift": {"features": {"a": {"method": "chi_square", "threshold": 0.1}}}}),
            json!({"drift": {"features": {"a": {"method": "chi_square", "threshold": 0.05}}}}),
        );
        assert!(
            found[0].reason.contains("lowered from 0.1 to 0.05"),
            "{found:?}"
        );
    }

    #[test]
    fn distances_weaken_when_the_threshold_is_raised() {
        for method in [
            "psi",
            "jensen_shannon",
            "hellinger",
            "kullback_leibler",
            "wasserstein",
        ] {
            one_way(
                json!({"drift": {"numeric": {"method": method, "threshold": 0.1}}}),
                json!({"drift": {"numeric": {"method": method, "threshold": 0.25}}}),
                "/drift/numeric/threshold",
            );
        }
        one_way(
            json!({"drift": {"features": {"amount": {"method": "psi"}}}}),
            json!({"drift": {"features": {"amount": {"method": "psi", "threshold": 0.2}}}}),
            "/drift/features/amount/threshold",
        );
    }

    #[test]
    fn data_driven_k_weakens_when_raised_and_switching_cannot_be_ranked() {
        one_way(
            json!({"drift": {"numeric": {"method": "psi", "data_driven_k": 2}}}),
            json!({"drift": {"numeric": {"method": "psi", "data_driven_k": 4}}}),
            "/drift/numeric/data_driven_k",
        );
        both_ways(
            json!({"drift": {"numeric": {"method": "psi"}}}),
            json!({"drift": {"numeric": {"method": "psi", "data_driven_k": 3}}}),
            "/drift/numeric/data_driven_k",
        );
        // On a p-value test (refused by the check) any change counts.
        both_ways(
            json!({"drift": {"numeric": {"method": "kolmogorov_smirnov", "data_driven_k": 2}}}),
            json!({"drift": {"numeric": {"method": "kolmogorov_smirnov", "data_driven_k": 1}}}),
            "/drift/numeric/data_driven_k",
        );
    }

    #[test]
    fn changing_the_statistic_cannot_be_ranked() {
        both_ways(
            json!({"drift": {"numeric": {"method": "psi"}}}),
            json!({"drift": {"numeric": {"method": "wasserstein"}}}),
            "/drift/numeric/method",
        );
        let found = weakenings(
            json!({"drift": {"features": {"a": {"method": "kolmogorov_smirnov"}}}}),
            json!({"drift": {"features": {"a": {"method": "wasserstein", "threshold": 0.01}}}}),
        );
        assert_eq!(paths(&found), ["/drift/features/a/method"]);
        assert!(found[0].reason.contains("cannot be ranked"), "{found:?}");
    }

    #[test]
    fn kind_settings_removed_or_added_cannot_be_ranked() {
        let found = weakenings(
            json!({"drift": {"categorical": {"method": "chi_square"}}}),
            json!({}),
        );
        assert_eq!(paths(&found), ["/drift/categorical"]);
        assert!(found[0].reason.contains("removed"), "{found:?}");
        let found = weakenings(json!({}), json!({"drift": {"numeric": {"method": "psi"}}}));
        assert_eq!(paths(&found), ["/drift/numeric"]);
        assert!(found[0].reason.contains("cannot be ranked"), "{found:?}");
    }

    #[test]
    fn removing_a_feature_setting_weakens_only_when_it_was_stricter() {
        let kind = json!({"method": "psi", "threshold": 0.2});
        // Stricter than the numeric default it falls back to (PSI applies to both kinds, so
        // the categorical default must be as strict too).
        one_way(
            json!({"drift": {"numeric": kind, "categorical": kind,
                             "features": {"amount": {"method": "psi", "threshold": 0.1}}}}),
            json!({"drift": {"numeric": kind, "categorical": kind}}),
            "/drift/features/amount",
        );
        // Looser than (or equal to) the fallback: not reported.
        for threshold in [0.3, 0.2] {
            assert!(
                weakenings(
                    json!({"drift": {"numeric": kind, "categorical": kind,
                                     "features": {"amount": {"method": "psi", "threshold": threshold}}}}),
                    json!({"drift": {"numeric": kind, "categorical": kind}}),
                )
                .is_empty()
            );
        }
        // A numeric-only statistic falls back to the numeric setting alone.
        assert!(
            weakenings(
                json!({"drift": {"numeric": {"method": "wasserstein", "threshold": 0.1},
                                 "features": {"amount": {"method": "wasserstein", "threshold": 0.3}}}}),
                json!({"drift": {"numeric": {"method": "wasserstein", "threshold": 0.1}}}),
            )
            .is_empty()
        );
        // Falling back to the default rule cannot be ranked.
        let found = weakenings(
            json!({"drift": {"features": {"amount": {"method": "wasserstein", "threshold": 0.3}}}}),
            json!({}),
        );
        assert_eq!(paths(&found), ["/drift/features/amount"]);
        assert!(found[0].reason.contains("default rule"), "{found:?}");
        // Nor can falling back to another statistic.
        let found = weakenings(
            json!({"drift": {"numeric": {"method": "psi"},
                             "features": {"amount": {"method": "kolmogorov_smirnov"}}}}),
            json!({"drift": {"numeric": {"method": "psi"}}}),
        );
        assert_eq!(paths(&found), ["/drift/features/amount"]);
    }

    #[test]
    fn adding_a_feature_setting_weakens_unless_it_is_as_strict() {
        let kind = json!({"method": "chi_square", "threshold": 0.05});
        // Stricter than the categorical default it replaces: not reported.
        assert!(
            weakenings(
                json!({"drift": {"categorical": kind}}),
                json!({"drift": {"categorical": kind,
                                 "features": {"country": {"method": "chi_square", "threshold": 0.1}}}}),
            )
            .is_empty()
        );
        let found = weakenings(
            json!({"drift": {"categorical": kind}}),
            json!({"drift": {"categorical": kind,
                             "features": {"country": {"method": "chi_square", "threshold": 0.01}}}}),
        );
        assert_eq!(paths(&found), ["/drift/features/country"]);
        assert!(found[0].reason.contains("lowered"), "{found:?}");
        // Replacing the default rule cannot be ranked.
        let found = weakenings(
            json!({}),
            json!({"drift": {"features": {"country": {"method": "chi_square", "threshold": 0.5}}}}),
        );
        assert_eq!(paths(&found), ["/drift/features/country"]);
    }

    #[test]
    fn keeping_data_longer_weakens() {
        one_way(
            json!({"retention": {"raw_events_days": 30}}),
            json!({"retention": {"raw_events_days": 90}}),
            "/retention/raw_events_days",
        );
        one_way(
            json!({"retention": {"raw_events_days": 30, "profiles_days": 365}}),
            json!({"retention": {"raw_events_days": 30, "profiles_days": 400}}),
            "/retention/profiles_days",
        );
        // Removing a retention keeps data until erased; adding one only shortens.
        assert_eq!(
            paths(&weakenings(
                json!({"retention": {"profiles_days": 365}}),
                json!({})
            )),
            ["/retention/profiles_days"]
        );
        assert!(weakenings(json!({}), json!({"retention": {"raw_events_days": 7}})).is_empty());
    }

    #[test]
    fn excluding_a_feature_weakens() {
        one_way(
            json!({"drift": {"exclude": ["id"]}}),
            json!({"drift": {"exclude": ["id", "a.b"]}}),
            "/drift/exclude/a.b",
        );
        assert!(
            weakenings(
                json!({"drift": {"exclude": ["id", "email"]}}),
                json!({"drift": {"exclude": ["email", "id"]}})
            )
            .is_empty()
        );
    }

    #[test]
    fn quality_rules() {
        one_way(
            json!({"quality": {"max_silence_minutes": 60}}),
            json!({"quality": {"max_silence_minutes": 240}}),
            "/quality/max_silence_minutes",
        );
        one_way(
            json!({"quality": {"volume_k": 3}}),
            json!({"quality": {"volume_k": 5}}),
            "/quality/volume_k",
        );
        both_ways(
            json!({"quality": {"volume_baseline_hours": 168}}),
            json!({"quality": {"volume_baseline_hours": 24}}),
            "/quality/volume_baseline_hours",
        );
        assert!(
            weakenings(
                json!({}),
                json!({"quality": {"volume_baseline_hours": 168}})
            )
            .is_empty()
        );
    }

    #[test]
    fn performance_rules() {
        both_ways(
            json!({}),
            json!({"performance": {"decision_threshold": 0.7}}),
            "/performance/decision_threshold",
        );
        one_way(
            json!({"performance": {"segment_by": ["country", "channel"]}}),
            json!({"performance": {"segment_by": ["channel"]}}),
            "/performance/segment_by/country",
        );
    }

    #[test]
    fn unorderable_numbers_count_as_weakening() {
        let mut before = MonitoringConfig::default();
        let mut after = before.clone();
        after.drift.drift_share = f64::NAN;
        let found = monitoring_weakenings(&before, &after);
        assert_eq!(paths(&found), ["/drift/drift_share"]);
        assert!(found[0].reason.contains("cannot be ordered"), "{found:?}");
        before.drift.drift_share = f64::NAN;
        assert!(monitoring_weakenings(&before, &after).is_empty());
    }

    #[test]
    fn several_weakenings_are_all_listed() {
        let found = weakenings(
            json!({"drift": {"drift_share": 0.2}, "quality": {"volume_k": 2}}),
            json!({"drift": {"drift_share": 0.9, "exclude": ["x", "y"]},
                   "quality": {"volume_k": 9, "max_silence_minutes": 30}}),
        );
        assert_eq!(
            paths(&found),
            [
                "/drift/drift_share",
                "/drift/exclude/x",
                "/drift/exclude/y",
                "/quality/volume_k"
            ]
        );
    }

    // --- masking weakenings --------------------------------------------------------------

    fn spec(features: Value) -> ModelSpec {
        serde_json::from_value(json!({
            "name": "fraud", "id_field": "id", "timestamp_field": "ts",
            "features": features,
            "prediction": {"name": "score", "type": "binary_score"}}))
        .unwrap()
    }

    fn field(name: &str, pii: bool, masking: Option<&str>) -> Value {
        let mut f = json!({"name": name, "type": "categorical", "pii": pii});
        if let Some(m) = masking {
            f["masking"] = json!(m);
        }
        f
    }

    fn masking_change(from: Option<&str>, to: Option<&str>) -> Vec<Weakening> {
        masking_weakenings(
            &spec(json!([
                field("amount", false, None),
                field("email", false, from)
            ])),
            &spec(json!([
                field("amount", false, None),
                field("email", false, to)
            ])),
        )
    }

    #[test]
    fn masking_order_is_drop_redact_hmac_none() {
        let order = [Some("drop"), Some("redact"), Some("hmac"), Some("none")];
        for (i, stronger) in order.iter().enumerate() {
            for (j, weaker) in order.iter().enumerate() {
                let found = masking_change(*stronger, *weaker);
                if i < j {
                    assert_eq!(
                        paths(&found),
                        ["/features/1/masking"],
                        "{stronger:?}→{weaker:?}"
                    );
                } else {
                    assert!(found.is_empty(), "{stronger:?}→{weaker:?}: {found:?}");
                }
            }
        }
        // Unset is `none`.
        assert!(masking_change(None, Some("none")).is_empty());
        let found = masking_change(Some("redact"), None);
        assert_eq!(
            found[0].reason,
            "masking of field 'email' weakened from redact to none"
        );
        assert!(masking_change(None, Some("hmac")).is_empty());
        assert!(
            [Masking::Drop, Masking::Redact, Masking::Hmac, Masking::None]
                .windows(2)
                .all(|w| masking_strength(w[0]) > masking_strength(w[1]))
        );
    }

    #[test]
    fn unmarking_pii_weakens() {
        let pii = spec(json!([field("email", true, Some("hmac"))]));
        let plain = spec(json!([field("email", false, Some("hmac"))]));
        let found = masking_weakenings(&pii, &plain);
        assert_eq!(paths(&found), ["/features/0/pii"]);
        assert!(
            found[0]
                .reason
                .contains("no longer marked as personal data")
        );
        assert!(masking_weakenings(&plain, &pii).is_empty());
        // Both at once: both listed.
        let found = masking_weakenings(&pii, &spec(json!([field("email", false, None)])));
        assert_eq!(paths(&found), ["/features/0/pii", "/features/0/masking"]);
    }

    #[test]
    fn fields_are_matched_by_name_and_paths_point_into_the_later_spec() {
        let before = spec(json!([
            field("email", true, Some("drop")),
            field("a", false, None)
        ]));
        let after = spec(json!([
            field("new", false, None),
            field("a", false, None),
            field("email", true, Some("hmac"))
        ]));
        assert_eq!(
            paths(&masking_weakenings(&before, &after)),
            ["/features/2/masking"]
        );
        // Added and removed features are not masking weakenings.
        assert!(masking_weakenings(&after, &spec(json!([field("a", false, None)]))).is_empty());
        assert!(masking_weakenings(&spec(json!([field("a", false, None)])), &after).is_empty());
    }

    #[test]
    fn a_masked_field_moving_to_an_unmasked_role_weakens() {
        let before = spec(json!([
            field("email", true, Some("hmac")),
            field("a", false, None)
        ]));
        let mut after = spec(json!([field("a", false, None)]));
        after.id_field = crate::names::FieldName::parse("email").unwrap();
        let found = masking_weakenings(&before, &after);
        assert_eq!(paths(&found), ["/id_field"]);
        assert!(found[0].reason.contains("event id"), "{found:?}");
        // An unmasked feature becoming the prediction is no weakening.
        let mut after = spec(json!([field("email", true, Some("hmac"))]));
        after.prediction.name = crate::names::FieldName::parse("a").unwrap();
        assert!(masking_weakenings(&before, &after).is_empty());
    }

    // --- configuration kinds -------------------------------------------------------------

    #[test]
    fn config_kinds_round_trip() {
        for kind in ConfigKind::ALL {
            assert_eq!(ConfigKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(kind.to_string().parse::<ConfigKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        let tags: BTreeSet<&str> = ConfigKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(tags.len(), ConfigKind::ALL.len());
        assert_eq!(
            ConfigKind::parse("Monitoring"),
            Err(UnknownConfigKind("Monitoring".into()))
        );
        let long = "x".repeat(10_000);
        assert_eq!(ConfigKind::parse(&long).unwrap_err().0.len(), 64);
    }
}
