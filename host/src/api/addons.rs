//! Add-on routes, in Heroku's shapes: `addon-services` (and their plans,
//! and the providers an admin registers), `addons` (an app's, or every one
//! the user can reach) and `addon-attachments`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::addon::{Plan, Service};
use crate::platform::{
    AddonInfo, AttachmentInfo, MAX_PROVIDER_BYTES, Platform, PlatformError, Registration,
};

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, JsonOrDefault, created, ok, receive_blob};
use super::extract::Param;
use super::range::{Range, paged};
use super::views::timestamp;
use super::{Api, ApiError};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/addon-services", get(services))
        .route(
            "/addon-services/{name}",
            get(service_info).put(register).delete(remove),
        )
        .route("/addon-services/{name}/plans", get(plans))
        .route("/addons", get(all_addons))
        .route("/addons/{which}", get(addon_info))
        .route("/addons/{which}/addon-attachments", get(addon_attachments))
        .route("/apps/{app}/addons", get(app_addons).post(create))
        .route(
            "/apps/{app}/addons/{which}",
            get(app_addon_info).patch(change_plan).delete(destroy),
        )
        .route("/apps/{app}/addons/{which}/database", get(database))
        .route("/apps/{app}/addon-attachments", get(app_attachments))
        .route(
            "/apps/{app}/addon-attachments/{which}",
            get(app_attachment_info).delete(detach),
        )
        .route("/addon-attachments", get(all_attachments).post(attach))
        .route("/actions/addons/resolve", post(resolve_addon))
        .route(
            "/actions/addon-attachments/resolve",
            post(resolve_attachment),
        )
        .route(
            "/addon-attachments/{id}",
            axum::routing::delete(detach_by_id),
        )
}

async fn services(State(platform): State<Arc<Platform>>) -> ApiResult {
    ok(Value::Array(
        platform.addon_services()?.iter().map(service).collect(),
    ))
}

async fn service_info(
    State(platform): State<Arc<Platform>>,
    Param(name): Param<String>,
) -> ApiResult {
    ok(service(&find_service(&platform, &name)?))
}

async fn plans(State(platform): State<Arc<Platform>>, Param(name): Param<String>) -> ApiResult {
    let found = find_service(&platform, &name)?;
    ok(Value::Array(
        found.plans.iter().map(|p| plan(&found, p)).collect(),
    ))
}

/// `addons:services:add FILE.wasm --name NAME`: the component is the body;
/// `description` and `outbound` come in the query.
async fn register(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(name): Param<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> ApiResult {
    if !user.admin {
        return Err(PlatformError::Forbidden(
            "Only the admin can register add-on providers".to_string(),
        )
        .into());
    }
    let mut registration = Registration {
        name,
        description: String::new(),
        outbound: String::new(),
    };
    let query = query.unwrap_or_default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "description" => registration.description = value.into_owned(),
            "outbound" => registration.outbound = value.into_owned(),
            _ => {}
        }
    }
    let (upload, _, _) = receive_blob(
        body,
        platform.provider_upload_path()?,
        MAX_PROVIDER_BYTES,
        "provider component",
    )
    .await?;
    ok(service(
        &platform
            .register_provider(&user, registration, upload)
            .await?,
    ))
}

async fn remove(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(name): Param<String>,
) -> ApiResult {
    ok(service(&platform.remove_provider(&user, &name).await?))
}

async fn all_addons(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    ok(Value::Array(
        platform
            .list_addons(&user, None)?
            .iter()
            .map(addon)
            .collect(),
    ))
}

async fn addon_info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(which): Param<String>,
) -> ApiResult {
    let found = platform.find_addon(&user, None, &which)?;
    ok(addon(&platform.addon_info(found)?))
}

async fn addon_attachments(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(which): Param<String>,
) -> ApiResult {
    let found = platform.find_addon(&user, None, &which)?;
    ok(Value::Array(
        platform
            .addon_info(found)?
            .attachments
            .iter()
            .map(attachment)
            .collect(),
    ))
}

async fn app_addons(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    range: Option<Range>,
) -> ApiResult {
    paged(
        platform
            .list_addons(&user, Some(&app))?
            .iter()
            .map(addon)
            .collect(),
        range,
    )
}

/// A plan as Heroku's clients name it: `"service:plan"`, `"service"`, or
/// `{"name": ...}` (or `{"id": ...}`).
fn plan_name(plan: &Value) -> Result<String, ApiError> {
    let name = match plan {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("name")
            .or_else(|| o.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default(),
        _ => "",
    };
    if name.is_empty() {
        return Err(ApiError::invalid(
            "plan is a plan's name, renga-kv:standard",
        ));
    }
    Ok(name.to_string())
}

#[derive(serde::Deserialize)]
struct Create {
    plan: Value,
    #[serde(default)]
    attachment: Option<AttachmentName>,
    #[serde(default)]
    name: Option<String>,
    /// Options for its provider, as Heroku's CLI sends what follows `--`.
    #[serde(default)]
    config: BTreeMap<String, Value>,
}

#[derive(serde::Deserialize)]
struct AttachmentName {
    name: Option<String>,
}

async fn create(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    JsonBody(create): JsonBody<Create>,
) -> ApiResult {
    let plan = plan_name(&create.plan)?;
    let attachment = create.attachment.and_then(|a| a.name);
    let options = create
        .config
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) => s,
                Value::Bool(true) => "true".to_string(),
                other => other.to_string(),
            };
            (key, value)
        })
        .collect();
    let made = platform
        .create_addon(
            &user,
            &app,
            &plan,
            attachment.as_deref(),
            create.name.as_deref(),
            options,
        )
        .await?;
    created(addon(&platform.addon_info(made.addon)?))
}

async fn app_addon_info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    let found = platform.find_addon(&user, Some(&app), &which)?;
    ok(addon(&platform.addon_info(found)?))
}

async fn database(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    let (info, database) = platform.database_info(&user, &app, &which).await?;
    let mut shown = addon(&info);
    shown["database"] = serde_json::to_value(&database).unwrap_or_default();
    ok(shown)
}

#[derive(serde::Deserialize)]
struct Update {
    plan: Value,
}

async fn change_plan(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
    JsonBody(update): JsonBody<Update>,
) -> ApiResult {
    let plan = plan_name(&update.plan)?;
    ok(addon(
        &platform
            .change_addon_plan(&user, &app, &which, &plan)
            .await?,
    ))
}

async fn destroy(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    ok(addon(&platform.destroy_addon(&user, &app, &which).await?))
}

async fn app_attachments(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    ok(Value::Array(
        platform
            .addon_attachments(&user, &app)?
            .iter()
            .map(attachment)
            .collect(),
    ))
}

async fn app_attachment_info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    let found = platform
        .addon_attachments(&user, &app)?
        .into_iter()
        .find(|a| a.attachment.name == which || a.attachment.id == which)
        .ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that add-on attachment: {which}"))
        })?;
    ok(attachment(&found))
}

async fn detach(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    ok(attachment(
        &platform.detach_addon(&user, &app, &which).await?,
    ))
}

async fn all_attachments(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    let mut all = Vec::new();
    for app in platform.list_apps(&user)? {
        all.extend(platform.addon_attachments(&user, app.name.as_str())?);
    }
    ok(Value::Array(all.iter().map(attachment).collect()))
}

#[derive(serde::Deserialize, Default)]
struct Attach {
    addon: Option<String>,
    app: Option<String>,
    name: Option<String>,
}

async fn attach(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonOrDefault(attach): JsonOrDefault<Attach>,
) -> ApiResult {
    let (Some(which), Some(app)) = (attach.addon, attach.app) else {
        return Err(ApiError::invalid("an attachment needs an addon and an app"));
    };
    created(attachment(
        &platform
            .attach_addon(&user, &which, &app, attach.name.as_deref())
            .await?,
    ))
}

async fn detach_by_id(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(id): Param<String>,
) -> ApiResult {
    let found = platform
        .list_apps(&user)?
        .into_iter()
        .find_map(|app| {
            platform
                .addon_attachments(&user, app.name.as_str())
                .ok()?
                .into_iter()
                .find(|a| a.attachment.id == id)
        })
        .ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that add-on attachment: {id}"))
        })?;
    ok(attachment(
        &platform
            .detach_addon(&user, &found.app_name, &found.attachment.name)
            .await?,
    ))
}

fn find_service(platform: &Platform, name: &str) -> Result<Service, ApiError> {
    platform
        .addon_services()?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that add-on service: {name}")).into()
        })
}

fn service(service: &Service) -> Value {
    json!({
        "id": service.name,
        "name": service.name,
        "human_name": service.human_name,
        "description": service.description,
        "interface": service.interface,
        "state": "ga",
        "supports_multiple_installations": true,
        "supports_sharing": true,
        "cli_plugin_name": null,
        "provider": service.provider.as_ref().map(|p| json!({
            "digest": p.digest,
            "outbound": p.outbound,
        })),
        "created_at": timestamp(0),
        "updated_at": timestamp(0),
        "plans": service.plans.iter().map(|p| plan(service, p)).collect::<Vec<_>>(),
    })
}

fn plan(service: &Service, plan: &Plan) -> Value {
    let name = format!("{}:{}", service.name, plan.name);
    json!({
        "id": name,
        "name": name,
        "human_name": plan.name,
        "description": plan.description,
        "default": plan.default,
        "state": "public",
        "price": { "cents": 0, "unit": "month" },
        "quota": plan.quota,
        "addon_service": { "id": service.name, "name": service.name },
    })
}

#[derive(serde::Deserialize)]
struct ResolveAddon {
    addon: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    addon_service: Option<String>,
}

/// `POST /actions/addons/resolve`: the add-ons a name means (in an app, or
/// among every one the caller can reach), as Heroku's CLI finds the add-on
/// a command names: by the add-on's name or id, else by an attachment's
/// name or the service's (`renga-kv`), which may match several.
async fn resolve_addon(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonBody(resolve): JsonBody<ResolveAddon>,
) -> ApiResult {
    let wanted = |service: &str| {
        resolve
            .addon_service
            .as_deref()
            .is_none_or(|s| s == service)
    };
    let named = resolve.addon.as_str();
    let found: Vec<Value> = match platform.find_addon(&user, resolve.app.as_deref(), named) {
        Ok(found) => vec![addon(&platform.addon_info(found)?)],
        Err(PlatformError::NotFound(_)) => platform
            .list_addons(&user, resolve.app.as_deref())?
            .iter()
            .filter(|info| {
                info.addon.service == named
                    || info.attachments.iter().any(|a| a.attachment.name == named)
            })
            .map(addon)
            .collect(),
        Err(e) => return Err(e.into()),
    };
    let found: Vec<Value> = found
        .into_iter()
        .filter(|a| wanted(a["addon_service"]["name"].as_str().unwrap_or_default()))
        .collect();
    if found.is_empty() {
        return Err(PlatformError::NotFound(format!("Couldn't find that add-on: {named}")).into());
    }
    ok(Value::Array(found))
}

#[derive(serde::Deserialize)]
struct ResolveAttachment {
    addon_attachment: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    addon_service: Option<String>,
}

/// `POST /actions/addon-attachments/resolve`: the attachments a name or id
/// means, in an app or in every app the caller can reach.
async fn resolve_attachment(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonBody(resolve): JsonBody<ResolveAttachment>,
) -> ApiResult {
    let apps = match &resolve.app {
        Some(app) => vec![platform.app(&user, app)?],
        None => platform.list_apps(&user)?,
    };
    let mut found = Vec::new();
    for app in apps {
        found.extend(
            platform
                .addon_attachments(&user, &app.id)?
                .into_iter()
                .filter(|a| {
                    (a.attachment.name == resolve.addon_attachment
                        || a.attachment.id == resolve.addon_attachment)
                        && resolve
                            .addon_service
                            .as_deref()
                            .is_none_or(|s| s == a.addon.service)
                })
                .map(|a| attachment(&a)),
        );
    }
    if found.is_empty() {
        return Err(PlatformError::NotFound(format!(
            "Couldn't find that add-on attachment: {}",
            resolve.addon_attachment
        ))
        .into());
    }
    ok(Value::Array(found))
}

fn addon(info: &AddonInfo) -> Value {
    let addon = &info.addon;
    let mut vars: Vec<String> = info
        .attachments
        .iter()
        .flat_map(|a| crate::addon::config_vars(&a.attachment.name, addon))
        .map(|(var, _)| var)
        .collect();
    vars.dedup();
    json!({
        "id": addon.id,
        "name": addon.name,
        "addon_service": { "id": addon.service, "name": addon.service },
        "plan": {
            "id": addon.plan_name(),
            "name": addon.plan_name(),
            "price": { "cents": 0, "unit": "month" },
        },
        "app": { "id": addon.app, "name": info.app_name },
        "state": "provisioned",
        "config_vars": vars,
        "quota": addon.quota(),
        "provider_id": addon.id,
        "billed_price": { "cents": 0, "contract": false, "unit": "month" },
        "web_url": null,
        "actions": [],
        "attachments": info.attachments.iter().map(attachment).collect::<Vec<_>>(),
        "created_at": timestamp(addon.created_at),
        "updated_at": timestamp(addon.updated_at),
    })
}

fn attachment(info: &AttachmentInfo) -> Value {
    let a = &info.attachment;
    json!({
        "id": a.id,
        "name": a.name,
        "addon": {
            "id": info.addon.id,
            "name": info.addon.name,
            "app": { "id": info.addon.app, "name": info.addon_app_name },
        },
        "app": { "id": a.app, "name": info.app_name },
        "config_vars": crate::addon::config_vars(&a.name, &info.addon)
            .into_iter()
            .map(|(var, _)| var)
            .collect::<Vec<_>>(),
        "namespace": null,
        "web_url": null,
        "log_input_url": null,
        "created_at": timestamp(a.created_at),
        "updated_at": timestamp(a.created_at),
    })
}
