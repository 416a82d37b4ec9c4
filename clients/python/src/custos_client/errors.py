"""The exceptions of the Custos client.

Every error the client raises is a :class:`CustosError`. Errors from an answer of the server
carry its HTTP ``status``, its stable ``code`` (``invalid_rows``, ``rate_limited``, ...), its
``message`` and, for refused batches, the ``rows`` it listed (row index, field, reason). The
server's messages never contain submitted values, and the client never puts its token into an
exception: messages are built from the server's answer and the URL only, and any text taken from
a lower layer is scrubbed of the token before it is used.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "CustosError",
    "ConfigurationError",
    "ConnectionFailed",
    "ApiError",
    "BadRequest",
    "AuthenticationFailed",
    "PermissionDenied",
    "NotFound",
    "RequestTimeout",
    "Conflict",
    "PayloadTooLarge",
    "InvalidRows",
    "RateLimited",
    "ServerError",
]

# How many of the server's row problems an exception message shows (all are in ``.rows``).
_ROWS_IN_MESSAGE = 5


class CustosError(Exception):
    """Base class of every error the client raises."""

    status: Optional[int] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigurationError(CustosError, ValueError):
    """The client was set up wrongly (URL, token, TLS files); nothing was sent."""


class ConnectionFailed(CustosError):
    """The server could not be reached, or the connection broke before an answer arrived.

    A batch whose answer never arrived may or may not have been stored; sending it again is safe
    for predictions with event ids (the server skips rows it already has and counts them as
    duplicates).
    """


class ApiError(CustosError):
    """The server answered with an HTTP error status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
        rows: Optional[List[Dict[str, Any]]] = None,
        row_error_count: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        self.status = status
        self.code = code
        self.server_message = message
        self.request_id = request_id
        self.rows: List[Dict[str, Any]] = list(rows or [])
        self.row_error_count = row_error_count
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"HTTP {self.status}"
        if self.code:
            head += f" {self.code}"
        text = f"{head}: {self.server_message}"
        if self.rows:
            shown = [_row_text(r) for r in self.rows[:_ROWS_IN_MESSAGE]]
            total = self.row_error_count or len(self.rows)
            text += "; " + "; ".join(shown)
            if total > len(shown):
                text += f"; and {total - len(shown)} more row problem(s)"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


def _row_text(row: Dict[str, Any]) -> str:
    field = row.get("field")
    where = f"row {row.get('row')}"
    if field is not None:
        where += f" field {field!r}"
    return f"{where}: {row.get('reason')}"


class BadRequest(ApiError):
    """400: the request was malformed (body, parameters, content type)."""


class AuthenticationFailed(ApiError):
    """401: no credential, or one the server does not accept (wrong, expired, revoked)."""


class PermissionDenied(ApiError):
    """403: the credential does not allow this action on this model."""


class NotFound(ApiError):
    """404: no such model (or route, or resource)."""


class RequestTimeout(ApiError):
    """408: the server gave up on the request after its ``request_timeout_seconds`` (an
    overloaded server, usually). Nothing is wrong with the request: it may be sent again."""


class Conflict(ApiError):
    """409: the resource exists already, or concurrent batches carried the same event ids."""


class PayloadTooLarge(ApiError):
    """413: the body or the batch is larger than the server accepts (``[limits]``)."""


class InvalidRows(ApiError):
    """422: rows of the batch (or the reference file) are invalid; nothing of it was stored.

    ``rows`` lists the problems (at most the first 100) as ``{"row", "field", "reason"}`` with
    0-based row indexes within the batch; ``row_error_count`` is how many there were in all.
    """


class RateLimited(ApiError):
    """429: too many requests; ``retry_after`` says how many seconds to wait."""


class ServerError(ApiError):
    """5xx: the server failed or is unavailable; the request may be retried later."""


_BY_STATUS = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRows,
    429: RateLimited,
}


def error_class(status: int) -> type:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)
