//! The one mapping from failures to HTTP responses.
//!
//! Every handler returns `Result<_, ApiError>`. Client errors carry a stable code and a message
//! that never echoes submitted values; server errors carry only the request id, while the cause
//! goes to the log, so internals (SQL, paths, key ids) never reach a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_core::RowError;
use custos_proto::{ErrorBody, ErrorCode, RowErrorBody};

/// Most row errors listed in one response; the total is always given.
pub const MAX_LISTED_ROW_ERRORS: usize = 100;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    rows: Vec<RowError>,
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            rows: Vec::new(),
            retry_after_seconds: None,
        }
    }

    /// 401.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "missing or invalid credentials",
        )
    }

    /// 403.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this credential does not allow this action on this resource",
        )
    }

    /// 403 with a reason the caller can act on (not a scope problem).
    pub fn forbidden_because(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "this method is not allowed on this route",
        )
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 422: an uploaded file that cannot be read.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidFile,
            message,
        )
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// 413 for bodies.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body larger than {limit} bytes"),
        )
    }

    /// 413 for row counts.
    pub fn too_many_rows(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooManyRows,
            format!("a batch may hold at most {limit} rows"),
        )
    }

    /// 422 listing the bad rows; nothing of the batch was written.
    pub fn invalid_rows(rows: Vec<RowError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRows,
            "some rows are invalid; nothing from this batch was written",
        );
        e.rows = rows;
        e
    }

    /// 429.
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many requests; retry later",
        );
        e.retry_after_seconds = Some(retry_after_seconds);
        e
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        );
        e.retry_after_seconds = Some(1);
        e
    }

    /// 500. The cause is logged here, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the request id identifies it in the server log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code (counted by reason on `/metrics`).
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<custos_store::StoreError> for ApiError {
    fn from(e: custos_store::StoreError) -> Self {
        match e {
            custos_store::StoreError::Conflict(what) => ApiError::conflict(what),
            custos_store::StoreError::NotFound => ApiError::not_found("resource"),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let row_error_count = (!self.rows.is_empty()).then_some(self.rows.len());
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            request_id: crate::context::current_request_id(),
            rows: self
                .rows
                .into_iter()
                .take(MAX_LISTED_ROW_ERRORS)
                .map(|r| RowErrorBody {
                    row: r.row,
                    field: r.field,
                    reason: r.reason,
                })
                .collect(),
            row_error_count,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
