//! API errors: a stable code, a message for people, no internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("parameter {name:?}: {message}")]
    BadParameter { name: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// A view statement refused: the message says where and why.
    #[error("{0}")]
    BadSql(String),
    /// A bound on views posted at run time.
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
}

impl ApiError {
    pub fn bad(name: &str, message: impl Into<String>) -> Self {
        ApiError::BadParameter { name: name.to_string(), message: message.into() }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadParameter { .. } => (StatusCode::BAD_REQUEST, "bad_parameter"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::BadSql(_) => (StatusCode::BAD_REQUEST, "bad_sql"),
            ApiError::Limit(_) => (StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        }
    }
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: `bad_parameter`, `bad_sql`, `not_found`, `conflict`,
    /// `unauthorized`, `forbidden`, `limit_exceeded`,
    /// `unsupported_media_type`, `not_ready` or `upstream_unavailable`.
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorBody { error: ErrorDetail { code: code.to_string(), message: self.to_string() } };
        (status, Json(body)).into_response()
    }
}
