-- Alerts: where each series of each rule stands, the history of its transitions, silences,
-- notification channels (their secrets live wrapped in the secrets table), the delivery outbox,
-- and leases so that only one replica evaluates at a time. Times are microseconds since 1970.

-- series: the feature for per-feature metrics, '' otherwise. state_json holds the state
-- machine's memory (custos_core::alerts::SeriesState): aggregates only, never row values.
CREATE TABLE alert_series (
    model_id         BIGINT NOT NULL REFERENCES models (id),
    rule             TEXT NOT NULL,
    series           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('inactive', 'pending', 'firing')),
    state_json       TEXT NOT NULL,
    last_notified_at BIGINT,
    acknowledged_by  TEXT,
    acknowledged_at  BIGINT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (model_id, rule, series)
);

CREATE TABLE alert_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id   BIGINT NOT NULL REFERENCES models (id),
    rule       TEXT NOT NULL,
    series     TEXT NOT NULL,
    transition TEXT NOT NULL,
    value      DOUBLE PRECISION,
    threshold  DOUBLE PRECISION,
    at         BIGINT NOT NULL
);

CREATE INDEX alert_events_by_model ON alert_events (model_id, at);

-- A silence mutes notifications (not evaluation) of one model's alerts until ends_at; rule
-- and series narrow it when set.
CREATE TABLE alert_silences (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id   BIGINT NOT NULL REFERENCES models (id),
    rule       TEXT,
    series     TEXT,
    ends_at    BIGINT NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- spec_json: kind, address, routing; never the secret. secret_sealed is the channel's secret
-- (signing key, routing key, incoming-webhook URL) sealed (AES-256-GCM) under the channel's own
-- data key, which the secrets table holds wrapped by the KEK as 'alert-channel/<name>'.
CREATE TABLE alert_channels (
    name          TEXT PRIMARY KEY,
    spec_json     TEXT NOT NULL,
    secret_sealed BYTEA,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The delivery outbox: written in the same transaction as the transitions it reports, sent
-- and retried by the delivery worker. payload_json holds alert names, labels, values and
-- rendered annotations: aggregates only.
CREATE TABLE alert_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT NOT NULL,
    payload_json    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
