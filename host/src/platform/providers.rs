//! Provider components as add-on services: `renga addons:services:add
//! FILE.wasm --name NAME` (the admin's) registers one, and from then on
//! `addons:create NAME -a APP` makes add-ons it serves. The component is
//! kept under the data folder by its sha256, readable by renga's user
//! only, and loaded again when the server starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::addon::{self, ProviderRecord, Service};
use crate::auth::User;
use crate::capability::AllowedHosts;
use crate::store::new_id;

use super::{Platform, PlatformError, Result};

/// Provider components one server may have registered.
pub const MAX_PROVIDERS: usize = 100;
/// The largest provider component accepted.
pub const MAX_PROVIDER_BYTES: u64 = 64 << 20;

/// What `addons:services:add` gives besides the component.
pub struct Registration {
    pub name: String,
    pub description: String,
    /// Hosts its outbound HTTP may reach, as `RENGA_ALLOWED_OUTBOUND_HOSTS`
    /// lists them.
    pub outbound: String,
}

impl Platform {
    /// Where an upload of a provider component goes before it is checked.
    pub fn provider_upload_path(&self) -> Result<PathBuf> {
        let dir = self.providers_dir();
        std::fs::create_dir_all(&dir).map_err(|e| PlatformError::Internal(e.into()))?;
        Ok(dir.join(format!(".upload-{}", new_id())))
    }

    fn providers_dir(&self) -> PathBuf {
        self.config.data.join("providers")
    }

    /// Registers (or replaces) a provider: its component, uploaded to
    /// `upload`, is checked and compiled before anything is recorded. Only
    /// the admin may. Add-ons made before a replacement get the new
    /// component with their apps' next release.
    pub async fn register_provider(
        &self,
        user: &User,
        registration: Registration,
        upload: PathBuf,
    ) -> Result<Service> {
        let refused = async {
            if !user.admin {
                return Err(PlatformError::Forbidden(
                    "Only the admin can register add-on providers".to_string(),
                ));
            }
            let name = registration.name.as_str();
            addon::check_addon_name(name)
                .map_err(|e| PlatformError::Invalid(e.replace("add-on name", "service name")))?;
            if addon::service(name).is_some() {
                return Err(PlatformError::Invalid(format!(
                    "{name} is one of renga's own services: choose another name"
                )));
            }
            let known = self.addons.providers()?;
            if known.len() >= MAX_PROVIDERS && !known.iter().any(|p| p.name == name) {
                return Err(PlatformError::Invalid(format!(
                    "this server already has {MAX_PROVIDERS} providers, the most it may have"
                )));
            }
            AllowedHosts::parse(&registration.outbound).map_err(|e| {
                PlatformError::Invalid(format!("the outbound hosts do not parse: {e}"))
            })?;
            Ok(())
        }
        .await;
        if let Err(e) = refused {
            let _ = tokio::fs::remove_file(&upload).await;
            return Err(e);
        }
        let runtime = self.runtime.clone();
        let file_name = format!("{}.wasm", registration.name);
        let dir = self.providers_dir();
        let loaded = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&upload)?;
            let loaded = runtime.load_provider(&file_name, &bytes);
            match &loaded {
                Ok(digest) => {
                    std::fs::set_permissions(&upload, std::fs::Permissions::from_mode(0o600))?;
                    std::fs::rename(&upload, dir.join(format!("{digest}.wasm")))?;
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&upload);
                }
            }
            Ok::<_, std::io::Error>(loaded)
        })
        .await
        .map_err(|e| PlatformError::Internal(e.into()))?
        .map_err(|e| PlatformError::Internal(e.into()))?;
        let digest = loaded.map_err(|e| PlatformError::Invalid(e.to_string()))?;
        let hosts: Vec<String> = registration
            .outbound
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        let record =
            ProviderRecord::new(&registration.name, digest, registration.description, hosts);
        self.addons.put_provider(&record)?;
        self.db.flush().await?;
        Ok(record.service())
    }

    /// `addons:services:remove NAME` (the admin's): refused while any
    /// add-on of it exists.
    pub async fn remove_provider(&self, user: &User, name: &str) -> Result<Service> {
        if !user.admin {
            return Err(PlatformError::Forbidden(
                "Only the admin can remove add-on providers".to_string(),
            ));
        }
        let record = self.addons.provider(name)?.ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that add-on service: {name}"))
        })?;
        let left = self
            .addons
            .all()?
            .into_iter()
            .filter(|a| a.service == name)
            .count();
        if left > 0 {
            return Err(PlatformError::Invalid(format!(
                "{name} still serves {left} add-on(s): destroy them first"
            )));
        }
        self.addons.remove_provider(name)?;
        self.db.flush().await?;
        let still_used = self
            .addons
            .providers()?
            .iter()
            .any(|p| p.digest == record.digest);
        if !still_used {
            let _ = tokio::fs::remove_file(
                self.providers_dir().join(format!("{}.wasm", record.digest)),
            )
            .await;
        }
        Ok(record.service())
    }

    /// Loads every registered provider's component (at start). One that no
    /// longer loads is logged; its add-ons' calls say it is not loaded.
    pub(super) fn load_providers(&self) -> Result<()> {
        for record in self.addons.providers()? {
            let path = self.providers_dir().join(format!("{}.wasm", record.digest));
            if let Err(e) = load(&self.runtime, &record.name, &path) {
                tracing::warn!(provider = %record.name, error = %e, "an add-on provider did not load");
            }
        }
        Ok(())
    }

    /// The service of an add-on: renga's own, or its provider's.
    pub(super) fn addon_service(&self, addon: &addon::Addon) -> Result<Option<Service>> {
        if let Some(service) = addon.service() {
            return Ok(Some(service.clone()));
        }
        Ok(self.addons.provider(&addon.service)?.map(|p| p.service()))
    }
}

fn load(runtime: &crate::runtime::Runtime, name: &str, path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    runtime.load_provider(&format!("{name}.wasm"), &bytes)?;
    Ok(())
}
