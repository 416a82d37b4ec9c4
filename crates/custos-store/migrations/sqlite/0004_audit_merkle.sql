-- Signed checkpoints over the audit log's Merkle tree (RFC 9162 hashing, C2SP signed notes).
-- frontier is the compact range (perfect-subtree roots, 32 bytes each) of the tree at
-- tree_size, and chain_hash the hash-chain value of entry tree_size: together they let the
-- next checkpoint, and verification after retention pruning, resume without older entries.
CREATE TABLE audit_checkpoints (
    tree_size   INTEGER PRIMARY KEY NOT NULL CHECK (tree_size >= 1),
    root        BLOB NOT NULL CHECK (length(root) = 32),
    note        TEXT NOT NULL,
    key_version INTEGER NOT NULL CHECK (key_version >= 1),
    signed_at   INTEGER NOT NULL,
    frontier    BLOB NOT NULL CHECK (length(frontier) % 32 = 0),
    chain_hash  BLOB NOT NULL CHECK (length(chain_hash) = 32)
) STRICT;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

-- Public halves of the checkpoint signing keys with their validity windows. The private
-- seeds are stored secrets wrapped by the key-encryption key (secrets table).
CREATE TABLE audit_signing_keys (
    version      INTEGER PRIMARY KEY NOT NULL CHECK (version >= 1),
    verifier_key TEXT NOT NULL,
    valid_from   INTEGER NOT NULL,
    valid_until  INTEGER
) STRICT;

-- Only the window of the key being retired may be closed, once.
CREATE TRIGGER audit_signing_keys_no_rewrite BEFORE UPDATE ON audit_signing_keys
WHEN OLD.valid_until IS NOT NULL
    OR NEW.version IS NOT OLD.version
    OR NEW.verifier_key IS NOT OLD.verifier_key
    OR NEW.valid_from IS NOT OLD.valid_from
BEGIN
    SELECT RAISE(ABORT, 'audit_signing_keys may only have an open window closed');
END;

CREATE TRIGGER audit_signing_keys_no_delete BEFORE DELETE ON audit_signing_keys
BEGIN
    SELECT RAISE(ABORT, 'audit_signing_keys is append-only');
END;

-- Retention: entries with seq < anchor_size may be pruned (entry anchor_size itself stays, so
-- the log always has a head to chain from); anchor_size is always the size of
-- a checkpoint, from which verification resumes. It only ever grows.
CREATE TABLE audit_retention (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    anchor_size INTEGER NOT NULL CHECK (anchor_size >= 0)
) STRICT;
INSERT INTO audit_retention (id, anchor_size) VALUES (1, 0);

CREATE TRIGGER audit_retention_only_grows BEFORE UPDATE ON audit_retention
WHEN NEW.anchor_size < OLD.anchor_size
    OR NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE tree_size = NEW.anchor_size)
BEGIN
    SELECT RAISE(ABORT, 'audit retention anchor must be a checkpoint and only grows');
END;

-- Deletion from the log is refused except below the retention anchor.
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq >= (SELECT anchor_size FROM audit_retention WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only above the retention anchor');
END;
