//! The server's route table: which app a request's `Host` names, by its
//! `APP.DOMAIN` hostname or by a custom domain. Read by the router on every
//! request without a lock; written by the platform when apps come, go,
//! rename or add domains.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::router::{AllRoutes, AppRoute, RouteTable};

/// Routes `NAME.DOMAIN` to the app called NAME, and each app's own
/// domains to it.
pub struct ServerRoutes {
    suffix: String,
    apps: ArcSwap<HashMap<String, Arc<AppRoute>>>,
    /// Hostnames outside `DOMAIN`, each to its app's route (the same one
    /// `apps` holds, so a rename leaves them be).
    domains: ArcSwap<HashMap<String, Arc<AppRoute>>>,
    /// Each routed app's name, by the app's id (written with `apps`, read
    /// when another host renamed or deleted an app).
    names: std::sync::Mutex<HashMap<String, String>>,
}

impl ServerRoutes {
    pub(super) fn new(domain: &str) -> ServerRoutes {
        ServerRoutes {
            suffix: format!(".{}", domain.trim_start_matches('.').to_ascii_lowercase()),
            apps: ArcSwap::from_pointee(HashMap::new()),
            domains: ArcSwap::from_pointee(HashMap::new()),
            names: std::sync::Mutex::default(),
        }
    }

    /// Whether `host` is under the platform's own domain (and so never an
    /// app's custom domain).
    /// The server's own domain (`localhost`).
    pub(super) fn own_domain(&self) -> &str {
        &self.suffix[1..]
    }

    /// How many apps this router serves.
    pub(super) fn app_count(&self) -> usize {
        self.apps.load().len()
    }

    pub(super) fn is_own(&self, host: &str) -> bool {
        host.ends_with(&self.suffix) || host == self.own_domain()
    }

    /// Moves an app's route to its new name; the old name's entry goes
    /// only if it is still this route (another app may have taken the name
    /// already).
    pub(super) fn rename(&self, app_id: &str, from: &str, to: &str, route: &Arc<AppRoute>) {
        self.apps.rcu(|apps| {
            let mut apps = HashMap::clone(apps);
            if apps.get(from).is_some_and(|r| Arc::ptr_eq(r, route)) {
                apps.remove(from);
            }
            apps.insert(to.to_string(), route.clone());
            apps
        });
        self.names_by_id()
            .insert(app_id.to_string(), to.to_string());
    }

    pub(super) fn insert_domain(&self, hostname: &str, route: Arc<AppRoute>) {
        self.domains.rcu(|domains| {
            let mut domains = HashMap::clone(domains);
            domains.insert(hostname.to_string(), route.clone());
            domains
        });
    }

    /// Stops routing `hostname`, if it still goes to `route` (another app
    /// may have added it since).
    pub(super) fn remove_domain(&self, hostname: &str, route: Option<&Arc<AppRoute>>) {
        self.domains.rcu(|domains| {
            let mut domains = HashMap::clone(domains);
            if route
                .is_some_and(|route| domains.get(hostname).is_some_and(|r| Arc::ptr_eq(r, route)))
            {
                domains.remove(hostname);
            }
            domains
        });
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<AppRoute>> {
        self.apps.load().get(name).cloned()
    }

    pub(super) fn insert(&self, app_id: &str, name: &str, route: Arc<AppRoute>) {
        self.apps.rcu(|apps| {
            let mut apps = HashMap::clone(apps);
            apps.insert(name.to_string(), route.clone());
            apps
        });
        self.names_by_id()
            .insert(app_id.to_string(), name.to_string());
    }

    /// Stops routing the app, by its name and its domains.
    pub(super) fn remove(&self, app_id: &str) {
        let Some(name) = self.names_by_id().remove(app_id) else {
            return;
        };
        let mut removed = None;
        self.apps.rcu(|apps| {
            let mut apps = HashMap::clone(apps);
            removed = apps.remove(&name);
            apps
        });
        if let Some(route) = removed {
            self.route_domains(&route, &[]);
        }
    }

    /// The name an app is routed by here, and its route.
    pub(super) fn of_app(&self, app_id: &str) -> Option<(String, Arc<AppRoute>)> {
        let name = self.names_by_id().get(app_id).cloned()?;
        let route = self.get(&name)?;
        Some((name, route))
    }

    /// Routes exactly these hostnames to `route`: adds the missing ones and
    /// removes those that went to it and are no longer listed.
    pub(super) fn route_domains(&self, route: &Arc<AppRoute>, hostnames: &[&str]) {
        self.domains.rcu(|domains| {
            let mut domains = HashMap::clone(domains);
            domains.retain(|hostname, r| {
                !Arc::ptr_eq(r, route) || hostnames.contains(&hostname.as_str())
            });
            for hostname in hostnames {
                domains.insert(hostname.to_string(), route.clone());
            }
            domains
        });
    }

    /// The id of the app routed by `name` here.
    pub(super) fn id_of(&self, name: &str) -> Option<String> {
        self.names_by_id()
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| id.clone())
    }

    /// Every app routed here, by id.
    pub(super) fn app_ids(&self) -> Vec<String> {
        self.names_by_id().keys().cloned().collect()
    }

    fn names_by_id(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AllRoutes for ServerRoutes {
    fn all(&self) -> Vec<Arc<AppRoute>> {
        self.apps.load().values().cloned().collect()
    }
}

impl RouteTable for ServerRoutes {
    fn lookup(&self, host: &str) -> Option<Arc<AppRoute>> {
        match host.strip_suffix(&self.suffix) {
            Some(name) => self.apps.load().get(name).cloned(),
            None => self.domains.load().get(host).cloned(),
        }
    }
}
