//! What an app shares with the world and with other users: its name (and
//! so its URL and git remote), its custom domains and its collaborators.

use crate::app::{App, AppName, Collaborator, MAX_COLLABORATORS};
use crate::auth::User;
use crate::domain::{Domain, Hostname, MAX_DOMAINS};

use super::{Platform, PlatformError, Result};

impl Platform {
    // ---- names ---------------------------------------------------------------

    /// The size in bytes of the slug an app's current release runs, if it
    /// has one.
    pub fn slug_size(&self, app: &App) -> Option<u64> {
        let release = self.current_release(app).ok()?;
        let slug = self.slugs.find(&app.id, release.slug.as_deref()?).ok()??;
        Some(slug.size)
    }

    /// Renames an app (owner only): its URL, git remote and log follow at
    /// once; its id, releases, config and add-ons stay as they are. Refused
    /// while the app builds, so that the build cannot release under the old
    /// name.
    pub async fn rename_app(&self, user: &User, name_or_id: &str, name: &str) -> Result<App> {
        let mut app = self.owned_app(user, name_or_id, "rename")?;
        let name: AppName = name
            .parse()
            .map_err(|e: crate::app::InvalidAppName| PlatformError::Invalid(e.to_string()))?;
        if name == app.name {
            return Ok(app);
        }
        let building = self
            .build_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app.id.clone())
            .or_default()
            .clone();
        let Ok(_building) = building.try_lock_owned() else {
            return Err(PlatformError::Invalid(format!(
                "{} is building; rename it when the build is done",
                app.name
            )));
        };
        let _lock = self.lock(&mut app).await;
        let route = self.routes.get(app.name.as_str());
        let renamed = self
            .apps
            .rename(&app, name.clone())?
            .ok_or_else(|| PlatformError::Invalid(format!("Name {name} is already taken")))?;
        self.db.flush().await?;
        if let Some(route) = route {
            self.routes
                .rename(&app.id, app.name.as_str(), renamed.name.as_str(), &route);
        }
        self.say(
            &renamed,
            format!("Rename {} to {} by {}", app.name, renamed.name, user.name),
        );
        Ok(renamed)
    }

    // ---- collaborators ---------------------------------------------------------

    pub fn collaborators(&self, user: &User, name_or_id: &str) -> Result<(App, Vec<Collaborator>)> {
        let app = self.app(user, name_or_id)?;
        let collaborators = self.collaborators.of_app(&app.id)?;
        Ok((app, collaborators))
    }

    /// Gives another user access to an app (owner only), by their name.
    pub async fn add_collaborator(
        &self,
        user: &User,
        name_or_id: &str,
        who: &str,
    ) -> Result<(App, Collaborator)> {
        let mut app = self.owned_app(user, name_or_id, "share")?;
        let other = self
            .auth
            .find_by_name(who)?
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that user: {who}")))?;
        if other.id == app.owner {
            return Err(PlatformError::Invalid(format!(
                "{who} owns {}: an owner is not also a collaborator",
                app.name
            )));
        }
        let _lock = self.lock(&mut app).await;
        if self.collaborators.of_app(&app.id)?.len() >= MAX_COLLABORATORS {
            return Err(PlatformError::Invalid(format!(
                "{} already has {MAX_COLLABORATORS} collaborators, the most an app may have",
                app.name
            )));
        }
        let collaborator = self
            .collaborators
            .add(&app.id, &other.id, &other.name)?
            .ok_or_else(|| {
                PlatformError::Invalid(format!("{who} is already a collaborator on {}", app.name))
            })?;
        self.db.flush().await?;
        self.say(
            &app,
            format!("Add {who} as a collaborator by {}", user.name),
        );
        Ok((app, collaborator))
    }

    /// Takes a collaborator's access away (owner only), by user name or
    /// collaborator id.
    pub async fn remove_collaborator(
        &self,
        user: &User,
        name_or_id: &str,
        who: &str,
    ) -> Result<(App, Collaborator)> {
        let mut app = self.owned_app(user, name_or_id, "unshare")?;
        let _lock = self.lock(&mut app).await;
        let collaborator = self
            .collaborators
            .of_app(&app.id)?
            .into_iter()
            .find(|c| c.user_name == who || c.id == who || c.user_id == who)
            .ok_or_else(|| {
                PlatformError::NotFound(format!("{who} is not a collaborator on {}", app.name))
            })?;
        self.collaborators.remove(&collaborator)?;
        self.db.flush().await?;
        self.say(
            &app,
            format!(
                "Remove {} as a collaborator by {}",
                collaborator.user_name, user.name
            ),
        );
        Ok((app, collaborator))
    }

    // ---- domains ----------------------------------------------------------------

    pub fn domains(&self, user: &User, name_or_id: &str) -> Result<(App, Vec<Domain>)> {
        let app = self.app(user, name_or_id)?;
        let domains = self.domains.of_app(&app.id)?;
        Ok((app, domains))
    }

    /// One of an app's domains, by hostname or id.
    pub fn domain(&self, user: &User, name_or_id: &str, which: &str) -> Result<(App, Domain)> {
        let (app, domains) = self.domains(user, name_or_id)?;
        let which = which.to_ascii_lowercase();
        let domain = domains
            .into_iter()
            .find(|d| d.hostname.as_str() == which || d.id == which)
            .ok_or_else(|| {
                PlatformError::NotFound(format!("Couldn't find that domain: {which}"))
            })?;
        Ok((app, domain))
    }

    /// Makes the router send requests for `hostname` to the app. A hostname
    /// belongs to one app, and never one under the platform's own domain.
    pub async fn add_domain(
        &self,
        user: &User,
        name_or_id: &str,
        hostname: &str,
    ) -> Result<(App, Domain)> {
        let mut app = self.app(user, name_or_id)?;
        let hostname: Hostname = hostname
            .parse()
            .map_err(|e: crate::domain::InvalidHostname| PlatformError::Invalid(e.to_string()))?;
        if self.routes.is_own(hostname.as_str()) {
            return Err(PlatformError::Invalid(format!(
                "{hostname} is under {}, which renga names apps with; add a domain of your own",
                self.routes.own_domain()
            )));
        }
        let _lock = self.lock(&mut app).await;
        if self.domains.of_app(&app.id)?.len() >= MAX_DOMAINS {
            return Err(PlatformError::Invalid(format!(
                "{} already has {MAX_DOMAINS} domains, the most an app may have",
                app.name
            )));
        }
        let domain = self
            .domains
            .add(&app.id, hostname.clone())?
            .ok_or_else(|| {
                PlatformError::Invalid(format!("{hostname} is already taken by an app"))
            })?;
        self.db.flush().await?;
        if let Some(route) = self.routes.get(app.name.as_str()) {
            self.routes.insert_domain(hostname.as_str(), route);
        }
        self.say(&app, format!("Add domain {hostname} by {}", user.name));
        Ok((app, domain))
    }

    pub async fn remove_domain(
        &self,
        user: &User,
        name_or_id: &str,
        which: &str,
    ) -> Result<(App, Domain)> {
        let (mut app, domain) = self.domain(user, name_or_id, which)?;
        let _lock = self.lock(&mut app).await;
        self.domains.remove(&domain)?;
        self.db.flush().await?;
        self.routes.remove_domain(
            domain.hostname.as_str(),
            self.routes.get(app.name.as_str()).as_ref(),
        );
        self.say(
            &app,
            format!("Remove domain {} by {}", domain.hostname, user.name),
        );
        Ok((app, domain))
    }

    /// Points the router at exactly the app's domains (at start, and when
    /// another host of a cluster changed them).
    pub(super) fn route_domains(&self, app: &App) -> Result<()> {
        let Some(route) = self.routes.get(app.name.as_str()) else {
            return Ok(());
        };
        let domains = self.domains.of_app(&app.id)?;
        let hostnames: Vec<&str> = domains.iter().map(|d| d.hostname.as_str()).collect();
        self.routes.route_domains(&route, &hostnames);
        Ok(())
    }
}
