//! app: a name, an owner, its collaborators and a maintenance flag.
//!
//! Owns app records, the rule for app names and who else may work on an app
//! (Heroku's collaborators). It never touches releases, config or dynos; the
//! platform composes those.

use std::fmt;
use std::str::FromStr;

use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// An app name by Heroku's rule: 3 to 30 lowercase letters, digits and
/// dashes, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AppName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid app name {0:?}: use 3 to 30 lowercase letters, digits and dashes, starting with a letter"
)]
pub struct InvalidAppName(pub String);

impl FromStr for AppName {
    type Err = InvalidAppName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (3..=30).contains(&s.len())
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(AppName(s.to_string()))
        } else {
            Err(InvalidAppName(s.to_string()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for AppName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl AppName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A readable random name, as Heroku gives: `quiet-river-4821`.
    pub fn random() -> AppName {
        const ADJECTIVES: &[&str] = &[
            "quiet", "bold", "gentle", "rapid", "sunny", "misty", "silver", "amber", "brave",
            "calm", "dusty", "eager", "fuzzy", "golden", "hidden", "lively", "mellow", "polar",
            "rustic", "shiny",
        ];
        const NOUNS: &[&str] = &[
            "river", "meadow", "harbor", "forest", "canyon", "island", "garden", "summit",
            "breeze", "comet", "falcon", "glacier", "lantern", "orchard", "pebble", "prairie",
            "ridge", "tundra", "valley", "willow",
        ];
        let n = getrandom::u64().unwrap_or_else(|_| now_ms());
        let adjective = ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize];
        let noun = NOUNS[((n >> 16) % NOUNS.len() as u64) as usize];
        AppName(format!("{adjective}-{noun}-{}", (n >> 32) % 9000 + 1000))
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct App {
    pub id: String,
    pub name: AppName,
    /// The owning user's id.
    pub owner: String,
    pub maintenance: bool,
    /// Buildpacks set with `buildpacks:set`, in order; empty means renga's
    /// own, by detection.
    #[serde(default)]
    pub buildpacks: Vec<String>,
    /// Seconds without a request after which the app's web dynos are
    /// unloaded (0: never); `None` follows the server's setting.
    #[serde(default)]
    pub idle_after: Option<u64>,
    /// App features turned on with `labs:enable` (`log-runtime-metrics`).
    #[serde(default)]
    pub features: std::collections::BTreeSet<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The app records: by name, with an index by id.
#[derive(Clone)]
pub struct Apps {
    by_name: Tree,
    names_by_id: Tree,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NameRef {
    name: AppName,
}

impl Apps {
    pub fn open(db: &Db) -> anyhow::Result<Apps> {
        Ok(Apps {
            by_name: db.tree("apps")?,
            names_by_id: db.tree("app-ids")?,
        })
    }

    /// Creates an app; `None` if the name is taken.
    pub fn create(&self, name: AppName, owner: &str) -> Result<Option<App>, StoreError> {
        let now = now_ms();
        let app = App {
            id: new_id(),
            name,
            owner: owner.to_string(),
            maintenance: false,
            buildpacks: Vec::new(),
            idle_after: None,
            features: Default::default(),
            created_at: now,
            updated_at: now,
        };
        if !self.by_name.put_new(app.name.as_str(), &app)? {
            return Ok(None);
        }
        self.names_by_id.put(
            &app.id,
            &NameRef {
                name: app.name.clone(),
            },
        )?;
        Ok(Some(app))
    }

    /// By name or by id, as Heroku's API accepts either.
    pub fn find(&self, name_or_id: &str) -> Result<Option<App>, StoreError> {
        if let Some(app) = self.by_name.get::<App>(name_or_id)? {
            return Ok(Some(app));
        }
        match self.names_by_id.get::<NameRef>(name_or_id)? {
            Some(reference) => self.by_name.get(reference.name.as_str()),
            None => Ok(None),
        }
    }

    pub fn all(&self) -> Result<Vec<App>, StoreError> {
        self.by_name.scan("")
    }

    /// On a cluster, the names of the apps other hosts create, change,
    /// rename or delete, as the changes arrive.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        self.by_name.changes()
    }

    pub fn set_maintenance(&self, app: &App, on: bool) -> Result<App, StoreError> {
        let mut app = app.clone();
        app.maintenance = on;
        app.updated_at = now_ms();
        self.by_name.put(app.name.as_str(), &app)?;
        Ok(app)
    }

    pub fn set_feature(&self, app: &App, feature: &str, on: bool) -> Result<App, StoreError> {
        let mut app = app.clone();
        if on {
            app.features.insert(feature.to_string());
        } else {
            app.features.remove(feature);
        }
        app.updated_at = now_ms();
        self.by_name.put(app.name.as_str(), &app)?;
        Ok(app)
    }

    pub fn set_buildpacks(&self, app: &App, buildpacks: Vec<String>) -> Result<App, StoreError> {
        let mut app = app.clone();
        app.buildpacks = buildpacks;
        app.updated_at = now_ms();
        self.by_name.put(app.name.as_str(), &app)?;
        Ok(app)
    }

    pub fn set_idle_after(&self, app: &App, seconds: Option<u64>) -> Result<App, StoreError> {
        let mut app = app.clone();
        app.idle_after = seconds;
        app.updated_at = now_ms();
        self.by_name.put(app.name.as_str(), &app)?;
        Ok(app)
    }

    /// Gives `app` a new name; `None` if the name is taken. The record is
    /// written under the new name before the old one is removed, so a crash
    /// in between leaves a stale copy that [`Apps::repair`] removes.
    pub fn rename(&self, app: &App, name: AppName) -> Result<Option<App>, StoreError> {
        let mut renamed = app.clone();
        renamed.name = name;
        renamed.updated_at = now_ms();
        if !self.by_name.put_new(renamed.name.as_str(), &renamed)? {
            return Ok(None);
        }
        self.names_by_id.put(
            &app.id,
            &NameRef {
                name: renamed.name.clone(),
            },
        )?;
        self.by_name.remove(app.name.as_str())?;
        Ok(Some(renamed))
    }

    /// Removes records left under an old name by a rename that did not
    /// finish. Linear in the number of apps; run once at start.
    pub fn repair(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (key, app) in self.by_name.scan_with_keys::<App>("")? {
            let current = self.names_by_id.get::<NameRef>(&app.id)?;
            if current.is_some_and(|r| r.name.as_str() != key) {
                self.by_name.remove(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn delete(&self, app: &App) -> Result<(), StoreError> {
        self.names_by_id.remove(&app.id)?;
        self.by_name.remove(app.name.as_str())
    }
}

/// At most this many collaborators per app.
pub const MAX_COLLABORATORS: usize = 100;

/// Another user given access to an app (Heroku's collaborator): they may do
/// everything with it except rename it, delete it or change who else may.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Collaborator {
    pub id: String,
    /// The app's id.
    pub app: String,
    pub user_id: String,
    pub user_name: String,
    pub created_at: u64,
}

/// Collaborators, by app (`APP_ID/USER_ID`) and by user (`USER_ID/APP_ID`).
#[derive(Clone)]
pub struct Collaborators {
    by_app: Tree,
    by_user: Tree,
}

impl Collaborators {
    pub fn open(db: &Db) -> anyhow::Result<Collaborators> {
        Ok(Collaborators {
            by_app: db.tree("collaborators")?,
            by_user: db.tree("collaborations")?,
        })
    }

    /// Adds one; `None` if the user already is one.
    pub fn add(
        &self,
        app_id: &str,
        user_id: &str,
        user_name: &str,
    ) -> Result<Option<Collaborator>, StoreError> {
        let collaborator = Collaborator {
            id: new_id(),
            app: app_id.to_string(),
            user_id: user_id.to_string(),
            user_name: user_name.to_string(),
            created_at: now_ms(),
        };
        if !self
            .by_app
            .put_new(format!("{app_id}/{user_id}"), &collaborator)?
        {
            return Ok(None);
        }
        self.by_user
            .put(format!("{user_id}/{app_id}"), &collaborator)?;
        Ok(Some(collaborator))
    }

    pub fn is_collaborator(&self, app_id: &str, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .by_app
            .get::<Collaborator>(format!("{app_id}/{user_id}"))?
            .is_some())
    }

    /// An app's collaborators, by user id.
    pub fn of_app(&self, app_id: &str) -> Result<Vec<Collaborator>, StoreError> {
        self.by_app.scan(format!("{app_id}/"))
    }

    /// The ids of the apps a user collaborates on.
    pub fn apps_of(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .by_user
            .scan::<Collaborator>(format!("{user_id}/"))?
            .into_iter()
            .map(|c| c.app)
            .collect())
    }

    pub fn remove(&self, collaborator: &Collaborator) -> Result<(), StoreError> {
        self.by_user
            .remove(format!("{}/{}", collaborator.user_id, collaborator.app))?;
        self.by_app
            .remove(format!("{}/{}", collaborator.app, collaborator.user_id))
    }

    pub fn delete_app(&self, app_id: &str) -> Result<(), StoreError> {
        for collaborator in self.of_app(app_id)? {
            self.remove(&collaborator)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_herokus_rule() {
        for good in ["abc", "hello-rust", "a1-2", &"a".repeat(30)] {
            assert!(good.parse::<AppName>().is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Hello",
            "1abc",
            "-abc",
            "has_underscore",
            "has space",
            &"a".repeat(31),
        ] {
            assert!(bad.parse::<AppName>().is_err(), "{bad}");
        }
        for _ in 0..20 {
            let name = AppName::random();
            assert!(name.as_str().parse::<AppName>().is_ok(), "{name}");
        }
    }
}
