-- Data keys get a purpose (crypto-shredding by retention, docs/ARCHITECTURE.md "Retention and
-- erasure"): a day's raw rows (event batches, labels) and its aggregates (hourly profile deltas,
-- reference profiles) are sealed under separate keys, so that retention can destroy the raw
-- events' key while the profiles stay readable.
--
-- Keys stored before this migration sealed both and become purpose 'shared'; no new shared key
-- is ever made. Their wrap still binds (model, partition) only, so they keep unwrapping.
ALTER TABLE data_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'shared'
    CHECK (purpose IN ('shared', 'events', 'profiles'));
ALTER TABLE data_keys ALTER COLUMN purpose DROP DEFAULT;
ALTER TABLE data_keys DROP CONSTRAINT data_keys_pkey;
ALTER TABLE data_keys ADD PRIMARY KEY (model_id, partition, purpose);
