"""The background Logger against a real `custos serve`, including the acceptance test: 100,000
rows from a DataFrame through a server that answers 429 for a good part of the run, and every
row arrives exactly once."""

from __future__ import annotations

import datetime as dt
import logging
import time

import numpy as np
import pandas as pd
import pytest
from conftest import rows, start_server

from custos_client import Client, Logger

UTC = dt.timezone.utc

# A budget the logger is bound to exceed: two batches at once, then two a second. The
# server answers 429 with Retry-After whenever the logger sends faster than that.
LIMITED = """
[limits]
ingest_per_second = 2
ingest_burst = 2
read_per_second = 1000
read_burst = 1000
"""


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    s = start_server(tmp_path_factory, "custos-limited", LIMITED)
    yield s
    s.stop()


def window():
    now = dt.datetime.now(UTC)
    return now - dt.timedelta(hours=8), now + dt.timedelta(hours=1)


def test_100k_rows_arrive_exactly_once_through_429s(limited_server):
    server = limited_server
    model = server.new_model("big")
    n = 100_000
    rng = np.random.default_rng(1)
    now = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame(
        {
            "event_id": [f"big-{i}" for i in range(n)],
            "ts": now - pd.to_timedelta(rng.integers(60, 6 * 3600, n), unit="s"),
            "amount": rng.normal(100, 20, n),
            "country": rng.choice(["DE", "FR", "US", "GB"], n),
            "score": rng.uniform(0, 1, n),
        }
    )
    frame.loc[::97, "amount"] = np.nan
    client = Client(server.url, token=server.writer_token(model))
    started = time.monotonic()
    with Logger(client, model, batch_rows=5_000, flush_interval=0.5, max_buffer_rows=n) as logger:
        # As a model server would: in pieces, while the thread is already sending.
        queued = sum(logger.log_predictions(frame.iloc[i : i + 10_000]) for i in range(0, n, 10_000))
        assert queued == n
        assert logger.flush(timeout=170), logger.stats()
        stats = logger.stats()
    elapsed = time.monotonic() - started
    print(
        f"\n100k rows: {elapsed:.1f} s, {n / elapsed:,.0f} rows/s, {stats.sent_batches} batches, "
        f"{stats.retries_429} answers 429, {stats.retries} retries in all"
    )
    assert stats.retries_429 >= 1, "the server never refused: the test did not exercise 429"
    assert (stats.sent_rows, stats.accepted, stats.duplicates) == (n, n, 0)
    assert (stats.failed_rows, stats.dropped_rows, stats.abandoned_rows, stats.buffered) == (0, 0, 0, 0)
    with server.admin() as admin:
        assert admin.row_count(model, *window()) == n


def test_refused_batch_is_reported_not_retried_and_the_rest_arrives(server, model, writer, admin, caplog):
    failures = []
    batch = rows(5)
    batch[2]["amount"] = "NOT-A-NUMBER-MARKER"
    with Logger(writer, model, batch_rows=5, flush_interval=0.2, on_error=failures.append) as logger:
        logger.log_predictions(batch)
        assert logger.flush(timeout=30)
        logger.log_predictions(rows(5))
        assert logger.flush(timeout=30)
        stats = logger.stats()
    assert (stats.failed_batches, stats.failed_rows, stats.retries) == (1, 5, 0)
    assert (stats.sent_rows, stats.accepted) == (5, 5)
    assert "422" in stats.last_error and "row 2 field 'amount': expected a number, got a string" in stats.last_error
    assert len(failures) == 1 and failures[0].error.rows[0]["field"] == "amount"
    assert "NOT-A-NUMBER-MARKER" not in caplog.text
    assert "not retried" in caplog.text
    assert admin.row_count(model, *window()) == 5


def test_full_buffer_drops_new_rows_and_reports_counts_only(server, model, writer, admin, caplog):
    caplog.set_level(logging.WARNING, logger="custos_client")
    marker = "VALUE-THAT-MUST-NOT-BE-LOGGED"
    logger = Logger(writer, model, batch_rows=1_000, flush_interval=60, max_buffer_rows=10)
    batch = rows(25)
    for r in batch:
        r["country"] = marker
    kept = [logger.log_prediction(r) for r in batch]
    assert kept == [True] * 10 + [False] * 15
    stats = logger.stats()
    assert (stats.buffered, stats.dropped_rows) == (10, 15)
    assert logger.close(timeout=30)
    stats = logger.stats()
    assert (stats.sent_rows, stats.dropped_rows, stats.buffered) == (10, 15, 0)
    assert "dropped" in caplog.text and "15 dropped in all" in caplog.text
    assert marker not in caplog.text
    assert admin.row_count(model, *window()) == 10
    # A closed logger takes no more rows, and says so.
    assert logger.log_prediction(rows(1)[0]) is False
    assert logger.stats().dropped_rows == 16


def test_labels_through_the_logger(server, model, writer, admin):
    sent = rows(30)
    with Logger(writer, model, batch_rows=10, flush_interval=0.2) as logger:
        logger.log_predictions(pd.DataFrame(sent))
        for r in sent:
            logger.log_label(r["event_id"], int(r["score"] >= 0.5))
        assert logger.flush(timeout=30)
        stats = logger.stats()
    assert (stats.accepted, stats.labels_stored, stats.failed_rows) == (30, 30, 0)
    perf = admin.performance(model, *window())
    assert perf["model"] == model
