//! What becomes a release: `releases` (deploys and rollbacks), `slugs` and
//! their blobs, `sources`, `builds` (and their output, streamed) and
//! `buildpack-installations`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::{get, post, put};
use serde_json::json;

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, created, ok, receive_blob, text_stream};
use super::extract::{AppRef, Param};
use super::range::{Range, paged};
use super::{Api, ApiError, views};
use crate::app::App;
use crate::auth::User;
use crate::builds::BuildOutput;
use crate::platform::Platform;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/apps/{app}/releases", get(list).post(create))
        .route("/apps/{app}/releases/{which}", get(info))
        .route("/apps/{app}/releases/{which}/config-vars", get(config_vars))
        .route("/apps/{app}/slugs", post(create_slug))
        .route("/apps/{app}/slugs/{slug}", get(slug_info))
        .route("/apps/{app}/slugs/{slug}/blob", put(upload_slug))
        .route("/sources", post(create_source))
        .route("/sources/{id}", put(upload_source))
        .route("/apps/{app}/builds", get(list_builds).post(create_build))
        .route("/apps/{app}/builds/{id}", get(build_info))
        .route("/apps/{app}/builds/{id}/output", get(build_output))
        .route(
            "/apps/{app}/buildpack-installations",
            get(buildpacks).put(set_buildpacks),
        )
}

/// Where each release's build printed its output (the release phase's
/// included), by release id: Heroku's `output_stream_url`.
fn build_outputs(platform: &Platform, user: &User, app: &App) -> HashMap<String, String> {
    let base = platform.public_url();
    platform
        .builds(user, &app.id)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|b| {
            let release = b.release?;
            Some((
                release.id,
                format!("{base}/apps/{}/builds/{}/output", app.name, b.id),
            ))
        })
        .collect()
}

async fn list(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    range: Option<Range>,
) -> ApiResult {
    let releases = platform.releases(&user, &name)?;
    let current = releases.last().map_or(0, |r| r.version);
    let outputs = build_outputs(&platform, &user, &app);
    paged(
        releases
            .iter()
            .map(|r| views::release(&app, r, current, outputs.get(&r.id)))
            .collect(),
        range,
    )
}

async fn info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    Param((_, which)): Param<(String, String)>,
) -> ApiResult {
    let release = platform.find_release(&user, &name, &which)?;
    let current = platform.current_release(&app)?.version;
    let outputs = build_outputs(&platform, &user, &app);
    ok(views::release(
        &app,
        &release,
        current,
        outputs.get(&release.id),
    ))
}

/// The config vars a release was made with; refused for one too old to
/// keep them.
async fn config_vars(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, .. }: AppRef,
    Param((_, which)): Param<(String, String)>,
) -> ApiResult {
    let release = platform.find_release(&user, &name, &which)?;
    if release.expired {
        return Err(ApiError::invalid(format!(
            "{} is too old to have kept its config vars",
            release.version()
        )));
    }
    ok(serde_json::to_value(&release.config).unwrap_or_default())
}

#[derive(serde::Deserialize)]
struct Create {
    slug: Option<String>,
    release: Option<String>,
    description: Option<String>,
}

async fn create(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    JsonBody(create): JsonBody<Create>,
) -> ApiResult {
    let release = match (create.slug, create.release) {
        (Some(slug), None) => {
            platform
                .deploy(&user, &name, &slug, create.description)
                .await?
        }
        (None, Some(target)) => platform.rollback(&user, &name, &target).await?,
        _ => {
            return Err(ApiError::invalid(
                "give either `slug` (to deploy) or `release` (to roll back)",
            ));
        }
    };
    created(views::release(&app, &release, release.version, None))
}

#[derive(serde::Deserialize)]
struct CreateSlug {
    process_types: BTreeMap<String, String>,
    commit: Option<String>,
}

async fn create_slug(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    JsonBody(create): JsonBody<CreateSlug>,
) -> ApiResult {
    let slug = platform.create_slug(&user, &name, create.process_types, create.commit)?;
    created(views::slug(&app, &slug, platform.public_url()))
}

async fn slug_info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    Param((_, slug)): Param<(String, String)>,
) -> ApiResult {
    let slug = platform.slug(&user, &name, &slug)?;
    ok(views::slug(&app, &slug, platform.public_url()))
}

async fn upload_slug(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    Param((_, slug)): Param<(String, String)>,
    body: Body,
) -> ApiResult {
    platform.slug(&user, &name, &slug)?;
    let (upload, checksum, size) = receive_blob(
        body,
        platform.slug_upload_path(),
        platform.config().max_slug_bytes,
        "slug",
    )
    .await?;
    let slug = platform
        .commit_slug_blob(&user, &name, &slug, upload, checksum, size)
        .await?;
    ok(views::slug(&app, &slug, platform.public_url()))
}

async fn create_source(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    let source = platform.create_source(&user)?;
    created(views::source(&source, platform.public_url()))
}

async fn upload_source(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(id): Param<String>,
    body: Body,
) -> ApiResult {
    platform.source(&user, &id)?;
    let (upload, checksum, size) = receive_blob(
        body,
        platform.source_upload_path(),
        platform.config().max_source_bytes,
        "source",
    )
    .await?;
    platform
        .commit_source(&user, &id, upload, checksum, size)
        .await?;
    ok(json!({}))
}

#[derive(serde::Deserialize)]
struct CreateBuild {
    source_blob: SourceBlob,
}

#[derive(serde::Deserialize)]
struct SourceBlob {
    url: String,
    version: Option<String>,
}

async fn create_build(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    JsonBody(create): JsonBody<CreateBuild>,
) -> ApiResult {
    // Only sources uploaded to this server: renga never fetches a URL on a
    // client's behalf.
    let source = create
        .source_blob
        .url
        .rsplit_once("/sources/")
        .map(|(_, id)| id.trim_end_matches('/'))
        .ok_or_else(|| {
            ApiError::invalid("source_blob.url must be a source uploaded with POST /sources")
        })?;
    let build = platform
        .create_build(&user, &name, source, create.source_blob.version)
        .await?;
    created(views::build(&app, &build, platform.public_url()))
}

async fn list_builds(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    range: Option<Range>,
) -> ApiResult {
    let base = platform.public_url();
    paged(
        platform
            .builds(&user, &name)?
            .iter()
            .map(|b| views::build(&app, b, base))
            .collect(),
        range,
    )
}

async fn build_info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    Param((_, id)): Param<(String, String)>,
) -> ApiResult {
    let build = platform.build(&user, &name, &id)?;
    ok(views::build(&app, &build, platform.public_url()))
}

/// A build's output as plain text, following it until the build ends.
async fn build_output(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, id)): Param<(String, String)>,
) -> ApiResult {
    let output = platform.build_output(&user, &app, &id)?;
    Ok(text_stream(follow(output)))
}

fn follow(output: Arc<BuildOutput>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold((output, 0usize), |(output, read)| async move {
        let lines = output.next(read).await?;
        let read = read + lines.len();
        let mut text = lines.join("\n");
        text.push('\n');
        Some((Bytes::from(text), (output, read)))
    })
}

async fn buildpacks(AppRef { app, .. }: AppRef) -> ApiResult {
    ok(views::buildpack_installations(&app))
}

#[derive(serde::Deserialize)]
struct BuildpackUpdates {
    updates: Vec<BuildpackUpdate>,
}

#[derive(serde::Deserialize)]
struct BuildpackUpdate {
    buildpack: String,
}

async fn set_buildpacks(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    JsonBody(updates): JsonBody<BuildpackUpdates>,
) -> ApiResult {
    let names = updates.updates.into_iter().map(|u| u.buildpack).collect();
    let app = platform.set_buildpacks(&user, &app, names).await?;
    ok(views::buildpack_installations(&app))
}
