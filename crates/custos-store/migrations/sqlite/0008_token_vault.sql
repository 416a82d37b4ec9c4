-- The token vault of the `tokenize` masking kind: per model, a random token (what stored rows
-- hold) and the original value sealed with AES-256-GCM under the model's vault key (a data key
-- wrapped by the KEK, kept in `secrets` as `token-vault/<model id>`; the associated data binds
-- model, token and kind). `lookup` is a keyed HMAC-SHA256 of the value (never an unkeyed hash),
-- unique per model, so the same value always gets the same token and a racing insert of the
-- same value finds the winner's. Times are microseconds since 1970.
CREATE TABLE token_vault (
    model_id   INTEGER NOT NULL REFERENCES models (id),
    token      TEXT NOT NULL,
    lookup     BLOB NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (model_id, token),
    UNIQUE (model_id, lookup)
) STRICT;

-- Tokens whose entry was erased (crypto-shredding of one subject): only the token and when, so
-- that a reveal can say "erased" rather than "unknown". No value, no lookup hash.
CREATE TABLE token_vault_erasures (
    model_id  INTEGER NOT NULL REFERENCES models (id),
    token     TEXT NOT NULL,
    erased_at INTEGER NOT NULL,
    PRIMARY KEY (model_id, token)
) STRICT;
