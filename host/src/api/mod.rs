//! api: the control plane over HTTP, in the shapes of Heroku's Platform API v3.
//!
//! Owns request parsing (paths, bearer tokens, JSON bodies with size limits)
//! and the mapping of refusals to statuses and `{"id", "message"}` bodies.
//! Every route needs a token; a request without a valid one is answered 401
//! before anything else is read. It never changes a record itself: each route
//! calls one platform operation.

mod addons;
mod body;
mod git;
mod run;
mod stats;
mod views;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::User;
use crate::config::ConfigKey;
use crate::platform::{Platform, PlatformError};

use body::{
    created, json_response, ok, read_json, read_json_or_default, receive_blob, stream_build_output,
    stream_logs,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ApiBody = UnsyncBoxBody<Bytes, BoxError>;

/// A refusal: status, Heroku error id, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    id: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
        }
    }

    fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided: send `Authorization: Bearer TOKEN`",
        )
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No such route: {what}"),
        )
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> ApiError {
        match e {
            PlatformError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            PlatformError::Invalid(m) => ApiError::invalid(m),
            PlatformError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
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

type ApiResult = Result<Response<ApiBody>, ApiError>;

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    platform: Arc<Platform>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let platform = platform.clone();
                let service = hyper::service::service_fn(move |request| {
                    let platform = platform.clone();
                    async move { Ok::<_, Infallible>(handle(platform, request).await) }
                });
                let connection = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // Log tails never end by themselves; give other requests a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

async fn handle(platform: Arc<Platform>, request: Request<Incoming>) -> Response<ApiBody> {
    match route(&platform, request).await {
        Ok(response) => response,
        Err(e) => {
            let mut response =
                json_response(e.status, &json!({ "id": e.id, "message": e.message }));
            if e.status == StatusCode::UNAUTHORIZED {
                // git asks for credentials only when told how.
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"renga\""),
                );
            }
            response
        }
    }
}

/// The token from `Authorization: Bearer TOKEN`, or from basic auth's
/// password (what git sends).
fn token(request: &Request<Incoming>) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
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

async fn route(platform: &Arc<Platform>, request: Request<Incoming>) -> ApiResult {
    let token = token(&request).unwrap_or_default();
    let user = platform
        .auth()
        .authenticate(&token)
        .map_err(PlatformError::from)?
        .ok_or_else(ApiError::unauthorized)?;

    let base = platform.public_url().to_string();
    if request.uri().path().starts_with("/git/") {
        return git::serve(platform, &user, &token, request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let query = request.uri().query().unwrap_or("").to_string();
    if let (&Method::POST, ["apps", app, "dynos"]) = (&method, segments.as_slice()) {
        return run::create(platform, &user, app, request).await;
    }
    let body = request.into_body();
    if addons::owns(&segments) {
        return addons::route(platform, &user, &method, &segments, &query, body).await;
    }

    match (&method, segments.as_slice()) {
        (&Method::GET, ["account"]) => {
            ok(json!({ "id": user.id, "email": user.name, "name": user.name, "admin": user.admin }))
        }
        (&Method::POST, ["users"]) => create_user(platform, &user, body).await,
        (&Method::GET, ["server", "stats"]) => {
            if !user.admin {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Only the admin can read the server's figures",
                ));
            }
            ok(stats::server(platform))
        }

        (&Method::GET, ["oauth", "authorizations"]) => ok(Value::Array(
            platform
                .auth()
                .tokens(&user)
                .map_err(PlatformError::from)?
                .iter()
                .map(views::authorization)
                .collect(),
        )),
        (&Method::POST, ["oauth", "authorizations"]) => {
            #[derive(serde::Deserialize, Default)]
            struct Create {
                description: Option<String>,
            }
            let create: Create = read_json_or_default(body).await?;
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
        (&Method::DELETE, ["oauth", "authorizations", id]) => {
            let info = platform
                .auth()
                .tokens(&user)
                .map_err(PlatformError::from)?
                .into_iter()
                .find(|t| t.id == *id)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("Couldn't find that authorization: {id}"),
                    )
                })?;
            platform
                .auth()
                .revoke(&user, id)
                .map_err(PlatformError::from)?;
            platform.flush().await?;
            ok(views::authorization(&info))
        }

        (&Method::GET, ["apps"]) => {
            let apps: Vec<Value> = platform
                .list_apps(&user)?
                .iter()
                .map(|a| views::app(platform, a, &user.name, &base))
                .collect();
            ok(Value::Array(apps))
        }
        (&Method::POST, ["apps"]) => {
            #[derive(serde::Deserialize, Default)]
            struct Create {
                name: Option<String>,
            }
            let create: Create = read_json_or_default(body).await?;
            let app = platform.create_app(&user, create.name.as_deref()).await?;
            created(views::app(platform, &app, &user.name, &base))
        }
        (&Method::GET, ["apps", app]) => {
            let app = platform.app(&user, app)?;
            ok(views::app(platform, &app, &user.name, &base))
        }
        (&Method::PATCH, ["apps", app]) => {
            #[derive(serde::Deserialize)]
            struct Update {
                maintenance: Option<bool>,
                /// Seconds without a request before the web dynos are
                /// unloaded: 0 never, `"default"` the server's setting.
                idle_after: Option<Value>,
            }
            let update: Update = read_json(body).await?;
            let mut found = platform.app(&user, app)?;
            if let Some(on) = update.maintenance {
                found = platform.set_maintenance(&user, app, on).await?;
            }
            if let Some(idle) = update.idle_after {
                let seconds = idle_after(&idle)?;
                found = platform.set_idle_after(&user, app, seconds).await?;
            }
            ok(views::app(platform, &found, &user.name, &base))
        }
        (&Method::DELETE, ["apps", app]) => {
            let app = platform.delete_app(&user, app).await?;
            ok(views::app(platform, &app, &user.name, &base))
        }

        (&Method::GET, ["apps", app, "config-vars"]) => {
            ok(serde_json::to_value(platform.config_vars(&user, app)?).unwrap_or_default())
        }
        (&Method::PATCH, ["apps", app, "config-vars"]) => {
            let raw: BTreeMap<String, Option<Value>> = read_json(body).await?;
            let changes = config_changes(raw)?;
            ok(
                serde_json::to_value(platform.update_config(&user, app, changes).await?)
                    .unwrap_or_default(),
            )
        }

        (&Method::GET, ["apps", app, "releases"]) => {
            let found = platform.app(&user, app)?;
            let releases = platform.releases(&user, app)?;
            let current = releases.last().map_or(0, |r| r.version);
            ok(Value::Array(
                releases
                    .iter()
                    .map(|r| views::release(&found, r, current))
                    .collect(),
            ))
        }
        (&Method::GET, ["apps", app, "releases", which]) => {
            let found = platform.app(&user, app)?;
            let release = platform.find_release(&user, app, which)?;
            let current = platform.current_release(&found)?.version;
            ok(views::release(&found, &release, current))
        }
        (&Method::POST, ["apps", app, "releases"]) => {
            #[derive(serde::Deserialize)]
            struct Create {
                slug: Option<String>,
                release: Option<String>,
                description: Option<String>,
            }
            let create: Create = read_json(body).await?;
            let found = platform.app(&user, app)?;
            let release = match (create.slug, create.release) {
                (Some(slug), None) => {
                    platform
                        .deploy(&user, app, &slug, create.description)
                        .await?
                }
                (None, Some(target)) => platform.rollback(&user, app, &target).await?,
                _ => {
                    return Err(ApiError::invalid(
                        "give either `slug` (to deploy) or `release` (to roll back)",
                    ));
                }
            };
            created(views::release(&found, &release, release.version))
        }

        (&Method::POST, ["apps", app, "slugs"]) => {
            #[derive(serde::Deserialize)]
            struct Create {
                process_types: BTreeMap<String, String>,
                commit: Option<String>,
            }
            let create: Create = read_json(body).await?;
            let found = platform.app(&user, app)?;
            let slug = platform.create_slug(&user, app, create.process_types, create.commit)?;
            created(views::slug(&found, &slug, &base))
        }
        (&Method::GET, ["apps", app, "slugs", slug]) => {
            let found = platform.app(&user, app)?;
            ok(views::slug(
                &found,
                &platform.slug(&user, app, slug)?,
                &base,
            ))
        }
        (&Method::PUT, ["apps", app, "slugs", slug, "blob"]) => {
            let found = platform.app(&user, app)?;
            platform.slug(&user, app, slug)?;
            let (upload, checksum, size) = receive_blob(
                body,
                platform.slug_upload_path(),
                platform.config().max_slug_bytes,
                "slug",
            )
            .await?;
            let slug = platform
                .commit_slug_blob(&user, app, slug, upload, checksum, size)
                .await?;
            ok(views::slug(&found, &slug, &base))
        }

        (&Method::POST, ["sources"]) => {
            let source = platform.create_source(&user)?;
            created(views::source(&source, &base))
        }
        (&Method::PUT, ["sources", id]) => {
            platform.source(&user, id)?;
            let (upload, checksum, size) = receive_blob(
                body,
                platform.source_upload_path(),
                platform.config().max_source_bytes,
                "source",
            )
            .await?;
            platform
                .commit_source(&user, id, upload, checksum, size)
                .await?;
            ok(json!({}))
        }

        (&Method::POST, ["apps", app, "builds"]) => {
            #[derive(serde::Deserialize)]
            struct Create {
                source_blob: SourceBlob,
            }
            #[derive(serde::Deserialize)]
            struct SourceBlob {
                url: String,
                version: Option<String>,
            }
            let create: Create = read_json(body).await?;
            let found = platform.app(&user, app)?;
            // Only sources uploaded to this server: renga never fetches a URL
            // on a client's behalf.
            let source = create
                .source_blob
                .url
                .rsplit_once("/sources/")
                .map(|(_, id)| id.trim_end_matches('/'))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "source_blob.url must be a source uploaded with POST /sources",
                    )
                })?;
            let build = platform
                .create_build(&user, app, source, create.source_blob.version)
                .await?;
            created(views::build(&found, &build, &base))
        }
        (&Method::GET, ["apps", app, "builds"]) => {
            let found = platform.app(&user, app)?;
            ok(Value::Array(
                platform
                    .builds(&user, app)?
                    .iter()
                    .map(|b| views::build(&found, b, &base))
                    .collect(),
            ))
        }
        (&Method::GET, ["apps", app, "builds", id]) => {
            let found = platform.app(&user, app)?;
            ok(views::build(
                &found,
                &platform.build(&user, app, id)?,
                &base,
            ))
        }
        (&Method::GET, ["apps", app, "builds", id, "output"]) => {
            let output = platform.build_output(&user, app, id)?;
            Ok(stream_build_output(output))
        }
        (&Method::GET, ["apps", app, "buildpack-installations"]) => {
            ok(views::buildpack_installations(&platform.app(&user, app)?))
        }
        (&Method::PUT, ["apps", app, "buildpack-installations"]) => {
            #[derive(serde::Deserialize)]
            struct Updates {
                updates: Vec<Update>,
            }
            #[derive(serde::Deserialize)]
            struct Update {
                buildpack: String,
            }
            let updates: Updates = read_json(body).await?;
            let names = updates.updates.into_iter().map(|u| u.buildpack).collect();
            let found = platform.set_buildpacks(&user, app, names).await?;
            ok(views::buildpack_installations(&found))
        }

        (&Method::GET, ["apps", app, "formation"]) => {
            let found = platform.app(&user, app)?;
            let list = platform.formation(&user, app)?;
            let commands = process_commands(platform, &user, app);
            ok(Value::Array(
                list.iter()
                    .map(|f| views::formation(&found, f, command_of(&commands, &f.kind)))
                    .collect(),
            ))
        }
        (&Method::PATCH, ["apps", app, "formation"]) => {
            #[derive(serde::Deserialize)]
            struct Updates {
                updates: Vec<FormationUpdate>,
            }
            let updates: Updates = read_json(body).await?;
            let changes = updates
                .updates
                .into_iter()
                .map(|u| {
                    let kind = u.kind.clone().ok_or_else(|| {
                        ApiError::invalid("each update needs a type (for example web)")
                    })?;
                    Ok((kind, u.change()?))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let found = platform.app(&user, app)?;
            let formations = platform.scale(&user, app, changes).await?;
            let commands = process_commands(platform, &user, app);
            ok(Value::Array(
                formations
                    .iter()
                    .map(|f| views::formation(&found, f, command_of(&commands, &f.kind)))
                    .collect(),
            ))
        }
        (&Method::PATCH, ["apps", app, "formation", kind]) => {
            let update: FormationUpdate = read_json(body).await?;
            let found = platform.app(&user, app)?;
            let formations = platform
                .scale(&user, app, vec![(kind.to_string(), update.change()?)])
                .await?;
            let commands = process_commands(platform, &user, app);
            let formation = formations
                .first()
                .ok_or_else(|| ApiError::invalid("nothing changed"))?;
            ok(views::formation(
                &found,
                formation,
                command_of(&commands, &formation.kind),
            ))
        }

        (&Method::GET, ["apps", app, "dynos"]) => {
            let found = platform.app(&user, app)?;
            let running = platform.dynos(&user, app)?;
            ok(Value::Array(
                running
                    .dynos
                    .iter()
                    .map(|d| views::dyno(&found, d, &running.release))
                    .collect(),
            ))
        }
        (&Method::DELETE, ["apps", app, "dynos"]) => {
            platform.restart(&user, app, None).await?;
            ok(json!({}))
        }
        (&Method::DELETE, ["apps", app, "dynos", which]) => {
            platform.restart(&user, app, Some(which)).await?;
            ok(json!({}))
        }
        (&Method::POST, ["apps", app, "dynos", which, "actions", "stop"]) => {
            platform.stop_dyno(&user, app, which).await?;
            ok(json!({}))
        }

        (&Method::POST, ["apps", app, "log-sessions"]) => {
            #[derive(serde::Deserialize, Default)]
            struct Create {
                lines: Option<usize>,
                tail: Option<bool>,
            }
            let create: Create = read_json_or_default(body).await?;
            let id = platform.create_log_session(
                &user,
                app,
                create.lines.unwrap_or(100),
                create.tail.unwrap_or(false),
            )?;
            created(json!({
                "id": id,
                "logplex_url": format!("{base}/log-sessions/{id}"),
                "created_at": views::timestamp(crate::store::now_ms()),
            }))
        }
        (&Method::GET, ["log-sessions", id]) => stream_logs(platform, &user, id),

        _ => {
            let _ = query;
            Err(ApiError::not_found(&format!("{method} {path}")))
        }
    }
}

async fn create_user(platform: &Arc<Platform>, user: &User, body: Incoming) -> ApiResult {
    if !user.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only the admin can create users",
        ));
    }
    #[derive(serde::Deserialize)]
    struct Create {
        name: String,
    }
    let create: Create = read_json(body).await?;
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

/// `PATCH /apps/{app}/config-vars`'s body: names to strings (numbers and
/// booleans as their text), or null to remove. Linear in its size.
pub(crate) fn config_changes(
    raw: BTreeMap<String, Option<Value>>,
) -> Result<BTreeMap<ConfigKey, Option<String>>, ApiError> {
    let mut changes = BTreeMap::new();
    for (key, value) in raw {
        let key: ConfigKey = key
            .parse()
            .map_err(|e: crate::config::InvalidConfigKey| ApiError::invalid(e.to_string()))?;
        let value = match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => Some(other.to_string()),
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "config var {key} must be a string or null"
                )));
            }
        };
        changes.insert(key, value);
    }
    Ok(changes)
}

/// `PATCH /apps/{app}`'s `idle_after`: seconds (0: never) or `"default"`.
pub(crate) fn idle_after(value: &Value) -> Result<Option<u64>, ApiError> {
    match value {
        Value::String(s) if s == "default" => Ok(None),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
        _ => Err(ApiError::invalid(
            "idle_after is a number of seconds (0: never) or \"default\"",
        )),
    }
}

/// The current release's command of each process type.
fn process_commands(platform: &Platform, user: &User, app: &str) -> BTreeMap<String, String> {
    platform.process_commands(user, app).unwrap_or_default()
}

fn command_of<'a>(commands: &'a BTreeMap<String, String>, kind: &str) -> &'a str {
    commands.get(kind).map(String::as_str).unwrap_or("")
}

/// One process type's change in `PATCH /apps/{app}/formation`: Heroku's
/// `quantity` and `size`, and renga's `reuse`.
#[derive(serde::Deserialize)]
pub(crate) struct FormationUpdate {
    #[serde(rename = "type")]
    kind: Option<String>,
    quantity: Option<u32>,
    size: Option<String>,
    reuse: Option<u32>,
}

impl FormationUpdate {
    pub(crate) fn change(&self) -> Result<crate::formation::Change, ApiError> {
        let size = match &self.size {
            Some(size) => Some(
                size.parse::<crate::size::Size>()
                    .map_err(|e| ApiError::invalid(e.to_string()))?,
            ),
            None => None,
        };
        if self.quantity.is_none() && size.is_none() && self.reuse.is_none() {
            return Err(ApiError::invalid(
                "each update needs a quantity, a size or a reuse count",
            ));
        }
        Ok(crate::formation::Change {
            quantity: self.quantity,
            size,
            reuse: self.reuse,
        })
    }
}
