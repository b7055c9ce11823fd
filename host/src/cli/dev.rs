//! `renga dev`: one app, locally, rebuilt and swapped on every change.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::backend::{self, Kind};
use crate::build::{self, BuildPlan};
use crate::buildpack::{self, BuildEnv, Buildpack};
use crate::capability::ReleaseInputs;
use crate::config::ConfigVars;
use crate::dyno::{WebDyno, WebLimits};
use crate::logplex::AppLog;
use crate::paths::{DevDirs, Paths};
use crate::procfile::Procfile;
use crate::router::{self, AppRoute, SingleApp, WebState};
use crate::runtime::{AppCpu, Provenance, Runtime, Timeouts};
use crate::units::ByteSize;

/// Run an app locally: build it, serve it, rebuild on every change.
///
/// A Rust crate is built by the Rust buildpack; a folder whose Procfile says
/// `web: app.wasm` is served as is. `.env` in the folder becomes the app's
/// config vars. Every request gets a fresh instance, exactly as on
/// `renga server`.
///
/// Example:
///   renga dev examples/hello-rust --port 5000
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DevCommand {
    /// The app's source folder.
    #[arg(default_value = ".")]
    dir: PathBuf,

    /// Port to listen on; 0 picks a free one.
    #[arg(long, short, env = "PORT", default_value_t = 5000)]
    port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,

    #[command(flatten)]
    serving: super::ServingArgs,

    /// Keep each instance for up to N requests instead of a fresh one per
    /// request, as `ps:type web=SIZE --reuse N` does on the server.
    #[arg(long, default_value_t = 0)]
    reuse: u32,

    /// Serve the first build only; do not watch the folder.
    #[arg(long)]
    no_watch: bool,

    /// Data folder (caches and precompiled code live here).
    #[arg(long, env = "RENGA_DATA")]
    data: Option<PathBuf>,
}

/// Linear memory per instance unless `--memory` says otherwise.
const DEV_MEMORY: u64 = 512 << 20;
/// Request timeout unless `--timeout` says otherwise.
const DEV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Requests the one local dyno serves at once: enough for a load test.
const DEV_CONCURRENCY: u32 = 1024;

/// Everything needed to turn the source folder into web dynos, again and again.
struct DevApp {
    source: PathBuf,
    name: String,
    runtime: Runtime,
    buildpacks: Vec<Buildpack>,
    env: BuildEnv,
    /// Where buildpacks install their tools (shared by local builds).
    tools: PathBuf,
    dirs: DevDirs,
    log: AppLog,
    memory: u64,
    reuse: u32,
    timeouts: Timeouts,
    /// The one app's claim on the CPU.
    cpu: Arc<AppCpu>,
}

impl DevCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let source = std::fs::canonicalize(&self.dir)
            .with_context(|| format!("cannot open the app folder {}", self.dir.display()))?;
        if !source.is_dir() {
            bail!("{} is not a folder", source.display());
        }
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into());
        let paths = Paths::resolve(self.data)?;
        // A broken .env is an error before anything else happens.
        read_dotenv(&source)?;

        // Every capability an app imports, on local files under `.renga/`
        // in its folder (which git ignores), so that nothing needs
        // provisioning.
        let local = local_folder(&source)?;
        let mut runtime_config = self.serving.runtime(
            paths.artefacts(),
            self.serving.memory().unwrap_or(DEV_MEMORY),
        );
        runtime_config.capabilities.addons = Some(local);
        runtime_config.capabilities.local = true;
        let runtime = Runtime::new(&runtime_config)?;
        println!(
            "-----> renga dev: wasmtime {}, {} instance allocator",
            crate::runtime::WASMTIME_VERSION,
            runtime.allocator()
        );

        let log = AppLog::default();
        let printer = log.print_to(std::io::stdout());
        let app = Arc::new(DevApp {
            dirs: paths.dev(&source),
            source,
            name: name.clone(),
            runtime,
            buildpacks: buildpack::builtin(&paths.cache)?,
            env: BuildEnv::from_host(),
            tools: paths.tools(),
            log: log.clone(),
            memory: self.serving.memory().unwrap_or(DEV_MEMORY),
            reuse: self.reuse,
            timeouts: Timeouts::new(self.serving.timeout().unwrap_or(DEV_TIMEOUT)),
            cpu: AppCpu::new(1),
        });

        let web = app.build().await?;
        let route = Arc::new(AppRoute::new(name.clone(), log, web));

        let listener = tokio::net::TcpListener::bind((self.bind, self.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", self.bind, self.port))?;
        let url = router::display_url(listener.local_addr()?);
        println!("-----> {name} is running at {url} (Ctrl-C to stop)");

        let _watch = if self.no_watch {
            None
        } else {
            Some(watch(app.clone(), route.clone())?)
        };

        router::serve(
            listener,
            Arc::new(SingleApp(route)),
            self.serving.router(),
            router::shutdown_signal(),
        )
        .await?;
        println!("-----> {name} stopped");
        printer.abort();
        Ok(())
    }
}

impl DevApp {
    /// Builds the source folder and loads its web process. Build output goes
    /// to the terminal as it comes.
    async fn build(&self) -> anyhow::Result<WebState> {
        let started = Instant::now();
        let config = read_dotenv(&self.source)?;
        let lock = self.lock().await?;
        let fingerprint = fingerprint(&self.source, &config, &self.buildpacks)?;
        let procfile = match self.unchanged_build(&fingerprint) {
            Some(procfile) => {
                println!("-----> No change since the last build; reusing it");
                procfile
            }
            None => {
                let _ = std::fs::remove_file(&self.dirs.last_build);
                let plan = BuildPlan {
                    source: &self.source,
                    tools_dir: &self.tools,
                    build_dir: &self.dirs.build,
                    cache_dir: &self.dirs.cache,
                    env_dir: &self.dirs.env,
                    buildpacks: &self.buildpacks,
                    env: &self.env,
                    config: &config,
                    time_limit: build::DEFAULT_TIME_LIMIT,
                    sandbox: None,
                };
                let built = build::run(&plan, &mut |line| println!("{line}")).await?;
                built.procfile
            }
        };

        let Some(web) = procfile.web() else {
            // A lone component that is not an HTTP handler (a command): say
            // what it is rather than only that nothing serves.
            let built: Vec<_> = std::fs::read_dir(&self.dirs.build)
                .map(|dir| {
                    dir.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                        .collect()
                })
                .unwrap_or_default();
            if let [only] = built.as_slice() {
                tokio::task::block_in_place(|| self.runtime.load_http(only))?;
            }
            bail!("the app has no web process: add `web: app.wasm` to its Procfile");
        };
        let path = match backend::kind(web) {
            Kind::Wasm { path, .. } => path,
            Kind::Native { line } => bail!(
                "the web process runs `{line}`, a native process: renga dev serves components (name one in the Procfile, e.g. `web: app.wasm`); native apps run on `renga server`, whose sandbox they need"
            ),
        };
        let wasm = crate::slug::file_inside(&self.dirs.build, path)?;
        let component = tokio::task::block_in_place(|| self.runtime.load_http(&wasm))?;
        let cpu = self.cpu.clone();
        let record = LastBuild {
            fingerprint,
            procfile: procfile.to_string(),
        };
        std::fs::write(&self.dirs.last_build, serde_json::to_vec(&record)?)
            .context("recording the build")?;
        drop(lock);

        let how = match component.provenance() {
            Provenance::Cached => "precompiled code from the cache",
            Provenance::Compiled => "compiled now",
        };
        println!(
            "-----> web.1 serves {path} ({}, {how}); ready in {:.1}s",
            ByteSize(std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)),
            started.elapsed().as_secs_f64()
        );
        let limits = WebLimits {
            memory: self.memory,
            concurrency: DEV_CONCURRENCY,
            reuse: self.reuse,
        };
        let caps = self
            .runtime
            .capabilities()
            .configure(&ReleaseInputs {
                app: &self.name,
                config: &config,
                addons: &[],
            })
            .context("the app's config vars")?;
        let problems = caps.check(component.imports(), &self.name);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            bail!("{path} cannot run: {}", list.join("; "));
        }
        let dyno = WebDyno::new(
            1,
            component,
            &caps,
            limits,
            self.log.clone(),
            cpu,
            crate::metrics::DynoMeter::off(),
        );
        Ok(WebState::new(vec![Arc::new(dyno)], false, self.timeouts))
    }

    /// The last build's process types, if it was made from exactly this
    /// source, config and buildpacks and its output is still there.
    fn unchanged_build(&self, fingerprint: &str) -> Option<Procfile> {
        let record: LastBuild =
            serde_json::from_slice(&std::fs::read(&self.dirs.last_build).ok()?).ok()?;
        if record.fingerprint != fingerprint || !self.dirs.build.is_dir() {
            return None;
        }
        Procfile::parse(&record.procfile).ok()
    }

    /// Two `renga dev` processes on the same folder take turns building.
    async fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.dirs.lock.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::fs::File::create(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await?
        .context("locking the dev build folder")
    }
}

/// Watches the source folder and swaps in a new build after each change.
/// The returned watcher stops when dropped.
fn watch(app: Arc<DevApp>, route: Arc<AppRoute>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let root = app.source.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && is_relevant(&root, &event)
        {
            let _ = tx.send(());
        }
    })?;
    watcher
        .watch(&app.source, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", app.source.display()))?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Editors save in bursts; build once per burst.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            println!("-----> Change detected in {}; rebuilding", app.name);
            match app.build().await {
                Ok(web) => {
                    route.set(web);
                    println!("-----> Reloaded: new requests get the new build");
                }
                Err(e) => {
                    println!(" !     {e:#}");
                    println!(" !     Build failed; still serving the previous build");
                }
            }
        }
    });
    Ok(watcher)
}

fn is_relevant(root: &Path, event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        let relative = path.strip_prefix(root).unwrap_or(path);
        !relative.components().any(|c| {
            let c = c.as_os_str();
            c == ".git" || c == "target" || c == "node_modules" || c == ".renga"
        })
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LastBuild {
    fingerprint: String,
    procfile: String,
}

/// Identifies a build's inputs without reading every file: each source
/// file's path, size and modification time, the config vars, and which
/// buildpacks (by folder, which names their content) would run.
fn fingerprint(
    source: &Path,
    config: &ConfigVars,
    buildpacks: &[Buildpack],
) -> anyhow::Result<String> {
    use sha2::Digest as _;
    fn walk(dir: &Path, root: &Path, hasher: &mut sha2::Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if build::NEVER_COPIED.iter().any(|skip| name == *skip) {
                continue;
            }
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let relative = path.strip_prefix(root).unwrap_or(&path);
            hasher.update(relative.as_os_str().as_encoded_bytes());
            if meta.is_dir() {
                hasher.update(b"/");
                walk(&path, root, hasher)?;
            } else {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .unwrap_or_default();
                hasher.update(meta.len().to_le_bytes());
                hasher.update(modified.as_nanos().to_le_bytes());
            }
        }
        Ok(())
    }
    let mut hasher = sha2::Sha256::new();
    walk(source, source, &mut hasher).with_context(|| format!("reading {}", source.display()))?;
    hasher.update(serde_json::to_vec(config)?);
    for buildpack in buildpacks {
        hasher.update(buildpack.dir().as_os_str().as_encoded_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `.renga/` in the app's folder, private to the user and ignored by git.
fn local_folder(source: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let folder = source.join(".renga");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .with_context(|| format!("creating {}", folder.display()))?;
    let ignore = folder.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# renga dev's local add-on data\n*\n")
            .with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(folder)
}

fn read_dotenv(source: &Path) -> anyhow::Result<ConfigVars> {
    let path = source.join(".env");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            ConfigVars::from_dotenv(&text).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigVars::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
