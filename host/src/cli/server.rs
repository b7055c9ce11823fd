//! `renga server`: the platform — the control API and the router, many apps
//! in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::paths::Paths;
use crate::platform::{Platform, PlatformConfig};
use crate::router;
use crate::runtime::Runtime;
use crate::sandbox::{JailLimits, Sandbox};
use crate::store::Db;
use crate::units::{ByteSize, HumanDuration};

/// Run the platform: the API (for the CLI, git and Heroku API clients) and
/// the router that serves every app at http://APP.DOMAIN:PORT.
///
/// On first start it creates the admin user. Its token is $RENGA_ADMIN_TOKEN
/// when set; otherwise a random one, printed once and written to
/// DATA/admin.token (mode 0600).
///
/// Example:
///   renga server --data /var/lib/renga --domain apps.example.com
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServerCommand {
    /// Data folder: the store, slugs and caches.
    #[arg(long, env = "RENGA_DATA")]
    data: Option<PathBuf>,

    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    api: SocketAddr,

    /// Address of the router that serves apps.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,

    /// On a cluster, where the other hosts reach this host's router, for
    /// the requests they forward [default: the --http address; 127.0.0.1
    /// when that is 0.0.0.0].
    #[arg(long, value_name = "IP:PORT", requires = "cluster")]
    router_address: Option<SocketAddr>,

    /// Apps answer at APP.DOMAIN.
    #[arg(long, default_value = "localhost")]
    domain: String,

    #[command(flatten)]
    serving: super::ServingArgs,

    /// Where clients reach the API, for the URLs it hands out (git remotes,
    /// upload and log URLs) [default: http:// and the --api address].
    #[arg(long, env = "RENGA_PUBLIC_URL")]
    public_url: Option<String>,

    /// Largest slug a build or an upload may make.
    #[arg(long, default_value = "500MiB")]
    max_slug: ByteSize,

    /// Largest source tarball a build may start from.
    #[arg(long, default_value = "500MiB")]
    max_source: ByteSize,

    /// Most bytes a slug or a source may unpack to (it may also hold at
    /// most 50,000 files and folders).
    #[arg(long, default_value = "1GiB")]
    max_unpacked: ByteSize,

    /// Memory one build may use, its processes and /tmp together.
    #[arg(long, default_value = "4GiB")]
    build_memory: ByteSize,

    /// Disk one build may keep in its build folder and its cache.
    #[arg(long, default_value = "5GiB")]
    build_disk: ByteSize,

    /// Where apps' build caches are kept [default: CACHE/builds].
    #[arg(long, value_name = "DIR")]
    build_caches: Option<std::path::PathBuf>,

    /// On a cluster, the largest packed build cache hosts share; a larger
    /// one stays on the host that built it.
    #[arg(long, default_value = "500MiB")]
    max_build_cache: ByteSize,

    /// Time one build (its buildpacks and its release phase) may take.
    #[arg(long, default_value = "15m")]
    build_timeout: HumanDuration,
    /// How long a native web process has to accept connections on $PORT
    /// before R10 (Boot timeout) and a restart.
    #[arg(long, default_value = "60s")]
    boot_timeout: HumanDuration,

    /// Unload an app's web dynos after this long without a request (the
    /// next request wakes them in milliseconds); `never` keeps them loaded.
    /// An app can set its own period with `renga ps:idle`.
    #[arg(long, default_value = "30m", value_parser = parse_idle_after)]
    idle_after: IdleAfter,

    /// Keep a component's compiled code mapped this long after its last
    /// dyno is unloaded, so that its apps wake without mapping and linking
    /// it again (256 MiB of code at most, the most recently loaded first);
    /// `0s` unmaps it with its last dyno.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    keep_code_for: HumanDuration,

    /// A PostgreSQL server renga may administer (an account with
    /// CREATEROLE and CREATEDB): `renga-postgres` add-ons are a database
    /// and a role each on it.
    #[arg(long, env = "RENGA_POSTGRES_URL", value_name = "URL")]
    postgres: Option<String>,

    /// A Redis (6 or later) or Valkey server renga may administer:
    /// `renga-kv:redis` add-ons are a key prefix and an ACL user each on it.
    #[arg(long, env = "RENGA_REDIS_URL", value_name = "URL")]
    redis: Option<String>,

    /// Keep the ledger (apps, users, releases, config vars, formation,
    /// add-ons) in a NATS JetStream cluster instead of the data folder, so
    /// that several hosts share it and losing one loses nothing: the NATS
    /// servers' URLs, comma-separated (`nats://A,nats://B,nats://C`).
    #[arg(
        long,
        env = "RENGA_CLUSTER",
        value_name = "URLS",
        value_delimiter = ','
    )]
    cluster: Vec<String>,

    /// On how many NATS servers each of the ledger's buckets is kept
    /// [default: 3, or 1 with a single server].
    #[arg(long, value_name = "N", requires = "cluster")]
    cluster_replicas: Option<usize>,

    /// This host's name in `renga hosts` [default: the machine's host name].
    #[arg(long, value_name = "NAME")]
    host_name: Option<String>,

    /// Let log drains reach loopback, private and link-local addresses
    /// (a syslog server on the operator's own network). Off by default:
    /// a drain is a connection made for a tenant.
    #[arg(long, env = "RENGA_ALLOW_PRIVATE_DRAINS")]
    allow_private_drains: bool,

    /// Lines each log drain may fall behind by; past it the oldest go, and
    /// the app's log says how many (L10).
    #[arg(long, default_value_t = crate::drain::deliver::DEFAULT_BUFFER_LINES, value_name = "LINES")]
    drain_buffer: usize,

    /// A PEM file of certificate authorities that `https://` and
    /// `syslog+tls://` drains trust besides Mozilla's roots (an
    /// operator's own authority).
    #[arg(long, env = "RENGA_DRAIN_CA", value_name = "FILE")]
    drain_ca: Option<PathBuf>,

    /// Count nothing for `/metrics` and `log-runtime-metrics` (the
    /// benchmark's reference; counting costs a few atomic additions per
    /// request).
    #[arg(long)]
    no_metrics: bool,

    /// How often apps with `log-runtime-metrics` get their dynos' sample#
    /// lines (Heroku writes them every 20 s).
    #[arg(long, default_value = "20s")]
    runtime_metrics_every: HumanDuration,
}

/// `--idle-after`: a duration, or never.
#[derive(Clone, Copy, Debug)]
pub struct IdleAfter(pub Option<std::time::Duration>);

pub fn parse_idle_after(s: &str) -> Result<IdleAfter, String> {
    if s.trim() == "never" {
        return Ok(IdleAfter(None));
    }
    let d: HumanDuration = s.parse()?;
    if d.0 < std::time::Duration::from_secs(1) {
        return Err("the idle period is at least 1s (or `never`)".into());
    }
    Ok(IdleAfter(Some(d.0)))
}

impl ServerCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        // Everything renga writes (the store, slugs, caches, tokens) is
        // readable by renga's user only.
        // SAFETY: umask has no preconditions.
        unsafe {
            libc::umask(0o077);
        }
        let paths = Paths::resolve(self.data)?;
        paths.make_private()?;
        let host_name = self.host_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_string())
                .unwrap_or_else(|_| "renga".into())
        });
        let db = if self.cluster.is_empty() {
            Db::open(&paths.data.join("db"))?
        } else {
            let options = crate::store::ClusterOptions {
                replicas: self.cluster_replicas.unwrap_or(if self.cluster.len() > 1 {
                    3
                } else {
                    1
                }),
                servers: self.cluster.clone(),
                host: host_name.clone(),
            };
            let db = Db::join(options.clone()).await?;
            println!(
                "-----> The ledger lives in the cluster at {} ({} replicas)",
                options.servers.join(","),
                options.replicas
            );
            db
        };
        // The pool's slots fit the largest size (or the cap given).
        let memory_cap = self
            .serving
            .memory()
            .unwrap_or(crate::size::Size::largest_memory());
        let servers = crate::provider::Servers {
            postgres: match self.postgres.as_deref().filter(|u| !u.is_empty()) {
                Some(url) => Some(Arc::new(crate::provider::postgres::PgServer::new(url)?)),
                None => None,
            },
            redis: match self.redis.as_deref().filter(|u| !u.is_empty()) {
                Some(url) => Some(Arc::new(crate::provider::redis::RedisServer::new(url)?)),
                None => None,
            },
        };
        if let Some(pg) = &servers.postgres {
            match pg.ping().await {
                Ok(()) => println!("-----> renga-postgres add-ons live on {}", pg.shown()),
                Err(e) => println!(" !     {e}; renga-postgres add-ons fail until it answers"),
            }
        }
        if let Some(redis) = &servers.redis {
            match redis.ping().await {
                Ok(()) => println!("-----> renga-kv:redis add-ons live on {}", redis.shown()),
                Err(e) => println!(" !     {e}; renga-kv:redis add-ons fail until it answers"),
            }
        }
        let mut runtime_config = self.serving.runtime(paths.artefacts(), memory_cap);
        runtime_config.capabilities.addons = Some(paths.addons());
        runtime_config.capabilities.servers = servers.clone();
        let runtime = Runtime::new(&runtime_config)?;
        let allocator = runtime.allocator();

        let api_listener = tokio::net::TcpListener::bind(self.api)
            .await
            .with_context(|| format!("cannot listen on {} for the API", self.api))?;
        let http_listener = tokio::net::TcpListener::bind(self.http)
            .await
            .with_context(|| format!("cannot listen on {} for apps", self.http))?;
        let api_addr = api_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let api_url = format!("http://{}", local_address(api_addr));
        let public_url = match &self.public_url {
            Some(url) => parse_public_url(url)?,
            None => api_url.clone(),
        };

        let toolchains = crate::sandbox::without_private(
            crate::sandbox::host_toolchains(),
            &[&paths.data, &paths.cache],
        );
        let sandbox =
            Sandbox::detect(&paths.data.join("sandbox"), toolchains).map_err(|e| e.to_string());
        match &sandbox {
            Ok(sandbox) => println!("-----> Builds run in a sandbox: {}", sandbox.describe()),
            Err(reason) => println!(" !     Builds are off: {reason}"),
        }
        let platform = Arc::new(Platform::open(
            db,
            runtime,
            sandbox,
            PlatformConfig {
                data: paths.data.clone(),
                cache: paths.cache.clone(),
                build_caches: self
                    .build_caches
                    .clone()
                    .unwrap_or_else(|| paths.cache.join("builds")),
                max_build_cache_bytes: self.max_build_cache.0,
                api_url,
                public_url,
                domain: self.domain.clone(),
                http_port: http_addr.port(),
                memory_cap,
                timeout: self.serving.timeout(),
                idle_after: self.idle_after.0,
                keep_code_for: self.keep_code_for.0,
                max_slug_bytes: self.max_slug.0,
                max_source_bytes: self.max_source.0,
                unpacked: crate::archive::Limits {
                    bytes: self.max_unpacked.0,
                    files: crate::archive::Limits::DEFAULT.files,
                },
                build_time_limit: self.build_timeout.0,
                boot_timeout: self.boot_timeout.0,
                servers,
                metrics: !self.no_metrics,
                runtime_metrics_every: self.runtime_metrics_every.0,
                host_name: host_name.clone(),
                router_addr: self
                    .router_address
                    .unwrap_or_else(|| local_address(http_addr))
                    .to_string(),
                drains: Arc::new(crate::drain::DrainPolicy::new(
                    self.allow_private_drains,
                    self.drain_buffer,
                    self.drain_ca.as_deref(),
                )?),
                build_limits: JailLimits {
                    memory: self.build_memory.0,
                    processes: 2048,
                    disk: self.build_disk.0,
                    files: 500_000,
                    tmp: self.build_memory.0 / 2,
                    // A quarter of a full share: builds yield the cores to
                    // the apps being served.
                    cpu_shares: 256,
                },
            },
        )?);
        let env_token = std::env::var("RENGA_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        if let Some(token) = platform
            .auth()
            .ensure_admin(env_token.as_deref(), &paths.data)?
        {
            println!(
                "-----> Created the admin user. Its API token (shown once; also in {}):",
                paths.data.join("admin.token").display()
            );
            println!("       {token}");
        }
        platform.flush().await?;
        let restored = platform.restore().await?;
        // On a cluster, other hosts' releases and scales switch this one's
        // routes too.
        let _following = platform.follow_cluster();
        let _heartbeat = platform.start_heartbeat();
        let _shared_logs = platform.share_logs();
        let _placing = platform.start_placing();

        println!(
            "-----> renga server: wasmtime {}, {allocator} instance allocator, data in {}",
            crate::runtime::WASMTIME_VERSION,
            paths.data.display()
        );
        println!("-----> API listening on http://{api_addr}");
        println!(
            "-----> Apps served at http://APP.{}:{} ({restored} apps restored)",
            self.domain,
            http_addr.port()
        );

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            router::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut router_config = self.serving.router();
        if platform.is_cluster() {
            router_config.cluster = Some(Arc::new(router::ClusterRouting {
                host: host_name.as_str().into(),
                secret: platform.forward_secret()?,
            }));
        }
        tokio::try_join!(
            crate::api::serve(api_listener, platform.clone(), stopped(stop_rx.clone())),
            router::serve(
                http_listener,
                platform.routes(),
                router_config,
                stopped(stop_rx)
            ),
        )?;
        println!("-----> renga server stopped");
        Ok(())
    }
}

/// `--public-url`: an http(s) URL, kept without its trailing slash.
fn parse_public_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let valid = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && trimmed
            .parse::<http::Uri>()
            .is_ok_and(|u| u.host().is_some());
    anyhow::ensure!(
        valid,
        "--public-url must be an http:// or https:// URL, for example https://renga.example.com"
    );
    Ok(trimmed.to_string())
}

/// An address this host can reach the API at: the bound one, or loopback
/// when bound to every interface.
fn local_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, addr.port())
    } else {
        addr
    }
}
