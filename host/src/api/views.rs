//! How records look in the API: Heroku Platform API v3's shapes for the
//! resources renga shares with it.

use serde_json::{Value, json};

use crate::app::App;
use crate::builds::{Build, Source};
use crate::formation::Formation;
use crate::platform::{Platform, RunningDyno};
use crate::release::Release;
use crate::slug::Slug;

const TIME: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Milliseconds since the epoch as Heroku's `2012-01-01T12:00:00Z`.
pub fn timestamp(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(TIME).ok())
        .unwrap_or_default()
}

/// The one region and stack a renga server has (Heroku's `/regions` and
/// `/stacks`, and every app's `region` and `stack`).
pub const REGION: &str = "local";
pub const STACK: &str = "renga-1";

/// Ids for the region and the stack: fixed, because clients compare them.
const REGION_ID: &str = "8c2f9f3e-0c8e-4f0a-9e1d-72656e676131";
const STACK_ID: &str = "4b2e8f6a-1d3c-4e5f-8a7b-72656e676132";

pub fn region() -> Value {
    json!({
        "id": REGION_ID,
        "name": REGION,
        "description": "This renga server",
        "country": "",
        "locale": "",
        "private_capable": false,
        "provider": { "name": "renga", "region": REGION },
        "created_at": timestamp(0),
        "updated_at": timestamp(0),
    })
}

pub fn stack() -> Value {
    json!({
        "id": STACK_ID,
        "name": STACK,
        "state": "public",
        "default": true,
        "created_at": timestamp(0),
        "updated_at": timestamp(0),
    })
}

pub fn app(platform: &Platform, app: &App, api_base: &str) -> Value {
    let released_at = platform
        .current_release(app)
        .ok()
        .map(|r| timestamp(r.created_at));
    let stack = json!({ "id": STACK_ID, "name": STACK });
    json!({
        "id": app.id,
        "name": app.name,
        "created_at": timestamp(app.created_at),
        "updated_at": timestamp(app.updated_at),
        "released_at": released_at,
        "maintenance": app.maintenance,
        "idle_after": platform.app_idle_after(app).map(|d| d.as_secs()),
        "owner": { "id": app.owner, "email": platform.owner_name(app) },
        "web_url": platform.web_url(app),
        "git_url": format!("{api_base}/git/{}.git", app.name),
        "region": { "id": REGION_ID, "name": REGION },
        "stack": stack,
        "build_stack": stack,
        "buildpack_provided_description": app.buildpacks.first(),
        "slug_size": platform.slug_size(app),
        "repo_size": null,
        "archived_at": null,
        "acm": false,
        "internal_routing": null,
        "organization": null,
        "team": null,
        "space": null,
    })
}

/// A release; `output` is where its build printed (the release phase's
/// output included), for a release a build made.
pub fn release(app: &App, release: &Release, current: u32, output: Option<&String>) -> Value {
    json!({
        "id": release.id,
        "version": release.version,
        "description": release.description,
        // The ledger holds only releases that went live: one whose release
        // phase fails is never written (its build says `failed`), so
        // Heroku's `pending` and `failed` never apply to a listed release.
        "status": "succeeded",
        "current": release.version == current,
        "eligible_for_rollback": !release.expired,
        "created_at": timestamp(release.created_at),
        "updated_at": timestamp(release.created_at),
        "slug": release.slug.as_ref().map(|id| json!({ "id": id })),
        "user": { "id": release.user_id, "email": release.user_name },
        "app": { "id": app.id, "name": app.name },
        "addon_plan_names": release.addons.plan_names,
        "output_stream_url": output,
    })
}

pub fn slug(app: &App, slug: &Slug, api_base: &str) -> Value {
    json!({
        "id": slug.id,
        "process_types": slug.process_types,
        "checksum": slug.checksum.as_ref().map(|c| format!("SHA256:{c}")),
        "size": slug.size,
        "commit": slug.commit,
        "stack": { "name": STACK },
        "created_at": timestamp(slug.created_at),
        "updated_at": timestamp(slug.created_at),
        "blob": {
            "method": "put",
            "url": format!("{api_base}/apps/{}/slugs/{}/blob", app.name, slug.id),
        },
    })
}

pub fn formation(app: &App, formation: &Formation, command: &str) -> Value {
    json!({
        "id": formation.id,
        "type": formation.kind,
        "quantity": formation.quantity,
        "size": formation.size,
        "reuse": formation.reuse,
        "command": command,
        "created_at": timestamp(formation.created_at),
        "updated_at": timestamp(formation.updated_at),
        "app": { "id": app.id, "name": app.name },
    })
}

pub fn dyno(app: &App, dyno: &RunningDyno, release: &Release) -> Value {
    json!({
        "id": format!("{}-{}", app.id, dyno.name),
        "name": dyno.name,
        "type": dyno.kind,
        "state": dyno.state.as_str(),
        "size": dyno.size,
        "command": dyno.command,
        "created_at": timestamp(dyno.since),
        "updated_at": timestamp(dyno.since),
        "release": { "id": release.id, "version": release.version },
        "app": { "id": app.id, "name": app.name },
        "host": dyno.host,
    })
}

pub fn build(app: &App, build: &Build, api_base: &str) -> Value {
    json!({
        "id": build.id,
        "status": build.status.as_str(),
        "buildpacks": build.buildpack.as_ref().map(|b| vec![json!({ "url": b, "name": b })]).unwrap_or_default(),
        "source_blob": {
            "version": build.version,
            "url": null,
        },
        "output_stream_url": format!("{api_base}/apps/{}/builds/{}/output", app.name, build.id),
        "slug": build.slug.as_ref().map(|id| json!({ "id": id })),
        "release": build.release.as_ref().map(|r| json!({ "id": r.id, "version": r.version })),
        "failure": build.failure,
        "stack": STACK,
        "created_at": timestamp(build.created_at),
        "updated_at": timestamp(build.updated_at),
        "user": { "id": build.user_id, "email": build.user_name },
        "app": { "id": app.id, "name": app.name },
    })
}

pub fn source(source: &Source, api_base: &str) -> Value {
    let url = format!("{api_base}/sources/{}", source.id);
    json!({
        "source_blob": { "get_url": url, "put_url": url },
    })
}

pub fn buildpack_installations(app: &App) -> Value {
    Value::Array(
        app.buildpacks
            .iter()
            .enumerate()
            .map(|(ordinal, name)| json!({ "ordinal": ordinal, "buildpack": { "url": name, "name": name } }))
            .collect(),
    )
}

/// A token as Heroku's `/oauth/authorizations` shows it (never the token,
/// except once when it is created).
pub fn authorization(token: &crate::auth::TokenInfo) -> Value {
    json!({
        "id": token.id,
        "description": token.description,
        "created_at": timestamp(token.created_at),
        "updated_at": timestamp(token.created_at),
        "access_token": null,
        "scope": ["global"],
    })
}
