//! Slugs and releases: uploads, deploys, rollbacks, and the cleanup rule
//! for slugs no release needs any more.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use crate::app::App;
use crate::auth::User;
use crate::procfile::ProcessType;
use crate::release::Release;
use crate::slug::{Slug, SlugError};

use super::{Platform, PlatformError, Result, procfile_of};

/// An app can roll back to any of this many newest releases; older ones
/// lose their config and their slugs are cleaned up.
pub const KEPT_RELEASES: usize = 20;

/// Releases listed per app; older ones are forgotten.
pub const LISTED_RELEASES: usize = 1000;

impl Platform {
    // ---- slugs and releases --------------------------------------------------

    pub fn create_slug(
        &self,
        user: &User,
        name_or_id: &str,
        process_types: BTreeMap<String, String>,
        commit: Option<String>,
    ) -> Result<Slug> {
        let app = self.app(user, name_or_id)?;
        for kind in process_types.keys() {
            kind.parse::<ProcessType>()
                .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        }
        Ok(self.slugs.create(&app.id, process_types, commit)?)
    }

    pub fn slug(&self, user: &User, name_or_id: &str, slug_id: &str) -> Result<Slug> {
        let app = self.app(user, name_or_id)?;
        self.slugs
            .find(&app.id, slug_id)?
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that slug: {slug_id}")))
    }

    pub fn slug_upload_path(&self) -> PathBuf {
        self.slugs.upload_path()
    }

    /// Files an uploaded archive (already streamed to `upload`) as the slug's blob.
    pub async fn commit_slug_blob(
        &self,
        user: &User,
        name_or_id: &str,
        slug_id: &str,
        upload: PathBuf,
        checksum: String,
        size: u64,
    ) -> Result<Slug> {
        let slug = self.slug(user, name_or_id, slug_id)?;
        let slugs = self.slugs.clone();
        let slug =
            tokio::task::spawn_blocking(move || slugs.commit_blob(&slug, &upload, &checksum, size))
                .await??;
        self.db.flush().await?;
        Ok(slug)
    }

    /// Releases a slug with the app's current config: the component is
    /// compiled and checked first, so a bad one makes no release.
    pub async fn deploy(
        &self,
        user: &User,
        name_or_id: &str,
        slug_id: &str,
        description: Option<String>,
    ) -> Result<Release> {
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        let slug = self.slugs.find(&app.id, slug_id)?.ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that slug: {slug_id}"))
        })?;
        let Some(checksum) = slug.checksum.clone() else {
            return Err(PlatformError::Invalid(SlugError::NoBlob.to_string()));
        };
        let current = self.current_release(&app)?;
        let description = description.unwrap_or_else(|| {
            format!(
                "Deploy {}",
                slug.commit
                    .clone()
                    .unwrap_or_else(|| checksum[..7].to_string())
            )
        });
        let first_web = self.formations.get(&app.id, &ProcessType::web())?.is_none()
            && procfile_of(&slug)?.web().is_some();
        if first_web {
            // Heroku's first deploy of a web process scales it to one dyno.
            self.formations.set(
                &app.id,
                &ProcessType::web(),
                crate::formation::Change {
                    quantity: Some(crate::formation::Quantity::Exactly(1)),
                    ..Default::default()
                },
            )?;
        }
        let released = self
            .release(
                &app,
                user,
                current.version,
                Some(slug.id.clone()),
                current.config,
                description,
            )
            .await;
        if released.is_err() && first_web {
            self.formations.remove(&app.id, &ProcessType::web())?;
        }
        released
    }

    /// A new release copying an older one's slug and config.
    pub async fn rollback(&self, user: &User, name_or_id: &str, target: &str) -> Result<Release> {
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        let target = self
            .ledger
            .find(&app.id, target)?
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find release {target}")))?;
        if target.expired {
            return Err(PlatformError::Invalid(format!(
                "{} is too old to roll back to: an app can roll back to its {KEPT_RELEASES} newest releases",
                target.version()
            )));
        }
        if let Some(slug) = &target.slug
            && self.slugs.find(&app.id, slug)?.is_none()
        {
            return Err(PlatformError::Invalid(format!(
                "{}'s slug was cleaned up: an app can roll back to its {KEPT_RELEASES} newest releases",
                target.version()
            )));
        }
        // A rollback does not roll add-ons back: the vars of the add-ons
        // attached now stay as they are.
        let config = self.config_with_current_addons(&app, &target)?;
        let after = self.current_release(&app)?.version;
        self.release(
            &app,
            user,
            after,
            target.slug.clone(),
            config,
            format!("Rollback to {}", target.version()),
        )
        .await
    }

    pub fn releases(&self, user: &User, name_or_id: &str) -> Result<Vec<Release>> {
        let app = self.app(user, name_or_id)?;
        Ok(self.ledger.list(&app.id)?)
    }

    pub fn find_release(
        &self,
        user: &User,
        name_or_id: &str,
        version_or_id: &str,
    ) -> Result<Release> {
        let app = self.app(user, name_or_id)?;
        self.ledger.find(&app.id, version_or_id)?.ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find release {version_or_id}"))
        })
    }

    pub fn current_release(&self, app: &App) -> Result<Release> {
        self.ledger.current(&app.id)?.ok_or_else(|| {
            PlatformError::Internal(anyhow::anyhow!("app {} has no release", app.name))
        })
    }

    /// The cleanup rule for slugs: an app keeps the slugs its
    /// [`KEPT_RELEASES`] newest releases use; older slugs are forgotten an
    /// hour after they were made, and a slug file is deleted once no app's
    /// slug names it.
    pub(super) fn prune_slugs(&self, app: &App) -> Result<()> {
        let releases = self.ledger.list(&app.id)?;
        let keep: HashSet<String> = releases
            .iter()
            .rev()
            .take(KEPT_RELEASES)
            .filter_map(|r| r.slug.clone())
            .collect();
        let before = crate::store::now_ms().saturating_sub(60 * 60 * 1000);
        if self.slugs.prune(&app.id, &keep, before)? > 0 {
            self.collect_slug_files();
        }
        Ok(())
    }

    pub(super) fn collect_slug_files(&self) {
        let slugs = self.slugs.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = slugs.collect_garbage() {
                tracing::warn!(error = %format!("{e:#}"), "could not delete unused slug files");
            }
        });
    }
}
