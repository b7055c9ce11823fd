//! Apps and their config vars: creating, finding, listing and deleting
//! apps, maintenance mode, their URLs, and changing config vars (each change
//! a new release).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::{App, AppName};
use crate::auth::User;
use crate::config::{ConfigKey, ConfigVars};
use crate::release::{NewRelease, ReleaseAddons};
use crate::router::AppRoute;

use super::{CONFLICT_RETRIES, Platform, PlatformError, Result, name_list};

impl Platform {
    // ---- apps -----------------------------------------------------------

    pub async fn create_app(&self, user: &User, name: Option<&str>) -> Result<App> {
        let name = match name {
            Some(name) => name
                .parse::<AppName>()
                .map_err(|e| PlatformError::Invalid(e.to_string()))?,
            None => AppName::random(),
        };
        let app = self
            .apps
            .create(name.clone(), &user.id)?
            .ok_or_else(|| PlatformError::Invalid(format!("Name {name} is already taken")))?;
        let log = self.logs.app(&app.id);
        self.routes.insert(
            &app.id,
            app.name.as_str(),
            Arc::new(
                AppRoute::new(app.name.as_str(), log, self.empty_web(&app))
                    .with_meter(self.metrics.app(&app.id).router()),
            ),
        );
        let release = self
            .ledger
            .append(
                &app.id,
                0,
                NewRelease {
                    slug: None,
                    config: ConfigVars::new(),
                    description: "Initial release".into(),
                    user_id: &user.id,
                    user_name: &user.name,
                    addons: ReleaseAddons::default(),
                },
            )?
            .ok_or_else(|| anyhow::anyhow!("a new app's first release was taken"))?;
        self.db.flush().await?;
        self.announce(&app, &release);
        Ok(app)
    }

    /// An app the user owns or collaborates on, by name or id. Another
    /// user's app is reported as missing, so that names do not leak through
    /// the API.
    pub fn app(&self, user: &User, name_or_id: &str) -> Result<App> {
        match self.apps.find(name_or_id)? {
            Some(app)
                if app.owner == user.id
                    || self.collaborators.is_collaborator(&app.id, &user.id)? =>
            {
                Ok(app)
            }
            _ => Err(PlatformError::NotFound(format!(
                "Couldn't find that app: {name_or_id}"
            ))),
        }
    }

    /// An app the user owns: what only its owner may do (`doing`, such as
    /// "delete") is refused to a collaborator with the reason.
    pub fn owned_app(&self, user: &User, name_or_id: &str, doing: &str) -> Result<App> {
        let app = self.app(user, name_or_id)?;
        if app.owner != user.id {
            return Err(PlatformError::Forbidden(format!(
                "Only the owner of {} can {doing} it; you are a collaborator",
                app.name
            )));
        }
        Ok(app)
    }

    /// The apps a user owns or collaborates on, by name.
    pub fn list_apps(&self, user: &User) -> Result<Vec<App>> {
        let shared = self.collaborators.apps_of(&user.id)?;
        Ok(self
            .apps
            .all()?
            .into_iter()
            .filter(|a| a.owner == user.id || shared.contains(&a.id))
            .collect())
    }

    /// The name of the user who owns an app (empty if they are gone).
    pub fn owner_name(&self, app: &App) -> String {
        self.auth
            .find(&app.owner)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default()
    }

    pub async fn delete_app(&self, user: &User, name_or_id: &str) -> Result<App> {
        let mut app = self.owned_app(user, name_or_id, "delete")?;
        self.remove_app_addons(user, &app).await?;
        let _lock = self.lock(&mut app).await;
        self.domains.delete_app(&app.id)?;
        self.delete_drains(&app)?;
        self.collaborators.delete_app(&app.id)?;
        self.stop_app_here(&app.id);
        self.ledger.delete_app(&app.id)?;
        self.slugs.delete_app(&app.id)?;
        self.formations.delete_app(&app.id)?;
        self.builds.delete_app(&app.id)?;
        self.apps.delete(&app)?;
        self.db.flush().await?;
        self.forget_app_here(&app.id).await;
        self.collect_slug_files();
        Ok(app)
    }

    /// Stops serving and running a deleted app on this host: its routes,
    /// workers (their leases given up once stopped) and one-off dynos.
    fn stop_app_here(&self, app_id: &str) {
        self.routes.remove(app_id);
        self.end_workers(app_id);
        self.stop_one_offs(app_id, None);
        self.one_offs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        self.cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        self.release_caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
    }

    /// Drops what this host keeps of a deleted app once it is stopped: its
    /// logs, meters, build cache (here and in the cluster) and git folder.
    async fn forget_app_here(&self, app_id: &str) {
        self.logs.remove(app_id);
        self.metrics.remove(app_id);
        // A build cache can hold gigabytes: removed off the async workers.
        let caches = self.build_caches.clone();
        let app_id = app_id.to_string();
        let repo = self.config.data.join("repos").join(format!("{app_id}.git"));
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = caches.remove(&app_id) {
                tracing::warn!(app = %app_id, error = %format!("{e:#}"), "could not remove a deleted app's build cache");
            }
            let _ = crate::sandbox::remove_tree(&repo);
        })
        .await;
    }

    /// On a cluster: an app deleted through another host stops here too.
    pub(super) async fn app_deleted_elsewhere(&self, app_id: &str) {
        self.stop_app_here(app_id);
        self.forget_app_here(app_id).await;
    }

    pub async fn set_maintenance(&self, user: &User, name_or_id: &str, on: bool) -> Result<App> {
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        let app = self.apps.set_maintenance(&app, on)?;
        self.db.flush().await?;
        if let Some(route) = self.routes.get(app.name.as_str()) {
            route.set(route.current().with_maintenance(on));
        }
        let verb = if on { "Enable" } else { "Disable" };
        self.say(&app, format!("{verb} maintenance mode by {}", user.name));
        Ok(app)
    }

    /// The API's address as clients reach it (see [`super::PlatformConfig::public_url`]).
    pub fn public_url(&self) -> &str {
        &self.config.public_url
    }

    pub fn web_url(&self, app: &App) -> String {
        format!(
            "http://{}:{}/",
            self.default_hostname(app),
            self.config.http_port
        )
    }

    /// `APP.DOMAIN`: the hostname every app answers for.
    pub fn default_hostname(&self, app: &App) -> String {
        format!("{}.{}", app.name, self.config.domain)
    }

    // ---- config vars ------------------------------------------------------

    pub fn config_vars(&self, user: &User, name_or_id: &str) -> Result<ConfigVars> {
        let app = self.app(user, name_or_id)?;
        Ok(self.current_release(&app)?.config)
    }

    /// Sets (`Some`) and removes (`None`) config vars in one new release.
    /// Linear in the number of changes; the result must fit the limits
    /// every app has ([`ConfigVars::check_limits`]).
    pub async fn update_config(
        &self,
        user: &User,
        name_or_id: &str,
        changes: BTreeMap<ConfigKey, Option<String>>,
    ) -> Result<ConfigVars> {
        let mut app = self.app(user, name_or_id)?;
        for (key, value) in &changes {
            if let Some(value) = value {
                crate::config::check_value(key, value)
                    .map_err(|e| PlatformError::Invalid(e.to_string()))?;
            }
        }
        let _lock = self.lock(&mut app).await;
        // A change made from a release another host replaced meanwhile is
        // made again from the newer one (which the store then shows).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.change_config(&app, user, &changes).await {
                Err(PlatformError::Conflict(_)) if attempt < CONFLICT_RETRIES => continue,
                done => return done,
            }
        }
    }

    async fn change_config(
        &self,
        app: &App,
        user: &User,
        changes: &BTreeMap<ConfigKey, Option<String>>,
    ) -> Result<ConfigVars> {
        let current = self.current_release(app)?;
        let mut config = current.config.clone();
        let (mut set, mut removed) = (Vec::new(), Vec::new());
        for (key, value) in changes.clone() {
            match value {
                Some(value) => {
                    if config.get(key.as_str()) != Some(value.as_str()) {
                        set.push(key.to_string());
                    }
                    config.set(key, value);
                }
                None => {
                    if config.remove(&key).is_some() {
                        removed.push(key.to_string());
                    }
                }
            }
        }
        if set.is_empty() && removed.is_empty() {
            return Ok(config);
        }
        // Only a change that grows the vars must fit the limits, so that an
        // app over them (from before they existed) can still shrink.
        let grows = config.len() > current.config.len()
            || config.total_bytes() > current.config.total_bytes();
        if grows {
            config
                .check_limits()
                .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        }
        let description = match (set.is_empty(), removed.is_empty()) {
            (false, true) => format!("Set {} config vars", name_list(&set)),
            (true, false) => format!("Remove {} config vars", name_list(&removed)),
            _ => format!(
                "Set {} and remove {} config vars",
                name_list(&set),
                name_list(&removed)
            ),
        };
        self.release(
            app,
            user,
            current.version,
            current.slug.clone(),
            config.clone(),
            description,
        )
        .await?;
        Ok(config)
    }
}
