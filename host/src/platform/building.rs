//! Builds: source in, slug out, then a release.
//!
//! A build takes an uploaded source tarball, runs the app's buildpacks over
//! it (streaming their output), packs the build folder into a slug, runs the
//! Procfile's `release` process if there is one, and releases the slug.
//! Builds of one app run one at a time; a failure at any step leaves the
//! current release serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::App;
use crate::auth::User;
use crate::backend::native::NativeProcess;
use crate::backend::wasm::WasmProcess;
use crate::backend::{self, Kind, ProcessBackend};
use crate::build::{self, BuildPlan, BuildSandbox};
use crate::build_cache::{Restored, Shared};
use crate::buildpack::{self, BuildEnv, Buildpack};
use crate::builds::{Build, BuildOutput, BuildStatus, ReleaseRef, Source};
use crate::logplex::Source as LogSource;
use crate::procfile::{Command, ProcessType, Procfile};
use crate::release::Release;
use crate::runtime::CommandSpec;
use crate::sandbox::Sandbox;
use crate::slug::Slug;

use super::{Platform, PlatformError, Result};

/// The Procfile process type that runs before a release goes live.
const RELEASE_PHASE: &str = "release";

/// How long a build waits for its source's upload, made through another
/// host of the cluster, to reach this host.
const SOURCE_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

impl Platform {
    // ---- sources ----------------------------------------------------------------

    /// A new source for the user to upload to. A user may hold only a few
    /// sources that no build has used yet; they expire after an hour.
    pub fn create_source(&self, user: &User) -> Result<Source> {
        let unbuilt = self.builds.unbuilt_sources(&user.id)?;
        if unbuilt >= crate::builds::MAX_UNBUILT_SOURCES {
            return Err(PlatformError::Invalid(format!(
                "you have {unbuilt} uploaded sources that no build has used yet; start builds from them or wait for them to expire (after {})",
                crate::units::HumanDuration(crate::builds::SOURCE_TTL)
            )));
        }
        Ok(self.builds.create_source(&user.id)?)
    }

    pub fn source(&self, user: &User, id: &str) -> Result<Source> {
        self.builds
            .source(&user.id, id)?
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that source: {id}")))
    }

    pub fn source_upload_path(&self) -> PathBuf {
        self.builds.upload_path()
    }

    pub async fn commit_source(
        &self,
        user: &User,
        id: &str,
        upload: PathBuf,
        checksum: String,
        size: u64,
    ) -> Result<Source> {
        let source = self.source(user, id)?;
        let builds = self.builds.clone();
        // fsync of up to --max-source bytes: off the async workers.
        let committed = tokio::task::spawn_blocking(move || {
            let committed = builds.commit_source(&source, &upload, &checksum, size);
            if committed.is_err() {
                let _ = std::fs::remove_file(&upload);
            }
            committed
        })
        .await?;
        self.db.flush().await?;
        Ok(committed?)
    }

    // ---- builds -----------------------------------------------------------------

    /// Starts a build of an uploaded source; it runs in the background, and
    /// its output can be followed with [`Platform::build_output`].
    pub async fn create_build(
        self: &Arc<Self>,
        user: &User,
        name_or_id: &str,
        source_id: &str,
        version: Option<String>,
    ) -> Result<Build> {
        let app = self.app(user, name_or_id)?;
        let mut source = self.source(user, source_id)?;
        // On a cluster, a tarball PUT through another host a moment ago
        // reaches this host's copy of the ledger within milliseconds: a
        // client behind a load balancer sends the build right after.
        let deadline = tokio::time::Instant::now() + SOURCE_CATCH_UP;
        while source.checksum.is_none()
            && self.db.is_cluster()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            source = self.source(user, source_id)?;
        }
        if source.checksum.is_none() {
            return Err(PlatformError::Invalid(
                "the source has no content yet: PUT the tarball to its put_url first".into(),
            ));
        }
        if source.build.is_some() {
            return Err(PlatformError::Invalid(
                "that source was already built: upload a new one".into(),
            ));
        }
        if let Err(reason) = &self.sandbox {
            return Err(PlatformError::Invalid(format!(
                "this server cannot build: {reason}"
            )));
        }
        self.builds.claim_source(&source)?;
        let (build, output) = self.builds.create(
            &app.id,
            &source,
            version,
            &user.id,
            &user.name,
            self.logs.app(&app.id),
        )?;
        self.db.flush().await?;
        let platform = self.clone();
        let user = user.clone();
        let started = build.clone();
        tokio::spawn(async move { platform.run_build(app, user, started, output).await });
        Ok(build)
    }

    pub fn builds(&self, user: &User, name_or_id: &str) -> Result<Vec<Build>> {
        let app = self.app(user, name_or_id)?;
        Ok(self.builds.list(&app.id)?)
    }

    pub fn build(&self, user: &User, name_or_id: &str, id: &str) -> Result<Build> {
        let app = self.app(user, name_or_id)?;
        self.builds
            .find(&app.id, id)?
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that build: {id}")))
    }

    pub fn build_output(
        &self,
        user: &User,
        name_or_id: &str,
        id: &str,
    ) -> Result<Arc<BuildOutput>> {
        let build = self.build(user, name_or_id, id)?;
        Ok(self.builds.output(&build))
    }

    /// Sets the buildpacks an app builds with: renga's own by name (`rust`,
    /// `python`, ...) or a classic buildpack folder on the server by its
    /// absolute path. An empty list goes back to detection.
    pub async fn set_buildpacks(
        &self,
        user: &User,
        name_or_id: &str,
        buildpacks: Vec<String>,
    ) -> Result<App> {
        let mut app = self.app(user, name_or_id)?;
        for name in &buildpacks {
            if !buildpack::DETECTION_ORDER.contains(&name.as_str()) && !user.admin {
                return Err(PlatformError::Forbidden(format!(
                    "only the admin can set a buildpack by its path on the server ({name}); use one of renga's: {}",
                    buildpack::DETECTION_ORDER.join(", ")
                )));
            }
            self.resolve_buildpack(name)?;
        }
        let _lock = self.lock(&mut app).await;
        let app = self.apps.set_buildpacks(&app, buildpacks)?;
        self.db.flush().await?;
        Ok(app)
    }

    fn resolve_buildpack(&self, name: &str) -> Result<Buildpack> {
        if buildpack::DETECTION_ORDER.contains(&name) {
            let all = buildpack::builtin(&self.config.cache)?;
            return Ok(all
                .into_iter()
                .find(|b| b.name() == name)
                .expect("every builtin buildpack is materialized"));
        }
        let path = Path::new(name);
        if !path.is_absolute() {
            return Err(PlatformError::Invalid(format!(
                "unknown buildpack {name:?}: use one of renga's ({}) or the absolute path of a classic buildpack folder on the server",
                buildpack::DETECTION_ORDER.join(", ")
            )));
        }
        let inside_data = std::fs::canonicalize(path)
            .is_ok_and(|p| p.starts_with(&self.config.data) || p.starts_with(&self.config.cache));
        if inside_data {
            return Err(PlatformError::Invalid(format!(
                "{name} is inside renga's data folder, which holds apps' files, not buildpacks"
            )));
        }
        Buildpack::from_dir(path).map_err(|e| PlatformError::Invalid(format!("{e:#}")))
    }

    async fn run_build(
        self: Arc<Self>,
        app: App,
        user: User,
        mut build: Build,
        output: Arc<BuildOutput>,
    ) {
        let _serial = self.build_lock(&app.id).await;
        let work = self.builds.work_dir(&build.id);
        self.say(&app, format!("Build started by {}", user.name));
        let outcome = self
            .build_steps(&app, &user, &mut build, &output, &work)
            .await;
        match outcome {
            Ok(release) => {
                output.push(format!("-----> Released {}", release.version()));
                output.push(format!("       {} deployed to renga", self.web_url(&app)));
                build.status = BuildStatus::Succeeded;
                build.release = Some(ReleaseRef {
                    id: release.id.clone(),
                    version: release.version,
                });
                self.say(&app, format!("Build succeeded ({})", release.version()));
                if let Err(e) = self.prune_slugs(&app) {
                    tracing::warn!(app = %app.name, error = %e, "could not prune old slugs");
                }
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    output.push(format!(" !     {line}"));
                }
                build.status = BuildStatus::Failed;
                build.failure = Some(e.to_string().lines().next().unwrap_or_default().to_string());
                self.say(&app, "Build failed".to_string());
            }
        }
        // Everything the build left is gone before anyone is told it ended.
        let removed = work.clone();
        let _ = tokio::task::spawn_blocking(move || crate::sandbox::remove_tree(&removed)).await;
        let _ = self.builds.delete_source(&build.source);
        if let Err(e) = self.builds.finish(&build, &output) {
            tracing::error!(build = %build.id, error = %format!("{e:#}"), "could not record a finished build");
            output.end();
        }
        let _ = self.db.flush().await;
    }

    async fn build_steps(
        &self,
        app: &App,
        user: &User,
        build: &mut Build,
        output: &Arc<BuildOutput>,
        work: &Path,
    ) -> Result<Release> {
        let source_dir = work.join("source");
        let (builds, source) = (self.builds.clone(), build.source.clone());
        let archive = tokio::task::spawn_blocking(move || builds.local_source(&source))
            .await?
            .map_err(|e| {
                PlatformError::Internal(e.context("fetching the source from the cluster"))
            })?;
        let unpack_into = source_dir.clone();
        let limits = self.config.unpacked;
        tokio::task::spawn_blocking(move || unpack_source(&archive, &unpack_into, limits))
            .await?
            .map_err(|e| match e {
                crate::archive::ArchiveError::Io(e) => {
                    PlatformError::Internal(anyhow::Error::from(e).context("unpacking the source"))
                }
                bad => PlatformError::Invalid(format!("the source is not a usable tarball: {bad}")),
            })?;

        let buildpacks = if app.buildpacks.is_empty() {
            buildpack::builtin(&self.config.cache)?
        } else {
            app.buildpacks
                .iter()
                .map(|name| self.resolve_buildpack(name))
                .collect::<Result<Vec<_>>>()?
        };
        let mut env = BuildEnv::from_host();
        if let Some(version) = &build.version {
            env.set("SOURCE_VERSION", version.clone());
        }
        let config = self.current_release(app)?.config;
        let build_dir = work.join("build");
        let cache_dir = self.build_caches.dir(&app.id);
        let env_dir = work.join("env");
        let sandbox = self.sandbox.clone().map_err(|reason| {
            PlatformError::Invalid(format!("this server cannot build: {reason}"))
        })?;
        self.restore_build_cache(app, &sandbox, output).await;
        let tools_dir = self.build_tools_dir(&sandbox).await?;
        let plan = BuildPlan {
            source: &source_dir,
            tools_dir: &tools_dir,
            build_dir: &build_dir,
            cache_dir: &cache_dir,
            env_dir: &env_dir,
            buildpacks: &buildpacks,
            env: &env,
            config: &config,
            time_limit: self.config.build_time_limit,
            sandbox: Some(BuildSandbox {
                sandbox,
                uid: build_uid(&app.id),
                tools_uid: TOOLS_UID,
                limits: self.config.build_limits,
            }),
        };
        let sink = output.clone();
        let built = build::run(&plan, &mut move |line| sink.push(line))
            .await
            .map_err(|e| match e {
                build::BuildError::Prepare(e) => PlatformError::Internal(e),
                other => PlatformError::Invalid(other.to_string()),
            })?;
        build.buildpack = Some(built.buildpack.clone());
        self.builds.update(build)?;
        self.share_build_cache(app, output).await;

        let slug = self
            .slug_from_build(app, build, &built.dir, &built.procfile, output)
            .await?;
        build.slug = Some(slug.id.clone());
        self.builds.update(build)?;

        if let Some(command) = built
            .procfile
            .get(&RELEASE_PHASE.parse::<ProcessType>().expect("a valid type"))
        {
            self.release_phase(app, &slug, command, &config, output)
                .await?;
        }
        output.push("-----> Launching...".to_string());
        let description = match &build.version {
            Some(version) => format!("Deploy {}", short(version)),
            None => format!("Deploy {}", short(slug.checksum.as_deref().unwrap_or(""))),
        };
        self.deploy(user, app.id.as_str(), &slug.id, Some(description))
            .await
    }

    /// On a cluster, brings in the app's build cache from the host that
    /// built it last; a cache the cluster cannot give is said and skipped.
    async fn restore_build_cache(&self, app: &App, sandbox: &Arc<Sandbox>, output: &BuildOutput) {
        let caches = self.build_caches.clone();
        let (app_id, sandbox) = (app.id.clone(), sandbox.clone());
        let limits = crate::archive::Limits {
            bytes: self.config.build_limits.disk,
            files: self.config.build_limits.files,
        };
        let restored = tokio::task::spawn_blocking(move || {
            caches.restore(&app_id, limits, Some((&sandbox, build_uid(&app_id))))
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        match restored {
            Ok(Restored::Kept) => {}
            Ok(Restored::Fetched(size)) => output.push(format!(
                "-----> Build cache fetched from the cluster ({})",
                crate::units::ByteSize(size)
            )),
            Err(e) => output.push(format!(
                "-----> The cluster's build cache could not be used, building without it: {e:#}"
            )),
        }
    }

    /// On a cluster, stores the app's build cache for the next build
    /// through any host; a failure is said and does not fail the build.
    async fn share_build_cache(&self, app: &App, output: &BuildOutput) {
        let caches = self.build_caches.clone();
        let app_id = app.id.clone();
        let shared = tokio::task::spawn_blocking(move || caches.share(&app_id))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        match shared {
            Ok(Shared::Local) => {}
            Ok(Shared::Stored(size)) => output.push(format!(
                "-----> Build cache stored in the cluster ({})",
                crate::units::ByteSize(size)
            )),
            Ok(Shared::TooLarge(bound)) => output.push(format!(
                "-----> The build cache packs to more than {}: kept on this host only",
                crate::units::ByteSize(bound)
            )),
            Err(e) => output.push(format!(
                "-----> The build cache could not be stored in the cluster: {e:#}"
            )),
        }
    }

    async fn slug_from_build(
        &self,
        app: &App,
        build: &Build,
        dir: &Path,
        procfile: &Procfile,
        output: &BuildOutput,
    ) -> Result<Slug> {
        output.push("-----> Compressing...".to_string());
        let process_types: BTreeMap<String, String> = procfile
            .iter()
            .map(|(kind, command)| (kind.to_string(), command.to_string()))
            .collect();
        let upload = self.slugs.upload_path();
        let limit = self.config.max_slug_bytes;
        let from = dir.to_path_buf();
        let to = upload.clone();
        let (checksum, size) =
            tokio::task::spawn_blocking(move || crate::slug::pack_build(&from, &to, limit))
                .await??;
        output.push(format!("       Done: {}", crate::units::ByteSize(size)));
        let slug = self.slugs.create(
            &app.id,
            process_types,
            build.version.as_deref().map(|v| short(v).to_string()),
        )?;
        let slugs = self.slugs.clone();
        let slug =
            tokio::task::spawn_blocking(move || slugs.commit_blob(&slug, &upload, &checksum, size))
                .await??;
        self.db.flush().await?;
        Ok(slug)
    }

    /// Runs the Procfile's `release` process once, to its end, with the
    /// release's config vars; a non-zero exit fails the build.
    async fn release_phase(
        &self,
        app: &App,
        slug: &Slug,
        command: &Command,
        config: &crate::config::ConfigVars,
        output: &Arc<BuildOutput>,
    ) -> Result<()> {
        output.push(format!("-----> Running release command: {command}"));
        let process: crate::logplex::Process = Arc::from("release.1");
        let log = self.logs.app(&app.id);
        let time_limit = Some(self.config.build_time_limit);
        let release: Box<dyn ProcessBackend> = match backend::kind(command) {
            Kind::Native { line } => {
                let spec = self
                    .native_spec(app, slug, config, crate::size::Size::default())
                    .await?;
                Box::new(NativeProcess::new(spec, process.clone(), line.to_string()))
            }
            Kind::Wasm { path, args } => {
                let caps = self.configure_capabilities(app, config)?;
                let component = self.command_component(app, &caps, slug, path).await?;
                let mut argv = vec![path.to_string()];
                argv.extend(args.iter().cloned());
                Box::new(WasmProcess::new(
                    component,
                    CommandSpec {
                        caps: caps.dyno(&crate::capability::DynoInputs {
                            name: &process,
                            log: &log,
                            meter: &self.metrics.app(&app.id).dyno(&process),
                        }),
                        args: argv,
                        memory_limit: self.memory_of(crate::size::Size::default()),
                        time_limit,
                        log: log.clone(),
                        cpu: self.cpu_of(app),
                    },
                ))
            }
        };
        // The release's output goes to the app's log; follow it there into
        // the build's output too.
        let (_, mut live) = log.tail(0);
        let forward = |line: &crate::logplex::LogLine| {
            if line.process == process && line.source == LogSource::App {
                output.push_unlogged(format!("       {}", line.message));
            }
        };
        let run = release.run(crate::runtime::ProcessIo::default(), time_limit);
        tokio::pin!(run);
        let mut following = true;
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                received = live.recv(), if following => match received {
                    Ok(line) => forward(&line),
                    // Lines went by faster than this build could follow: say
                    // so, and go on with the next ones.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => output
                        .push_unlogged(format!("       (renga: {n} lines of the release command's output were skipped; `renga logs` has them)")),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => following = false,
                },
            }
        };
        // Every line was emitted before the run returned (the guest's last
        // partial line when its store was dropped): take what is queued.
        loop {
            match live.try_recv() {
                Ok(line) => forward(&line),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => output
                    .push_unlogged(format!("       (renga: {n} lines of the release command's output were skipped; `renga logs` has them)")),
                Err(_) => break,
            }
        }
        match result {
            Ok(0) => {
                self.say(app, "Release command succeeded".to_string());
                Ok(())
            }
            Ok(code) => {
                self.say(app, format!("Release command failed (exit {code})"));
                Err(PlatformError::Invalid(format!(
                    "Release command `{command}` failed with exit code {code}; the current release keeps serving"
                )))
            }
            Err(e) => {
                self.say(app, format!("Release command failed: {e}"));
                Err(PlatformError::Invalid(format!(
                    "Release command `{command}` failed: {e}; the current release keeps serving"
                )))
            }
        }
    }

    /// The tools folder shared by every build (`bin/tools` installs into
    /// it), given to the tools uid.
    async fn build_tools_dir(&self, sandbox: &Arc<crate::sandbox::Sandbox>) -> Result<PathBuf> {
        let dir = self.config.cache.join("sandbox-tools");
        let sandbox = sandbox.clone();
        let give = dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            std::fs::create_dir_all(&give)?;
            // Every app's build reads it (never writes it).
            std::fs::set_permissions(&give, std::fs::Permissions::from_mode(0o755))?;
            if sandbox.is_root() && std::fs::metadata(&give)?.uid() != TOOLS_UID {
                sandbox.give(&give, TOOLS_UID)?;
            }
            Ok(())
        })
        .await??;
        Ok(dir)
    }

    async fn build_lock(&self, app_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .build_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

fn short(version: &str) -> &str {
    &version[..version.len().min(7)]
}

/// Unpacks a source tarball (gzipped or not) with the server's limits: only
/// files, folders and links, every path inside the source.
fn unpack_source(
    archive: &Path,
    into: &Path,
    limits: crate::archive::Limits,
) -> Result<(), crate::archive::ArchiveError> {
    if into.exists() {
        std::fs::remove_dir_all(into)?;
    }
    let reader = crate::archive::open(archive)?;
    crate::archive::unpack(reader, into, limits)?;
    Ok(())
}

/// The uid that owns the shared tools folder builds read.
const TOOLS_UID: u32 = 1_999_999;

/// The uid an app's builds run as: its own, from a range no system account
/// uses, so that one app's build can never touch files another app's build
/// made.
pub fn build_uid(app_id: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(app_id.as_bytes());
    let n = u32::from_be_bytes(digest[..4].try_into().expect("sha256 is 32 bytes"));
    2_000_000 + n % 1_000_000_000
}
