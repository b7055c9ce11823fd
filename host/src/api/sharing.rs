//! What an app shares: `collaborators` (other users given access to it) and
//! `domains` (hostnames the router answers for with it), in Heroku's
//! shapes; and `sni-endpoints`, always empty, because renga's router does
//! not terminate TLS.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, created, ok};
use super::extract::{AppRef, Param};
use super::range::{Range, paged};
use super::views::timestamp;
use super::{Api, ApiError};
use crate::app::{App, Collaborator};
use crate::domain::Domain;
use crate::platform::{Platform, PlatformError};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/apps/{app}/collaborators",
            get(collaborators).post(add_collaborator),
        )
        .route(
            "/apps/{app}/collaborators/{who}",
            get(collaborator).delete(remove_collaborator),
        )
        .route("/apps/{app}/domains", get(domains).post(add_domain))
        .route(
            "/apps/{app}/domains/{which}",
            get(domain).delete(remove_domain),
        )
        .route("/apps/{app}/sni-endpoints", get(sni_endpoints))
}

// ---- collaborators -----------------------------------------------------------

fn collaborator_view(app: &App, c: &Collaborator, role: &str) -> Value {
    json!({
        "id": c.id,
        "role": role,
        "permissions": [],
        "created_at": timestamp(c.created_at),
        "updated_at": timestamp(c.created_at),
        "user": { "id": c.user_id, "email": c.user_name, "federated": false },
        "app": { "id": app.id, "name": app.name },
    })
}

/// The owner first (role `owner`, as Heroku lists them), then the others.
fn collaborator_views(platform: &Platform, app: &App, others: &[Collaborator]) -> Vec<Value> {
    let owner = Collaborator {
        id: app.owner.clone(),
        app: app.id.clone(),
        user_id: app.owner.clone(),
        user_name: platform.owner_name(app),
        created_at: app.created_at,
    };
    std::iter::once(collaborator_view(app, &owner, "owner"))
        .chain(
            others
                .iter()
                .map(|c| collaborator_view(app, c, "collaborator")),
        )
        .collect()
}

async fn collaborators(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, .. }: AppRef,
    range: Option<Range>,
) -> ApiResult {
    let (app, others) = platform.collaborators(&user, &name)?;
    paged(collaborator_views(&platform, &app, &others), range)
}

async fn collaborator(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((name, who)): Param<(String, String)>,
) -> ApiResult {
    let (app, others) = platform.collaborators(&user, &name)?;
    collaborator_views(&platform, &app, &others)
        .into_iter()
        .find(|c| {
            c["id"] == who.as_str()
                || c["user"]["email"] == who.as_str()
                || c["user"]["id"] == who.as_str()
        })
        .map_or_else(
            || {
                Err(
                    PlatformError::NotFound(format!("{who} is not a collaborator on {}", app.name))
                        .into(),
                )
            },
            ok,
        )
}

#[derive(serde::Deserialize)]
struct AddCollaborator {
    /// The user's email (renga's user name).
    user: String,
}

async fn add_collaborator(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(name): Param<String>,
    JsonBody(add): JsonBody<AddCollaborator>,
) -> ApiResult {
    let (app, collaborator) = platform.add_collaborator(&user, &name, &add.user).await?;
    created(collaborator_view(&app, &collaborator, "collaborator"))
}

async fn remove_collaborator(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((name, who)): Param<(String, String)>,
) -> ApiResult {
    let (app, collaborator) = platform.remove_collaborator(&user, &name, &who).await?;
    ok(collaborator_view(&app, &collaborator, "collaborator"))
}

// ---- domains -------------------------------------------------------------------

fn domain_view(platform: &Platform, app: &App, d: &Domain) -> Value {
    json!({
        "id": d.id,
        "hostname": d.hostname,
        "kind": "custom",
        "cname": platform.default_hostname(app),
        "status": "none",
        "acm_status": null,
        "acm_status_reason": null,
        "sni_endpoint": null,
        "created_at": timestamp(d.created_at),
        "updated_at": timestamp(d.created_at),
        "app": { "id": app.id, "name": app.name },
    })
}

/// The app's own hostname, `APP.DOMAIN`, listed first as Heroku lists
/// `APP.herokuapp.com` (kind `heroku`, not removable), then its own.
fn domain_views(platform: &Platform, app: &App, domains: &[Domain]) -> Vec<Value> {
    let own = json!({
        "id": app.id,
        "hostname": platform.default_hostname(app),
        "kind": "heroku",
        "cname": null,
        "status": "none",
        "acm_status": null,
        "acm_status_reason": null,
        "sni_endpoint": null,
        "created_at": timestamp(app.created_at),
        "updated_at": timestamp(app.updated_at),
        "app": { "id": app.id, "name": app.name },
    });
    std::iter::once(own)
        .chain(domains.iter().map(|d| domain_view(platform, app, d)))
        .collect()
}

async fn domains(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, .. }: AppRef,
    range: Option<Range>,
) -> ApiResult {
    let (app, domains) = platform.domains(&user, &name)?;
    paged(domain_views(&platform, &app, &domains), range)
}

async fn domain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((name, which)): Param<(String, String)>,
) -> ApiResult {
    let (app, domain) = platform.domain(&user, &name, &which)?;
    ok(domain_view(&platform, &app, &domain))
}

#[derive(serde::Deserialize)]
struct AddDomain {
    hostname: String,
    /// Heroku's certificate for the hostname: renga's router serves plain
    /// HTTP, so only `null` is accepted.
    #[serde(default)]
    sni_endpoint: Option<Value>,
}

async fn add_domain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(name): Param<String>,
    JsonBody(add): JsonBody<AddDomain>,
) -> ApiResult {
    if add.sni_endpoint.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(
            "renga's router serves plain HTTP: terminate TLS in front of it and leave sni_endpoint out",
        ));
    }
    let (app, domain) = platform.add_domain(&user, &name, &add.hostname).await?;
    created(domain_view(&platform, &app, &domain))
}

async fn remove_domain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((name, which)): Param<(String, String)>,
) -> ApiResult {
    let (app, domain) = platform.remove_domain(&user, &name, &which).await?;
    ok(domain_view(&platform, &app, &domain))
}

async fn sni_endpoints(AppRef { .. }: AppRef) -> ApiResult {
    ok(Value::Array(Vec::new()))
}
