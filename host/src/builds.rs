//! builds: the record of each build of an app's source, the uploaded
//! sources they start from, and each build's output.
//!
//! A source is a gzipped tarball uploaded once (by `renga deploy` or a
//! `git push`) under `DATA/sources/`. A build is `pending` until it ends
//! `succeeded` (with the release it made) or `failed` (with why). Its output
//! is kept in memory while it runs, so that any number of readers can follow
//! it line by line, and written to `DATA/builds/ID.log` when it ends. This
//! module never runs a build; the platform does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::logplex::{self, AppLog, Process};
use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// A build's output past this many bytes is cut, with a note saying so.
pub const MAX_OUTPUT_BYTES: usize = 4 << 20;

/// Builds of one app kept with their output; older ones are forgotten.
pub const KEPT_PER_APP: usize = 50;

/// Uploaded sources one user may hold before a build uses them.
pub const MAX_UNBUILT_SOURCES: usize = 10;

/// An uploaded source no build used is deleted after this long.
pub const SOURCE_TTL: std::time::Duration = std::time::Duration::from_secs(60 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    Pending,
    Succeeded,
    Failed,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "pending",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReleaseRef {
    pub id: String,
    pub version: u32,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Build {
    pub id: String,
    /// The app's id.
    pub app: String,
    pub status: BuildStatus,
    /// The source's id.
    pub source: String,
    /// What the source is a version of: a git commit, or what the uploader said.
    pub version: Option<String>,
    /// The buildpack that compiled it, once one detected the app.
    pub buildpack: Option<String>,
    pub slug: Option<String>,
    pub release: Option<ReleaseRef>,
    /// Why it failed, in one line.
    pub failure: Option<String>,
    pub user_id: String,
    pub user_name: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// An uploaded source tarball, usable by its uploader only.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub id: String,
    pub user_id: String,
    /// `sha256` of the tarball, hex; `None` until it is uploaded.
    pub checksum: Option<String>,
    pub size: u64,
    pub created_at: u64,
    /// The build that took it; a source is built once.
    #[serde(default)]
    pub build: Option<String>,
}

/// Build and source records, their files, and the output of running builds.
#[derive(Clone)]
pub struct Builds {
    builds: Tree,
    sources: Tree,
    dir: PathBuf,
    sources_dir: PathBuf,
    /// On a cluster, every uploaded source (`ID.tgz`), so that a source
    /// uploaded through one host can be built by another.
    shared: Option<crate::store::Blobs>,
    work_dir: PathBuf,
    live: Arc<Mutex<HashMap<String, Arc<BuildOutput>>>>,
}

fn key(app: &str, id: &str) -> String {
    format!("{app}/{id}")
}

impl Builds {
    pub fn open(db: &Db, data: &Path) -> anyhow::Result<Builds> {
        let dir = data.join("builds");
        let sources_dir = data.join("sources");
        for d in [&dir, &sources_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(Builds {
            builds: db.tree("builds")?,
            sources: db.tree("sources")?,
            work_dir: dir.join("work"),
            dir,
            sources_dir,
            shared: db.blobs("sources")?,
            live: Arc::default(),
        })
    }

    /// Where a build unpacks and compiles (`builds/work/ID`), removed when
    /// it ends.
    pub fn work_dir(&self, build_id: &str) -> PathBuf {
        self.work_dir.join(build_id)
    }

    /// Removes what a stopped server left half done: build folders and
    /// uploads in progress. Call before serving. Blocking.
    pub fn clean_leftovers(&self) -> anyhow::Result<()> {
        if self.work_dir.exists() {
            crate::sandbox::remove_tree(&self.work_dir)
                .with_context(|| format!("removing {}", self.work_dir.display()))?;
        }
        for entry in std::fs::read_dir(&self.sources_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".upload-") || name.starts_with(".fetch-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Sources no build used, uploaded more than [`SOURCE_TTL`] ago (or
    /// never uploaded): forgotten, their files deleted.
    pub fn expire_sources(&self) -> Result<usize, StoreError> {
        let before = now_ms().saturating_sub(SOURCE_TTL.as_millis() as u64);
        let mut expired = 0;
        for source in self.sources.scan::<Source>("")? {
            if source.build.is_none() && source.created_at < before {
                self.delete_source(&source.id)?;
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// How many sources the user uploaded (or is uploading) that no build
    /// has taken.
    pub fn unbuilt_sources(&self, user_id: &str) -> Result<usize, StoreError> {
        Ok(self
            .sources
            .scan::<Source>("")?
            .iter()
            .filter(|s| s.user_id == user_id && s.build.is_none())
            .count())
    }

    /// Marks a source as taken by a build.
    pub fn claim_source(&self, source: &Source) -> Result<(), StoreError> {
        let mut source = source.clone();
        source.build = Some(now_ms().to_string());
        self.sources.put(&source.id, &source)
    }

    // ---- sources ----------------------------------------------------------------

    pub fn create_source(&self, user_id: &str) -> Result<Source, StoreError> {
        let source = Source {
            id: new_id(),
            user_id: user_id.to_string(),
            checksum: None,
            size: 0,
            created_at: now_ms(),
            build: None,
        };
        self.sources.put(&source.id, &source)?;
        Ok(source)
    }

    /// The source, if it exists and belongs to `user_id`.
    pub fn source(&self, user_id: &str, id: &str) -> Result<Option<Source>, StoreError> {
        Ok(self
            .sources
            .get::<Source>(id)?
            .filter(|s| s.user_id == user_id))
    }

    /// Where an upload is streamed before [`Builds::commit_source`].
    pub fn upload_path(&self) -> PathBuf {
        self.sources_dir.join(format!(".upload-{}", new_id()))
    }

    /// Files an uploaded tarball as the source's content.
    pub fn commit_source(
        &self,
        source: &Source,
        upload: &Path,
        checksum: &str,
        size: u64,
    ) -> anyhow::Result<Source> {
        std::fs::File::open(upload)?.sync_all()?;
        std::fs::rename(upload, self.source_path(&source.id))?;
        if let Some(shared) = &self.shared {
            shared.put_file(&format!("{}.tgz", source.id), &self.source_path(&source.id))?;
        }
        let mut source = source.clone();
        source.checksum = Some(checksum.to_string());
        source.size = size;
        self.sources.put(&source.id, &source)?;
        Ok(source)
    }

    pub fn source_path(&self, id: &str) -> PathBuf {
        self.sources_dir.join(format!("{id}.tgz"))
    }

    /// The source's tarball on this host: on a cluster, fetched from the
    /// cluster when it was uploaded through another host. Blocking.
    pub fn local_source(&self, id: &str) -> anyhow::Result<PathBuf> {
        let path = self.source_path(id);
        if let Some(shared) = &self.shared
            && !path.exists()
        {
            let fetching = self.sources_dir.join(format!(".fetch-{}", new_id()));
            let fetched = shared.get_file(&format!("{id}.tgz"), &fetching);
            if matches!(fetched, Ok(true)) {
                std::fs::rename(&fetching, &path)?;
            } else {
                let _ = std::fs::remove_file(&fetching);
                fetched?;
            }
        }
        Ok(path)
    }

    /// A source is used by one build; afterwards only its checksum remains
    /// on the build.
    pub fn delete_source(&self, id: &str) -> Result<(), StoreError> {
        let _ = std::fs::remove_file(self.source_path(id));
        if let Some(shared) = &self.shared {
            shared.remove(&format!("{id}.tgz"))?;
        }
        self.sources.remove(id)
    }

    // ---- builds -----------------------------------------------------------------

    /// Records a new pending build, with an empty output to follow; each
    /// line also goes to the app's log as `renga[build]`.
    pub fn create(
        &self,
        app: &str,
        source: &Source,
        version: Option<String>,
        user_id: &str,
        user_name: &str,
        log: AppLog,
    ) -> Result<(Build, Arc<BuildOutput>), StoreError> {
        let now = now_ms();
        let build = Build {
            id: new_id(),
            app: app.to_string(),
            status: BuildStatus::Pending,
            source: source.id.clone(),
            version,
            buildpack: None,
            slug: None,
            release: None,
            failure: None,
            user_id: user_id.to_string(),
            user_name: user_name.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.builds.put(key(app, &build.id), &build)?;
        let output = Arc::new(BuildOutput {
            log: Some(log),
            ..BuildOutput::default()
        });
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(build.id.clone(), output.clone());
        Ok((build, output))
    }

    pub fn update(&self, build: &Build) -> Result<(), StoreError> {
        let mut build = build.clone();
        build.updated_at = now_ms();
        self.builds.put(key(&build.app, &build.id), &build)
    }

    /// Ends a build: its record, and its output written to disk.
    pub fn finish(&self, build: &Build, output: &BuildOutput) -> anyhow::Result<()> {
        let text = output.lines().join("\n") + "\n";
        std::fs::write(self.output_path(&build.id), text)?;
        self.update(build)?;
        output.end();
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&build.id);
        self.forget_old(&build.app)?;
        Ok(())
    }

    pub fn find(&self, app: &str, id: &str) -> Result<Option<Build>, StoreError> {
        self.builds.get(key(app, id))
    }

    /// An app's builds, oldest first.
    pub fn list(&self, app: &str) -> Result<Vec<Build>, StoreError> {
        let mut builds: Vec<Build> = self.builds.scan(format!("{app}/"))?;
        builds.sort_by_key(|b| b.created_at);
        Ok(builds)
    }

    /// A build's output: live while it runs, else from its file.
    pub fn output(&self, build: &Build) -> Arc<BuildOutput> {
        if let Some(live) = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&build.id)
        {
            return live.clone();
        }
        let output = BuildOutput::default();
        if let Ok(text) = std::fs::read_to_string(self.output_path(&build.id)) {
            for line in text.lines() {
                output.push(line.to_string());
            }
        }
        output.end();
        Arc::new(output)
    }

    /// Builds left pending by a server that stopped: they never finish.
    /// Returns the sources they had taken (which no build will use now).
    pub fn fail_interrupted(&self) -> Result<Vec<String>, StoreError> {
        let mut sources = Vec::new();
        for mut build in self.builds.scan::<Build>("")? {
            if build.status == BuildStatus::Pending {
                build.status = BuildStatus::Failed;
                build.failure = Some("the server stopped during this build".into());
                self.update(&build)?;
                sources.push(build.source.clone());
            }
        }
        Ok(sources)
    }

    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        for build in self.list(app)? {
            let _ = std::fs::remove_file(self.output_path(&build.id));
        }
        self.builds.remove_prefix(format!("{app}/"))
    }

    fn forget_old(&self, app: &str) -> Result<(), StoreError> {
        let builds = self.list(app)?;
        let excess = builds.len().saturating_sub(KEPT_PER_APP);
        for build in &builds[..excess] {
            if build.status != BuildStatus::Pending {
                let _ = std::fs::remove_file(self.output_path(&build.id));
                self.builds.remove(key(app, &build.id))?;
            }
        }
        Ok(())
    }

    fn output_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }
}

/// The lines a build prints, readable by many followers while it runs.
#[derive(Default)]
pub struct BuildOutput {
    state: Mutex<OutputState>,
    changed: tokio::sync::Notify,
    /// The app's log, which gets each line too.
    log: Option<AppLog>,
}

#[derive(Default)]
struct OutputState {
    lines: Vec<String>,
    bytes: usize,
    truncated: bool,
    ended: bool,
}

impl BuildOutput {
    /// Adds a line, for followers and the app's log.
    pub fn push(&self, line: String) {
        if let Some(log) = &self.log {
            log.emit(
                logplex::Source::Renga,
                &Process::from("build"),
                line.trim_end(),
            );
        }
        self.push_unlogged(line);
    }

    /// Adds a line that is already in the app's log (a release phase's own
    /// output).
    pub fn push_unlogged(&self, line: String) {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.ended || state.truncated {
                return;
            }
            state.bytes += line.len() + 1;
            if state.bytes > MAX_OUTPUT_BYTES {
                state.truncated = true;
                state.lines.push(format!(
                    " !     Build output is longer than {} and was cut here; the build goes on.",
                    crate::units::ByteSize(MAX_OUTPUT_BYTES as u64)
                ));
            } else {
                state.lines.push(line);
            }
        }
        self.changed.notify_waiters();
    }

    pub fn end(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ended = true;
        self.changed.notify_waiters();
    }

    pub fn lines(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    /// The lines after the first `from`, waiting for some if there are none
    /// yet; `None` once the build has ended and everything was read.
    pub async fn next(&self, from: usize) -> Option<Vec<String>> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.lines.len() > from {
                    return Some(state.lines[from..].to_vec());
                }
                if state.ended {
                    return None;
                }
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_see_every_line_then_the_end() {
        let output = Arc::new(BuildOutput::default());
        output.push("one".into());
        let follower = {
            let output = output.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(lines) = output.next(seen.len()).await {
                    seen.extend(lines);
                }
                seen
            })
        };
        tokio::task::yield_now().await;
        output.push("two".into());
        output.end();
        output.push("after the end".into());
        assert_eq!(follower.await.unwrap(), vec!["one", "two"]);
    }

    #[test]
    fn long_output_is_cut_once() {
        let output = BuildOutput::default();
        let line = "x".repeat(1 << 20);
        for _ in 0..6 {
            output.push(line.clone());
        }
        let lines = output.lines();
        assert_eq!(lines.len(), 4);
        assert!(lines[3].contains("was cut here"));
    }
}
