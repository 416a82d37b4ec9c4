-- Custos schema, version 3 (PostgreSQL): refused rows, counted per model, hour of arrival and
-- field, so data quality can show what clients send wrong (type mismatches, missing ids,
-- ranges). Only counts and field names: never a value. Kept in step with the SQLite file.
CREATE TABLE rejections (
    model_id   BIGINT NOT NULL REFERENCES models (id),
    hour       BIGINT NOT NULL,
    field      TEXT NOT NULL,
    row_count  BIGINT NOT NULL CHECK (row_count >= 0),
    PRIMARY KEY (model_id, hour, field)
);
