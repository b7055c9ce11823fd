//! release: the append-only ledger of an app's releases.
//!
//! A release is `vN`: a slug, a snapshot of the config vars, a description,
//! who made it and when. Releases are only ever appended; a rollback appends
//! a copy of an older one. Only the newest releases keep their config (and
//! so can be rolled back to); older ones stay listed without it, and the
//! oldest are forgotten, so that an app's history has a bound. This module
//! owns the ledger and never loads or runs what a release names.

use std::fmt;
use std::str::FromStr;

use crate::config::ConfigVars;
use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// `v3`, or `3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReleaseVersion(pub u32);

impl FromStr for ReleaseVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('v').unwrap_or(s);
        match digits.parse::<u32>() {
            Ok(n) if n > 0 => Ok(ReleaseVersion(n)),
            _ => Err(format!(
                "invalid release {s:?}: expected a version such as v3"
            )),
        }
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Release {
    pub id: String,
    /// The app's id.
    pub app: String,
    pub version: u32,
    /// The slug's id; `None` before the first deploy.
    pub slug: Option<String>,
    pub config: ConfigVars,
    pub description: String,
    pub user_id: String,
    pub user_name: String,
    pub created_at: u64,
    /// Too old to roll back to: its config was dropped.
    #[serde(default)]
    pub expired: bool,
    /// The add-ons attached when it was made.
    #[serde(default)]
    pub addons: ReleaseAddons,
}

/// The add-ons a release was made with: which of its config vars their
/// attachments set (a rollback leaves those as they are now, because it
/// does not roll add-ons back), and their plans (Heroku's
/// `addon_plan_names`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseAddons {
    pub vars: Vec<String>,
    pub plan_names: Vec<String>,
}

impl Release {
    pub fn version(&self) -> ReleaseVersion {
        ReleaseVersion(self.version)
    }
}

/// What a new release is made of.
pub struct NewRelease<'a> {
    pub slug: Option<String>,
    pub config: ConfigVars,
    pub description: String,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub addons: ReleaseAddons,
}

#[derive(Clone)]
pub struct Ledger {
    releases: Tree,
}

fn prefix(app: &str) -> Vec<u8> {
    let mut key = app.as_bytes().to_vec();
    key.push(b'/');
    key
}

fn key(app: &str, version: u32) -> Vec<u8> {
    let mut key = prefix(app);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

impl Ledger {
    pub fn open(db: &Db) -> anyhow::Result<Ledger> {
        Ok(Ledger {
            releases: db.tree("releases")?,
        })
    }

    /// Appends the release after version `after` (0 for an app's first).
    /// `None` when that version is already taken: another change (on a
    /// cluster, another host's) came first, and the caller, whose release
    /// was made from `after`, must make it again from the newer one, which
    /// [`Ledger::current`] now shows. So two changes never share a version,
    /// versions have no gaps, and neither change is lost.
    pub fn append(
        &self,
        app: &str,
        after: u32,
        new: NewRelease<'_>,
    ) -> Result<Option<Release>, StoreError> {
        let version = after + 1;
        let release = Release {
            id: new_id(),
            app: app.to_string(),
            version,
            slug: new.slug,
            config: new.config,
            description: new.description,
            user_id: new.user_id.to_string(),
            user_name: new.user_name.to_string(),
            created_at: now_ms(),
            expired: false,
            addons: new.addons,
        };
        Ok(self
            .releases
            .put_new(key(app, version), &release)?
            .then_some(release))
    }

    pub fn current(&self, app: &str) -> Result<Option<Release>, StoreError> {
        self.releases.last(prefix(app))
    }

    /// On a cluster, the keys of the releases other hosts write, as they
    /// arrive; [`Ledger::app_of`] names their app.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        self.releases.changes()
    }

    /// The app id a release key belongs to (`APP/` and a version).
    pub fn app_of(key: &[u8]) -> Option<String> {
        let app = key.get(..key.len().checked_sub(5)?)?;
        String::from_utf8(app.to_vec()).ok()
    }

    /// Oldest first.
    pub fn list(&self, app: &str) -> Result<Vec<Release>, StoreError> {
        self.releases.scan(prefix(app))
    }

    /// By version (`v3`, `3`) or by id.
    pub fn find(&self, app: &str, version_or_id: &str) -> Result<Option<Release>, StoreError> {
        if let Ok(version) = version_or_id.parse::<ReleaseVersion>() {
            return self.releases.get(key(app, version.0));
        }
        Ok(self.list(app)?.into_iter().find(|r| r.id == version_or_id))
    }

    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        self.releases.remove_prefix(prefix(app))
    }

    /// Keeps the config of the newest `keep` releases only, and forgets
    /// releases older than the newest `listed`. Touches only the releases
    /// that just crossed a line (older ones crossed it before), so each new
    /// release costs the same however long the history.
    pub fn expire(&self, app: &str, keep: usize, listed: usize) -> Result<(), StoreError> {
        let Some(current) = self.current(app)? else {
            return Ok(());
        };
        let newest = current.version as usize;
        if newest > keep {
            let version = (newest - keep) as u32;
            if let Some(mut release) = self.releases.get::<Release>(key(app, version))?
                && !release.expired
            {
                release.expired = true;
                release.config = ConfigVars::new();
                self.releases.put(key(app, version), &release)?;
            }
        }
        if newest > listed {
            self.releases.remove(key(app, (newest - listed) as u32))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_releases_lose_their_config_then_leave_the_list() {
        let dir = std::env::temp_dir().join(format!("renga-expire-{}", std::process::id()));
        let db = Db::open(&dir).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        for n in 1..=12 {
            let mut config = ConfigVars::new();
            config.set("N".parse().unwrap(), n.to_string());
            ledger
                .append(
                    "app",
                    n - 1,
                    NewRelease {
                        slug: None,
                        config,
                        description: format!("release {n}"),
                        user_id: "u",
                        user_name: "admin",
                        addons: ReleaseAddons::default(),
                    },
                )
                .unwrap();
            ledger.expire("app", 3, 8).unwrap();
        }
        let list = ledger.list("app").unwrap();
        let versions: Vec<u32> = list.iter().map(|r| r.version).collect();
        assert_eq!(versions, (5..=12).collect::<Vec<_>>());
        for release in &list {
            let kept = release.version > 9;
            assert_eq!(!release.expired, kept, "v{}", release.version);
            assert_eq!(
                release.config.get("N").is_some(),
                kept,
                "v{}",
                release.version
            );
        }
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn versions_read_either_way() {
        assert_eq!("v3".parse(), Ok(ReleaseVersion(3)));
        assert_eq!("12".parse(), Ok(ReleaseVersion(12)));
        assert!("v0".parse::<ReleaseVersion>().is_err());
        assert!("latest".parse::<ReleaseVersion>().is_err());
    }

    #[test]
    fn ledger_appends_in_order() {
        let dir = std::env::temp_dir().join(format!("renga-ledger-{}", std::process::id()));
        let db = Db::open(&dir).unwrap();
        let ledger = Ledger::open(&db).unwrap();
        for (after, description) in ["Initial release", "Deploy abc", "Set X config vars"]
            .into_iter()
            .enumerate()
        {
            let appended = ledger
                .append(
                    "app-1",
                    after as u32,
                    NewRelease {
                        slug: None,
                        config: ConfigVars::new(),
                        description: description.into(),
                        user_id: "u",
                        user_name: "admin",
                        addons: ReleaseAddons::default(),
                    },
                )
                .unwrap();
            assert_eq!(appended.map(|r| r.version), Some(after as u32 + 1));
        }
        // A change made from v2 finds v3 taken: it must be made again.
        let late = NewRelease {
            slug: None,
            config: ConfigVars::new(),
            description: "late".into(),
            user_id: "u",
            user_name: "admin",
            addons: ReleaseAddons::default(),
        };
        assert!(ledger.append("app-1", 2, late).unwrap().is_none());
        let versions: Vec<u32> = ledger
            .list("app-1")
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
        assert_eq!(
            ledger.current("app-1").unwrap().unwrap().description,
            "Set X config vars"
        );
        assert_eq!(
            ledger.find("app-1", "v2").unwrap().unwrap().description,
            "Deploy abc"
        );
        assert!(ledger.current("app-2").unwrap().is_none());
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
