//! app: a name, an owner and a maintenance flag.
//!
//! Owns app records and the rule for app names. It never touches releases,
//! config or dynos; the platform composes those.

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

    pub fn set_maintenance(&self, app: &App, on: bool) -> Result<App, StoreError> {
        let mut app = app.clone();
        app.maintenance = on;
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

    pub fn delete(&self, app: &App) -> Result<(), StoreError> {
        self.names_by_id.remove(&app.id)?;
        self.by_name.remove(app.name.as_str())
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
