//! capability: what an app's guests can import, and how each capability
//! reaches them. The one seam every capability plugs into.
//!
//! A capability is one module implementing [`Capability`], with a small
//! lifecycle in the style of Spin's factors:
//!
//! - **link**, once per engine: its WIT goes into the linker;
//! - **configure**, once per release: it reads the release's config vars
//!   and add-on attachments and finds its backends, giving its part of the
//!   per-release value ([`ReleaseCapabilities`]), which web dynos, workers,
//!   one-off dynos, the release phase and `renga dev` all share;
//! - **check**, once per component of a release: it says which of the
//!   component's imports it cannot serve for this release (an interface
//!   with no add-on behind it);
//! - **dyno**, once per dyno: what the dyno's instances share (its name in
//!   the environment, its limit on outbound requests);
//! - **instance**, once per store: that instance's state, one field of the
//!   store's state per capability.
//!
//! [`capabilities!`] composes them: adding a capability is one module and
//! one line there. Capabilities and the runtime are the only modules that
//! touch wasmtime; neither decides which add-ons an app has (the platform
//! does) nor routes a request.

mod attached;
mod blobstore;
mod config;
mod env;
mod keyvalue;
mod outbound;
mod spin;
mod sql;
mod stdio;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::Linker;

use crate::config::ConfigVars;
use crate::logplex::{AppLog, Process};
use crate::provider::{AddonRef, Open, Servers};
use crate::runtime::{DynoState, Providers};

pub use attached::{Attached, Reached};
pub use blobstore::Blobstore;
pub use config::Config;
pub use env::Environment;
pub use keyvalue::{KeyValue, KvBackends, SERVICE as KV_SERVICE};
pub use outbound::{ALLOWED_HOSTS_VAR, AllowedHosts, Outbound, OutboundConfig};
pub use spin::Spin;
pub use sql::{SERVICES as SQL_SERVICES, Sql, SqlBackends};
pub(crate) use stdio::GuestOutput;
pub use stdio::ProcessIo;

/// What a release gives its capabilities.
pub struct ReleaseInputs<'a> {
    /// The app's name, for messages.
    pub app: &'a str,
    pub config: &'a ConfigVars,
    /// The add-ons attached to the app, oldest first.
    pub addons: &'a [AddonBinding],
}

/// One add-on attached to an app: the platform's records, as the
/// capabilities need them.
#[derive(Clone, Debug)]
pub struct AddonBinding {
    /// Its service, `renga-kv`.
    pub service: String,
    /// The attachment's name, `RENGA_KV` or what `--as` gave.
    pub attachment: String,
    pub addon: AddonRef,
}

/// Why an import has no add-on behind it, and the command that gives it one.
fn add_on_hint(what: &str, service: &str, app: &str) -> String {
    format!(
        "{app} has no {what} add-on; run `renga addons:create {service} -a {app}` to give it one"
    )
}

/// What a dyno gives its capabilities.
pub struct DynoInputs<'a> {
    /// Its name (`web.1`): `DYNO`, and the source of its log lines.
    pub name: &'a Process,
    pub log: &'a AppLog,
    /// Where its instances, outbound requests and add-on calls are counted.
    pub meter: &'a Arc<crate::metrics::DynoMeter>,
}

/// What one instance gets besides its dyno's share.
#[derive(Default)]
pub struct InstanceInputs<'a> {
    /// `argv`, the program name first; empty for web dynos.
    pub args: &'a [String],
    /// Its standard streams, when they do not go to the log. Taken by the
    /// capability that serves them.
    pub io: ProcessIo,
}

/// One capability: the interfaces it serves and its state at each stage.
pub trait Capability: Send + Sync + 'static {
    /// What it holds for one release: settings read, backends found.
    type Release: Send + Sync + 'static;
    /// What one dyno's instances share.
    type Dyno: Send + Sync + 'static;
    /// Its part of one store's state.
    type Instance: Send + 'static;

    /// Adds its interfaces to the engine's linker (once).
    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()>;

    /// Adds its WASI 0.3 interfaces (component-model async) to the linker
    /// of the engine that runs WASI 0.3 components, which also gets
    /// everything [`Capability::link`] adds.
    fn link_concurrent(&self, _linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether `import` is one of its interfaces (at a version it links).
    fn claims(&self, import: &ImportName) -> bool;

    /// Reads what it needs from a release (once per release). An error is
    /// the release's fault (a malformed setting) and refuses it.
    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Self::Release>;

    /// Why it cannot serve `import`, one of its interfaces, for this
    /// release (an add-on the app does not have), in renga's words.
    fn check(&self, _release: &Self::Release, _import: &ImportName, _app: &str) -> Option<String> {
        None
    }

    /// What a dyno's instances share.
    fn dyno(&self, release: &Self::Release, dyno: &DynoInputs<'_>) -> Self::Dyno;

    /// Its state for one new store.
    fn instance(
        &self,
        release: &Self::Release,
        dyno: &Self::Dyno,
        inputs: &mut InstanceInputs<'_>,
    ) -> Self::Instance;
}

/// Composes the capabilities: the registry, the per-release value, the
/// per-dyno value and the per-store state, one field each.
macro_rules! capabilities {
    ($($field:ident: $capability:ty),* $(,)?) => {
        /// Every capability, as the engine links them. Owned by the runtime.
        pub struct Capabilities {
            $(pub $field: $capability,)*
        }

        /// What every capability holds for one release: built once per
        /// release, shared by all its dynos.
        pub struct ReleaseCapabilities {
            registry: Arc<Capabilities>,
            $($field: <$capability as Capability>::Release,)*
        }

        /// What every capability holds for one dyno, shared by its
        /// instances.
        pub struct DynoCapabilities {
            release: Arc<ReleaseCapabilities>,
            name: Process,
            meter: Arc<crate::metrics::DynoMeter>,
            $($field: <$capability as Capability>::Dyno,)*
        }

        /// Every capability's part of one store's state.
        pub struct InstanceCapabilities {
            $(pub $field: <$capability as Capability>::Instance,)*
        }

        impl Capabilities {
            /// Adds every capability's interfaces to the linker.
            pub(crate) fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
                $(self.$field.link(linker)?;)*
                Ok(())
            }

            /// Adds every capability's interfaces, WASI 0.3's too, to the
            /// linker of an engine with the component model's async support.
            pub(crate) fn link_concurrent(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
                self.link(linker)?;
                $(self.$field.link_concurrent(linker)?;)*
                Ok(())
            }

            /// Whether some capability serves `import`.
            pub fn claims(&self, import: &ImportName) -> bool {
                $(self.$field.claims(import))||*
            }

            /// Configures every capability for a release.
            pub fn configure(
                self: &Arc<Self>,
                release: &ReleaseInputs<'_>,
            ) -> anyhow::Result<Arc<ReleaseCapabilities>> {
                Ok(Arc::new(ReleaseCapabilities {
                    registry: self.clone(),
                    $($field: self.$field.configure(release)?,)*
                }))
            }
        }

        impl ReleaseCapabilities {
            /// What is wrong with a component's imports for this release:
            /// every import no capability serves, and every one whose
            /// add-on the app does not have.
            pub fn check(&self, imports: &[String], app: &str) -> Vec<ImportProblem> {
                let mut problems = Vec::new();
                for raw in imports {
                    let import = ImportName::parse(raw);
                    let why = None
                        $(.or_else(|| self.registry.$field.claims(&import).then(|| {
                            self.registry.$field.check(&self.$field, &import, app)
                        })))*;
                    match why {
                        None => problems.push(ImportProblem::Unknown { import: raw.clone() }),
                        Some(Some(why)) => problems.push(ImportProblem::Unprovisioned {
                            import: raw.clone(),
                            why,
                        }),
                        Some(None) => {}
                    }
                }
                problems
            }

            /// What one dyno's instances share.
            pub fn dyno(self: &Arc<Self>, dyno: &DynoInputs<'_>) -> Arc<DynoCapabilities> {
                Arc::new(DynoCapabilities {
                    release: self.clone(),
                    name: dyno.name.clone(),
                    meter: dyno.meter.clone(),
                    $($field: self.registry.$field.dyno(&self.$field, dyno),)*
                })
            }
        }

        impl DynoCapabilities {
            /// The dyno's name, `web.1`.
            pub fn name(&self) -> &Process {
                &self.name
            }

            /// Where the dyno's instances and calls are counted.
            pub fn meter(&self) -> &Arc<crate::metrics::DynoMeter> {
                &self.meter
            }

            /// Every capability's state for one new store.
            pub(crate) fn instance(&self, inputs: &mut InstanceInputs<'_>) -> InstanceCapabilities {
                let release = &self.release;
                InstanceCapabilities {
                    $($field: release.registry.$field.instance(&release.$field, &self.$field, inputs),)*
                }
            }
        }
    };
}

capabilities! {
    env: Environment,
    config: Config,
    keyvalue: KeyValue,
    sql: Sql,
    spin: Spin,
    blobstore: Blobstore,
    outbound: Outbound,
}

/// How the capabilities are set up for this server (or `renga dev`).
#[derive(Clone, Debug, Default)]
pub struct CapabilitiesConfig {
    pub outbound: OutboundConfig,
    /// Where add-ons keep their data, one folder each. `None`: a private
    /// temporary folder (a runtime made for a test).
    pub addons: Option<PathBuf>,
    /// `renga dev`: every store and database name a guest opens is a local
    /// one, made on first use, so that nothing needs provisioning.
    pub local: bool,
    /// The operator's PostgreSQL and Redis, for add-ons that live there.
    pub servers: Servers,
}

impl Capabilities {
    pub fn new(config: &CapabilitiesConfig) -> Capabilities {
        let root = config.addons.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("renga-addons-{}", std::process::id()))
        });
        let kv = Arc::new(KvBackends::new(
            Arc::new(Open::new(root.clone())),
            &config.servers,
            Arc::new(Providers::default()),
            config.local,
        ));
        let blobstore = Blobstore::new(Arc::new(Open::new(root.clone())), config.local);
        let sql = Arc::new(SqlBackends::new(
            Arc::new(Open::new(root)),
            &config.servers,
            config.local,
        ));
        Capabilities {
            env: Environment,
            config: Config,
            keyvalue: KeyValue::new(kv.clone()),
            sql: Sql::new(sql.clone()),
            spin: Spin::new(kv, sql),
            blobstore,
            outbound: Outbound::new(config.outbound.clone()),
        }
    }

    /// The provider components add-ons may be served by.
    pub fn providers(&self) -> &Arc<Providers> {
        self.keyvalue.backends().providers()
    }

    /// Every import of a component that no capability serves, named, with
    /// why when it belongs to another platform.
    pub fn unknown(&self, imports: &[String]) -> Vec<String> {
        imports
            .iter()
            .filter(|raw| !self.claims(&ImportName::parse(raw)))
            .map(|raw| match foreign(&ImportName::parse(raw)) {
                Some(why) => format!("{raw} ({why})"),
                None => raw.clone(),
            })
            .collect()
    }
}

/// Why an interface that only makes sense inside another platform has no
/// place on renga.
fn foreign(import: &ImportName) -> Option<&'static str> {
    match (import.namespace.as_str(), import.package.as_str()) {
        ("wasmcloud", "bus") => Some(
            "wasmCloud's lattice links components across wasmCloud hosts; on renga, components reach each other over HTTP",
        ),
        ("wasmcloud", _) => Some("an interface of wasmCloud's own host, not a standard one"),
        ("fermyon", "spin") | ("spin", _) => Some(
            "an interface of Spin's that renga does not map onto an add-on (renga maps key-value, variables and sqlite)",
        ),
        _ => None,
    }
}

/// Why a component cannot run with a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportProblem {
    /// No capability of renga serves it.
    Unknown { import: String },
    /// Its capability needs an add-on the app does not have.
    Unprovisioned { import: String, why: String },
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportProblem::Unknown { import } => write!(f, "{import}: renga does not provide it"),
            ImportProblem::Unprovisioned { import, why } => write!(f, "{import}: {why}"),
        }
    }
}

/// An import's name, `namespace:package/interface@version`, in parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportName {
    pub namespace: String,
    pub package: String,
    /// `None` for an import that names a package's function directly.
    pub interface: Option<String>,
    pub version: Option<String>,
}

impl ImportName {
    pub fn parse(raw: &str) -> ImportName {
        let (name, version) = match raw.split_once('@') {
            Some((name, version)) => (name, Some(version.to_string())),
            None => (raw, None),
        };
        let (package, interface) = match name.split_once('/') {
            Some((package, interface)) => (package, Some(interface.to_string())),
            None => (name, None),
        };
        let (namespace, package) = package.split_once(':').unwrap_or(("", package));
        ImportName {
            namespace: namespace.to_string(),
            package: package.to_string(),
            interface,
            version,
        }
    }

    /// Whether this is `namespace:package` at one of `versions` (a version
    /// ending in `.*` matches any patch release, as wasmtime's linker does
    /// for 0.2.x).
    pub fn is(&self, namespace: &str, package: &str, versions: &[&str]) -> bool {
        self.namespace == namespace
            && self.package == package
            && self.version.as_deref().is_some_and(|v| {
                versions.iter().any(|want| match want.strip_suffix('*') {
                    Some(prefix) => v.starts_with(prefix),
                    None => v == *want,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_names_split_into_parts() {
        let name = ImportName::parse("wasi:keyvalue/store@0.2.0-draft");
        assert_eq!(name.namespace, "wasi");
        assert_eq!(name.package, "keyvalue");
        assert_eq!(name.interface.as_deref(), Some("store"));
        assert_eq!(name.version.as_deref(), Some("0.2.0-draft"));
        assert!(name.is("wasi", "keyvalue", &["0.2.0-draft", "0.2.0-draft2"]));
        assert!(!name.is("wasi", "keyvalue", &["0.2.0-draft2"]));
        let http = ImportName::parse("wasi:http/types@0.2.10");
        assert!(http.is("wasi", "http", &["0.2.*"]));
        assert!(!http.is("wasi", "http", &["0.3.*"]));
        let bare = ImportName::parse("log");
        assert_eq!(bare.package, "log");
        assert_eq!(bare.interface, None);
    }
}
