-- Custos schema, version 5 (SQLite): local users who sign in to the web UI with a password.
-- Kept in step with the PostgreSQL file.
--
-- password_hash is an Argon2id PHC string (salt and parameters inside); the password itself is
-- never stored. name_folded is the case-folded name, so "Ada" and "ada" cannot both exist and
-- sign-in ignores case; the name as typed is kept for display. Users are disabled, never
-- deleted: audit records name their ids, and a freed name could be taken by someone else.
-- bindings_json holds the role bindings ([{"role": "sre", "model": "*"}, ...]).
CREATE TABLE users (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    name_folded         TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    bindings_json       TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    disabled_at         INTEGER,
    failed_count        INTEGER NOT NULL DEFAULT 0 CHECK (failed_count >= 0),
    locked_until        INTEGER,
    password_changed_at INTEGER NOT NULL,
    last_sign_in_at     INTEGER
) STRICT;
