-- Custos schema, version 1 (SQLite).
--
-- Forward-only: once released, this file never changes; later changes are new numbered files,
-- kept in step with migrations/postgres. sqlx runs each file in a transaction.
--
-- Encodings shared with PostgreSQL so both backends answer identically: times are INTEGER Unix
-- microseconds (UTC), encrypted payloads and hashes are BLOBs. No column holds a value from a
-- model's rows in plaintext: only ids, counts, hours, names and ciphertexts.
-- STRICT makes SQLite enforce the declared column types.

-- Small plaintext settings (the bootstrap token hash, "bootstrap consumed").
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

-- Keys wrapped by a KEK (pseudonym keys, the token pepper).
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    kek_version INTEGER NOT NULL CHECK (kek_version >= 0),
    wrapped     BLOB NOT NULL
) STRICT;

-- AUTOINCREMENT: an id is never reused, because data keys, batches and audit records name it.
CREATE TABLE models (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    spec_json  TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- One wrapped data key per (model, day partition); deleting one crypto-shreds that day.
CREATE TABLE data_keys (
    model_id    INTEGER NOT NULL REFERENCES models (id),
    partition   INTEGER NOT NULL,
    kek_version INTEGER NOT NULL CHECK (kek_version >= 0),
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (model_id, partition)
) STRICT, WITHOUT ROWID;

-- Sealed event batches. Time-range reads filter on (model_id, min_time).
CREATE TABLE batches (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id   INTEGER NOT NULL REFERENCES models (id),
    partition  INTEGER NOT NULL,
    row_count  INTEGER NOT NULL CHECK (row_count >= 0),
    min_time   INTEGER NOT NULL,
    max_time   INTEGER NOT NULL,
    ciphertext BLOB NOT NULL
) STRICT;
CREATE INDEX batches_by_model_time ON batches (model_id, min_time);

-- Keyed event ids already ingested: duplicate detection and label joins. The primary key is
-- what makes a duplicate fail the ingest transaction, including across concurrent requests.
-- The event index exists to make ingestion idempotent: a retried row (same event id, same
-- event time) is recognised and skipped. It is ordered by event time first so that live
-- traffic appends near the right edge of the B-tree; keyed by the random HMAC alone, every
-- 1,000-row commit dirtied ~1,000 pages (measured: 5x slower ingestion).
CREATE TABLE event_index (
    model_id   INTEGER NOT NULL REFERENCES models (id),
    event_time INTEGER NOT NULL,
    event_key  BLOB NOT NULL CHECK (length(event_key) = 32),
    batch_id   INTEGER NOT NULL,
    PRIMARY KEY (model_id, event_time, event_key)
) STRICT, WITHOUT ROWID;

-- Sealed sketch deltas per (model, column, hour); compaction replaces many by one merged row.
-- AUTOINCREMENT so a compacted-away id is never handed to a new delta.
CREATE TABLE profile_deltas (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id    INTEGER NOT NULL REFERENCES models (id),
    column_name TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    partition   INTEGER NOT NULL,
    ciphertext  BLOB NOT NULL
) STRICT;
CREATE INDEX profile_deltas_by_column_hour ON profile_deltas (model_id, column_name, hour);

-- Rows ingested per event hour.
CREATE TABLE volume (
    model_id  INTEGER NOT NULL REFERENCES models (id),
    hour      INTEGER NOT NULL,
    row_count INTEGER NOT NULL CHECK (row_count >= 0),
    PRIMARY KEY (model_id, hour)
) STRICT, WITHOUT ROWID;

-- Sealed ground-truth labels, one per event (a later label replaces an earlier one).
CREATE TABLE labels (
    model_id   INTEGER NOT NULL REFERENCES models (id),
    event_key  BLOB NOT NULL CHECK (length(event_key) = 32),
    partition  INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (model_id, event_key)
) STRICT, WITHOUT ROWID;

-- API tokens, stored only as a keyed hash of the secret; authentication looks up by hash.
CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    hash           BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    display_prefix TEXT NOT NULL,
    description    TEXT NOT NULL,
    scopes_json    TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    last_used_at   INTEGER
) STRICT;

-- The hash-chained audit log. seq is assigned by the appender (head + 1), never by SQLite, so
-- gaps mean deletion.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
    record_json TEXT NOT NULL,
    hash        BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;

-- Append-only at the database level as well. This stops accidents and casual tampering through
-- the application's own connection; anyone who can drop the triggers can still rewrite the
-- table, which is what the hash chain and the signed checkpoints detect.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
