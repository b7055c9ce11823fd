//! The caller and the server: `account`, `users` (admin only),
//! `oauth/authorizations` (the caller's tokens) and `server/stats` (admin
//! only).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use http::StatusCode;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, JsonOrDefault, created, ok};
use super::extract::Param;
use super::{Api, ApiError, stats, views};
use crate::platform::{Platform, PlatformError};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/account", get(account))
        .route("/users", post(create_user))
        .route("/server/stats", get(server_stats))
        .route("/oauth/authorizations", get(list_tokens).post(create_token))
        .route("/oauth/authorizations/{id}", delete(revoke_token))
}

async fn account(Caller(user): Caller) -> ApiResult {
    ok(json!({ "id": user.id, "email": user.name, "name": user.name, "admin": user.admin }))
}

#[derive(serde::Deserialize)]
struct CreateUser {
    name: String,
}

async fn create_user(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonBody(create): JsonBody<CreateUser>,
) -> ApiResult {
    if !user.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only the admin can create users",
        ));
    }
    if !crate::auth::valid_user_name(&create.name) {
        return Err(ApiError::invalid(format!(
            "invalid user name {:?}: use letters, digits, `.`, `-`, `_`, `+` or `@`",
            create.name
        )));
    }
    let token = crate::auth::new_token();
    let created_user = platform
        .auth()
        .create_user(&create.name, false, &token)
        .map_err(PlatformError::from)?
        .ok_or_else(|| ApiError::invalid(format!("User {} already exists", create.name)))?;
    platform.flush().await?;
    created(
        json!({ "id": created_user.id, "email": created_user.name, "name": created_user.name, "token": token }),
    )
}

async fn server_stats(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    if !user.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only the admin can read the server's figures",
        ));
    }
    ok(stats::server(&platform))
}

async fn list_tokens(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    ok(Value::Array(
        platform
            .auth()
            .tokens(&user)
            .map_err(PlatformError::from)?
            .iter()
            .map(views::authorization)
            .collect(),
    ))
}

#[derive(serde::Deserialize, Default)]
struct CreateToken {
    description: Option<String>,
}

async fn create_token(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonOrDefault(create): JsonOrDefault<CreateToken>,
) -> ApiResult {
    let description = create.description.unwrap_or_default();
    if description.len() > 200 || description.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "a token's description is one line of at most 200 characters",
        ));
    }
    let (token, info) = platform
        .auth()
        .create_token(&user, &description)
        .map_err(PlatformError::from)?;
    platform.flush().await?;
    let mut view = views::authorization(&info);
    view["access_token"] = json!({ "token": token });
    created(view)
}

async fn revoke_token(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(id): Param<String>,
) -> ApiResult {
    let info = platform
        .auth()
        .tokens(&user)
        .map_err(PlatformError::from)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("Couldn't find that authorization: {id}"),
            )
        })?;
    platform
        .auth()
        .revoke(&user, &id)
        .map_err(PlatformError::from)?;
    platform.flush().await?;
    ok(views::authorization(&info))
}
