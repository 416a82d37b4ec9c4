-- Custos schema, version 10 (SQLite): what PII detection found and masked in fields not declared
-- PII, counted per model, event hour, field and kind (email, phone, payment_card, iban, us_ssn,
-- ip_address). Only counts: the findings themselves are replaced before anything is stored.
-- Written in the transaction that stores the rows. Kept in step with the PostgreSQL file.
CREATE TABLE pii_findings (
    model_id       INTEGER NOT NULL REFERENCES models (id),
    hour           INTEGER NOT NULL,
    field          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    finding_count  INTEGER NOT NULL CHECK (finding_count >= 0),
    PRIMARY KEY (model_id, hour, field, kind)
) STRICT, WITHOUT ROWID;
