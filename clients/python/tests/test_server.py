"""The client against a real `custos serve` (see conftest.py)."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import rows

from custos_client import (
    AuthenticationFailed,
    Client,
    CustosError,
    InvalidRows,
    Logger,
    NotFound,
    PermissionDenied,
)

UTC = dt.timezone.utc


def window():
    now = dt.datetime.now(UTC)
    return now - dt.timedelta(hours=6), now + dt.timedelta(hours=1)


def test_predictions_and_labels_round_trip(server, model, writer, admin):
    sent = rows(250)
    answer = writer.log_predictions(model, sent, batch_rows=100)
    assert answer == {"accepted": 250, "duplicates": 0, "pii_redacted": 0, "batches": 3}
    # Sending the same events again stores nothing twice.
    again = writer.log_predictions(model, sent[:100])
    assert (again["accepted"], again["duplicates"]) == (0, 100)
    start, end = window()
    assert admin.row_count(model, start, end) == 250
    labels = writer.log_labels(model, [{"event_id": r["event_id"], "label": int(r["score"] >= 0.5)} for r in sent])
    assert labels["stored"] == 250
    perf = admin.performance(model, start, end)
    assert perf["model"] == model and perf["prediction_type"] == "binary_score"


def test_refused_batch_names_row_and_field_never_the_value(server, model, writer):
    bad = rows(3)
    bad[1]["amount"] = "SECRET-LOOKING-VALUE"
    with pytest.raises(InvalidRows) as e:
        writer.log_predictions(model, bad)
    err = e.value
    assert err.status == 422 and err.code == "invalid_rows"
    assert err.rows == [{"row": 1, "field": "amount", "reason": "expected a number, got a string"}]
    assert "row 1 field 'amount': expected a number, got a string" in str(err)
    assert "SECRET-LOOKING-VALUE" not in str(err)
    assert err.request_id


def test_scopes_and_unknown_models(server, model, writer):
    with pytest.raises(PermissionDenied) as e:
        writer.drift(model, *window())
    assert e.value.status == 403
    other = server.new_model()
    with pytest.raises(PermissionDenied):
        writer.log_predictions(other, rows(1))
    with pytest.raises(NotFound):
        server.admin().get_model("no-such-model")


def test_token_never_appears_in_errors_reprs_or_logs(server, model, caplog):
    caplog.set_level(logging.DEBUG)
    secret = server.writer_token(model)
    good = Client(server.url, token=secret)
    assert secret not in repr(good)
    with pytest.raises(PermissionDenied) as e:
        good.list_references(model)
    assert secret not in str(e.value) and secret not in repr(e.value)
    wrong = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    bad = Client(server.url, token=wrong)
    with pytest.raises(AuthenticationFailed) as e:
        bad.log_predictions(model, rows(1))
    assert e.value.status == 401
    assert wrong not in str(e.value) and wrong not in repr(e.value)
    with Logger(bad, model) as logger:
        logger.log_prediction(rows(1)[0])
        assert logger.flush(timeout=10)
        stats = logger.stats()
        assert stats.failed_rows == 1 and stats.retries == 0
        assert wrong not in repr(logger) and wrong not in (stats.last_error or "")
    for text in (caplog.text, repr(stats)):
        assert secret not in text and wrong not in text


def test_reference_upload_then_drift(server, model, writer, admin):
    rng = np.random.default_rng(7)
    n = 2_000
    reference = pd.DataFrame(
        {
            "event_id": [f"ref-{i}" for i in range(n)],
            "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "amount": rng.normal(50, 10, n),
            "country": rng.choice(["DE", "FR", "US"], n),
            "score": rng.uniform(0, 1, n),
            "is_fraud": rng.integers(0, 2, n),
        }
    )
    reference.loc[::100, "amount"] = np.nan  # missing values travel as null
    info = admin.upload_reference(model, reference, label_field="is_fraud", name="training set")
    assert info["rows"] == n and info["label_field"] == "is_fraud" and info["name"] == "training set"
    assert [r["id"] for r in admin.list_references(model)] == [info["id"]]

    # Current traffic with a shifted amount.
    now = pd.Timestamp.now(tz="UTC")
    current = pd.DataFrame(
        {
            "event_id": [f"cur-{i}" for i in range(n)],
            "ts": now - pd.to_timedelta(rng.integers(60, 3 * 3600, n), unit="s"),
            "amount": rng.normal(80, 10, n),
            "country": rng.choice(["DE", "FR", "US"], n),
            "score": rng.uniform(0, 1, n),
        }
    )
    assert writer.log_predictions(model, current)["accepted"] == n
    start, end = window()
    drift = admin.drift(model, start, end, chunk="hour")
    assert drift["reference"]["kind"] == "uploaded" and drift["reference"]["id"] == info["id"]
    by_feature = {f["feature"]: f for f in drift["features"]}
    assert by_feature["amount"]["drifted"] is True
    assert by_feature["amount"]["current_count"] == n
    assert drift["chunks"], "per-hour chunks were asked for"
    quality = admin.quality(model, start, end)
    assert quality["model"] == model
    perf = admin.performance(model, start, end)
    assert perf["model"] == model


def test_reference_upload_from_a_csv_file(server, model, admin, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("event_id,ts,amount,country,score\n" + "".join(f"r{i},2026-01-01T00:00:00Z,{i},DE,0.5\n" for i in range(50)))
    assert admin.upload_reference(model, path)["rows"] == 50
    with pytest.raises(CustosError):
        admin.upload_reference(model, tmp_path / "train.txt")
