//! addon: add-on records, the services and plans they come from, and their
//! attachments to apps.
//!
//! An add-on belongs to one app (the one it was created on, Heroku's
//! billing app) and is attached to one or more apps under an attachment
//! name (`RENGA_KV`, or what `--as` gave); each attachment gives its app
//! the config var `{NAME}_NAME`, the add-on's name, which the app's guests
//! may pass to `open`. This module owns the records and the rules for names
//! and plans; provisioning (a release per change, data deleted on destroy)
//! is the platform's, and the data itself is the providers'.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// One plan of a service: what it allows.
#[derive(Debug)]
pub struct Plan {
    pub name: &'static str,
    pub description: &'static str,
    /// Bytes of data it may hold.
    pub quota: u64,
    pub default: bool,
    /// Where its data lives.
    pub backend: BackendKind,
    /// The attachment name it gets unless `--as` says otherwise, when it
    /// differs from its service's (`renga-kv:redis` is `REDIS`, as Heroku's
    /// Key-Value is).
    pub attachment: Option<&'static str>,
}

/// Where an add-on's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In files of its own under the data folder.
    Embedded,
    /// Under a key prefix of its own on the operator's Redis (`--redis`).
    Redis,
    /// In a database and role of its own on the operator's PostgreSQL
    /// (`--postgres`).
    Postgres,
    /// Served by a provider component (`addons:services:add`), which keeps
    /// its state in a database of its own under the data folder.
    Provider,
}

impl BackendKind {
    /// Where it keeps data, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            BackendKind::Embedded => "in files on this server",
            BackendKind::Redis => "on the server's Redis",
            BackendKind::Postgres => "on the server's PostgreSQL",
            BackendKind::Provider => "in its provider component's own database",
        }
    }
}

/// A plan whose data lives on `backend`, attached under its service's name.
const fn plan(
    name: &'static str,
    description: &'static str,
    quota: u64,
    default: bool,
    backend: BackendKind,
) -> Plan {
    Plan {
        name,
        description,
        quota,
        default,
        backend,
        attachment: None,
    }
}

/// A plan stored in a file of its own.
const fn embedded(
    name: &'static str,
    description: &'static str,
    quota: u64,
    default: bool,
) -> Plan {
    plan(name, description, quota, default, BackendKind::Embedded)
}

/// A plan on the operator's PostgreSQL.
const fn postgres(
    name: &'static str,
    description: &'static str,
    quota: u64,
    default: bool,
) -> Plan {
    plan(name, description, quota, default, BackendKind::Postgres)
}

/// A kind of add-on: one renga provides, or one a provider component
/// registered with `addons:services:add` provides.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: Cow<'static, str>,
    pub human_name: Cow<'static, str>,
    pub description: Cow<'static, str>,
    /// The attachment name an add-on gets unless `--as` says otherwise.
    pub attachment: Cow<'static, str>,
    /// The WIT its data is reached through, for messages and docs.
    pub interface: &'static str,
    pub plans: &'static [Plan],
    /// A provider component's service: the component that serves it.
    pub provider: Option<ProviderRecord>,
}

impl Service {
    pub fn plan(&self, name: &str) -> Option<&'static Plan> {
        self.plans.iter().find(|p| p.name == name)
    }

    pub fn default_plan(&self) -> &'static Plan {
        self.plans
            .iter()
            .find(|p| p.default)
            .unwrap_or(&self.plans[0])
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Every service renga provides.
pub static SERVICES: &[Service] = &[
    Service {
        name: Cow::Borrowed("renga-kv"),
        human_name: Cow::Borrowed("renga Key-Value"),
        description: Cow::Borrowed("A durable key-value store, reached through wasi:keyvalue"),
        attachment: Cow::Borrowed("RENGA_KV"),
        interface: "wasi:keyvalue",
        provider: None,
        plans: &[
            embedded("mini", "16 MiB", 16 * MIB, true),
            embedded("standard", "256 MiB", 256 * MIB, false),
            embedded("premium", "4 GiB", 4 * GIB, false),
            Plan {
                name: "redis",
                description: "256 MiB on the server's Redis (REDIS_URL for native dynos)",
                quota: 256 * MIB,
                default: false,
                backend: BackendKind::Redis,
                attachment: Some("REDIS"),
            },
        ],
    },
    Service {
        name: Cow::Borrowed("renga-sql"),
        human_name: Cow::Borrowed("renga SQL"),
        description: Cow::Borrowed("A SQL database (SQLite), reached through renga:sql"),
        attachment: Cow::Borrowed("RENGA_SQL"),
        interface: "renga:sql",
        provider: None,
        plans: &[
            embedded("mini", "64 MiB", 64 * MIB, true),
            embedded("standard", "1 GiB", GIB, false),
            embedded("premium", "16 GiB", 16 * GIB, false),
        ],
    },
    Service {
        name: Cow::Borrowed("renga-postgres"),
        human_name: Cow::Borrowed("renga Postgres"),
        description: Cow::Borrowed(
            "A PostgreSQL database and role of its own on the server's PostgreSQL, reached through renga:sql and DATABASE_URL",
        ),
        attachment: Cow::Borrowed("DATABASE"),
        interface: "renga:sql",
        provider: None,
        plans: &[
            postgres("mini", "1 GiB, 20 connections", GIB, true),
            postgres("standard", "64 GiB, 60 connections", 64 * GIB, false),
        ],
    },
    Service {
        name: Cow::Borrowed("renga-blob"),
        human_name: Cow::Borrowed("renga Blob Storage"),
        description: Cow::Borrowed(
            "Object storage (containers of named objects, streamed), reached through wasi:blobstore",
        ),
        attachment: Cow::Borrowed("RENGA_BLOB"),
        interface: "wasi:blobstore",
        provider: None,
        plans: &[
            embedded("mini", "1 GiB", GIB, true),
            embedded("standard", "16 GiB", 16 * GIB, false),
            embedded("premium", "256 GiB", 256 * GIB, false),
        ],
    },
];

/// The plans of every provider component's service: one, whose quota is
/// the size of the provider's own database for each add-on.
pub static PROVIDER_PLANS: &[Plan] = &[plan(
    "standard",
    "64 MiB of the provider's own data per add-on",
    64 * MIB,
    true,
    BackendKind::Provider,
)];

/// A service renga provides, by name.
pub fn service(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

/// `renga-kv` or `renga-kv:standard`: a service (renga's, or one of
/// `providers`) and one of its plans.
pub fn parse_plan(spec: &str, providers: &[Service]) -> Result<(Service, &'static Plan), String> {
    let (service_name, plan_name) = match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    };
    let Some(service) = SERVICES
        .iter()
        .chain(providers)
        .find(|s| s.name == service_name)
    else {
        let known: Vec<&str> = SERVICES
            .iter()
            .chain(providers)
            .map(|s| s.name.as_ref())
            .collect();
        return Err(format!(
            "Couldn't find that add-on service: {service_name} (this server has {})",
            known.join(", ")
        ));
    };
    let plan = match plan_name {
        None => service.default_plan(),
        Some(name) => service.plan(name).ok_or_else(|| {
            let known: Vec<String> = service
                .plans
                .iter()
                .map(|p| format!("{}:{}", service.name, p.name))
                .collect();
            format!(
                "Couldn't find that plan: {spec} ({} has {})",
                service.name,
                known.join(", ")
            )
        })?,
    };
    Ok((service.clone(), plan))
}

/// An attachment name by Heroku's rule: uppercase letters, digits and
/// underscores, starting with a letter, at most 64 long.
pub fn check_attachment_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_uppercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid attachment name {name:?}: use uppercase letters, digits and underscores, starting with a letter (at most 64)"
        ))
    }
}

/// An add-on name: 3 to 60 lowercase letters, digits and dashes, starting
/// with a letter.
pub fn check_addon_name(name: &str) -> Result<(), String> {
    let valid = (3..=60).contains(&name.len())
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid add-on name {name:?}: use 3 to 60 lowercase letters, digits and dashes, starting with a letter"
        ))
    }
}

/// The config var an attachment gives its app: the add-on's name, which
/// its guests may pass to `open`.
pub fn config_var(attachment: &str) -> String {
    format!("{attachment}_NAME")
}

/// The config var that holds an external add-on's URL (`DATABASE_URL`,
/// `REDIS_URL`), for native dynos and `pg:psql`.
pub fn url_var(attachment: &str) -> String {
    format!("{attachment}_URL")
}

/// Every config var an attachment of `addon` sets, with its value: its
/// name, its URL, and what its provider answered at provisioning, each
/// under the attachment's prefix.
pub fn config_vars(attachment: &str, addon: &Addon) -> Vec<(String, String)> {
    let mut vars = vec![(config_var(attachment), addon.name.clone())];
    if let Some(url) = &addon.url {
        vars.push((url_var(attachment), url.clone()));
    }
    for (name, value) in &addon.config {
        vars.push((format!("{attachment}_{name}"), value.clone()));
    }
    vars
}

/// The names of the config vars an attachment may set (to check and to
/// remove them).
pub fn config_var_names(attachment: &str) -> [String; 2] {
    [config_var(attachment), url_var(attachment)]
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Addon {
    pub id: String,
    pub name: String,
    pub service: String,
    pub plan: String,
    /// The app it was created on (its owner).
    pub app: String,
    /// Its URL with credentials, for an add-on on an external server
    /// (`postgres://…`, `redis://…`). A secret: it is shown to the apps it
    /// is attached to as a config var and nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What `addons:create SERVICE -- --KEY VALUE` passed its provider.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The config vars its provider answered at provisioning, without the
    /// attachment's prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<(String, String)>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Addon {
    /// `renga-kv:mini`, as Heroku names plans.
    pub fn plan_name(&self) -> String {
        format!("{}:{}", self.service, self.plan)
    }

    pub fn service(&self) -> Option<&'static Service> {
        service(&self.service)
    }

    /// Bytes its plan allows (0 for a plan renga no longer has).
    pub fn quota(&self) -> u64 {
        self.plan().map_or(0, |p| p.quota)
    }

    /// Its plan: of its service, or (a service renga does not provide) a
    /// provider's.
    pub fn plan(&self) -> Option<&'static Plan> {
        match self.service() {
            Some(service) => service.plan(&self.plan),
            None => PROVIDER_PLANS.iter().find(|p| p.name == self.plan),
        }
    }

    /// Where its data lives.
    pub fn backend(&self) -> BackendKind {
        self.plan().map_or(BackendKind::Embedded, |p| p.backend)
    }
}

impl fmt::Display for Addon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A provider component registered with `addons:services:add`: a service
/// whose add-ons it serves.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ProviderRecord {
    /// The service's name, which `addons:create` takes.
    pub name: String,
    /// The sha256 of its component, kept as `providers/{digest}.wasm`
    /// under the data folder.
    pub digest: String,
    pub description: String,
    /// The hosts its outbound HTTP may reach (none unless the admin said).
    #[serde(default)]
    pub outbound: Vec<String>,
    pub created_at: u64,
}

impl ProviderRecord {
    pub fn new(
        name: &str,
        digest: String,
        description: String,
        outbound: Vec<String>,
    ) -> ProviderRecord {
        ProviderRecord {
            name: name.to_string(),
            digest,
            description,
            outbound,
            created_at: now_ms(),
        }
    }

    /// The service it provides, as `addons:create` and the API see it.
    pub fn service(&self) -> Service {
        let description = if self.description.is_empty() {
            format!(
                "A key-value add-on served by the provider component {}",
                &self.digest[..self.digest.len().min(12)]
            )
        } else {
            self.description.clone()
        };
        Service {
            name: Cow::Owned(self.name.clone()),
            human_name: Cow::Owned(self.name.clone()),
            description: Cow::Owned(description),
            attachment: Cow::Owned(self.name.to_ascii_uppercase().replace('-', "_")),
            interface: "wasi:keyvalue",
            plans: PROVIDER_PLANS,
            provider: Some(self.clone()),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub id: String,
    /// The add-on's id.
    pub addon: String,
    /// The app's id.
    pub app: String,
    pub name: String,
    pub created_at: u64,
}

/// The add-on records: by id, with an index by name; and attachments, by
/// app.
#[derive(Clone)]
pub struct Addons {
    by_id: Tree,
    ids_by_name: Tree,
    attachments: Tree,
    providers: Tree,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdRef {
    id: String,
}

fn attachment_key(app: &str, name: &str) -> String {
    format!("{app}/{name}")
}

impl Addons {
    pub fn open(db: &Db) -> anyhow::Result<Addons> {
        Ok(Addons {
            by_id: db.tree("addons")?,
            ids_by_name: db.tree("addon-names")?,
            attachments: db.tree("addon-attachments")?,
            providers: db.tree("addon-providers")?,
        })
    }

    /// A readable random add-on name: `renga-kv-amber-4821`.
    pub fn random_name(service: &Service) -> String {
        let app = crate::app::AppName::random();
        // `quiet-river-4821` → `renga-kv-quiet-4821`
        let mut parts = app.as_str().split('-');
        let word = parts.next().unwrap_or("new");
        let number = parts.next_back().unwrap_or("1000");
        format!("{}-{word}-{number}", service.name)
    }

    /// Creates an add-on; `None` if the name is taken.
    pub fn create(
        &self,
        name: &str,
        service: &Service,
        plan: &Plan,
        app: &str,
    ) -> Result<Option<Addon>, StoreError> {
        let now = now_ms();
        let addon = Addon {
            id: new_id(),
            name: name.to_string(),
            service: service.name.to_string(),
            plan: plan.name.to_string(),
            app: app.to_string(),
            url: None,
            options: BTreeMap::new(),
            config: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        if !self.ids_by_name.put_new(
            name,
            &IdRef {
                id: addon.id.clone(),
            },
        )? {
            return Ok(None);
        }
        self.by_id.put(&addon.id, &addon)?;
        Ok(Some(addon))
    }

    /// By name or by id.
    pub fn find(&self, name_or_id: &str) -> Result<Option<Addon>, StoreError> {
        if let Some(addon) = self.by_id.get::<Addon>(name_or_id)? {
            return Ok(Some(addon));
        }
        match self.ids_by_name.get::<IdRef>(name_or_id)? {
            Some(reference) => self.by_id.get(&reference.id),
            None => Ok(None),
        }
    }

    pub fn all(&self) -> Result<Vec<Addon>, StoreError> {
        self.by_id.scan("")
    }

    /// Records what its provider was given and answered at provisioning.
    pub fn set_provisioned(
        &self,
        addon: &Addon,
        options: BTreeMap<String, String>,
        config: Vec<(String, String)>,
    ) -> Result<Addon, StoreError> {
        let mut addon = addon.clone();
        addon.options = options;
        addon.config = config;
        addon.updated_at = now_ms();
        self.by_id.put(&addon.id, &addon)?;
        Ok(addon)
    }

    /// Records the URL an external server gave the add-on.
    pub fn set_url(&self, addon: &Addon, url: String) -> Result<Addon, StoreError> {
        let mut addon = addon.clone();
        addon.url = Some(url);
        addon.updated_at = now_ms();
        self.by_id.put(&addon.id, &addon)?;
        Ok(addon)
    }

    pub fn set_plan(&self, addon: &Addon, plan: &Plan) -> Result<Addon, StoreError> {
        let mut addon = addon.clone();
        addon.plan = plan.name.to_string();
        addon.updated_at = now_ms();
        self.by_id.put(&addon.id, &addon)?;
        Ok(addon)
    }

    /// Forgets an add-on and every attachment of it.
    pub fn delete(&self, addon: &Addon) -> Result<(), StoreError> {
        for attachment in self.attachments_of(&addon.id)? {
            self.attachments
                .remove(attachment_key(&attachment.app, &attachment.name))?;
        }
        self.ids_by_name.remove(&addon.name)?;
        self.by_id.remove(&addon.id)
    }

    /// Attaches an add-on to an app; `None` if the app already has an
    /// attachment of that name.
    pub fn attach(
        &self,
        addon: &Addon,
        app: &str,
        name: &str,
    ) -> Result<Option<Attachment>, StoreError> {
        let attachment = Attachment {
            id: new_id(),
            addon: addon.id.clone(),
            app: app.to_string(),
            name: name.to_string(),
            created_at: now_ms(),
        };
        if !self
            .attachments
            .put_new(attachment_key(app, name), &attachment)?
        {
            return Ok(None);
        }
        Ok(Some(attachment))
    }

    pub fn detach(&self, attachment: &Attachment) -> Result<(), StoreError> {
        self.attachments
            .remove(attachment_key(&attachment.app, &attachment.name))
    }

    /// An app's attachments, oldest first.
    pub fn attachments(&self, app: &str) -> Result<Vec<Attachment>, StoreError> {
        let mut list: Vec<Attachment> = self.attachments.scan(format!("{app}/"))?;
        list.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(list)
    }

    /// Every attachment of one add-on, to any app.
    pub fn attachments_of(&self, addon: &str) -> Result<Vec<Attachment>, StoreError> {
        Ok(self
            .attachments
            .scan::<Attachment>("")?
            .into_iter()
            .filter(|a| a.addon == addon)
            .collect())
    }

    /// Every registered provider component, by name.
    pub fn providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        self.providers.scan("")
    }

    /// Every provider's service.
    pub fn provider_services(&self) -> Result<Vec<Service>, StoreError> {
        Ok(self
            .providers()?
            .iter()
            .map(ProviderRecord::service)
            .collect())
    }

    pub fn provider(&self, name: &str) -> Result<Option<ProviderRecord>, StoreError> {
        self.providers.get(name)
    }

    /// Registers (or replaces) a provider.
    pub fn put_provider(&self, record: &ProviderRecord) -> Result<(), StoreError> {
        self.providers.put(&record.name, record)
    }

    pub fn remove_provider(&self, name: &str) -> Result<(), StoreError> {
        self.providers.remove(name)
    }

    /// Every attachment, to any app.
    pub fn all_attachments(&self) -> Result<Vec<Attachment>, StoreError> {
        self.attachments.scan("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_names_follow_herokus_rules() {
        let (kv, plan) = parse_plan("renga-kv", &[]).unwrap();
        assert_eq!((kv.name.as_ref(), plan.name), ("renga-kv", "mini"));
        let (_, plan) = parse_plan("renga-sql:standard", &[]).unwrap();
        assert_eq!(plan.name, "standard");
        assert!(
            parse_plan("heroku-redis", &[])
                .unwrap_err()
                .contains("renga-kv")
        );
        assert!(
            parse_plan("renga-kv:huge", &[])
                .unwrap_err()
                .contains("renga-kv:premium")
        );
        let provider = ProviderRecord::new("kv-ttl", "0".repeat(64), String::new(), vec![]);
        let (ttl, plan) = parse_plan("kv-ttl", &[provider.service()]).unwrap();
        assert_eq!((ttl.name.as_ref(), plan.name), ("kv-ttl", "standard"));
        assert_eq!(ttl.attachment, "KV_TTL");
        for good in ["RENGA_KV", "CACHE", "A1_B"] {
            assert!(check_attachment_name(good).is_ok(), "{good}");
        }
        for bad in ["cache", "1A", "_A", "A-B", ""] {
            assert!(check_attachment_name(bad).is_err(), "{bad}");
        }
        let name = Addons::random_name(service("renga-kv").unwrap());
        assert!(check_addon_name(&name).is_ok(), "{name}");
        assert!(name.starts_with("renga-kv-"), "{name}");
        assert_eq!(config_var("CACHE"), "CACHE_NAME");
    }
}
