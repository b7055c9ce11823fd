//! Refusals: a status, Heroku's error id and a message, answered as
//! `{"id", "message"}`. Platform errors and the rejections of axum's own
//! extractors become one of these, so no answer is ever axum's plain text.

use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::body::json_response;
use crate::platform::PlatformError;

/// A refusal: status, Heroku error id, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    id: &'static str,
    message: String,
    /// `WWW-Authenticate`, for a 401.
    challenge: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        id: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
            challenge: None,
        }
    }

    /// No valid credentials. The Basic challenge is what makes git ask its
    /// credential helper for them.
    pub(super) fn unauthorized() -> ApiError {
        ApiError {
            challenge: Some("Basic realm=\"renga\""),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid credentials provided: send `Authorization: Bearer TOKEN`",
            )
        }
    }

    /// A Bearer token that is not (or no longer) valid. Its challenge is a
    /// Bearer one: a Basic challenge would make a browser (the dashboard's
    /// `fetch`) stop and ask for a user name and password.
    pub(super) fn token_refused() -> ApiError {
        ApiError {
            challenge: Some("Bearer realm=\"renga\", error=\"invalid_token\""),
            ..ApiError::unauthorized()
        }
    }

    pub(super) fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No such route: {what}"),
        )
    }

    pub(super) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }

    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            &json!({ "id": self.id, "message": self.message }),
        );
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> ApiError {
        match e {
            PlatformError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            PlatformError::Invalid(m) => ApiError::invalid(m),
            PlatformError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            PlatformError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            other => {
                tracing::error!(error = %other, "API request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    other.to_string(),
                )
            }
        }
    }
}

/// A path parameter that is not text once percent-decoded.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<RawPathParamsRejection> for ApiError {
    fn from(rejection: RawPathParamsRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}
