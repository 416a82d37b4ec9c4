//! The ingest pipeline, one stage per type:
//! body bytes → JSON rows → [`ValidatedRecord`] → [`MaskedRecord`] → profile deltas and
//! [`custos_crypto::SealedBatch`] → one durable store commit.
//!
//! A batch is all or nothing: any invalid row fails the whole request with every row's problems
//! listed, and nothing is written. Rows whose event id was already ingested are skipped and
//! counted, so a client may retry a batch whose answer it never saw. The CPU-heavy stages run on
//! the blocking pool so they cannot stall the async workers that serve other requests.

use crate::error::ApiError;
use crate::metrics::IngestKind;
use crate::state::{AppState, ModelEntry};
use custos_core::monitoring::stats_kind;
use custos_core::pii::PiiKind;
use custos_core::{
    Column, EventKey, HourBucket, IngestLimits, MaskedRecord, MaskedValue, ModelSchema, Partition,
    ProfileKind, RowError, ValidatedRecord, mask, validate_label, validate_row,
};
use custos_crypto::KeyPurpose;
use custos_crypto::seal::{BlobKind, seal_batch, seal_blob};
use custos_proto::{IngestResponse, LabelResponse};
use custos_stats::FeatureProfile;
use custos_store::{IngestCommit, LabelRow, ProfileDelta, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The body's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON array of row objects (a single object is accepted as one row).
    JsonArray,
    /// One JSON object per line.
    Ndjson,
}

/// Splits a body into row values, refusing more than `max_rows` rows.
pub fn decode_rows(
    body: &[u8],
    format: BodyFormat,
    max_rows: usize,
) -> Result<Vec<Value>, ApiError> {
    match format {
        BodyFormat::JsonArray => {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            let rows = match value {
                Value::Array(rows) => rows,
                object @ Value::Object(_) => vec![object],
                _ => {
                    return Err(ApiError::bad_request(
                        "body must be a JSON array of row objects",
                    ));
                }
            };
            if rows.len() > max_rows {
                return Err(ApiError::too_many_rows(max_rows));
            }
            Ok(rows)
        }
        BodyFormat::Ndjson => {
            let mut rows = Vec::new();
            let mut errors = Vec::new();
            for (line_no, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if rows.len() + errors.len() >= max_rows {
                    return Err(ApiError::too_many_rows(max_rows));
                }
                match serde_json::from_slice::<Value>(line) {
                    Ok(v) => rows.push(v),
                    Err(e) => errors.push(RowError {
                        row: rows.len() + errors.len(),
                        field: None,
                        reason: format!(
                            "line {} is not valid JSON (column {})",
                            line_no + 1,
                            e.column()
                        ),
                    }),
                }
            }
            if errors.is_empty() {
                Ok(rows)
            } else {
                Err(ApiError::invalid_rows(errors))
            }
        }
    }
}

/// Validates and masks every row; fails with all row errors if any row is bad, including a
/// repeated event id within the batch.
pub fn validate_and_mask(
    schema: &ModelSchema,
    rows: &[Value],
    limits: &IngestLimits,
    pseudonymizer: &dyn custos_core::Pseudonymizer,
) -> Result<Vec<MaskedRecord>, ApiError> {
    validate_and_mask_rows(schema, rows, limits, pseudonymizer).map_err(ApiError::invalid_rows)
}

/// [`validate_and_mask`] with the row errors returned as they are, for callers that add
/// problems of their own before answering. A `tokenize` column gets no vault token here (its
/// values are redacted): the prediction path tokenizes through [`crate::vault`] instead.
pub fn validate_and_mask_rows(
    schema: &ModelSchema,
    rows: &[Value],
    limits: &IngestLimits,
    pseudonymizer: &dyn custos_core::Pseudonymizer,
) -> Result<Vec<MaskedRecord>, Vec<RowError>> {
    let records = validate_rows(schema, rows, limits)?;
    Ok(records
        .into_iter()
        .map(|record| mask(schema, record, pseudonymizer))
        .collect())
}

/// Validates every row; fails with all row errors if any row is bad, including a repeated
/// event id within the batch (the event key is a keyed function of the id alone, so equal ids
/// are exactly equal keys).
pub fn validate_rows(
    schema: &ModelSchema,
    rows: &[Value],
    limits: &IngestLimits,
) -> Result<Vec<ValidatedRecord>, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut valid = Vec::with_capacity(rows.len());
    let mut first_seen: HashMap<String, usize> = HashMap::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        match validate_row(schema, index, row, limits) {
            Ok(record) => {
                if let Some(first) = first_seen.get(record.event_id()) {
                    errors.push(RowError {
                        row: index,
                        field: Some(schema.spec().id_field.to_string()),
                        reason: format!("event id repeats row {first} of this batch"),
                    });
                    continue;
                }
                first_seen.insert(record.event_id().to_owned(), index);
                valid.push(record);
            }
            Err(row_errors) => errors.extend(row_errors),
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// Where rejections of rows whose field is not declared are counted: field names sent by a
/// client are unbounded, the schema's are not.
pub const UNDECLARED_FIELD: &str = "(undeclared field)";
/// Where rejections not tied to one field (not an object, a repeated id) are counted.
pub const WHOLE_ROW: &str = "(row)";

/// Counts a refused batch's rows per field for data quality (each row once per field). A
/// failure to count is logged and does not change the answer: the batch is refused either way.
async fn count_rejections(state: &AppState, model: &ModelEntry, errors: &[RowError]) {
    let mut seen: HashSet<(usize, &str)> = HashSet::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for error in errors {
        let field = match error.field.as_deref() {
            None => WHOLE_ROW,
            Some(name) => match model.schema.column(name) {
                Some((_, column)) => column.name.as_str(),
                None if name == model.schema.spec().id_field.as_str()
                    || name == model.schema.spec().timestamp_field.as_str() =>
                {
                    name
                }
                None => UNDECLARED_FIELD,
            },
        };
        if seen.insert((error.row, field)) {
            *counts.entry(field).or_default() += 1;
        }
    }
    let rows: HashSet<usize> = errors.iter().map(|e| e.row).collect();
    state
        .telemetry
        .invalid_rows(model.schema.name(), rows.len() as u64);
    let counts: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(field, n)| (field.to_owned(), n))
        .collect();
    let hour = HourBucket::of(state.clock.now());
    if let Err(e) = state.store.record_rejections(model.id, hour, &counts).await {
        tracing::warn!(error = %e, "could not count refused rows");
    }
}

/// Feeds one masked value into its column's profile.
pub fn observe(profile: &mut FeatureProfile, value: &MaskedValue) {
    match (profile, value) {
        (_, MaskedValue::Dropped) => {}
        (FeatureProfile::Numeric(p), MaskedValue::Number(n)) => p.observe(*n),
        (FeatureProfile::Numeric(p), MaskedValue::Time(t)) => {
            p.observe(t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6);
        }
        // Free text is profiled by its length: the words never enter a profile.
        (FeatureProfile::Numeric(p), MaskedValue::Text(s)) => p.observe(s.chars().count() as f64),
        (FeatureProfile::Numeric(p), _) => p.observe_missing(),
        (
            FeatureProfile::Categorical(p),
            MaskedValue::Text(s) | MaskedValue::Pseudonym(s) | MaskedValue::Token(s),
        ) => {
            p.observe(s);
        }
        (FeatureProfile::Categorical(p), MaskedValue::Bool(b)) => {
            p.observe(if *b { "true" } else { "false" });
        }
        (FeatureProfile::Categorical(p), MaskedValue::Redacted) => {
            p.observe(MaskedValue::REDACTED_MARKER);
        }
        (FeatureProfile::Categorical(p), MaskedValue::Number(n)) => p.observe(&n.to_string()),
        (FeatureProfile::Categorical(p), _) => p.observe_missing(),
    }
}

/// Profiles of one partition's records, per (column, hour).
pub fn profile_records(
    schema: &ModelSchema,
    records: &[MaskedRecord],
) -> BTreeMap<(usize, HourBucket), FeatureProfile> {
    let profiled: Vec<(usize, &Column, ProfileKind)> = schema
        .columns()
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.profile_kind().map(|k| (i, c, k)))
        .collect();
    let mut profiles = BTreeMap::new();
    for record in records {
        let hour = HourBucket::of(record.timestamp());
        for (index, _, kind) in &profiled {
            let Some(value) = record.values().get(*index) else {
                continue;
            };
            let profile = profiles
                .entry((*index, hour))
                .or_insert_with(|| FeatureProfile::new(stats_kind(*kind)));
            observe(profile, value);
        }
    }
    profiles
}

/// The associated-data label binding a profile blob to its column and hour.
pub fn profile_label(column: &str, hour: HourBucket) -> String {
    format!("profile:{column}@{}", hour.0)
}

pub fn label_label(key: &EventKey) -> String {
    format!("label:{}", hex::encode(key.0))
}

/// Runs a CPU-bound closure on the blocking pool, turning a panic into a 500 instead of a crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("ingest worker failed: {e}")))?
}

/// The permits of one unit of ingest work (a batch, a reference upload): admission fails at once
/// with 429 beyond twice the worker count; a worker is then waited for. Held until dropped.
pub struct Admission {
    _admitted: tokio::sync::OwnedSemaphorePermit,
    _worker: tokio::sync::OwnedSemaphorePermit,
}

/// Admits one unit of ingest work, bounded so that a flood gets 429 instead of a queue.
pub async fn admit(state: &AppState) -> Result<Admission, ApiError> {
    let Ok(admitted) = state.ingest_admission.clone().try_acquire_owned() else {
        return Err(ApiError::rate_limited(1));
    };
    let worker = state
        .ingest_workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    Ok(Admission {
        _admitted: admitted,
        _worker: worker,
    })
}

/// Ingests one batch of predictions for `model`.
pub async fn ingest_predictions(
    state: &AppState,
    model: Arc<ModelEntry>,
    body: axum::body::Bytes,
    format: BodyFormat,
) -> Result<IngestResponse, ApiError> {
    let _admission = admit(state).await?;

    let max_rows = state.config.limits.max_batch_rows;
    let keys = Arc::clone(&state.keys);
    let entry = Arc::clone(&model);
    let validated = blocking(move || {
        let rows = decode_rows(&body, format, max_rows)?;
        Ok(validate_rows(
            &entry.schema,
            &rows,
            &IngestLimits::default(),
        ))
    })
    .await?;
    let validated = match validated {
        Ok(records) => records,
        Err(errors) => {
            count_rejections(state, &model, &errors).await;
            return Err(ApiError::invalid_rows(errors));
        }
    };
    // Vault entries of new values are committed before the batch (idempotently: a value's
    // entry is found again by its keyed lookup), so no acknowledged row can hold a token the
    // vault lacks. A batch that then fails leaves entries no row refers to, which is harmless.
    let tokens = crate::vault::tokens_for(state, &model, &validated).await?;
    let entry = Arc::clone(&model);
    let tenant_keys = keys
        .pseudonymizer_for(&model.schema.tenant())
        .map_err(|e| ApiError::internal(format!("tenant keys: {e}")))?;
    let records = blocking(move || {
        let masker = crate::vault::WithTokens::new(&tenant_keys, &tokens);
        Ok(validated
            .into_iter()
            .map(|record| mask(&entry.schema, record, &masker))
            .collect::<Vec<MaskedRecord>>())
    })
    .await?;
    let submitted = records.len();
    let pii_redacted: u64 = records.iter().map(|r| u64::from(r.pii_redacted())).sum();

    // A concurrent request may index the same event between our look-up and our commit; the
    // store then refuses the whole commit and we look again. Twice is plenty in practice.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match commit_new_records(state, &model, &records).await {
            Ok(accepted) => {
                state.telemetry.ingested(
                    model.schema.name(),
                    IngestKind::Predictions,
                    accepted as u64,
                    (submitted - accepted) as u64,
                );
                return Ok(IngestResponse {
                    accepted,
                    duplicates: submitted - accepted,
                    pii_redacted,
                });
            }
            Err(CommitError::Duplicate) if attempt < 3 => continue,
            Err(CommitError::Duplicate) => {
                return Err(ApiError::conflict(
                    "concurrent batches with the same event ids; retry",
                ));
            }
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
}

enum CommitError {
    Duplicate,
    Api(ApiError),
}

impl From<ApiError> for CommitError {
    fn from(e: ApiError) -> Self {
        CommitError::Api(e)
    }
}

async fn commit_new_records(
    state: &AppState,
    model: &Arc<ModelEntry>,
    records: &[MaskedRecord],
) -> Result<usize, CommitError> {
    let events: Vec<(EventKey, chrono::DateTime<chrono::Utc>)> = records
        .iter()
        .filter_map(|r| r.event_key().map(|k| (k, r.timestamp())))
        .collect();
    let existing = state
        .store
        .existing_event_keys(model.id, &events)
        .await
        .map_err(ApiError::from)?;
    let fresh: Vec<MaskedRecord> = records
        .iter()
        .filter(|r| r.event_key().is_none_or(|k| !existing.contains(&k)))
        .cloned()
        .collect();
    if fresh.is_empty() {
        return Ok(0);
    }
    let mut by_partition: BTreeMap<Partition, Vec<MaskedRecord>> = BTreeMap::new();
    for record in fresh {
        by_partition
            .entry(Partition::of(record.timestamp()))
            .or_default()
            .push(record);
    }
    let mut commits = Vec::with_capacity(by_partition.len());
    let mut accepted = 0;
    for (partition, records) in by_partition {
        let data_key = state
            .keys
            .data_key(model.id, partition, KeyPurpose::Events)
            .await
            .map_err(ApiError::internal)?;
        let profile_key = state
            .keys
            .data_key(model.id, partition, KeyPurpose::Profiles)
            .await
            .map_err(ApiError::internal)?;
        accepted += records.len();
        let entry = Arc::clone(model);
        let commit =
            blocking(move || build_commit(&entry, partition, &records, &data_key, &profile_key))
                .await?;
        commits.push(commit);
    }
    let started = std::time::Instant::now();
    let committed = state.store.commit_ingest(commits).await;
    state.telemetry.observe_commit(started.elapsed());
    match committed {
        Ok(_) => Ok(accepted),
        Err(StoreError::DuplicateEvent) => Err(CommitError::Duplicate),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

fn build_commit(
    model: &ModelEntry,
    partition: Partition,
    records: &[MaskedRecord],
    data_key: &custos_crypto::keys::DataKey,
    profile_key: &custos_crypto::keys::DataKey,
) -> Result<IngestCommit, ApiError> {
    let schema = &model.schema;
    let mut profiles = Vec::new();
    for ((column_index, hour), profile) in profile_records(schema, records) {
        let Some(column) = schema.columns().get(column_index) else {
            continue;
        };
        let name = column.name.as_str();
        let sealed = seal_blob(
            profile_key,
            model.id,
            partition,
            BlobKind::Profile,
            &profile_label(name, hour),
            &profile.to_bytes(),
        )
        .map_err(ApiError::internal)?;
        profiles.push(ProfileDelta {
            column: name.to_owned(),
            hour,
            sealed,
        });
    }
    let mut volume: BTreeMap<HourBucket, u64> = BTreeMap::new();
    let mut findings: BTreeMap<(HourBucket, usize, PiiKind), u64> = BTreeMap::new();
    let mut events = Vec::with_capacity(records.len());
    for record in records {
        let hour = HourBucket::of(record.timestamp());
        *volume.entry(hour).or_default() += 1;
        if let Some(key) = record.event_key() {
            events.push((key, record.timestamp()));
        }
        for (column, kind) in record.pii_findings() {
            *findings.entry((hour, *column, *kind)).or_default() += 1;
        }
    }
    let pii_findings = findings
        .into_iter()
        .filter_map(|((hour, column, kind), n)| {
            let field = schema.columns().get(column)?.name.to_string();
            Some((hour, field, kind.as_str().to_owned(), n))
        })
        .collect();
    let batch = seal_batch(data_key, model.id, partition, records).map_err(ApiError::internal)?;
    Ok(IngestCommit {
        batch,
        events,
        profiles,
        volume: volume.into_iter().collect(),
        pii_findings,
    })
}

/// Ingests ground-truth labels for `model`.
pub async fn ingest_labels(
    state: &AppState,
    model: Arc<ModelEntry>,
    body: axum::body::Bytes,
    format: BodyFormat,
) -> Result<LabelResponse, ApiError> {
    let max_rows = state.config.limits.max_batch_rows;
    let rows = decode_rows(&body, format, max_rows)?;
    let limits = IngestLimits::default();
    let mut errors = Vec::new();
    let mut labels = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    for (index, row) in rows.iter().enumerate() {
        match validate_label(
            &model.schema,
            index,
            row,
            &limits,
            state.keys.pseudonymizer(),
        ) {
            Ok(label) if !seen.insert(label.event_key()) => errors.push(RowError {
                row: index,
                field: Some("event_id".into()),
                reason: "event id appears twice in this batch".into(),
            }),
            Ok(label) => labels.push(label),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        let rows: HashSet<usize> = errors.iter().map(|e| e.row).collect();
        state
            .telemetry
            .invalid_rows(model.schema.name(), rows.len() as u64);
        return Err(ApiError::invalid_rows(errors));
    }
    // Labels are sealed under the data key of the day they arrive: their events' days are not
    // known without decrypting, and a label is retained at least as long as the prediction.
    let partition = Partition::of(state.clock.now());
    let data_key = state
        .keys
        .data_key(model.id, partition, KeyPurpose::Events)
        .await
        .map_err(ApiError::internal)?;
    let mut sealed = Vec::with_capacity(labels.len());
    for label in &labels {
        let plaintext = serde_json::to_vec(&serde_json::json!({
            "event_id": label.event_id(),
            "label": label.label(),
        }))
        .map_err(ApiError::internal)?;
        let blob = seal_blob(
            &data_key,
            model.id,
            partition,
            BlobKind::Label,
            &label_label(&label.event_key()),
            &plaintext,
        )
        .map_err(ApiError::internal)?;
        sealed.push(LabelRow {
            event_key: label.event_key(),
            sealed: blob,
        });
    }
    let outcome = state
        .store
        .upsert_labels(model.id, &sealed, state.clock.now())
        .await?;
    state
        .telemetry
        .ingested(model.schema.name(), IngestKind::Labels, outcome.stored, 0);
    Ok(LabelResponse {
        stored: outcome.stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Keys;
    impl custos_core::Pseudonymizer for Keys {
        fn pseudonym(&self, value: &str) -> String {
            format!("hm_{}", value.len())
        }
        fn event_key(&self, _: &custos_core::ModelName, id: &str) -> EventKey {
            let mut k = [0u8; 32];
            for (slot, b) in k.iter_mut().zip(id.bytes()) {
                *slot = b;
            }
            EventKey(k)
        }
        fn format_preserving(&self, _: custos_core::Ff1Alphabet, _: &str) -> Option<String> {
            None
        }
    }

    fn schema() -> ModelSchema {
        let spec: custos_core::ModelSpec = serde_json::from_value(serde_json::json!({
            "name": "m", "id_field": "event_id", "timestamp_field": "ts",
            "features": [{"name": "amount", "type": "numeric"},
                         {"name": "email", "type": "categorical", "pii": true, "masking": "hmac"}],
            "prediction": {"name": "score", "type": "binary_score"}}))
        .unwrap();
        ModelSchema::new(spec).unwrap()
    }

    fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
        let row = r#"{"event_id":"e1","ts":"2026-11-26T10:00:00Z","amount":1.5,"email":"a@b.c","score":0.5}"#;
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            // Valid rows with random damage: truncation, byte flips, inserted bytes.
            (
                0usize..4,
                prop::collection::vec((any::<usize>(), any::<u8>()), 0..6)
            )
                .prop_map(move |(copies, edits)| {
                    let mut b = Vec::new();
                    for _ in 0..=copies {
                        b.extend_from_slice(row.as_bytes());
                        b.push(b'\n');
                    }
                    for (at, byte) in edits {
                        let i = at % (b.len() + 1);
                        if byte % 3 == 0 {
                            b.truncate(i);
                        } else if let Some(slot) = b.get_mut(i) {
                            *slot = byte;
                        } else {
                            b.push(byte);
                        }
                    }
                    b
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        /// Arbitrary bodies, in both encodings, give rows or a clear client error: never a
        /// panic and never a server error.
        #[test]
        fn any_body_is_answered_without_panic(bytes in body_bytes(), ndjson in any::<bool>()) {
            let format = if ndjson { BodyFormat::Ndjson } else { BodyFormat::JsonArray };
            match decode_rows(&bytes, format, 100) {
                Ok(rows) => {
                    if let Err(e) = validate_and_mask(&schema(), &rows, &IngestLimits::default(), &Keys) {
                        prop_assert!(e.status().is_client_error());
                    }
                }
                Err(e) => prop_assert!(e.status().is_client_error()),
            }
        }
    }

    #[test]
    fn ndjson_errors_name_the_line() {
        let body = b"{\"a\":1}\n\n{oops}\n{\"b\":2}\r\n";
        let err = decode_rows(body, BodyFormat::Ndjson, 10).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let ok = decode_rows(b"{\"a\":1}\n{\"b\":2}\n", BodyFormat::Ndjson, 10).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(decode_rows(b"{\"a\":1}\n{\"b\":2}\n", BodyFormat::Ndjson, 1).is_err());
        assert!(decode_rows(b"[1,2,3]", BodyFormat::JsonArray, 2).is_err());
        assert!(decode_rows(b"\"x\"", BodyFormat::JsonArray, 2).is_err());
    }
}
