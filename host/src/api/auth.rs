//! Who is asking: the layer that checks every request's token before its
//! route reads anything, and the extractors that hand its answer to handlers.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::{Api, ApiError};
use crate::auth::User;
use crate::platform::PlatformError;

/// The authenticated user (put there by [`authenticate`]).
#[derive(Clone)]
pub(super) struct Caller(pub User);

/// The token the caller authenticated with; git's hook builds with it.
#[derive(Clone)]
pub(super) struct Token(pub String);

/// Answers 401 unless the request carries a valid token; otherwise records
/// the caller and the token in the request's extensions.
pub(super) async fn authenticate(
    State(api): State<Api>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = token(request.headers()).unwrap_or_default();
    let user = api
        .platform
        .auth()
        .authenticate(&token)
        .map_err(PlatformError::from)?
        .ok_or_else(|| {
            let bearer = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer "));
            if bearer {
                ApiError::token_refused()
            } else {
                ApiError::unauthorized()
            }
        })?;
    request.extensions_mut().insert(Caller(user));
    request.extensions_mut().insert(Token(token));
    Ok(next.run(request).await)
}

/// The token from `Authorization: Bearer TOKEN`, or from basic auth's
/// password (what git sends).
fn token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.1.to_string())
}

/// A route outside the `authenticate` layer has no caller: 401.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Token, ApiError> {
        parts
            .extensions
            .get::<Token>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_come_as_bearer_or_as_basic_auths_password() {
        assert_eq!(token(&headers("Bearer abc ")).as_deref(), Some("abc"));
        // `git:abc`, as git sends it.
        assert_eq!(
            token(&headers("Basic Z2l0OmFiYw==")).as_deref(),
            Some("abc")
        );
        assert_eq!(token(&headers("Basic not-base64")), None);
        assert_eq!(token(&headers("Token abc")), None);
        assert_eq!(token(&HeaderMap::new()), None);
    }
}
