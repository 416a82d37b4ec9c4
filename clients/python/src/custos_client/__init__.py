"""Python client for Custos, the self-hosted ML monitoring server.

>>> from custos_client import Client, Logger
>>> client = Client("https://custos.example.org", token_file="/run/secrets/custos")
>>> with Logger(client, "fraud-v3") as logger:
...     logger.log_prediction({"event_id": "e1", "ts": "2026-11-26T10:00:00Z",
...                            "amount": 12.5, "country": "DE", "score": 0.12})
"""

from .client import TOKEN_ENV, TOKEN_FILE_ENV, Client, RetryPolicy
from .errors import (
    ApiError,
    AuthenticationFailed,
    BadRequest,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    CustosError,
    InvalidRows,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ServerError,
)
from .logger import BatchFailure, Logger, LoggerStats

__version__ = "0.1.0"

__all__ = [
    "Client",
    "RetryPolicy",
    "Logger",
    "LoggerStats",
    "BatchFailure",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "CustosError",
    "ConfigurationError",
    "ConnectionFailed",
    "ApiError",
    "BadRequest",
    "AuthenticationFailed",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "InvalidRows",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
]
