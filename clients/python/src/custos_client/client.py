"""The synchronous client: one object per server, holding the URL, the credential and the TLS
settings, with one method per API call.

For logging from a model server, use :class:`custos_client.Logger`, which batches in a
background thread and retries; the ``log_*`` methods here send at once and return the server's
answer.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import ipaddress
import json
import logging
import os
import random
import time
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from . import encoding
from .errors import (
    ApiError,
    ConfigurationError,
    ConnectionFailed,
    CustosError,
    RateLimited,
    RequestTimeout,
    ServerError,
    error_class,
)

__all__ = ["Client", "RetryPolicy", "TOKEN_ENV", "TOKEN_FILE_ENV"]

log = logging.getLogger("custos_client")

#: Environment variable holding the API token.
TOKEN_ENV = "CUSTOS_TOKEN"
#: Environment variable naming a file that holds the API token.
TOKEN_FILE_ENV = "CUSTOS_TOKEN_FILE"

_USER_AGENT = "custos-client-python/0.1.0"
# The server's default [limits] max_batch_rows.
DEFAULT_MAX_BATCH_ROWS = 10_000

TimeLike = Union[str, _dt.datetime, _dt.date]
Rows = Any  # a DataFrame, one dict, or an iterable of dicts


class _Secret:
    """A string that never shows itself in a repr, str or format."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class RetryPolicy:
    """When and how long to wait before sending a request again.

    Retried: 429 (after at least the server's ``Retry-After``), 5xx, 408 (the server's own
    request timeout ran out, under load) and failures to connect or to read an answer. Never
    retried: every other 4xx (the request itself is wrong; sending it again cannot help). The
    wait grows exponentially from ``base`` seconds up to ``cap``, with full jitter (a random
    wait between zero and that bound), so that many clients refused at once do not come back
    at once. ``max_retries`` is how many times one request is sent again
    (``None``: until the caller gives up, e.g. a :class:`Logger` being closed).
    """

    def __init__(self, max_retries: Optional[int] = 8, base: float = 0.25, cap: float = 30.0) -> None:
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be None or at least 0")
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.max_retries = max_retries
        self.base = base
        self.cap = cap

    def __repr__(self) -> str:
        return f"RetryPolicy(max_retries={self.max_retries!r}, base={self.base!r}, cap={self.cap!r})"

    @staticmethod
    def retryable(error: CustosError) -> bool:
        """Whether sending the same request again may succeed."""
        return isinstance(error, (RateLimited, ServerError, RequestTimeout, ConnectionFailed))

    def delay(self, attempt: int, error: CustosError) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based) after ``error``."""
        bound = min(self.cap, self.base * (2 ** min(attempt - 1, 30)))
        wait = random.uniform(0, bound)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            # The server said when the request would fit: never earlier, plus a little jitter.
            wait = max(wait, retry_after + random.uniform(0, min(1.0, self.base)))
        return wait


def _is_loopback(host: str) -> bool:
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return bare.lower() == "localhost"


def _check_url(url: str, allow_insecure_http: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"the server URL must start with http:// or https://, not {parts.scheme or '(none)'}://")
    if not parts.hostname:
        raise ConfigurationError("the server URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("the server URL must not hold credentials; pass token= or token_file=")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        if not allow_insecure_http:
            raise ConfigurationError(
                f"refusing to send the API token over plain http to {parts.hostname}: use https://, "
                "or http:// only to a loopback address (127.0.0.1, ::1, localhost), or pass "
                "allow_insecure_http=True if TLS really ends in front of this client"
            )
        warnings.warn(
            f"sending the API token over plain http to {parts.hostname} (allow_insecure_http=True)",
            stacklevel=3,
        )
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _check_token(text: str, source: str) -> str:
    token = text.strip()
    if not token:
        raise ConfigurationError(f"{source} is empty")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ConfigurationError(f"{source} does not hold a token (unexpected spaces or control characters)")
    return token


def _read_token_file(path: Union[str, os.PathLike]) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigurationError(f"cannot read the token file {os.fspath(path)}: {e.strerror}") from None
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            log.warning("the token file %s can be read by other users (mode %o)", os.fspath(path), mode & 0o777)
    except OSError:
        pass
    return _check_token(text, f"the token file {os.fspath(path)}")


def _resolve_token(token: Optional[str], token_file: Optional[Union[str, os.PathLike]]) -> Optional[str]:
    if token is not None and token_file is not None:
        raise ConfigurationError("pass token= or token_file=, not both")
    if token is not None:
        return _check_token(token, "the token")
    if token_file is not None:
        return _read_token_file(token_file)
    if os.environ.get(TOKEN_ENV):
        return _check_token(os.environ[TOKEN_ENV], TOKEN_ENV)
    if os.environ.get(TOKEN_FILE_ENV):
        return _read_token_file(os.environ[TOKEN_FILE_ENV])
    return None


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())


class Client:
    """A Custos server.

    ``url`` is the server's base URL (``https://custos.example.org``). The API token is
    ``token``, else the contents of ``token_file``, else the environment variable
    ``CUSTOS_TOKEN``, else the file named by ``CUSTOS_TOKEN_FILE``. Plain ``http://`` is refused
    unless the host is a loopback address (the token would cross the network in clear), or
    ``allow_insecure_http=True``. ``ca_file`` is the trust anchor for the server's certificate
    (system roots by default); ``client_cert`` (and ``client_key``, if the key is in its own
    file) is a client certificate for mutual TLS. ``timeout`` is (connect, read) seconds.

    The token is never shown: not in ``repr``, exceptions or log lines.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        token_file: Optional[Union[str, os.PathLike]] = None,
        *,
        allow_insecure_http: bool = False,
        ca_file: Optional[Union[str, os.PathLike]] = None,
        client_cert: Optional[Union[str, os.PathLike]] = None,
        client_key: Optional[Union[str, os.PathLike]] = None,
        timeout: Union[float, Tuple[float, float]] = (10.0, 60.0),
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self._url = _check_url(url, allow_insecure_http)
        secret = _resolve_token(token, token_file)
        self._token = _Secret(secret) if secret is not None else None
        if client_key is not None and client_cert is None:
            raise ConfigurationError("client_key needs client_cert")
        for label, path in (("ca_file", ca_file), ("client_cert", client_cert), ("client_key", client_key)):
            if path is not None and not os.path.isfile(path):
                raise ConfigurationError(f"{label} {os.fspath(path)} is not a readable file")
        self._verify: Union[bool, str] = os.fspath(ca_file) if ca_file is not None else True
        if client_cert is None:
            self._cert: Optional[Union[str, Tuple[str, str]]] = None
        elif client_key is None:
            self._cert = os.fspath(client_cert)
        else:
            self._cert = (os.fspath(client_cert), os.fspath(client_key))
        self._timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._session = self.new_session()

    # ------------------------------------------------------------------------------------------
    # plumbing

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._url

    @property
    def has_token(self) -> bool:
        """Whether a token is configured (it is never shown)."""
        return self._token is not None

    def __repr__(self) -> str:
        token = "set" if self._token is not None else "none"
        mtls = ", client_cert=set" if self._cert is not None else ""
        return f"Client(url={self._url!r}, token={token}{mtls})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection pool."""
        self._session.close()

    def new_session(self) -> requests.Session:
        """A ``requests.Session`` set up like this client's (the :class:`Logger` uses its own,
        since sessions are not meant to be shared between threads)."""
        session = requests.Session()
        session.verify = self._verify
        session.cert = self._cert
        session.headers["User-Agent"] = _USER_AGENT
        if self._token is not None:
            session.headers["Authorization"] = "Bearer " + self._token.reveal()
        if self._url.startswith("http://"):
            # Plain http goes to a loopback address only: a proxy from the environment would
            # carry the token across the network in clear.
            session.trust_env = False
        return session

    def _scrub(self, text: str) -> str:
        if self._token is not None:
            text = text.replace(self._token.reveal(), "<token>")
        return text

    def _endpoint(self, path: str) -> str:
        return self._url + path

    @staticmethod
    def model_path(model: str, tail: str = "") -> str:
        return f"/api/v1/models/{quote(model, safe='')}{tail}"

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Dict[str, Any]] = None,
        body: Optional[bytes] = None,
        json_body: Any = None,
        content_type: Optional[str] = None,
        session: Optional[requests.Session] = None,
        timeout: Optional[Union[float, Tuple[float, float]]] = None,
    ) -> Any:
        """One request, no retry. Returns the parsed JSON answer (or ``None`` for an empty
        one); raises :class:`ApiError` subclasses for error statuses and
        :class:`ConnectionFailed` when no answer arrived."""
        headers = {"Accept": "application/json"}
        if json_body is not None:
            body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            content_type = "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = self._endpoint(path)
        try:
            response = (session or self._session).request(
                method,
                url,
                params={k: v for k, v in (params or {}).items() if v is not None},
                data=body,
                headers=headers,
                timeout=timeout if timeout is not None else self._timeout,
                allow_redirects=False,
                # Per request, because requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a
                # session's verify; an explicit ca_file must win (True still honours them).
                verify=self._verify,
                cert=self._cert,
            )
        except requests.exceptions.SSLError as e:
            raise ConnectionFailed(self._scrub(f"TLS failure talking to {self._url}: {e}")) from None
        except requests.exceptions.RequestException as e:
            raise ConnectionFailed(self._scrub(f"no answer from {self._url} ({type(e).__name__}): {e}")) from None
        return self._answer(response)

    def _answer(self, response: requests.Response) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                return response.text
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            raise ApiError(status, f"the server answered with a redirect to {where}; use the final URL")
        message, extra = f"HTTP {status}", {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "message" in body:
            message = str(body.get("message"))
            extra = {
                "code": body.get("code"),
                "request_id": body.get("request_id"),
                "rows": body.get("rows") or [],
                "row_error_count": body.get("row_error_count"),
            }
        elif response.text:
            message = response.text[:500]
        raise error_class(status)(
            status,
            self._scrub(message),
            retry_after=_retry_after(response.headers.get("Retry-After")),
            **extra,
        )

    def send_with_retry(
        self,
        method: str,
        path: str,
        *,
        retry: Optional[RetryPolicy] = None,
        on_retry: Optional[Callable[[CustosError, float], None]] = None,
        give_up: Optional[Callable[[], bool]] = None,
        sleep: Callable[[float], Any] = time.sleep,
        **kwargs: Any,
    ) -> Any:
        """:meth:`send`, sending again after retryable failures (see :class:`RetryPolicy`).
        ``on_retry(error, delay)`` is called before each wait; ``give_up()`` returning true stops
        retrying (the last error is raised). ``sleep`` may return true to stop waiting early."""
        policy = retry or self.retry
        attempt = 0
        while True:
            try:
                return self.send(method, path, **kwargs)
            except CustosError as error:
                attempt += 1
                if not policy.retryable(error):
                    raise
                if policy.max_retries is not None and attempt > policy.max_retries:
                    raise
                if give_up is not None and give_up():
                    raise
                delay = policy.delay(attempt, error)
                if on_retry is not None:
                    on_retry(error, delay)
                log.debug("retrying %s %s in %.2f s after: %s", method, path, delay, error)
                if sleep(delay):
                    raise

    # ------------------------------------------------------------------------------------------
    # the API

    def health(self) -> Dict[str, Any]:
        """``GET /healthz``."""
        return self.send("GET", "/healthz")

    def whoami(self) -> Dict[str, Any]:
        """The caller as the server sees it: actor, kind, grants."""
        return self.send("GET", "/api/v1/whoami")

    def list_models(self) -> List[Dict[str, Any]]:
        """The models this credential may read."""
        return self.send("GET", "/api/v1/models")["models"]

    def get_model(self, model: str) -> Dict[str, Any]:
        """One model: name, created_at, spec."""
        return self.send("GET", self.model_path(model))

    def create_model(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        """Registers a model (``spec`` as in the README's API section)."""
        return self.send("POST", "/api/v1/models", json_body=spec)

    def create_token(
        self, description: str, scopes: Iterable[Union[Tuple[str, str], Dict[str, str]]], expires_in_days: Optional[int] = None
    ) -> Dict[str, Any]:
        """Creates an API token; ``scopes`` are ``(action, model)`` pairs or dicts. The answer's
        ``secret`` is shown this once."""
        body: Dict[str, Any] = {
            "description": description,
            "scopes": [s if isinstance(s, dict) else {"action": s[0], "model": s[1]} for s in scopes],
        }
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self.send("POST", "/api/v1/tokens", json_body=body)

    def _post_rows(self, path: str, rows: Rows, batch_rows: int, retry: Optional[RetryPolicy]) -> List[Dict[str, Any]]:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        answers = []
        lines: List[bytes] = []
        for row in encoding.iter_rows(rows):
            lines.append(encoding.encode_row(row))
            if len(lines) >= batch_rows:
                answers.append(self._post_lines(path, lines, retry))
                lines = []
        if lines:
            answers.append(self._post_lines(path, lines, retry))
        return answers

    def _post_lines(self, path: str, lines: List[bytes], retry: Optional[RetryPolicy]) -> Dict[str, Any]:
        return self.send_with_retry(
            "POST", path, body=encoding.encode_ndjson(lines), content_type="application/x-ndjson", retry=retry
        )

    def log_predictions(
        self, model: str, rows: Rows, *, batch_rows: int = 5_000, retry: Optional[RetryPolicy] = None
    ) -> Dict[str, int]:
        """Sends prediction rows (a DataFrame, one dict or dicts) now, in batches of
        ``batch_rows``, retrying 429/5xx/connection failures. Returns the summed answer:
        ``{"accepted", "duplicates", "batches"}``. A batch the server refuses raises (earlier
        batches stay stored); rows are the model's fields by name, with its id and time fields."""
        answers = self._post_rows(self.model_path(model, "/predictions"), rows, batch_rows, retry)
        return {
            "accepted": sum(a.get("accepted", 0) for a in answers),
            "duplicates": sum(a.get("duplicates", 0) for a in answers),
            "pii_redacted": sum(a.get("pii_redacted", 0) for a in answers),
            "batches": len(answers),
        }

    def log_labels(
        self, model: str, rows: Rows, *, batch_rows: int = 5_000, retry: Optional[RetryPolicy] = None
    ) -> Dict[str, int]:
        """Sends ground-truth labels (rows ``{"event_id": ..., "label": ...}``) now. Returns
        ``{"stored", "batches"}``."""
        answers = self._post_rows(self.model_path(model, "/labels"), rows, batch_rows, retry)
        return {"stored": sum(a.get("stored", 0) for a in answers), "batches": len(answers)}

    def upload_reference(
        self,
        model: str,
        data: Any,
        *,
        label_field: Optional[str] = None,
        name: Optional[str] = None,
        format: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Uploads a reference data set (usually the training data) for ``model``.

        ``data`` is a DataFrame or dicts (sent as NDJSON, with the conversions of
        :mod:`custos_client.encoding`), or the path of a ``.csv``, ``.ndjson``/``.jsonl`` or
        ``.parquet`` file (sent as it is; ``format`` overrides the extension). ``label_field``
        names the column holding true labels, if any. Returns the stored reference's
        description (``id``, ``rows``, ``sha256``, ...). Not retried: a reference upload is not
        idempotent (each creates a new reference set)."""
        params = {"label_field": label_field, "name": name}
        if isinstance(data, (str, os.PathLike)):
            path = os.fspath(data)
            fmt = format or os.path.splitext(path)[1].lstrip(".").lower()
            content_types = {
                "csv": "text/csv",
                "ndjson": "application/x-ndjson",
                "jsonl": "application/x-ndjson",
                "parquet": "application/vnd.apache.parquet",
            }
            if fmt not in content_types:
                raise ConfigurationError(f"cannot tell the format of {path}; pass format='csv', 'ndjson' or 'parquet'")
            with open(path, "rb") as f:
                body = f.read()
            content_type = content_types[fmt]
        else:
            body = encoding.encode_ndjson(encoding.encode_row(r) for r in encoding.iter_rows(data))
            content_type = "application/x-ndjson"
        return self.send(
            "POST", self.model_path(model, "/reference"), params=params, body=body, content_type=content_type
        )

    def list_references(self, model: str) -> List[Dict[str, Any]]:
        """The model's reference sets, newest first."""
        return self.send("GET", self.model_path(model, "/reference"))["references"]

    def drift(
        self,
        model: str,
        current_start: TimeLike,
        current_end: TimeLike,
        *,
        reference: Optional[str] = None,
        reference_start: Optional[TimeLike] = None,
        reference_end: Optional[TimeLike] = None,
        reference_trailing_hours: Optional[int] = None,
        chunk: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Per-feature drift of ``[current_start, current_end)`` against the newest uploaded
        reference, or the one named (``reference`` id, a window, or trailing hours). ``chunk``:
        ``hour``, ``day``, ``week`` or ``rows:N`` for per-chunk results too."""
        params = {
            "current_start": encoding.rfc3339(current_start),
            "current_end": encoding.rfc3339(current_end),
            "reference": reference,
            "reference_start": _opt_time(reference_start),
            "reference_end": _opt_time(reference_end),
            "reference_trailing_hours": reference_trailing_hours,
            "chunk": chunk,
        }
        return self.send("GET", self.model_path(model, "/drift"), params=params)

    def performance(
        self,
        model: str,
        start: TimeLike,
        end: TimeLike,
        *,
        chunk: Optional[str] = None,
        segment_by: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Realized performance (from labels) and, for binary scorers with a labelled reference,
        CBPE estimates, for predictions with event times in ``[start, end)``."""
        params = {"start": encoding.rfc3339(start), "end": encoding.rfc3339(end), "chunk": chunk, "segment_by": segment_by}
        return self.send("GET", self.model_path(model, "/performance"), params=params)

    def quality(
        self,
        model: str,
        start: TimeLike,
        end: TimeLike,
        *,
        reference: Optional[str] = None,
        reference_start: Optional[TimeLike] = None,
        reference_end: Optional[TimeLike] = None,
        reference_trailing_hours: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Data quality of ``[start, end)``: missing and invalid shares, out-of-range values,
        volume and freshness."""
        params = {
            "start": encoding.rfc3339(start),
            "end": encoding.rfc3339(end),
            "reference": reference,
            "reference_start": _opt_time(reference_start),
            "reference_end": _opt_time(reference_end),
            "reference_trailing_hours": reference_trailing_hours,
        }
        return self.send("GET", self.model_path(model, "/quality"), params=params)

    def volume(self, model: str, start: Optional[TimeLike] = None, end: Optional[TimeLike] = None) -> Dict[str, Any]:
        """Rows stored per hour of event time (default: the last 7 days)."""
        params = {"start": _opt_time(start), "end": _opt_time(end)}
        return self.send("GET", self.model_path(model, "/volume"), params=params)

    def row_count(self, model: str, start: TimeLike, end: TimeLike) -> int:
        """How many prediction rows the server holds with event times in ``[start, end)``
        (whole hours), from :meth:`volume`."""
        return sum(p["rows"] for p in self.volume(model, start, end)["points"])


def _opt_time(value: Optional[TimeLike]) -> Optional[str]:
    return None if value is None else encoding.rfc3339(value)
