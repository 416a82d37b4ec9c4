"""The background logger: a model server hands it rows and goes on; a thread sends them in
batches and retries.

Guarantees, and their limits:

- A row is counted *sent* only after the server answered 2xx for its batch. Predictions are
  deduplicated by the server (event id and time), so a batch sent again after a lost answer is
  not stored twice; its rows come back as ``duplicates``.
- 429 (after the server's ``Retry-After``), 5xx, 408 and connection failures are retried with
  exponential backoff and jitter, until the batch is sent, ``retry.max_retries`` is reached, or
  :meth:`Logger.close` runs out of time. Other 4xx answers are never retried: the batch is
  counted as failed and the server's message (which names row and field, never values) is
  logged, kept in ``stats().last_error`` and passed to ``on_error``.
- The buffer holds at most ``max_buffer_rows`` rows (waiting or being sent). When it is full,
  new rows are dropped, counted (``stats().dropped_rows``) and reported by a warning that gives
  counts only, never values. Logging never blocks the caller on the network.
- Rows still unsent when :meth:`Logger.close` gives up are counted as ``abandoned_rows`` and
  reported the same way.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import threading
import time
import weakref
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional

from . import encoding
from .client import Client, RetryPolicy
from .errors import ConnectionFailed, CustosError, RateLimited, RequestTimeout, ServerError

__all__ = ["Logger", "LoggerStats", "BatchFailure"]

log = logging.getLogger("custos_client.logger")

PREDICTIONS = "predictions"
LABELS = "labels"
_KINDS = (PREDICTIONS, LABELS)
# At most one "rows dropped" warning this often (each gives the counts since the last one).
_DROP_WARNING_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True)
class LoggerStats:
    """A snapshot of a :class:`Logger`'s counters (rows unless said otherwise)."""

    #: Rows waiting or being sent.
    buffered: int = 0
    #: Rows in batches the server answered 2xx.
    sent_rows: int = 0
    #: Batches the server answered 2xx.
    sent_batches: int = 0
    #: Prediction rows the server newly stored.
    accepted: int = 0
    #: Prediction rows the server already had (a batch sent again after a lost answer).
    duplicates: int = 0
    #: Labels the server stored.
    labels_stored: int = 0
    #: Rows in batches the server refused (4xx other than 429) or that ran out of retries.
    failed_rows: int = 0
    #: Such batches.
    failed_batches: int = 0
    #: Rows refused at ``log`` time because the buffer was full (or the logger closed).
    dropped_rows: int = 0
    #: Rows still unsent when ``close`` gave up.
    abandoned_rows: int = 0
    #: Requests sent again, in all and by cause.
    retries: int = 0
    retries_429: int = 0
    retries_5xx: int = 0
    retries_connection: int = 0
    #: 408: the server's request timeout ran out (it was overloaded).
    retries_timeout: int = 0
    #: The last failure's description (the server's message, with row and field).
    last_error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class BatchFailure:
    """A batch that was not stored, as passed to ``on_error``."""

    kind: str  # "predictions" or "labels"
    rows: int
    error: CustosError


class Logger:
    """Batches rows for one model and sends them from a background thread.

    ``batch_rows``: most rows per request (the server's ``max_batch_rows`` is 10,000 by default).
    ``flush_interval``: seconds a row may wait for its batch to fill before it is sent anyway.
    ``max_buffer_rows``: most rows held (waiting or being sent); beyond, new rows are dropped.
    ``retry``: the :class:`RetryPolicy` (default: retry until sent or closed).
    ``on_error``: called with a :class:`BatchFailure` from the logger's thread for each batch
    not stored. ``exit_timeout``: seconds the interpreter's exit waits to send what is left.

    Use it as a context manager, or call :meth:`close` at shutdown.
    """

    def __init__(
        self,
        client: Client,
        model: str,
        *,
        batch_rows: int = 1_000,
        flush_interval: float = 1.0,
        max_buffer_rows: int = 100_000,
        retry: Optional[RetryPolicy] = None,
        on_error: Optional[Callable[[BatchFailure], Any]] = None,
        exit_timeout: float = 10.0,
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        if max_buffer_rows < 1:
            raise ValueError("max_buffer_rows must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self._client = client
        self._model = model
        self._paths = {
            PREDICTIONS: Client.model_path(model, "/predictions"),
            LABELS: Client.model_path(model, "/labels"),
        }
        self._batch_rows = batch_rows
        self._flush_interval = flush_interval
        self._max_buffer_rows = max_buffer_rows
        self._retry = retry if retry is not None else RetryPolicy(max_retries=None)
        self._on_error = on_error
        self._session = client.new_session()

        self._cond = threading.Condition()
        # Per kind: encoded rows with the time each was logged.
        self._queues: Dict[str, Deque[tuple]] = {k: collections.deque() for k in _KINDS}
        self._enqueued = {k: 0 for k in _KINDS}
        self._resolved = {k: 0 for k in _KINDS}
        self._in_flight = 0
        self._flush_waiters = 0
        self._closing = False
        self._closed = False
        self._abandon = threading.Event()
        self._stats: Dict[str, Any] = {f.name: f.default for f in dataclasses.fields(LoggerStats)}
        self._dropped_unreported = 0
        self._last_drop_warning = 0.0

        self._thread = threading.Thread(target=self._run, name=f"custos-logger-{model}", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        self._atexit = lambda: (ref() is not None and ref().close(timeout=exit_timeout))  # type: ignore[union-attr]
        atexit.register(self._atexit)

    def __repr__(self) -> str:
        return f"Logger(model={self._model!r}, url={self._client.url!r}, buffered={self.stats().buffered})"

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    # the caller's side

    def log_prediction(self, row: Mapping[str, Any]) -> bool:
        """Queues one prediction row (the model's fields by name, with its id and time fields).
        Returns False if it was dropped because the buffer is full. Raises ``ValueError`` at
        once for a value that cannot be sent (an infinite number, an unsupported type)."""
        return self.log_predictions([row]) == 1

    def log_predictions(self, rows: Any) -> int:
        """Queues prediction rows (a DataFrame, one dict, or dicts); returns how many were
        queued (the rest were dropped because the buffer is full)."""
        return self._enqueue(PREDICTIONS, rows)

    def log_label(self, event_id: Any, label: Any) -> bool:
        """Queues the true label of one event."""
        return self.log_labels([{"event_id": event_id, "label": label}]) == 1

    def log_labels(self, rows: Any) -> int:
        """Queues labels (rows ``{"event_id", "label"}``, a DataFrame or dicts)."""
        return self._enqueue(LABELS, rows)

    def _enqueue(self, kind: str, rows: Any) -> int:
        lines = [encoding.encode_row(r) for r in encoding.iter_rows(rows)]
        now = time.monotonic()
        with self._cond:
            room = 0 if self._closing else self._max_buffer_rows - self._buffered_locked()
            taken = lines[: max(0, room)]
            queue = self._queues[kind]
            for line in taken:
                queue.append((line, now))
            self._enqueued[kind] += len(taken)
            dropped = len(lines) - len(taken)
            if dropped:
                self._stats["dropped_rows"] += dropped
                self._dropped_unreported += dropped
            if taken and (len(queue) >= self._batch_rows or len(queue) == len(taken)):
                self._cond.notify_all()
        if dropped:
            self._warn_dropped()
        return len(taken)

    def _warn_dropped(self, force: bool = False) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._dropped_unreported:
                return
            if not force and now - self._last_drop_warning < _DROP_WARNING_INTERVAL:
                return
            count, self._dropped_unreported = self._dropped_unreported, 0
            self._last_drop_warning = now
            total = self._stats["dropped_rows"]
            closing = self._closing
        reason = "the logger is closed" if closing else f"the buffer is full ({self._max_buffer_rows} rows)"
        log.warning(
            "custos: dropped %d rows for model %s because %s; %d dropped in all",
            count,
            self._model,
            reason,
            total,
        )

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything logged so far now, and waits until the server has answered for it
        (stored or refused) or ``timeout`` seconds passed. Returns whether it all got an answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            targets = dict(self._enqueued)
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while not all(self._resolved[k] >= targets[k] for k in _KINDS):
                    if not self._thread.is_alive():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is not None else 1.0)
                return True
            finally:
                self._flush_waiters -= 1

    def close(self, timeout: Optional[float] = 30.0) -> bool:
        """Stops taking rows, sends what is buffered and stops the thread. Waits at most
        ``timeout`` seconds (``None``: until done); what is still unsent then is abandoned, counted
        and reported. Returns whether everything got an answer. Safe to call twice."""
        with self._cond:
            if self._closed:
                return self._stats["abandoned_rows"] == 0 and self._in_flight == 0
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join(5.0)
        with self._cond:
            self._closed = True
            left = sum(len(q) for q in self._queues.values())
            for kind in _KINDS:
                self._resolved[kind] += len(self._queues[kind])
                self._queues[kind].clear()
            self._stats["abandoned_rows"] += left
            self._cond.notify_all()
            stats = self._snapshot_locked()
        atexit.unregister(self._atexit)
        self._session.close()
        self._warn_dropped(force=True)
        if stats.abandoned_rows or stats.failed_rows or stats.buffered:
            log.warning(
                "custos: logger for model %s closed with %d rows not stored (%d refused or out of "
                "retries, %d abandoned unsent, %d still in flight); %d rows sent",
                self._model,
                stats.abandoned_rows + stats.failed_rows + stats.buffered,
                stats.failed_rows,
                stats.abandoned_rows,
                stats.buffered,
                stats.sent_rows,
            )
        return stats.abandoned_rows == 0 and stats.buffered == 0

    def stats(self) -> LoggerStats:
        """A snapshot of the counters."""
        with self._cond:
            return self._snapshot_locked()

    def _buffered_locked(self) -> int:
        return sum(len(q) for q in self._queues.values()) + self._in_flight

    def _snapshot_locked(self) -> LoggerStats:
        values = dict(self._stats)
        values["buffered"] = self._buffered_locked()
        return LoggerStats(**values)

    # ------------------------------------------------------------------------------------------
    # the thread

    def _next_batch_locked(self, now: float):
        """The kind and rows of the batch to send now, or (None, seconds to wait)."""
        urgent = self._closing or self._flush_waiters > 0
        wait: Optional[float] = None
        for kind in _KINDS:
            queue = self._queues[kind]
            if not queue:
                continue
            age = now - queue[0][1]
            if len(queue) >= self._batch_rows or urgent or age >= self._flush_interval:
                n = min(len(queue), self._batch_rows)
                return kind, [queue.popleft()[0] for _ in range(n)]
            due = self._flush_interval - age
            wait = due if wait is None else min(wait, due)
        return None, wait

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._abandon.is_set():
                        return
                    kind, batch = self._next_batch_locked(time.monotonic())
                    if kind is not None:
                        self._in_flight = len(batch)
                        break
                    if self._closing:
                        return
                    self._cond.wait(batch)
            try:
                self._send(kind, batch)
            except Exception:  # never let the thread die with rows in it
                log.exception("custos: unexpected failure in the logger thread; batch counted as failed")
                with self._cond:
                    self._stats["failed_rows"] += len(batch)
                    self._stats["failed_batches"] += 1
                    self._finish_locked(kind, len(batch))

    def _finish_locked(self, kind: str, n: int) -> None:
        self._in_flight = 0
        self._resolved[kind] += n
        self._cond.notify_all()

    def _on_retry(self, error: CustosError, delay: float) -> None:
        with self._cond:
            self._stats["retries"] += 1
            if isinstance(error, RateLimited):
                self._stats["retries_429"] += 1
            elif isinstance(error, ServerError):
                self._stats["retries_5xx"] += 1
            elif isinstance(error, ConnectionFailed):
                self._stats["retries_connection"] += 1
            elif isinstance(error, RequestTimeout):
                self._stats["retries_timeout"] += 1
        log.debug("custos: %s; retrying in %.2f s", error, delay)

    def _send(self, kind: str, batch: List[bytes]) -> None:
        n = len(batch)
        try:
            answer = self._client.send_with_retry(
                "POST",
                self._paths[kind],
                body=encoding.encode_ndjson(batch),
                content_type="application/x-ndjson",
                session=self._session,
                retry=self._retry,
                on_retry=self._on_retry,
                give_up=self._abandon.is_set,
                sleep=self._abandon.wait,
            )
        except CustosError as error:
            with self._cond:
                if self._abandon.is_set():
                    self._stats["abandoned_rows"] += n
                    self._stats["last_error"] = str(error)
                    self._finish_locked(kind, n)
                    return
                self._stats["failed_rows"] += n
                self._stats["failed_batches"] += 1
                self._stats["last_error"] = str(error)
                self._finish_locked(kind, n)
            retried = "" if RetryPolicy.retryable(error) else " (not retried)"
            log.warning("custos: a batch of %d %s rows for model %s was not stored%s: %s", n, kind, self._model, retried, error)
            if self._on_error is not None:
                try:
                    self._on_error(BatchFailure(kind, n, error))
                except Exception:
                    log.exception("custos: the on_error callback failed")
            return
        answer = answer if isinstance(answer, dict) else {}
        with self._cond:
            self._stats["sent_rows"] += n
            self._stats["sent_batches"] += 1
            if kind == PREDICTIONS:
                self._stats["accepted"] += int(answer.get("accepted", 0))
                self._stats["duplicates"] += int(answer.get("duplicates", 0))
            else:
                self._stats["labels_stored"] += int(answer.get("stored", 0))
            self._finish_locked(kind, n)
