-- Custos schema, version 10 (PostgreSQL): what PII detection found and masked in fields not
-- declared PII, counted per model, event hour, field and kind (email, phone, payment_card, iban,
-- us_ssn, ip_address). Only counts: the findings themselves are replaced before anything is
-- stored. Written in the transaction that stores the rows. Kept in step with the SQLite file.
CREATE TABLE pii_findings (
    model_id       BIGINT NOT NULL REFERENCES models (id),
    hour           BIGINT NOT NULL,
    field          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    finding_count  BIGINT NOT NULL CHECK (finding_count >= 0),
    PRIMARY KEY (model_id, hour, field, kind)
);
