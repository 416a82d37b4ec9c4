-- Data keys get a purpose (crypto-shredding by retention, docs/ARCHITECTURE.md "Retention and
-- erasure"): a day's raw rows (event batches, labels) and its aggregates (hourly profile deltas,
-- reference profiles) are sealed under separate keys, so that retention can destroy the raw
-- events' key while the profiles stay readable.
--
-- Keys stored before this migration sealed both and become purpose 'shared'; no new shared key
-- is ever made. Their wrap still binds (model, partition) only, so they keep unwrapping.
--
-- SQLite cannot change a primary key in place: the table is rebuilt.
CREATE TABLE data_keys_0009 (
    model_id    INTEGER NOT NULL REFERENCES models (id),
    partition   INTEGER NOT NULL,
    purpose     TEXT NOT NULL CHECK (purpose IN ('shared', 'events', 'profiles')),
    kek_version INTEGER NOT NULL CHECK (kek_version >= 0),
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (model_id, partition, purpose)
) STRICT, WITHOUT ROWID;

INSERT INTO data_keys_0009 (model_id, partition, purpose, kek_version, wrapped, created_at)
    SELECT model_id, partition, 'shared', kek_version, wrapped, created_at FROM data_keys;

DROP TABLE data_keys;

ALTER TABLE data_keys_0009 RENAME TO data_keys;
