-- Configuration history: why each monitoring version was made and who approved it (the
-- two-person rule), and the changes that wait for a second person.
ALTER TABLE monitoring_configs ADD COLUMN reason TEXT;
ALTER TABLE monitoring_configs ADD COLUMN approved_by TEXT;

-- A weakening change waiting for approval. status: pending, approved, rejected. A decided
-- change is kept (who asked, who decided) and never reopened.
CREATE TABLE pending_changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id     INTEGER NOT NULL REFERENCES models (id),
    kind         TEXT NOT NULL,
    body_json    TEXT NOT NULL,
    base_version INTEGER NOT NULL,
    reason       TEXT,
    weakenings   TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by   TEXT,
    decided_at   INTEGER
) STRICT;

CREATE INDEX pending_changes_by_model ON pending_changes (model_id, status);
