//! Log drains: an app's log sent to receivers its users name, each by its
//! own task reading a bounded outlet of the app's log.

use std::sync::Arc;

use crate::app::App;
use crate::auth::User;
use crate::drain::{Drain, DrainUrl, InvalidDrainUrl, MAX_DRAINS};
use crate::logplex::Outlet;

use super::{Platform, PlatformError, Result};

impl Platform {
    pub fn drains(&self, user: &User, name_or_id: &str) -> Result<(App, Vec<Drain>)> {
        let app = self.app(user, name_or_id)?;
        let drains = self.drains.of_app(&app.id)?;
        Ok((app, drains))
    }

    /// One of an app's drains, by id, token or URL.
    pub fn drain(&self, user: &User, name_or_id: &str, which: &str) -> Result<(App, Drain)> {
        let (app, drains) = self.drains(user, name_or_id)?;
        let drain = drains
            .into_iter()
            .find(|d| d.is(which))
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that drain: {which}")))?;
        Ok((app, drain))
    }

    /// Sends the app's log to `url` from now on.
    pub async fn add_drain(
        &self,
        user: &User,
        name_or_id: &str,
        url: &str,
    ) -> Result<(App, Drain)> {
        let mut app = self.app(user, name_or_id)?;
        let url: DrainUrl = url
            .parse()
            .map_err(|e: InvalidDrainUrl| PlatformError::Invalid(e.to_string()))?;
        if let Ok(ip) = url.host.parse::<std::net::IpAddr>()
            && !self.config.drains.allow_private
            && !crate::drain::deliver::is_public(ip)
        {
            return Err(PlatformError::Invalid(format!(
                "{ip} is a private address; this server sends drains to public addresses only"
            )));
        }
        let _lock = self.lock(&mut app).await;
        self.still_there(&app)?;
        let drains = self.drains.of_app(&app.id)?;
        if drains.iter().any(|d| d.url == url) {
            return Err(PlatformError::Invalid(format!(
                "{} already drains to {url}",
                app.name
            )));
        }
        if drains.len() >= MAX_DRAINS {
            return Err(PlatformError::Invalid(format!(
                "{} already has {MAX_DRAINS} drains, the most an app may have",
                app.name
            )));
        }
        let drain = self.drains.add(&app.id, url)?;
        self.db.flush().await?;
        self.start_drain(&drain);
        self.say(&app, format!("Add drain {} by {}", drain.token, user.name));
        Ok((app, drain))
    }

    pub async fn remove_drain(
        &self,
        user: &User,
        name_or_id: &str,
        which: &str,
    ) -> Result<(App, Drain)> {
        let (mut app, _) = self.drain(user, name_or_id, which)?;
        let _lock = self.lock(&mut app).await;
        let (app, drain) = self.drain(user, &app.id, which)?;
        self.drains.remove(&drain)?;
        self.db.flush().await?;
        self.stop_drain(&drain);
        self.say(
            &app,
            format!("Remove drain {} by {}", drain.token, user.name),
        );
        Ok((app, drain))
    }

    /// Starts delivering a drain: from now on its app's lines also go to
    /// its outlet.
    pub(super) fn start_drain(&self, drain: &Drain) {
        if self
            .drain_outlets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&drain.id)
        {
            return;
        }
        let outlet = Outlet::new(self.config.drains.buffer_lines);
        let log = self.logs.app(&drain.app);
        log.attach(outlet.clone());
        tokio::spawn(crate::drain::run(
            drain.clone(),
            outlet.clone(),
            log,
            self.config.drains.clone(),
        ));
        self.drain_outlets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(drain.id.clone(), (drain.app.clone(), outlet));
    }

    /// Stops a drain's delivery: its task ends and its connection closes.
    pub(super) fn stop_drain(&self, drain: &Drain) {
        self.stop_drain_of(&drain.app, &drain.id);
    }

    fn stop_drain_of(&self, app_id: &str, drain_id: &str) {
        let outlet = self
            .drain_outlets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(drain_id);
        if let Some(((_, outlet), log)) = outlet.zip(self.logs.find(app_id)) {
            log.detach(&outlet);
        }
    }

    /// On a cluster, after missing changes: runs exactly the drains the
    /// ledger lists.
    pub(super) fn follow_every_drain(&self) {
        let Ok(drains) = self.drains.all() else {
            return;
        };
        let running: Vec<(String, String)> = self
            .drain_outlets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, (app_id, _))| (app_id.clone(), id.clone()))
            .collect();
        for (app_id, id) in running {
            if drains.iter().all(|d| d.id != id) {
                self.stop_drain_of(&app_id, &id);
            }
        }
        for drain in &drains {
            self.start_drain(drain);
        }
    }

    /// On a cluster: a drain another host added or removed starts or stops
    /// here too (each host delivers the lines it writes itself).
    pub(super) fn follow_drain(&self, app_id: &str, drain_id: &str) {
        match self.drains.get(app_id, drain_id) {
            Ok(Some(drain)) => self.start_drain(&drain),
            Ok(None) => self.stop_drain_of(app_id, drain_id),
            Err(e) => {
                tracing::warn!(app = %app_id, error = %e, "could not read a drain changed on another host");
            }
        }
    }

    /// Starts every drain (at start).
    pub(super) fn start_drains(&self) -> Result<()> {
        for drain in self.drains.all()? {
            self.start_drain(&drain);
        }
        Ok(())
    }

    /// Removes an app's drains (it is being destroyed).
    pub(super) fn delete_drains(&self, app: &App) -> Result<()> {
        for drain in self.drains.delete_app(&app.id)? {
            self.stop_drain(&drain);
        }
        Ok(())
    }
}

/// Each running drain's app id and outlet, by the drain's id.
pub(super) type DrainOutlets =
    std::sync::Mutex<std::collections::HashMap<String, (String, Arc<Outlet>)>>;
