-- Custos schema, version 1 (PostgreSQL).
--
-- Forward-only: once released, this file never changes; later changes are new numbered files,
-- kept in step with migrations/sqlite. sqlx runs each file in a transaction.
--
-- Encodings shared with SQLite so both backends answer identically: times are BIGINT Unix
-- microseconds (UTC), encrypted payloads and hashes are BYTEA. No column holds a value from a
-- model's rows in plaintext: only ids, counts, hours, names and ciphertexts.

-- Small plaintext settings (the bootstrap token hash, "bootstrap consumed").
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Keys wrapped by a KEK (pseudonym keys, the token pepper).
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    kek_version BIGINT NOT NULL CHECK (kek_version >= 0),
    wrapped     BYTEA NOT NULL
);

-- Identity ids are never reused, because data keys, batches and audit records name them.
CREATE TABLE models (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    spec_json  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One wrapped data key per (model, day partition); deleting one crypto-shreds that day.
CREATE TABLE data_keys (
    model_id    BIGINT NOT NULL REFERENCES models (id),
    partition   BIGINT NOT NULL,
    kek_version BIGINT NOT NULL CHECK (kek_version >= 0),
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (model_id, partition)
);

-- Sealed event batches. Time-range reads filter on (model_id, min_time).
CREATE TABLE batches (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id   BIGINT NOT NULL REFERENCES models (id),
    partition  BIGINT NOT NULL,
    row_count  BIGINT NOT NULL CHECK (row_count >= 0),
    min_time   BIGINT NOT NULL,
    max_time   BIGINT NOT NULL,
    ciphertext BYTEA NOT NULL
);
CREATE INDEX batches_by_model_time ON batches (model_id, min_time);

-- Keyed event ids already ingested: duplicate detection and label joins. The primary key is
-- what makes a duplicate fail the ingest transaction, including across concurrent replicas.
-- The event index exists to make ingestion idempotent: a retried row (same event id, same
-- event time) is recognised and skipped. It is ordered by event time first so that live
-- traffic appends near the right edge of the B-tree; keyed by the random HMAC alone, every
-- 1,000-row commit dirtied ~1,000 pages (measured: 5x slower ingestion).
CREATE TABLE event_index (
    model_id   BIGINT NOT NULL REFERENCES models (id),
    event_time BIGINT NOT NULL,
    event_key  BYTEA NOT NULL CHECK (length(event_key) = 32),
    batch_id   BIGINT NOT NULL,
    PRIMARY KEY (model_id, event_time, event_key)
);

-- Sealed sketch deltas per (model, column, hour); compaction replaces many by one merged row.
CREATE TABLE profile_deltas (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id    BIGINT NOT NULL REFERENCES models (id),
    column_name TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    partition   BIGINT NOT NULL,
    ciphertext  BYTEA NOT NULL
);
CREATE INDEX profile_deltas_by_column_hour ON profile_deltas (model_id, column_name, hour);

-- Rows ingested per event hour.
CREATE TABLE volume (
    model_id  BIGINT NOT NULL REFERENCES models (id),
    hour      BIGINT NOT NULL,
    row_count BIGINT NOT NULL CHECK (row_count >= 0),
    PRIMARY KEY (model_id, hour)
);

-- Sealed ground-truth labels, one per event (a later label replaces an earlier one).
CREATE TABLE labels (
    model_id   BIGINT NOT NULL REFERENCES models (id),
    event_key  BYTEA NOT NULL CHECK (length(event_key) = 32),
    partition  BIGINT NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (model_id, event_key)
);

-- API tokens, stored only as a keyed hash of the secret; authentication looks up by hash.
CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY,
    hash           BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    display_prefix TEXT NOT NULL,
    description    TEXT NOT NULL,
    scopes_json    TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    last_used_at   BIGINT
);

-- The hash-chained audit log. seq is assigned by the appender (head + 1) under an advisory
-- lock, never by a sequence, so gaps mean deletion. record_json is TEXT, not JSONB: the hash
-- covers the exact bytes, which JSONB would normalise.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY CHECK (seq >= 1),
    record_json TEXT NOT NULL,
    hash        BYTEA NOT NULL CHECK (length(hash) = 32)
);

-- Append-only at the database level as well. This stops accidents and casual tampering through
-- the application's role; a superuser (or the table owner) can disable the trigger and rewrite
-- the table, which is what the hash chain and the signed checkpoints detect.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
