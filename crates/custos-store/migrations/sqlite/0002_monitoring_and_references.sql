-- Custos schema, version 2 (SQLite): monitoring configuration versions and reference data sets.
--
-- Forward-only, kept in step with migrations/postgres/0002_monitoring_and_references.sql.

-- How a model is monitored (drift methods and thresholds, performance and quality settings).
-- Every change is a new immutable version; the highest version is in force.
CREATE TABLE monitoring_configs (
    model_id    INTEGER NOT NULL REFERENCES models (id),
    version     INTEGER NOT NULL CHECK (version >= 1),
    config_json TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (model_id, version)
) STRICT, WITHOUT ROWID;

-- Uploaded reference data sets (training data). Their rows are never kept: only the sealed
-- profiles computed from them, in reference_profiles. `uid` is the public id and is bound into
-- each profile's associated data, so a profile cannot be moved to another reference set.
CREATE TABLE reference_sets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    uid         TEXT NOT NULL UNIQUE,
    model_id    INTEGER NOT NULL REFERENCES models (id),
    name        TEXT NOT NULL,
    sha256      BLOB NOT NULL CHECK (length(sha256) = 32),
    row_count   INTEGER NOT NULL CHECK (row_count >= 0),
    label_field TEXT,
    partition   INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX reference_sets_by_model ON reference_sets (model_id, id);

-- Sealed profiles of one reference set, one per column (and reserved names for the
-- performance summary of the reference's labels).
CREATE TABLE reference_profiles (
    reference_id INTEGER NOT NULL REFERENCES reference_sets (id),
    column_name  TEXT NOT NULL,
    ciphertext   BLOB NOT NULL,
    PRIMARY KEY (reference_id, column_name)
) STRICT, WITHOUT ROWID;
