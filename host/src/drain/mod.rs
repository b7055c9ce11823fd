//! drain: where an app's log goes besides renga (Heroku's log drains).
//!
//! Owns the drain records, the rule for their URLs, the frames they carry
//! (octet-counted RFC 5424 messages, [`frame`]) and their delivery
//! ([`deliver`]): an HTTP(S) drain gets Heroku's `application/logplex-1`
//! batches, a `syslog://` or `syslog+tls://` drain an RFC 6587 stream. Each
//! drain reads its app's log through a bounded [`Outlet`], so a slow or dead
//! drain never slows the app; what it loses is reported as `L10`.
//!
//! [`Outlet`]: crate::logplex::Outlet

pub mod deliver;
pub mod frame;

use std::fmt;
use std::str::FromStr;

use crate::store::{Db, StoreError, Tree, new_id, now_ms};

pub use deliver::{DrainPolicy, run};

/// At most this many drains per app.
pub const MAX_DRAINS: usize = 5;

/// The longest drain URL accepted.
const MAX_URL_BYTES: usize = 2048;

/// How a drain's lines travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `http://` and `https://`: logplex batches in POST requests.
    Http,
    /// `syslog://`: RFC 5424 messages over TCP, octet-counted (RFC 6587).
    Syslog,
}

/// A drain's URL, checked: a scheme renga speaks, a host and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainUrl {
    raw: String,
    pub transport: Transport,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// For HTTP drains: the path and query to POST to.
    pub target: String,
    /// For HTTP drains: `user:password` from the URL, sent as Basic
    /// authentication (as Heroku does for such drains).
    pub credentials: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid drain URL {url:?}: {reason}")]
pub struct InvalidDrainUrl {
    pub url: String,
    pub reason: String,
}

impl FromStr for DrainUrl {
    type Err = InvalidDrainUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| InvalidDrainUrl {
            url: s.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        if s.len() > MAX_URL_BYTES {
            return Err(invalid("URLs are at most 2048 bytes"));
        }
        let url = url::Url::parse(s.trim()).map_err(|e| invalid(&e.to_string()))?;
        let (transport, tls, default_port) = match url.scheme() {
            "http" => (Transport::Http, false, Some(80)),
            "https" => (Transport::Http, true, Some(443)),
            "syslog" | "syslog+tcp" => (Transport::Syslog, false, None),
            "syslog+tls" => (Transport::Syslog, true, None),
            _ => {
                return Err(invalid(
                    "use http://, https://, syslog:// or syslog+tls:// (UDP is not supported: it loses lines silently)",
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(invalid("it names no host")),
        };
        let port = url.port().or(default_port).ok_or_else(|| {
            invalid("a syslog drain needs a port, as in syslog://logs.example.com:514")
        })?;
        let credentials = match transport {
            Transport::Http if !url.username().is_empty() || url.password().is_some() => {
                let user = percent_decode(url.username());
                let password = percent_decode(url.password().unwrap_or(""));
                Some(format!("{user}:{password}"))
            }
            Transport::Syslog if !url.username().is_empty() || url.password().is_some() => {
                return Err(invalid("a syslog drain has no user or password"));
            }
            _ => None,
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Ok(DrainUrl {
            raw: s.trim().to_string(),
            transport,
            tls,
            host,
            port,
            target,
            credentials,
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl DrainUrl {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The `Host` header: the host, and the port unless it is the
    /// scheme's own.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (false, 80) | (true, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

impl fmt::Display for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl serde::Serialize for DrainUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for DrainUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Drain {
    pub id: String,
    /// The app's id.
    pub app: String,
    pub url: DrainUrl,
    /// `d.` and a UUID: the receiver's way to tell apps apart. It is the
    /// HOSTNAME of every message and the `Logplex-Drain-Token` header.
    pub token: String,
    pub created_at: u64,
}

impl Drain {
    /// Whether `s` names this drain: its id, token or URL.
    pub fn is(&self, s: &str) -> bool {
        self.id == s || self.token == s || self.url.as_str() == s
    }
}

/// Drain records, by `APP_ID/DRAIN_ID`.
#[derive(Clone)]
pub struct Drains {
    tree: Tree,
}

impl Drains {
    pub fn open(db: &Db) -> anyhow::Result<Drains> {
        Ok(Drains {
            tree: db.tree("drains")?,
        })
    }

    pub fn add(&self, app_id: &str, url: DrainUrl) -> Result<Drain, StoreError> {
        let drain = Drain {
            id: new_id(),
            app: app_id.to_string(),
            url,
            token: format!("d.{}", new_id()),
            created_at: now_ms(),
        };
        self.tree.put(format!("{app_id}/{}", drain.id), &drain)?;
        Ok(drain)
    }

    /// An app's drains, oldest first.
    pub fn of_app(&self, app_id: &str) -> Result<Vec<Drain>, StoreError> {
        let mut drains: Vec<Drain> = self.tree.scan(format!("{app_id}/"))?;
        drains.sort_by_key(|d| d.created_at);
        Ok(drains)
    }

    pub fn all(&self) -> Result<Vec<Drain>, StoreError> {
        self.tree.scan("")
    }

    pub fn get(&self, app_id: &str, drain_id: &str) -> Result<Option<Drain>, StoreError> {
        self.tree.get(format!("{app_id}/{drain_id}"))
    }

    /// On a cluster, the keys (`APP_ID/DRAIN_ID`) of the drains other
    /// hosts add or remove, as the changes arrive.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        self.tree.changes()
    }

    /// The app id and drain id a key of [`Drains::changes`] names.
    pub fn key_parts(key: &[u8]) -> Option<(String, String)> {
        let (app, drain) = std::str::from_utf8(key).ok()?.split_once('/')?;
        Some((app.to_string(), drain.to_string()))
    }

    pub fn remove(&self, drain: &Drain) -> Result<(), StoreError> {
        self.tree.remove(format!("{}/{}", drain.app, drain.id))
    }

    pub fn delete_app(&self, app_id: &str) -> Result<Vec<Drain>, StoreError> {
        let drains = self.of_app(app_id)?;
        for drain in &drains {
            self.remove(drain)?;
        }
        Ok(drains)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls_name_a_transport_a_host_and_a_port() {
        let http: DrainUrl = "https://user:p%40ss@logs.example.com/ingest?x=1"
            .parse()
            .unwrap();
        assert_eq!(http.transport, Transport::Http);
        assert!(http.tls);
        assert_eq!((http.host.as_str(), http.port), ("logs.example.com", 443));
        assert_eq!(http.target, "/ingest?x=1");
        assert_eq!(http.credentials.as_deref(), Some("user:p@ss"));
        let plus: DrainUrl = "https://u:a+b&c@logs.example.com".parse().unwrap();
        assert_eq!(plus.credentials.as_deref(), Some("u:a+b&c"));
        let token_only: DrainUrl = "https://:t0ken@logs.example.com".parse().unwrap();
        assert_eq!(token_only.credentials.as_deref(), Some(":t0ken"));
        assert_eq!(http.authority(), "logs.example.com");

        let syslog: DrainUrl = "syslog+tls://logs.example.com:6514".parse().unwrap();
        assert_eq!(
            (syslog.transport, syslog.tls, syslog.port),
            (Transport::Syslog, true, 6514)
        );
        let plain: DrainUrl = "syslog://[::1]:514".parse().unwrap();
        assert_eq!((plain.host.as_str(), plain.tls), ("::1", false));
        assert_eq!(plain.authority(), "[::1]:514");
        let http: DrainUrl = "http://127.0.0.1:8000".parse().unwrap();
        assert_eq!(
            (http.target.as_str(), http.authority().as_str()),
            ("/", "127.0.0.1:8000")
        );

        for bad in [
            "syslog://logs.example.com",
            "udp://logs.example.com:514",
            "ftp://logs.example.com",
            "logs.example.com:514",
            "syslog://user@logs.example.com:514",
            "http://",
            "",
        ] {
            assert!(bad.parse::<DrainUrl>().is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(3000));
        assert!(long.parse::<DrainUrl>().is_err());
    }
}
