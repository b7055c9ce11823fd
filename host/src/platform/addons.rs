//! Add-ons, the Heroku way: created on an app with a plan, attached to it
//! (and shared with other apps by attaching them too), detached and
//! destroyed. Every change to an app's attachments is a new release that
//! sets or removes the attachment's config var; destroying deletes the
//! data once no release reaches it any more.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::addon::{self, Addon, Attachment, BackendKind, Plan, Service};
use crate::app::App;
use crate::auth::User;
use crate::capability::AddonBinding;
use crate::config::ConfigVars;
use crate::provider::{AddonRef, ProviderSpec};
use crate::release::{Release, ReleaseAddons};

use super::{Platform, PlatformError, Result};

/// Add-ons one app may own.
pub const MAX_ADDONS: usize = 20;
/// Attachments one app may have (its own add-ons and shared ones).
pub const MAX_ATTACHMENTS: usize = 20;

/// An add-on with the apps it is attached to, as the API shows it.
#[derive(Clone, Debug)]
pub struct AddonInfo {
    pub addon: Addon,
    /// The name of the app that owns it.
    pub app_name: String,
    pub attachments: Vec<AttachmentInfo>,
}

#[derive(Clone, Debug)]
pub struct AttachmentInfo {
    pub attachment: Attachment,
    pub app_name: String,
    pub addon: Addon,
    pub addon_app_name: String,
}

impl Platform {
    /// The add-ons attached to an app, as its capabilities see them, oldest
    /// attachment first.
    pub(super) fn addon_bindings(&self, app_id: &str) -> Result<Vec<AddonBinding>> {
        let mut out = Vec::new();
        for attachment in self.addons.attachments(app_id)? {
            let Some(addon) = self.addons.find(&attachment.addon)? else {
                continue;
            };
            let reference = self.addon_ref(&addon)?;
            // A provider's add-on serves the interfaces of renga's own
            // key-value service, and is opened by the same names.
            let service = match reference.provider {
                Some(_) => crate::capability::KV_SERVICE.to_string(),
                None => addon.service.clone(),
            };
            out.push(AddonBinding {
                service,
                attachment: attachment.name.clone(),
                addon: reference,
            });
        }
        Ok(out)
    }

    /// What a release of the app records of its add-ons now.
    pub(super) fn release_addons(&self, app_id: &str) -> Result<ReleaseAddons> {
        let mut addons = ReleaseAddons::default();
        let mut plans = HashSet::new();
        for attachment in self.addons.attachments(app_id)? {
            let Some(addon) = self.addons.find(&attachment.addon)? else {
                continue;
            };
            for (var, _) in addon::config_vars(&attachment.name, &addon) {
                addons.vars.push(var);
            }
            if plans.insert(addon.id.clone()) {
                addons.plan_names.push(addon.plan_name());
            }
        }
        Ok(addons)
    }

    /// A rollback's config: the target's, with the vars of the add-ons
    /// attached now (a rollback does not roll add-ons back).
    pub(super) fn config_with_current_addons(
        &self,
        app: &App,
        target: &Release,
    ) -> Result<ConfigVars> {
        let mut config = target.config.clone();
        for var in &target.addons.vars {
            if let Ok(key) = var.parse() {
                config.remove(&key);
            }
        }
        for attachment in self.addons.attachments(&app.id)? {
            if let Some(addon) = self.addons.find(&attachment.addon)? {
                for (var, value) in addon::config_vars(&attachment.name, &addon) {
                    if let Ok(key) = var.parse() {
                        config.set(key, value);
                    }
                }
            }
        }
        Ok(config)
    }

    /// Every service: renga's own, then the registered providers'.
    pub fn addon_services(&self) -> Result<Vec<Service>> {
        let mut services = addon::SERVICES.to_vec();
        services.extend(self.addons.provider_services()?);
        Ok(services)
    }

    /// What a backend needs of an add-on: for a provider's, which
    /// component serves it and with what options.
    pub(super) fn addon_ref(&self, addon: &Addon) -> Result<AddonRef> {
        let mut reference = addon_ref(addon);
        if addon.backend() == BackendKind::Provider
            && let Some(provider) = self.addons.provider(&addon.service)?
        {
            reference.provider = Some(Arc::new(ProviderSpec {
                service: provider.name,
                digest: provider.digest,
                options: addon.options.clone().into_iter().collect(),
                outbound: provider.outbound,
            }));
        }
        Ok(reference)
    }

    /// Add-ons the user can see: those of one app (owned or attached), or
    /// of every app the user owns.
    pub fn list_addons(&self, user: &User, app: Option<&str>) -> Result<Vec<AddonInfo>> {
        let apps: Vec<App> = match app {
            Some(app) => vec![self.app(user, app)?],
            None => self.list_apps(user)?,
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for app in &apps {
            for attachment in self.addons.attachments(&app.id)? {
                if seen.insert(attachment.addon.clone())
                    && let Some(addon) = self.addons.find(&attachment.addon)?
                {
                    out.push(self.addon_info(addon)?);
                }
            }
        }
        out.sort_by_key(|a| a.addon.created_at);
        Ok(out)
    }

    /// One add-on, by name or id: it must belong to (or be attached to)
    /// an app the user owns, and to `app` when one is named.
    pub fn find_addon(&self, user: &User, app: Option<&str>, name_or_id: &str) -> Result<Addon> {
        let not_found =
            || PlatformError::NotFound(format!("Couldn't find that add-on: {name_or_id}"));
        let apps: Vec<App> = match app {
            Some(app) => vec![self.app(user, app)?],
            None => self.list_apps(user)?,
        };
        let ids: HashSet<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        // An attachment name of the app (`RENGA_KV`) works too.
        if let Some(app) = apps.first().filter(|_| apps.len() == 1)
            && let Some(attachment) = self
                .addons
                .attachments(&app.id)?
                .into_iter()
                .find(|a| a.name == name_or_id)
        {
            return self.addons.find(&attachment.addon)?.ok_or_else(not_found);
        }
        let addon = self.addons.find(name_or_id)?.ok_or_else(not_found)?;
        let reachable = ids.contains(addon.app.as_str())
            || self
                .addons
                .attachments_of(&addon.id)?
                .iter()
                .any(|a| ids.contains(a.app.as_str()));
        if reachable {
            Ok(addon)
        } else {
            Err(not_found())
        }
    }

    pub fn addon_info(&self, addon: Addon) -> Result<AddonInfo> {
        let app_name = self.app_name(&addon.app);
        let mut attachments = Vec::new();
        for attachment in self.addons.attachments_of(&addon.id)? {
            attachments.push(AttachmentInfo {
                app_name: self.app_name(&attachment.app),
                addon: addon.clone(),
                addon_app_name: app_name.clone(),
                attachment,
            });
        }
        attachments.sort_by_key(|a| a.attachment.created_at);
        Ok(AddonInfo {
            addon,
            app_name,
            attachments,
        })
    }

    /// An app's attachments, oldest first.
    pub fn addon_attachments(&self, user: &User, app: &str) -> Result<Vec<AttachmentInfo>> {
        let app = self.app(user, app)?;
        let mut out = Vec::new();
        for attachment in self.addons.attachments(&app.id)? {
            if let Some(addon) = self.addons.find(&attachment.addon)? {
                out.push(AttachmentInfo {
                    app_name: app.name.to_string(),
                    addon_app_name: self.app_name(&addon.app),
                    addon,
                    attachment,
                });
            }
        }
        Ok(out)
    }

    fn app_name(&self, id: &str) -> String {
        self.apps
            .find(id)
            .ok()
            .flatten()
            .map(|a| a.name.to_string())
            .unwrap_or_default()
    }

    /// `addons:create SERVICE[:PLAN] [--as NAME] [--name ADDON] [-- --KEY
    /// VALUE]`: a new add-on on the app, attached to it, in a new release.
    /// Options go to a provider's `provision`; renga's own services take
    /// none.
    pub async fn create_addon(
        &self,
        user: &User,
        name_or_id: &str,
        plan: &str,
        attachment: Option<&str>,
        name: Option<&str>,
        options: BTreeMap<String, String>,
    ) -> Result<AttachmentInfo> {
        let mut app = self.app(user, name_or_id)?;
        let (service, plan) = addon::parse_plan(plan, &self.addons.provider_services()?)
            .map_err(PlatformError::Invalid)?;
        let options = check_options(&service, options)?;
        if let Some(why) = self.config.servers.missing(plan.backend) {
            return Err(PlatformError::Invalid(format!(
                "{}:{} needs a server renga does not have: {why}",
                service.name, plan.name
            )));
        }
        let attachment = attachment
            .or(plan.attachment)
            .unwrap_or(&service.attachment)
            .to_string();
        addon::check_attachment_name(&attachment).map_err(PlatformError::Invalid)?;
        if let Some(name) = name {
            addon::check_addon_name(name).map_err(PlatformError::Invalid)?;
        }
        let _lock = self.lock(&mut app).await;
        let owned = self
            .addons
            .all()?
            .into_iter()
            .filter(|a| a.app == app.id)
            .count();
        if owned >= MAX_ADDONS {
            return Err(PlatformError::Invalid(format!(
                "{} already has {owned} add-ons, the most one app may have: destroy one first",
                app.name
            )));
        }
        self.check_attachment_room(&app, &attachment)?;
        let addon = self.new_addon(name, &service, plan, &app.id)?;
        let made = async {
            let addon = self.provision(&addon, plan, options).await?;
            self.attach_and_release(user, &app, &addon, &attachment)
                .await
        }
        .await;
        match made {
            Ok(info) => Ok(info),
            Err(e) => {
                // Nothing was released: the add-on never existed.
                let _ = self.addons.delete(&addon);
                self.db.flush().await?;
                self.deprovision(&addon).await;
                Err(e)
            }
        }
    }

    /// Makes an add-on's database or user on an external server, and
    /// records its URL; or has its provider component provision it.
    async fn provision(
        &self,
        addon: &Addon,
        plan: &Plan,
        options: BTreeMap<String, String>,
    ) -> Result<Addon> {
        let servers = &self.config.servers;
        let url = match plan.backend {
            BackendKind::Embedded => return Ok(addon.clone()),
            BackendKind::Provider => {
                let addon = self.addons.set_provisioned(addon, options, Vec::new())?;
                let reference = self.addon_ref(&addon)?;
                let spec = reference.provider.as_ref().ok_or_else(|| {
                    PlatformError::Invalid(format!("{} has no provider", addon.service))
                })?;
                let config = self
                    .runtime
                    .capabilities()
                    .providers()
                    .provision(&reference, &spec.options)
                    .await
                    .map_err(|e| {
                        PlatformError::Invalid(format!("Could not provision {}: {e}", addon.name))
                    })?;
                let options = addon.options.clone();
                let addon = self.addons.set_provisioned(&addon, options, config)?;
                self.db.flush().await?;
                return Ok(addon);
            }
            BackendKind::Postgres => {
                let server = servers.postgres.as_ref().ok_or_else(|| {
                    PlatformError::Invalid(servers.missing(plan.backend).unwrap_or_default())
                })?;
                let limit = if plan.name == "mini" { 20 } else { 60 };
                server.provision(&addon.id, limit).await
            }
            BackendKind::Redis => {
                let server = servers.redis.as_ref().ok_or_else(|| {
                    PlatformError::Invalid(servers.missing(plan.backend).unwrap_or_default())
                })?;
                server.provision(&addon.id).await
            }
        }
        .map_err(|e| PlatformError::Invalid(format!("Could not provision {}: {e}", addon.name)))?;
        let addon = self.addons.set_url(addon, url)?;
        self.db.flush().await?;
        Ok(addon)
    }

    /// Drops what an add-on had on an external server (logged, not
    /// refused: the record is gone either way).
    async fn deprovision(&self, addon: &Addon) {
        let servers = &self.config.servers;
        let dropped = match addon.backend() {
            // Its data is its folder, which forgetting it deletes.
            BackendKind::Embedded | BackendKind::Provider => Ok(()),
            BackendKind::Postgres => match &servers.postgres {
                Some(server) => server.deprovision(&addon.id).await,
                None => Err("this server has no PostgreSQL configured".to_string()),
            },
            BackendKind::Redis => match &servers.redis {
                Some(server) => server.deprovision(&addon.id).await,
                None => Err("this server has no Redis configured".to_string()),
            },
        };
        if let Err(e) = dropped {
            tracing::warn!(addon = %addon.name, error = %e, "could not drop an add-on's data on its server");
        }
    }

    fn new_addon(
        &self,
        name: Option<&str>,
        service: &Service,
        plan: &Plan,
        app_id: &str,
    ) -> Result<Addon> {
        if let Some(name) = name {
            return self
                .addons
                .create(name, service, plan, app_id)?
                .ok_or_else(|| {
                    PlatformError::Invalid(format!(
                        "Name {name} is already taken by another add-on"
                    ))
                });
        }
        for _ in 0..8 {
            let name = addon::Addons::random_name(service);
            if let Some(addon) = self.addons.create(&name, service, plan, app_id)? {
                return Ok(addon);
            }
        }
        Err(PlatformError::Internal(anyhow::anyhow!(
            "could not find a free add-on name"
        )))
    }

    fn check_attachment_room(&self, app: &App, attachment: &str) -> Result<()> {
        let attachments = self.addons.attachments(&app.id)?;
        if attachments.len() >= MAX_ATTACHMENTS {
            return Err(PlatformError::Invalid(format!(
                "{} already has {} add-on attachments, the most one app may have: detach one first",
                app.name,
                attachments.len()
            )));
        }
        if attachments.iter().any(|a| a.name == attachment) {
            return Err(PlatformError::Invalid(format!(
                "{} already has an add-on attached as {attachment}: choose another name with --as",
                app.name
            )));
        }
        let current = self.current_release(app)?;
        for var in addon::config_var_names(attachment) {
            if current.config.get(&var).is_some() {
                return Err(PlatformError::Invalid(format!(
                    "{} already has the config var {var}: unset it or choose another name with --as",
                    app.name
                )));
            }
        }
        Ok(())
    }

    /// Attaches an add-on and releases the app with its config var; the
    /// attachment is undone if the release is refused.
    async fn attach_and_release(
        &self,
        user: &User,
        app: &App,
        addon: &Addon,
        name: &str,
    ) -> Result<AttachmentInfo> {
        let attachment = self.addons.attach(addon, &app.id, name)?.ok_or_else(|| {
            PlatformError::Invalid(format!(
                "{} already has an add-on attached as {name}",
                app.name
            ))
        })?;
        let current = self.current_release(app)?;
        let mut config = current.config.clone();
        let vars = addon::config_vars(name, addon);
        if let Some((taken, _)) = vars.iter().find(|(var, _)| config.get(var).is_some()) {
            self.addons.detach(&attachment)?;
            self.db.flush().await?;
            return Err(PlatformError::Invalid(format!(
                "{} already has the config var {taken}: unset it or choose another name with --as",
                app.name
            )));
        }
        for (var, value) in vars {
            config.set(
                var.parse().map_err(|e: crate::config::InvalidConfigKey| {
                    PlatformError::Invalid(e.to_string())
                })?,
                value,
            );
        }
        let released = async {
            config
                .check_limits()
                .map_err(|e| PlatformError::Invalid(e.to_string()))?;
            self.release(
                app,
                user,
                current.version,
                current.slug.clone(),
                config,
                format!("Attach {name} ({})", addon.name),
            )
            .await
        }
        .await;
        if let Err(e) = released {
            self.addons.detach(&attachment)?;
            self.db.flush().await?;
            return Err(e);
        }
        Ok(AttachmentInfo {
            app_name: app.name.to_string(),
            addon_app_name: self.app_name(&addon.app),
            addon: addon.clone(),
            attachment,
        })
    }

    /// `addons:attach ADDON -a APP [--as NAME]`: shares an add-on the user
    /// owns with another of the user's apps.
    pub async fn attach_addon(
        &self,
        user: &User,
        addon: &str,
        name_or_id: &str,
        name: Option<&str>,
    ) -> Result<AttachmentInfo> {
        let addon = self.find_addon(user, None, addon)?;
        let mut app = self.app(user, name_or_id)?;
        let service = self.addon_service(&addon)?.ok_or_else(|| {
            PlatformError::Invalid(format!(
                "{} is of a service renga no longer has",
                addon.name
            ))
        })?;
        let name = name.unwrap_or(&service.attachment).to_string();
        addon::check_attachment_name(&name).map_err(PlatformError::Invalid)?;
        let _lock = self.lock(&mut app).await;
        if self
            .addons
            .attachments(&app.id)?
            .iter()
            .any(|a| a.addon == addon.id)
        {
            return Err(PlatformError::Invalid(format!(
                "{} is already attached to {}",
                addon.name, app.name
            )));
        }
        self.check_attachment_room(&app, &name)?;
        self.attach_and_release(user, &app, &addon, &name).await
    }

    /// `addons:detach NAME -a APP`: removes one attachment (by its name,
    /// or the add-on's) and its config var, in a new release. The owning
    /// app's own attachment goes with `addons:destroy`.
    pub async fn detach_addon(
        &self,
        user: &User,
        name_or_id: &str,
        which: &str,
    ) -> Result<AttachmentInfo> {
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        let attachments = self.addons.attachments(&app.id)?;
        let attachment = match attachments
            .iter()
            .find(|a| a.name == which || a.id == which)
        {
            Some(a) => a.clone(),
            None => {
                let addon = self.addons.find(which)?;
                attachments
                    .iter()
                    .find(|a| addon.as_ref().is_some_and(|addon| addon.id == a.addon))
                    .cloned()
                    .ok_or_else(|| {
                        PlatformError::NotFound(format!(
                            "Couldn't find that add-on attachment on {}: {which}",
                            app.name
                        ))
                    })?
            }
        };
        let addon = self.addons.find(&attachment.addon)?.ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that add-on: {which}"))
        })?;
        if addon.app == app.id && attachments.iter().filter(|a| a.addon == addon.id).count() == 1 {
            return Err(PlatformError::Invalid(format!(
                "{} belongs to {}: destroy it with `renga addons:destroy {} -a {} --confirm {}`",
                addon.name, app.name, addon.name, app.name, app.name
            )));
        }
        self.detach_and_release(user, &app, &addon, &attachment)
            .await?;
        Ok(AttachmentInfo {
            app_name: app.name.to_string(),
            addon_app_name: self.app_name(&addon.app),
            addon,
            attachment,
        })
    }

    /// Removes an attachment and releases the app without its config var;
    /// the attachment comes back if the release is refused.
    async fn detach_and_release(
        &self,
        user: &User,
        app: &App,
        addon: &Addon,
        attachment: &Attachment,
    ) -> Result<()> {
        self.addons.detach(attachment)?;
        let current = self.current_release(app)?;
        let mut config = current.config.clone();
        let set = addon::config_vars(&attachment.name, addon);
        for var in addon::config_var_names(&attachment.name)
            .into_iter()
            .chain(set.into_iter().map(|(var, _)| var))
        {
            if let Ok(key) = var.parse() {
                config.remove(&key);
            }
        }
        let released = self
            .release(
                app,
                user,
                current.version,
                current.slug.clone(),
                config,
                format!("Detach {} ({})", attachment.name, addon.name),
            )
            .await;
        if let Err(e) = released {
            self.addons.attach(addon, &app.id, &attachment.name)?;
            self.db.flush().await?;
            return Err(PlatformError::Invalid(format!(
                "Could not detach {} from {}, because the app's code still uses it: {e}. Deploy code that does not, then try again",
                attachment.name, app.name
            )));
        }
        Ok(())
    }

    /// `addons:upgrade ADDON PLAN`: another plan of the same service, in a
    /// new release of every app it is attached to (their quotas change).
    pub async fn change_addon_plan(
        &self,
        user: &User,
        name_or_id: &str,
        which: &str,
        plan: &str,
    ) -> Result<AddonInfo> {
        let app = self.app(user, name_or_id)?;
        let addon = self.find_addon(user, Some(app.name.as_str()), which)?;
        let spec = if plan.contains(':') {
            plan.to_string()
        } else {
            format!("{}:{plan}", addon.service)
        };
        let (service, plan) = addon::parse_plan(&spec, &self.addons.provider_services()?)
            .map_err(PlatformError::Invalid)?;
        if service.name != addon.service {
            return Err(PlatformError::Invalid(format!(
                "{} is a {} add-on; it cannot change to {}",
                addon.name, addon.service, service.name
            )));
        }
        if plan.backend != addon.backend() {
            return Err(PlatformError::Invalid(format!(
                "{} keeps its data {}; {} keeps it {}, and renga does not move data between them: create a {} add-on and copy the data",
                addon.name,
                addon.backend().describe(),
                updated_name(&service, plan),
                plan.backend.describe(),
                updated_name(&service, plan)
            )));
        }
        if addon.app != app.id {
            return Err(PlatformError::Invalid(format!(
                "{} belongs to {}: change its plan there",
                addon.name,
                self.app_name(&addon.app)
            )));
        }
        let updated = self.addons.set_plan(&addon, plan)?;
        self.db.flush().await?;
        for attachment in self.addons.attachments_of(&addon.id)? {
            let Some(mut attached) = self.apps.find(&attachment.app)? else {
                continue;
            };
            let _lock = self.lock(&mut attached).await;
            let current = self.current_release(&attached)?;
            self.release(
                &attached,
                user,
                current.version,
                current.slug.clone(),
                current.config.clone(),
                format!("Change {} to {}", addon.name, updated.plan_name()),
            )
            .await?;
        }
        self.addon_info(updated)
    }

    /// `addons:destroy ADDON --confirm APP`: detaches it from every app
    /// (a release each), forgets it and deletes its data.
    pub async fn destroy_addon(
        &self,
        user: &User,
        name_or_id: &str,
        which: &str,
    ) -> Result<AddonInfo> {
        let app = self.app(user, name_or_id)?;
        let addon = self.find_addon(user, Some(app.name.as_str()), which)?;
        if addon.app != app.id {
            return Err(PlatformError::Invalid(format!(
                "{} belongs to {}: detach it from {} with `renga addons:detach`, or destroy it from {}",
                addon.name,
                self.app_name(&addon.app),
                app.name,
                self.app_name(&addon.app)
            )));
        }
        let info = self.addon_info(addon.clone())?;
        // Other apps first, the owner last, each under its own lock.
        let mut attachments = self.addons.attachments_of(&addon.id)?;
        attachments.sort_by_key(|a| a.app == addon.app);
        for attachment in attachments {
            let Some(mut attached) = self.apps.find(&attachment.app)? else {
                self.addons.detach(&attachment)?;
                continue;
            };
            let _lock = self.lock(&mut attached).await;
            self.detach_and_release(user, &attached, &addon, &attachment)
                .await?;
        }
        self.forget_addon(&addon).await?;
        Ok(info)
    }

    /// `pg:info`: a `renga-postgres` add-on's size, connections and
    /// version, as its server reports them.
    pub async fn database_info(
        &self,
        user: &User,
        app: &str,
        which: &str,
    ) -> Result<(AddonInfo, crate::provider::postgres::PgInfo)> {
        let found = self.find_addon(user, Some(app), which)?;
        if found.backend() != BackendKind::Postgres {
            return Err(PlatformError::Invalid(format!(
                "{} is a {} add-on, not a PostgreSQL database",
                found.name,
                found.plan_name()
            )));
        }
        let server = self.config.servers.postgres.as_ref().ok_or_else(|| {
            PlatformError::Invalid(
                self.config
                    .servers
                    .missing(BackendKind::Postgres)
                    .unwrap_or_default(),
            )
        })?;
        let info = server
            .info(&found.id)
            .await
            .map_err(|e| PlatformError::Invalid(format!("{}: {e}", found.name)))?;
        Ok((self.addon_info(found)?, info))
    }

    /// Forgets an add-on's record and deletes its data (off the async
    /// workers). Releases that reached it are gone by then; a dyno still
    /// draining keeps its open file until it ends.
    pub(super) async fn forget_addon(&self, addon: &Addon) -> Result<()> {
        self.addons.delete(addon)?;
        self.db.flush().await?;
        self.deprovision(addon).await;
        let folder = self.addon_folder(&addon.id);
        let removed = tokio::task::spawn_blocking(move || crate::sandbox::remove_tree(&folder));
        if let Err(e) = removed.await? {
            tracing::warn!(addon = %addon.name, error = %format!("{e:#}"), "could not delete an add-on's data");
        }
        Ok(())
    }

    fn addon_folder(&self, id: &str) -> std::path::PathBuf {
        self.config.data.join("addons").join(id)
    }

    /// Before an app is deleted: its own add-ons are destroyed (detached
    /// from the other apps they were shared with), and its attachments of
    /// other apps' add-ons are forgotten.
    pub(super) async fn remove_app_addons(&self, user: &User, app: &App) -> Result<()> {
        for attachment in self.addons.attachments(&app.id)? {
            self.addons.detach(&attachment)?;
        }
        let owned: Vec<Addon> = self
            .addons
            .all()?
            .into_iter()
            .filter(|a| a.app == app.id)
            .collect();
        for addon in owned {
            for attachment in self.addons.attachments_of(&addon.id)? {
                let Some(mut attached) = self.apps.find(&attachment.app)? else {
                    self.addons.detach(&attachment)?;
                    continue;
                };
                let _lock = self.lock(&mut attached).await;
                if let Err(e) = self
                    .detach_and_release(user, &attached, &addon, &attachment)
                    .await
                {
                    // The other app's release refused (it needs the add-on):
                    // it loses the attachment anyway, as the app is gone.
                    self.addons.detach(&attachment)?;
                    self.say(&attached, format!("{e}"));
                }
            }
            self.forget_addon(&addon).await?;
        }
        Ok(())
    }
}

fn updated_name(service: &Service, plan: &Plan) -> String {
    format!("{}:{}", service.name, plan.name)
}

/// What a backend needs of an add-on (a provider's add-on also needs its
/// component: [`Platform::addon_ref`]).
fn addon_ref(addon: &Addon) -> AddonRef {
    AddonRef {
        id: addon.id.clone(),
        name: addon.name.clone(),
        quota: addon.quota(),
        backend: addon.backend(),
        url: addon.url.clone(),
        provider: None,
    }
}

/// Options an add-on is created with, in the shape its provider gets them:
/// keys lowercase (`--max-items` is `max_items`), few and small; renga's
/// own services take none.
fn check_options(
    service: &Service,
    options: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if options.is_empty() {
        return Ok(options);
    }
    if service.provider.is_none() {
        return Err(PlatformError::Invalid(format!(
            "{} takes no options (given: {})",
            service.name,
            options.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut checked = BTreeMap::new();
    let mut config = ConfigVars::new();
    for (key, value) in options {
        let key = key
            .trim_start_matches('-')
            .to_ascii_lowercase()
            .replace('-', "_");
        let parsed: crate::config::ConfigKey = key.parse().map_err(|_| {
            PlatformError::Invalid(format!(
                "invalid option {key:?}: use letters, digits, - and _"
            ))
        })?;
        config.set(parsed, value.clone());
        checked.insert(key, value);
    }
    if checked.len() > 32 {
        return Err(PlatformError::Invalid(
            "at most 32 options may be given to a provider".to_string(),
        ));
    }
    config
        .check_limits()
        .map_err(|e| PlatformError::Invalid(format!("the options are too large: {e}")))?;
    Ok(checked)
}
