"""Tests that need no Custos server: value conversion, the URL and token rules, and the
logger's retry behaviour against a scripted stand-in HTTP server."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import socket
import threading
import time
from typing import List

import numpy as np
import pandas as pd
import pytest

from custos_client import (
    Client,
    ConfigurationError,
    ConnectionFailed,
    Logger,
    RetryPolicy,
    encoding,
)

SECRET = "cst_offline-secret-value-0123456789"


# --------------------------------------------------------------------------------------------
# conversion


def test_dataframe_values_become_json():
    frame = pd.DataFrame(
        {
            "event_id": ["a", "b"],
            "ts": pd.to_datetime(["2026-11-26T10:00:00", "2026-11-26T10:00:00.25"], format="ISO8601"),
            "local": pd.to_datetime(["2026-11-26T12:00:00+02:00", None], format="ISO8601"),
            "amount": [1.5, np.nan],
            "count": np.array([1, 2], dtype="int64"),
            "maybe": pd.array([1, None], dtype="Int64"),
            "flag": [True, False],
            "text": pd.array(["x", None], dtype="string"),
        }
    )
    got = [json.loads(encoding.encode_row(r)) for r in encoding.iter_rows(frame)]
    assert got == [
        {
            "event_id": "a",
            "ts": "2026-11-26T10:00:00Z",
            "local": "2026-11-26T10:00:00Z",
            "amount": 1.5,
            "count": 1,
            "maybe": 1,
            "flag": True,
            "text": "x",
        },
        {
            "event_id": "b",
            "ts": "2026-11-26T10:00:00.250000Z",
            "local": None,
            "amount": None,
            "count": 2,
            "maybe": None,
            "flag": False,
            "text": None,
        },
    ]


def test_scalars_from_numpy_pandas_and_datetime():
    row = {
        "i": np.int32(3),
        "f": np.float32(0.5),
        "nan": np.float64("nan"),
        "b": np.bool_(True),
        "ns": pd.Timestamp("2026-01-01 00:00:00.000000001", tz="UTC"),
        "naive": dt.datetime(2026, 1, 1, 12, 30),
        "aware": dt.datetime(2026, 1, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "day": dt.date(2026, 1, 2),
        "nat": pd.NaT,
        "na": pd.NA,
        "d64": np.datetime64("2026-01-01T01:02:03"),
    }
    (got,) = list(encoding.iter_rows(row))
    assert got == {
        "i": 3,
        "f": 0.5,
        "nan": None,
        "b": True,
        "ns": "2026-01-01T00:00:00.000000001Z",
        "naive": "2026-01-01T12:30:00Z",
        "aware": "2026-01-01T17:30:00Z",
        "day": "2026-01-02T00:00:00Z",
        "nat": None,
        "na": None,
        "d64": "2026-01-01T01:02:03Z",
    }
    assert all(type(v) in (int, float, bool, str, type(None)) for v in got.values())


def test_unsendable_values_name_the_field_not_the_value():
    with pytest.raises(ValueError, match="'amount'") as e:
        list(encoding.iter_rows({"amount": float("inf")}))
    assert "inf" not in str(e.value).replace("infinite", "")
    with pytest.raises(ValueError, match="'blob'"):
        list(encoding.iter_rows({"blob": object()}))
    with pytest.raises(ValueError, match="'x'"):
        list(encoding.iter_rows(pd.DataFrame({"x": [1.0, -np.inf]})))


# --------------------------------------------------------------------------------------------
# URL and token rules


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.1:8750", "http://custos.internal"])
def test_plain_http_to_a_remote_host_is_refused(url):
    with pytest.raises(ConfigurationError, match="plain http"):
        Client(url, token=SECRET)


def test_plain_http_to_a_remote_host_with_explicit_opt_in_warns():
    with pytest.warns(UserWarning, match="plain http"):
        c = Client("http://example.com", token=SECRET, allow_insecure_http=True)
    assert c.url == "http://example.com"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8750", "http://localhost:1", "http://[::1]:8750/", "https://example.com"])
def test_loopback_and_https_are_allowed(url):
    assert Client(url, token=SECRET).url == url.rstrip("/")


def test_bad_urls_are_refused():
    for url in ["ftp://127.0.0.1", "http://user:pw@127.0.0.1", "127.0.0.1:8750"]:
        with pytest.raises(ConfigurationError):
            Client(url)


def test_token_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTOS_TOKEN", raising=False)
    monkeypatch.delenv("CUSTOS_TOKEN_FILE", raising=False)
    assert not Client("http://127.0.0.1:1").has_token
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    token_file.chmod(0o600)
    monkeypatch.setenv("CUSTOS_TOKEN_FILE", str(token_file))
    c = Client("http://127.0.0.1:1")
    assert c.has_token
    assert c.new_session().headers["Authorization"] == "Bearer " + SECRET
    monkeypatch.setenv("CUSTOS_TOKEN", "cst_from-env")
    assert Client("http://127.0.0.1:1").new_session().headers["Authorization"] == "Bearer cst_from-env"
    assert Client("http://127.0.0.1:1", token_file=token_file).new_session().headers["Authorization"] == "Bearer " + SECRET
    with pytest.raises(ConfigurationError):
        Client("http://127.0.0.1:1", token="a", token_file=token_file)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Client("http://127.0.0.1:1", token_file=tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="spaces or control") as e:
        Client("http://127.0.0.1:1", token="two words")
    assert "two words" not in str(e.value)


def test_token_is_not_in_repr_or_connection_errors(caplog):
    caplog.set_level(logging.DEBUG)
    port = _closed_port()
    c = Client(f"http://127.0.0.1:{port}", token=SECRET, timeout=2)
    assert SECRET not in repr(c) and SECRET not in str(c)
    with pytest.raises(ConnectionFailed) as e:
        c.health()
    assert SECRET not in str(e.value) and SECRET not in repr(e.value)
    assert e.value.__suppress_context__ and SECRET not in repr(e.value.__context__)
    logger = Logger(c, "m", retry=RetryPolicy(max_retries=0))
    assert SECRET not in repr(logger)
    logger.log_prediction({"event_id": "e1"})
    logger.close(timeout=10)
    assert logger.stats().failed_rows == 1
    assert SECRET not in (logger.stats().last_error or "")
    assert SECRET not in caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# retries against a scripted server


class _Script(http.server.BaseHTTPRequestHandler):
    """Answers POSTs from a shared script: "drop" closes the connection without an answer,
    an int is a status (429 with Retry-After: 0), "ok" counts the rows and answers 200."""

    script: List = []
    bodies: List[bytes] = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            step = self.script.pop(0) if self.script else "ok"
            self.bodies.append(body)
        if step == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if step == "ok":
            n = len([line for line in body.split(b"\n") if line.strip()])
            self._answer(200, {"accepted": n, "duplicates": 0})
        elif step == 429:
            self._answer(429, {"code": "rate_limited", "message": "too many requests; retry later"}, {"Retry-After": "0"})
        elif step == 422:
            self._answer(
                422,
                {
                    "code": "invalid_rows",
                    "message": "some rows are invalid; nothing from this batch was written",
                    "rows": [{"row": 0, "field": "amount", "reason": "expected a number, got a string"}],
                    "row_error_count": 1,
                },
            )
        else:
            self._answer(step, {"code": "unavailable", "message": "try later"})

    def _answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Script)
    _Script.script = []
    _Script.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Script
    server.shutdown()
    server.server_close()


def test_logger_retries_429_5xx_408_and_broken_connections(scripted):
    server, script = scripted
    script.script = [429, "drop", 503, 408, 500, "ok"]
    c = Client(f"http://127.0.0.1:{server.server_address[1]}", token=SECRET, timeout=5)
    logger = Logger(c, "m", batch_rows=10, retry=RetryPolicy(max_retries=None, base=0.01, cap=0.05))
    assert logger.log_predictions([{"event_id": f"e{i}"} for i in range(10)]) == 10
    assert logger.flush(timeout=20)
    s = logger.stats()
    assert (s.retries, s.retries_429, s.retries_connection, s.retries_5xx, s.retries_timeout) == (5, 1, 1, 2, 1)
    assert (s.sent_rows, s.sent_batches, s.accepted, s.failed_rows, s.buffered) == (10, 1, 10, 0, 0)
    # The same body each time: a retry resends the batch as it was.
    assert len(set(script.bodies)) == 1 and len(script.bodies) == 6
    assert SECRET.encode() not in b"".join(script.bodies)
    logger.close()


def test_logger_does_not_retry_other_4xx(scripted, caplog):
    server, script = scripted
    script.script = [422]
    c = Client(f"http://127.0.0.1:{server.server_address[1]}", token=SECRET)
    failures = []
    logger = Logger(c, "m", batch_rows=2, on_error=failures.append)
    logger.log_predictions([{"event_id": "e1", "amount": "twelve"}, {"event_id": "e2", "amount": 1}])
    logger.log_predictions([{"event_id": "e3", "amount": 3}])
    assert logger.close(timeout=10)
    s = logger.stats()
    assert (s.retries, s.failed_batches, s.failed_rows, s.sent_rows) == (0, 1, 2, 1)
    assert "row 0 field 'amount': expected a number" in s.last_error
    assert len(failures) == 1 and failures[0].rows == 2 and failures[0].error.status == 422
    assert len(script.bodies) == 2
    assert "twelve" not in caplog.text and "not retried" in caplog.text


def test_retry_policy_honours_retry_after():
    from custos_client import RateLimited

    policy = RetryPolicy(base=0.1, cap=1.0)
    error = RateLimited(429, "slow down", retry_after=2.0)
    assert all(2.0 <= policy.delay(1, error) <= 2.1 for _ in range(100))
    plain = ConnectionFailed("x")
    assert all(0 <= policy.delay(10, plain) <= 1.0 for _ in range(100))


def test_logger_batches_by_rows_and_by_age(scripted):
    server, script = scripted
    c = Client(f"http://127.0.0.1:{server.server_address[1]}", token=SECRET)
    logger = Logger(c, "m", batch_rows=4, flush_interval=0.3)
    # Ten rows: two full batches go at once, the last two rows once they are 0.3 s old —
    # without any flush.
    logger.log_predictions([{"event_id": f"e{i}"} for i in range(10)])
    deadline = time.monotonic() + 10
    while logger.stats().sent_rows < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert logger.stats().sent_rows == 10
    sizes = [len(b.strip().split(b"\n")) for b in script.bodies]
    assert sizes == [4, 4, 2]
    logger.close()


def test_close_gives_up_after_its_timeout_and_reports_what_was_left(scripted, caplog):
    server, script = scripted
    script.script = [503] * 10_000
    c = Client(f"http://127.0.0.1:{server.server_address[1]}", token=SECRET)
    logger = Logger(c, "m", batch_rows=5, retry=RetryPolicy(max_retries=None, base=0.01, cap=0.05))
    logger.log_predictions([{"event_id": f"e{i}"} for i in range(12)])
    started = time.monotonic()
    assert logger.close(timeout=0.5) is False
    assert time.monotonic() - started < 5
    s = logger.stats()
    assert (s.sent_rows, s.failed_rows, s.abandoned_rows, s.buffered) == (0, 0, 12, 0)
    assert s.retries_5xx >= 1 and s.retries == s.retries_5xx
    assert "12 abandoned unsent" in caplog.text
