-- Signed checkpoints over the audit log's Merkle tree (RFC 9162 hashing, C2SP signed notes).
-- frontier is the compact range (perfect-subtree roots, 32 bytes each) of the tree at
-- tree_size, and chain_hash the hash-chain value of entry tree_size: together they let the
-- next checkpoint, and verification after retention pruning, resume without older entries.
CREATE TABLE audit_checkpoints (
    tree_size   BIGINT PRIMARY KEY CHECK (tree_size >= 1),
    root        BYTEA NOT NULL CHECK (length(root) = 32),
    note        TEXT NOT NULL,
    key_version BIGINT NOT NULL CHECK (key_version >= 1),
    signed_at   BIGINT NOT NULL,
    frontier    BYTEA NOT NULL CHECK (length(frontier) % 32 = 0),
    chain_hash  BYTEA NOT NULL CHECK (length(chain_hash) = 32)
);

CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;

CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();

-- Public halves of the checkpoint signing keys with their validity windows. The private
-- seeds are stored secrets wrapped by the key-encryption key (secrets table).
CREATE TABLE audit_signing_keys (
    version      BIGINT PRIMARY KEY CHECK (version >= 1),
    verifier_key TEXT NOT NULL,
    valid_from   BIGINT NOT NULL,
    valid_until  BIGINT
);

CREATE FUNCTION audit_signing_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.valid_until IS NULL
        AND NEW.version = OLD.version
        AND NEW.verifier_key = OLD.verifier_key
        AND NEW.valid_from = OLD.valid_from THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_signing_keys may only have an open window closed';
END;
$$;

CREATE TRIGGER audit_signing_keys_guard
    BEFORE UPDATE OR DELETE ON audit_signing_keys
    FOR EACH ROW EXECUTE FUNCTION audit_signing_keys_guard();

-- Retention: entries with seq < anchor_size may be pruned (entry anchor_size itself stays, so
-- the log always has a head to chain from); anchor_size is always the size of
-- a checkpoint, from which verification resumes. It only ever grows.
CREATE TABLE audit_retention (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    anchor_size BIGINT NOT NULL CHECK (anchor_size >= 0)
);
INSERT INTO audit_retention (id, anchor_size) VALUES (1, 0);

CREATE FUNCTION audit_retention_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.anchor_size >= OLD.anchor_size
        AND EXISTS (SELECT 1 FROM audit_checkpoints WHERE tree_size = NEW.anchor_size) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit retention anchor must be a checkpoint and only grows';
END;
$$;

CREATE TRIGGER audit_retention_guard
    BEFORE UPDATE OR DELETE ON audit_retention
    FOR EACH ROW EXECUTE FUNCTION audit_retention_guard();

-- Deletion from the log is refused except below the retention anchor.
DROP TRIGGER audit_log_no_update_delete ON audit_log;

CREATE TRIGGER audit_log_no_update
    BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE FUNCTION audit_log_prune_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq < (SELECT anchor_size FROM audit_retention WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only above the retention anchor';
END;
$$;

CREATE TRIGGER audit_log_no_delete
    BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_prune_guard();
