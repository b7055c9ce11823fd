//! Throwaway PostgreSQL, Redis and rsyslog servers for tests: each on an ephemeral
//! port, in a temporary folder, started by the test and stopped (and its
//! folder removed) when it is dropped. Nothing is left running.
//!
//! PostgreSQL refuses to run as root; when the tests run as root, its
//! folder belongs to `nobody` and the server runs as `nobody` through
//! `setpriv`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on the loopback (free when asked).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    if let Err(e) = listening(port, child, what, log) {
        panic!("{e}");
    }
}

/// Waits until `child` listens on `port`; says why not, with its log.
fn listening(port: u16, child: &mut Child, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} exited ({status}) before it listened:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not listen on {port} within 30s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

/// A folder under the system's temporary folder, removed on drop.
fn temp_folder(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "renga-test-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL's server programs: the newest installed version's.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup installs it)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// A command run as `nobody` when the tests are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server with an admin account that may create roles and
/// databases, reached over TCP with a password.
pub struct Postgres {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    /// `postgres://renga_admin:…@127.0.0.1:PORT/postgres`
    pub url: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = temp_folder("pg");
        let data = dir.join("data");
        let password = "admin-password-for-tests";
        std::fs::write(dir.join("pw"), password).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "renga_admin",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", dir.join("pw").display()))
            .args(["-E", "UTF8", "--no-sync", "--locale=C"])
            .current_dir(&dir)
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = dir.join("postgres.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting postgres");
        wait_for_port(port, &mut child, "postgres", &log);
        Postgres {
            child,
            dir,
            port,
            url: format!("postgres://renga_admin:{password}@127.0.0.1:{port}/postgres"),
        }
    }

    /// The server's process id (its children are its backends).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: a fast shutdown (sessions ended, no waiting for clients).
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server without persistence.
pub struct Redis {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    pub url: String,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = temp_folder("redis");
        let port = free_port();
        let log = dir.join("redis.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("starting redis-server (scripts/setup installs it)");
        wait_for_port(port, &mut child, "redis-server", &log);
        Redis {
            child,
            dir,
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority and a certificate for `localhost` (DNS name
/// only) that it signed, made with openssl.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certs(dir: &Path) -> Certs {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=renga drain test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// A real rsyslogd on an ephemeral loopback port (TLS with its GnuTLS
/// driver when given certificates), writing what it receives to a file as
/// `HOSTNAME APP-NAME PROCID MSG`.
pub struct Rsyslog {
    child: Child,
    pub port: u16,
    out: PathBuf,
    dir: PathBuf,
}

impl Rsyslog {
    pub fn start(dir: &Path, tls: Option<&Certs>) -> Rsyslog {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let out = dir.join("received.log");
        let (global, module) = match tls {
            Some(c) => (
                format!(
                    "global(workDirectory=\"{w}\" defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\")",
                    c.ca.display(),
                    c.cert.display(),
                    c.key.display(),
                    w = dir.display()
                ),
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")".to_string(),
            ),
            None => (
                format!("global(workDirectory=\"{}\")", dir.display()),
                "module(load=\"imtcp\")".to_string(),
            ),
        };
        let conf = format!(
            "{global}\n{module}\n\
             template(name=\"drain\" type=\"string\" string=\"%hostname% %app-name% %procid% %msg%\\n\")\n\
             ruleset(name=\"drain\") {{ action(type=\"omfile\" file=\"{out}\" template=\"drain\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"drain\")\n",
            out = out.display()
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rsyslogd (scripts/setup installs it)");
        let rsyslog = Rsyslog {
            child,
            port,
            out,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {port}; its config:\n{}",
                std::fs::read_to_string(dir.join("rsyslog.conf")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rsyslog
    }

    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("work"));
    }
}

/// A NATS JetStream cluster of three servers on the loopback, each with its
/// own ports and store folder; any one can be killed and started again.
pub struct NatsCluster {
    dir: PathBuf,
    nodes: Vec<NatsNode>,
}

struct NatsNode {
    name: String,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    monitor: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Three servers on ephemeral ports. A port picked free can be taken
    /// by another test's outgoing connection before a server binds it; the
    /// cluster is then started again on other ports.
    pub fn start() -> NatsCluster {
        let mut attempt = 1;
        loop {
            match NatsCluster::try_start() {
                Ok(cluster) => return cluster,
                Err(e) if attempt < 3 && e.contains("address already in use") => attempt += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn try_start() -> Result<NatsCluster, String> {
        let dir = temp_folder("nats");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route, _)| format!("\"nats://127.0.0.1:{route}\""))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, route, monitor))| {
                let name = format!("n{}", i + 1);
                let store = dir.join(&name);
                std::fs::create_dir_all(&store).unwrap();
                let config = dir.join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\n\
                         http: \"127.0.0.1:{monitor}\"\n\
                         jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 1GB }}\n\
                         cluster {{ name: renga-test, listen: \"127.0.0.1:{route}\", routes: [{}] }}\n",
                        store.display(),
                        routes.join(", ")
                    ),
                )
                .unwrap();
                NatsNode {
                    log: dir.join(format!("{name}.log")),
                    name,
                    config,
                    port,
                    monitor,
                    child: None,
                }
            })
            .collect();
        let mut cluster = NatsCluster { dir, nodes };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        for i in 0..3 {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// Every server's client URL, comma-separated (`renga server --cluster`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL to server `i`: no chance to step down or flush.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its store folder and waits until it has
    /// caught up with the cluster.
    pub fn restart(&mut self, i: usize) {
        if let Err(e) = self.spawn(i).and_then(|()| self.wait_healthy(i)) {
            panic!("{e}");
        }
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting nats-server (scripts/setup installs it)");
        let listens = listening(node.port, &mut child, &node.name, &node.log);
        node.child = Some(child);
        listens
    }

    /// JetStream answers `/healthz` with 200 once the server is current
    /// with the cluster's meta leader.
    fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let url = format!("http://127.0.0.1:{}/healthz", node.monitor);
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = |node: &NatsNode| std::fs::read_to_string(&node.log).unwrap_or_default();
        while Instant::now() < deadline {
            if super::try_request("GET", &url, &[], None).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "NATS server {} exited ({status}):\n{}",
                    node.name,
                    log(node)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "NATS server {} was not healthy within 60 s:\n{}",
            node.name,
            log(node)
        ))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
