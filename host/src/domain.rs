//! domain: hostnames an app answers for besides `APP.DOMAIN` (Heroku's
//! custom domains).
//!
//! Owns the rule for hostnames and the records: one app per hostname, so
//! that no app can take a name another one serves. The router reads them
//! through the platform's route table; this module never touches it.

use std::fmt;
use std::str::FromStr;

use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// At most this many domains per app.
pub const MAX_DOMAINS: usize = 100;

/// A hostname as DNS has it: dot-separated labels of letters, digits and
/// dashes (not at either end of a label), at most 253 characters, stored
/// in lowercase.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Hostname(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid hostname {0:?}: use a name such as www.example.com (letters, digits, dashes and dots)"
)]
pub struct InvalidHostname(pub String);

impl FromStr for Hostname {
    type Err = InvalidHostname;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        // A numeric last label is an IP address, never a name an app owns.
        let numeric_top = name
            .rsplit('.')
            .next()
            .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()));
        if name.len() <= 253 && name.contains('.') && !numeric_top && name.split('.').all(label_ok)
        {
            Ok(Hostname(name))
        } else {
            Err(InvalidHostname(s.to_string()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for Hostname {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Hostname {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Domain {
    pub id: String,
    /// The app's id.
    pub app: String,
    pub hostname: Hostname,
    pub created_at: u64,
}

/// Domain records: by hostname, with an index by app (`APP_ID/HOSTNAME`).
#[derive(Clone)]
pub struct Domains {
    by_hostname: Tree,
    by_app: Tree,
}

impl Domains {
    pub fn open(db: &Db) -> anyhow::Result<Domains> {
        Ok(Domains {
            by_hostname: db.tree("domains")?,
            by_app: db.tree("app-domains")?,
        })
    }

    /// Adds a hostname to an app; `None` if an app already has it.
    pub fn add(&self, app_id: &str, hostname: Hostname) -> Result<Option<Domain>, StoreError> {
        let domain = Domain {
            id: new_id(),
            app: app_id.to_string(),
            hostname,
            created_at: now_ms(),
        };
        if !self
            .by_hostname
            .put_new(domain.hostname.as_str(), &domain)?
        {
            return Ok(None);
        }
        self.by_app
            .put(format!("{app_id}/{}", domain.hostname), &domain)?;
        Ok(Some(domain))
    }

    /// An app's domains, by hostname.
    pub fn of_app(&self, app_id: &str) -> Result<Vec<Domain>, StoreError> {
        self.by_app.scan(format!("{app_id}/"))
    }

    /// On a cluster, the keys (`APP_ID/HOSTNAME`) of the domains other
    /// hosts add or remove, as the changes arrive.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        self.by_app.changes()
    }

    /// The app id a key of [`Domains::changes`] belongs to.
    pub fn app_of(key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        Some(key.split_once('/')?.0.to_string())
    }

    pub fn all(&self) -> Result<Vec<Domain>, StoreError> {
        self.by_hostname.scan("")
    }

    pub fn remove(&self, domain: &Domain) -> Result<(), StoreError> {
        self.by_app
            .remove(format!("{}/{}", domain.app, domain.hostname))?;
        self.by_hostname.remove(domain.hostname.as_str())
    }

    /// Removes hostnames whose app index was never written (a crash between
    /// the two writes of [`Domains::add`]). Linear in the number of
    /// domains; run once at start.
    pub fn repair(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        for domain in self.all()? {
            let indexed = self
                .by_app
                .get::<Domain>(format!("{}/{}", domain.app, domain.hostname))?;
            if indexed.is_none_or(|d| d.id != domain.id) {
                self.by_hostname.remove(domain.hostname.as_str())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn delete_app(&self, app_id: &str) -> Result<Vec<Domain>, StoreError> {
        let domains = self.of_app(app_id)?;
        for domain in &domains {
            self.remove(domain)?;
        }
        Ok(domains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_dns() {
        for good in [
            "www.example.com",
            "A.B",
            "x-1.example.co.uk",
            "example.com.",
        ] {
            let parsed: Hostname = good.parse().unwrap();
            assert_eq!(parsed.as_str(), good.trim_end_matches('.').to_lowercase());
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = format!("{}com", "abcdefghi.".repeat(26));
        for bad in [
            "localhost",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "*.example.com",
            "127.0.0.1",
            "10.0.0.7.",
            "under_score.example.com",
            "ex ample.com",
            "",
            long_label.as_str(),
            too_long.as_str(),
        ] {
            assert!(bad.parse::<Hostname>().is_err(), "{bad}");
        }
    }
}
