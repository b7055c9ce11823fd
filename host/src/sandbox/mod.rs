//! sandbox: the one wrapper around bubblewrap, used for every process that
//! runs user code outside the Wasm runtime (today: builds).
//!
//! Each sandboxed process (a *jail*) gets its own mount, PID, IPC, UTS and
//! cgroup namespaces from `bwrap`; sees the system's read-only folders
//! (`/usr`, `/etc`), the toolchains the server was started with (read-only,
//! at their own paths), exactly the folders its caller binds, a private
//! `/tmp` and `/proc`, and nothing else of the host: not the data folder,
//! not other processes, not other apps. When renga runs as root it drops the
//! process to the jail's unprivileged uid with `setpriv`, and puts it in its
//! own cgroup with memory, process and CPU limits; a jail that may use the
//! network gets its own network namespace connected by `slirp4netns` with
//! the host's loopback cut off, so package registries answer and the
//! platform's own ports do not. Every process of a jail dies with it (its
//! PID namespace ends when its first process does, and `bwrap` is killed
//! when the [`Jailed`] handle is dropped); the disk it writes is counted
//! while it runs.
//!
//! Long-running jails (native dynos) also get a handle on their network
//! namespace ([`Jailed::connector`]), through which the router opens
//! connections to the port the process listens on inside, a way to signal
//! every process of the jail ([`Jailed::signal`]) for Heroku's graceful
//! stop, and readings of their cgroup's memory.
//!
//! This module never decides what runs or what a jail sees: builds and
//! dynos do.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

mod cgroup;
mod handle;

use cgroup::{Cgroup, Cgroups};
pub use handle::{Connector, JailHandle};

/// Where `slirp4netns` puts the jail's DNS forwarder.
const SLIRP_DNS: &str = "10.0.2.3";

/// How often the disk a jail writes is measured.
const DISK_CHECK: Duration = Duration::from_secs(2);

/// Jails alive right now.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Sandboxed processes (jails) alive right now.
pub fn live_jails() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// What one sandboxed process sees and may use.
#[derive(Clone, Debug)]
pub struct Jail {
    /// The uid (and gid) it runs as, when renga runs as root.
    pub uid: u32,
    /// Host folders it sees, and where.
    pub binds: Vec<Bind>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Where it starts, as it sees it.
    pub cwd: PathBuf,
    /// Whether it may reach the network (never the host's loopback).
    pub network: bool,
    pub limits: JailLimits,
}

#[derive(Clone, Debug)]
pub struct Bind {
    pub host: PathBuf,
    pub inside: PathBuf,
    pub writable: bool,
}

impl Bind {
    pub fn read_only(host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Bind {
        Bind {
            host: host.into(),
            inside: inside.into(),
            writable: false,
        }
    }

    pub fn writable(host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Bind {
        Bind {
            host: host.into(),
            inside: inside.into(),
            writable: true,
        }
    }
}

/// What a jail may use.
#[derive(Clone, Copy, Debug)]
pub struct JailLimits {
    /// Memory of all its processes together, `/tmp` included.
    pub memory: u64,
    /// Processes and threads at once.
    pub processes: u32,
    /// Bytes it may keep in its writable binds.
    pub disk: u64,
    /// Files and folders it may keep in its writable binds.
    pub files: u64,
    /// Size of its private `/tmp`.
    pub tmp: u64,
    /// Its share of the CPU against other cgroups, in cgroup v1's
    /// `cpu.shares` (1024 is a full share; builds take a quarter).
    pub cpu_shares: u32,
}

/// How a jail ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// It was stopped for going over a limit (the message says which).
    OverLimit(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "builds need bubblewrap (`bwrap`), which is not installed: install it with `apt-get install bubblewrap slirp4netns` (scripts/setup does)"
    )]
    NoBwrap,
    #[error(
        "builds need slirp4netns for their network, which is not installed: install it with `apt-get install slirp4netns` (scripts/setup does)"
    )]
    NoSlirp,
    #[error("bubblewrap cannot make a sandbox on this machine: {0}")]
    Unusable(String),
}

/// The machine's sandboxing tools, found once at start.
pub struct Sandbox {
    /// The seccomp programs every jail runs under (see [`seccomp_programs`]).
    seccomp: Vec<Vec<u8>>,
    bwrap: PathBuf,
    slirp: PathBuf,
    /// Root: processes are dropped to their jail's uid and get cgroup limits.
    root: bool,
    cgroups: Option<Cgroups>,
    /// `/usr`, `/etc` and the top-level links or folders beside them.
    system: Vec<SystemPath>,
    /// Read-only folders every jail sees at their host paths.
    toolchains: Vec<PathBuf>,
    /// Where per-jail files (passwd, resolv.conf) are written.
    scratch: PathBuf,
}

#[derive(Debug)]
enum SystemPath {
    Link { at: PathBuf, target: PathBuf },
    Dir(PathBuf),
}

impl Sandbox {
    /// Finds bubblewrap and slirp4netns, checks that a jail can be made, and
    /// prepares the cgroups limits live in (when renga runs as root).
    /// `toolchains` are extra read-only folders every jail sees.
    pub fn detect(scratch: &Path, toolchains: Vec<PathBuf>) -> Result<Sandbox, SandboxError> {
        let bwrap = which("bwrap").ok_or(SandboxError::NoBwrap)?;
        let slirp = which("slirp4netns").ok_or(SandboxError::NoSlirp)?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root && which("setpriv").is_none() {
            return Err(SandboxError::Unusable(
                "setpriv (util-linux) is missing".into(),
            ));
        }
        let mut system = Vec::new();
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let at = Path::new("/").join(top);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&at) {
                        system.push(SystemPath::Link { at, target });
                    }
                }
                Ok(meta) if meta.is_dir() => system.push(SystemPath::Dir(at)),
                _ => {}
            }
        }
        std::fs::create_dir_all(scratch)
            .map_err(|e| SandboxError::Unusable(format!("creating {}: {e}", scratch.display())))?;
        let cgroups = if root {
            match Cgroups::prepare() {
                Ok(cgroups) => Some(cgroups),
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "build sandbox: cgroups are not available, so builds get no memory or process limit"
                    );
                    None
                }
            }
        } else {
            tracing::warn!(
                "build sandbox: renga is not running as root, so builds run under renga's own uid in a user namespace, without cgroup limits"
            );
            None
        };
        let toolchains = toolchains
            .into_iter()
            .filter(|p| p.is_dir() && !is_system(p))
            .collect();
        let seccomp = seccomp_programs()
            .map_err(|e| SandboxError::Unusable(format!("compiling the seccomp filters: {e:#}")))?;
        Ok(Sandbox {
            seccomp,
            bwrap,
            slirp,
            root,
            cgroups,
            system,
            toolchains,
            scratch: scratch.to_path_buf(),
        })
    }

    /// One line for the server's start-up output.
    pub fn describe(&self) -> String {
        let who = if self.root {
            "an unprivileged uid per app"
        } else {
            "renga's uid in a user namespace"
        };
        let limits = if self.cgroups.is_some() {
            "cgroup memory, process and CPU limits"
        } else {
            "no cgroup limits"
        };
        format!("bubblewrap, {who}, {limits}, network through slirp4netns")
    }

    /// Whether the sandbox can change file owners and uids (renga is root).
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// Starts `program args` in a jail. `program` is a path as the jail sees it.
    pub async fn spawn(
        &self,
        jail: &Jail,
        program: &Path,
        args: &[OsString],
        stdout: Stdio,
        stderr: Stdio,
    ) -> anyhow::Result<Jailed> {
        self.spawn_with_stdin(jail, program, args, Stdio::null(), stdout, stderr)
            .await
    }

    /// [`Sandbox::spawn`] with a standard input.
    pub async fn spawn_with_stdin(
        &self,
        jail: &Jail,
        program: &Path,
        args: &[OsString],
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> anyhow::Result<Jailed> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let files = ScratchFiles::write(&self.scratch.join(&id), jail)?;
        let cgroup = match &self.cgroups {
            Some(cgroups) => Some(cgroups.create(&id, &jail.limits)?),
            None => None,
        };

        let mut command = Command::new(&self.bwrap);
        command
            .args([
                "--die-with-parent",
                "--new-session",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
                "--hostname",
                "renga",
            ])
            .arg("--ro-bind")
            .arg("/usr")
            .arg("/usr");
        for path in &self.system {
            match path {
                SystemPath::Link { at, target } => {
                    command.arg("--symlink").arg(target).arg(at);
                }
                SystemPath::Dir(dir) => {
                    command.arg("--ro-bind").arg(dir).arg(dir);
                }
            }
        }
        command
            .args(["--ro-bind", "/etc", "/etc"])
            .arg("--ro-bind")
            .arg(&files.passwd)
            .arg("/etc/passwd")
            .arg("--ro-bind")
            .arg(&files.group)
            .arg("/etc/group")
            .args(["--proc", "/proc", "--dev", "/dev"])
            .arg("--size")
            .arg(jail.limits.tmp.to_string())
            .args(["--perms", "1777", "--tmpfs", "/tmp"]);
        if !self.root {
            command.args(["--unshare-user", "--disable-userns"]);
        }
        // Folders on the way to what is bound are made readable by every
        // uid (bwrap would make them 0700, and the jail could not reach
        // what it is meant to see).
        let mut ancestors: Vec<&Path> = self
            .toolchains
            .iter()
            .map(PathBuf::as_path)
            .chain(jail.binds.iter().map(|b| b.inside.as_path()))
            .flat_map(Path::ancestors)
            .filter(|a| a.components().count() > 1)
            .collect();
        ancestors.sort_by_key(|a| (a.components().count(), a.to_path_buf()));
        ancestors.dedup();
        let destinations: Vec<&Path> = self
            .toolchains
            .iter()
            .map(PathBuf::as_path)
            .chain(jail.binds.iter().map(|b| b.inside.as_path()))
            .collect();
        for dir in ancestors.iter().filter(|a| !destinations.contains(a)) {
            command.args(["--perms", "0755", "--dir"]).arg(dir);
        }
        for dir in &self.toolchains {
            command.arg("--ro-bind").arg(dir).arg(dir);
        }
        for bind in &jail.binds {
            command
                .arg(if bind.writable { "--bind" } else { "--ro-bind" })
                .arg(&bind.host)
                .arg(&bind.inside);
        }
        command.arg("--chdir").arg(&jail.cwd).arg("--clearenv");
        for (key, value) in &jail.env {
            command.arg("--setenv").arg(key).arg(value);
        }

        // bwrap reports the jail's first process (its pid 1) on fd 3. A jail
        // with network waits, blocked, until slirp4netns has wired its
        // namespace: bwrap waits for a byte on fd 4.
        command.args(["--unshare-net", "--info-fd", "3"]);
        let info = pipe()?;
        let block = if jail.network {
            let resolv = files.resolv_conf()?;
            command
                .arg("--ro-bind")
                .arg(resolv)
                .arg("/etc/resolv.conf")
                .args(["--block-fd", "4"]);
            Some(pipe()?)
        } else {
            None
        };

        // The seccomp programs, on fds 5, 6, ... in the child.
        let seccomp: Vec<OwnedFd> = self
            .seccomp
            .iter()
            .map(|program| program_fd(program))
            .collect::<std::io::Result<_>>()?;
        for n in 0..seccomp.len() {
            command.arg("--add-seccomp-fd").arg((5 + n).to_string());
        }
        let seccomp_fds: Vec<i32> = seccomp.iter().map(|fd| fd.as_raw_fd()).collect();
        if self.root {
            command
                .args(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"])
                .arg("/usr/bin/setpriv")
                .arg(format!("--reuid={}", jail.uid))
                .arg(format!("--regid={}", jail.uid))
                .args([
                    "--clear-groups",
                    "--inh-caps=-all",
                    "--bounding-set=-all",
                    "--no-new-privs",
                    "--",
                ]);
        } else {
            command.arg("--");
        }
        command.arg(program).args(args);
        command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);

        let procs: Vec<CString> = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        let child_fds = (
            info.1.as_raw_fd(),
            block.as_ref().map(|(block_r, _)| block_r.as_raw_fd()),
        );

        let fsize = jail.limits.disk;
        // Per uid, so meaningful only when the jail has a uid of its own.
        let nproc = self.root.then_some(u64::from(jail.limits.processes));
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (open, write, close, fcntl,
        // dup2, umask, setrlimit) on values prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                // Into the jail's cgroup before anything else starts, so that
                // every process it makes is counted ("0" is the writer).
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                // Every fd is first moved above 10, then onto its number, so
                // that no move overwrites another that is still to move.
                let mut moves: [(i32, i32); 8] = [(-1, -1); 8];
                moves[0] = (child_fds.0, 3);
                let mut count = 1;
                if let Some(block) = child_fds.1 {
                    moves[1] = (block, 4);
                    count = 2;
                }
                for (n, fd) in seccomp_fds.iter().enumerate().take(moves.len() - count) {
                    moves[count] = (*fd, 5 + n as i32);
                    count += 1;
                }
                for (from, _) in moves.iter_mut().take(count) {
                    *from = libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, 10);
                    if *from < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Nothing else of the server's reaches the jail: every other
                // descriptor is closed at exec, whoever opened it (wasmtime's
                // pagemap, tokio's pipes).
                close_all_at_exec();
                for (from, to) in moves.iter().take(count) {
                    if libc::dup2(*from, *to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Files the jail makes are readable by the other uids that
                // use them (the shared tools folder, the build folder).
                libc::umask(0o022);
                let limit = |resource, value: u64| {
                    let rlimit = libc::rlimit {
                        rlim_cur: value,
                        rlim_max: value,
                    };
                    libc::setrlimit(resource, &rlimit)
                };
                limit(libc::RLIMIT_CORE, 0);
                limit(libc::RLIMIT_FSIZE, fsize);
                if let Some(nproc) = nproc {
                    limit(libc::RLIMIT_NPROC, nproc);
                }
                Ok(())
            });
        }

        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.bwrap.display()))?;
        LIVE.fetch_add(1, Ordering::Relaxed);
        let mut jailed = Jailed {
            child,
            slirp: None,
            cgroup,
            over: Arc::new(Mutex::new(None)),
            watcher: None,
            files: Some(files),
            init: None,
            netns: None,
        };
        let (info_r, info_w) = info;
        drop(info_w);
        let pid = read_child_pid(info_r).await?;
        jailed.init = Some(pid);
        // Opened while the jail's pid 1 surely runs (bwrap is blocked or
        // has just started it): the namespace stays ours after that.
        jailed.netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok();
        if let Some((block_r, block_w)) = block {
            drop(block_r);
            wait_until_blocked(pid, 4).await;
            jailed.slirp = Some(self.connect(pid).await?);
            let mut block = tokio::fs::File::from_std(std::fs::File::from(block_w));
            block.write_all(b"1").await?;
        }
        if let Some(bwrap) = jailed.child.id().and_then(Stopper::new) {
            let watched: Vec<PathBuf> = jail
                .binds
                .iter()
                .filter(|b| b.writable)
                .map(|b| b.host.clone())
                .collect();
            jailed.watcher = Some(tokio::spawn(watch_disk(
                bwrap,
                watched,
                jail.limits,
                jailed.over.clone(),
            )));
        }
        Ok(jailed)
    }

    /// Wires a jail's network namespace to the outside with slirp4netns,
    /// with the host's loopback out of reach.
    async fn connect(&self, pid: u32) -> anyhow::Result<Child> {
        let (ready_r, ready_w) = pipe()?;
        let ready_fd = ready_w.as_raw_fd();
        let mut command = Command::new(&self.slirp);
        command
            .args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                // slirp4netns parses the jail's packets: it confines itself.
                "--enable-sandbox",
                "--enable-seccomp",
                "--ready-fd=3",
            ])
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: async-signal-safe calls only, as above.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                close_all_at_exec();
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.slirp.display()))?;
        drop(ready_w);
        let mut ready = tokio::fs::File::from_std(std::fs::File::from(ready_r));
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(10), ready.read(&mut byte)).await {
            Ok(Ok(1)) => Ok(child),
            _ => anyhow::bail!("slirp4netns did not set up the build's network"),
        }
    }

    /// Makes `path` (and everything in it) belong to `uid`, without following
    /// links, when renga can. Blocking.
    pub fn give(&self, path: &Path, uid: u32) -> std::io::Result<()> {
        if !self.root {
            return Ok(());
        }
        chown_tree(path, uid)
    }

    /// Removes what jails of an earlier run of this server left behind.
    pub fn clean_leftovers(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.scratch) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A process running in a jail. Dropping it kills the jail and everything
/// in it, and frees its cgroup and files.
pub struct Jailed {
    child: Child,
    slirp: Option<Child>,
    cgroup: Option<Cgroup>,
    over: Arc<Mutex<Option<String>>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    files: Option<ScratchFiles>,
    /// The jail's pid 1 (bwrap's init inside it), as the host sees it.
    init: Option<u32>,
    /// The jail's network namespace.
    netns: Option<std::fs::File>,
}

impl Jailed {
    /// Opens connections inside the jail's network namespace (to a port its
    /// process listens on), for as long as the connector lives.
    pub fn connector(&self) -> std::io::Result<Connector> {
        let netns = self
            .netns
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the jail's network namespace is not known"))?
            .try_clone()?;
        Connector::new(netns)
    }

    /// What signals the jail's processes and reads their memory, apart
    /// from the jail (which [`Jailed::wait`] holds).
    pub fn handle(&self) -> JailHandle {
        JailHandle {
            bwrap: self.child.id(),
            init: self.init,
            memory_dir: self.cgroup.as_ref().map(|c| (c.memory_dir.clone(), c.v2)),
        }
    }

    pub fn stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }

    pub fn stdin(&mut self) -> Option<tokio::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the jail's first process to end (and with it every other).
    pub async fn wait(&mut self) -> std::io::Result<Ended> {
        let status = self.child.wait().await?;
        if let Some(reason) = self.over.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Ok(Ended::OverLimit(reason));
        }
        if let Some(cgroup) = &self.cgroup
            && cgroup.ran_out_of_memory()
        {
            return Ok(Ended::OverLimit(format!(
                "it ran out of its {} of memory",
                crate::units::ByteSize(cgroup.memory)
            )));
        }
        Ok(Ended::Exited(status))
    }

    /// Stops the jail now.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Jailed {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        let _ = self.child.start_kill();
        if let Some(mut slirp) = self.slirp.take() {
            let _ = slirp.start_kill();
        }
        drop(self.cgroup.take());
        drop(self.files.take());
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Kills a jail's bwrap through a pidfd, which cannot name another process
/// once bwrap has been reaped (a plain pid could, once reused).
struct Stopper(OwnedFd);

impl Stopper {
    fn new(pid: u32) -> Option<Stopper> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the descriptor was just created and is owned by nothing else.
        Some(Stopper(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn kill(&self) {
        // SAFETY: sends SIGKILL to the process the pidfd refers to, if it
        // still runs; no memory is passed.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}

/// Measures the jail's writable folders every few seconds and kills it
/// (through its bwrap, whose death ends the jail) when it keeps more than
/// its limits.
async fn watch_disk(
    bwrap: Stopper,
    folders: Vec<PathBuf>,
    limits: JailLimits,
    over: Arc<Mutex<Option<String>>>,
) {
    if folders.is_empty() {
        return;
    }
    let folders = Arc::new(folders);
    loop {
        tokio::time::sleep(DISK_CHECK).await;
        let measured = {
            let folders = folders.clone();
            tokio::task::spawn_blocking(move || {
                let mut usage = Usage::default();
                for folder in folders.iter() {
                    usage.add_tree(folder, limits);
                }
                usage
            })
            .await
        };
        let Ok(usage) = measured else { return };
        let reason = if usage.bytes > limits.disk {
            Some(format!(
                "it wrote more than its {} of disk",
                crate::units::ByteSize(limits.disk)
            ))
        } else if usage.files > limits.files {
            Some(format!(
                "it made more than its {} files and folders",
                limits.files
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            *over.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            bwrap.kill();
            return;
        }
    }
}

/// Bytes and files under some folders; stops counting once past the limits.
///
/// The jail may change its folders while they are measured, so the walk
/// never follows a link: each folder is opened with `O_NOFOLLOW` relative to
/// its already-open parent (through `/proc/self/fd`), so a folder swapped
/// for a link to a host folder is not entered.
#[derive(Default)]
struct Usage {
    bytes: u64,
    files: u64,
}

/// Opens a folder, refusing a link in its last component.
fn open_folder(path: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .ok()
}

impl Usage {
    fn add_tree(&mut self, dir: &Path, limits: JailLimits) {
        use std::os::unix::fs::MetadataExt;
        let Some(root) = open_folder(dir) else {
            return;
        };
        // A folder to measure: its parent (kept open) and its name there.
        let mut pending: Vec<(std::rc::Rc<std::fs::File>, std::ffi::OsString)> = Vec::new();
        let mut current = Some(std::rc::Rc::new(root));
        loop {
            let folder = match current.take() {
                Some(folder) => folder,
                None => {
                    let Some((parent, name)) = pending.pop() else {
                        return;
                    };
                    let path = Path::new("/proc/self/fd")
                        .join(parent.as_raw_fd().to_string())
                        .join(&name);
                    match open_folder(&path) {
                        Some(folder) => std::rc::Rc::new(folder),
                        None => continue,
                    }
                }
            };
            let here = Path::new("/proc/self/fd").join(folder.as_raw_fd().to_string());
            let Ok(entries) = std::fs::read_dir(&here) else {
                continue;
            };
            for entry in entries.flatten() {
                if self.bytes > limits.disk || self.files > limits.files {
                    return;
                }
                let Ok(meta) = entry.metadata() else { continue };
                self.files += 1;
                // Blocks actually used, so that sparse files count as what
                // they take.
                self.bytes += meta.blocks() * 512;
                if meta.is_dir() {
                    pending.push((folder.clone(), entry.file_name()));
                }
            }
        }
    }
}

/// The per-jail files bound over the system's: `/etc/passwd` and
/// `/etc/group` naming the jail's uid, and `/etc/resolv.conf` pointing at
/// slirp4netns's DNS.
struct ScratchFiles {
    dir: PathBuf,
    passwd: PathBuf,
    group: PathBuf,
}

impl ScratchFiles {
    fn write(dir: &Path, jail: &Jail) -> anyhow::Result<ScratchFiles> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let home = jail
            .env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map_or("/tmp", |(_, v)| v.as_str());
        let passwd = dir.join("passwd");
        let group = dir.join("group");
        let uid = jail.uid;
        std::fs::write(
            &passwd,
            format!(
                "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\napp:x:{uid}:{uid}:renga build:{home}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        )?;
        std::fs::write(
            &group,
            format!("root:x:0:\napp:x:{uid}:\nnogroup:x:65534:\n"),
        )?;
        for file in [&passwd, &group] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))?;
        }
        Ok(ScratchFiles {
            dir: dir.to_path_buf(),
            passwd,
            group,
        })
    }

    fn resolv_conf(&self) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("resolv.conf");
        std::fs::write(&path, format!("nameserver {SLIRP_DNS}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path)
    }
}

impl Drop for ScratchFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The seccomp programs every jail runs under, as bubblewrap loads them
/// (`--add-seccomp-fd`): one refusing with `EPERM` what a build has no use
/// for and a sandbox escape or a kernel exploit starts from (user
/// namespaces through `unshare`, `setns` or `clone`, keyrings, BPF,
/// `perf_event_open`, `userfaultfd`, io_uring, mounts, modules, `ptrace`),
/// and one answering `clone3` with `ENOSYS` (its flags cannot be inspected;
/// the C library then falls back to `clone`, which can).
fn seccomp_programs() -> anyhow::Result<Vec<Vec<u8>>> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let denied: std::collections::BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_ptrace,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .chain([(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_NEWUSER as u64),
            libc::CLONE_NEWUSER as u64,
        )?])?],
    )])
    .collect();
    let refuse = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    [refuse, clone3]
        .into_iter()
        .map(|filter| {
            let program: BpfProgram = filter.try_into()?;
            Ok(program
                .iter()
                .flat_map(|op| {
                    let mut bytes = Vec::with_capacity(8);
                    bytes.extend_from_slice(&op.code.to_ne_bytes());
                    bytes.push(op.jt);
                    bytes.push(op.jf);
                    bytes.extend_from_slice(&op.k.to_ne_bytes());
                    bytes
                })
                .collect())
        })
        .collect()
}

/// A sealed in-memory file holding `bytes`, read from its start: how a
/// seccomp program reaches bwrap.
fn program_fd(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    // SAFETY: memfd_create takes a NUL-terminated name and flags, and
    // returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"renga-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

/// Marks every descriptor from 3 up close-on-exec, in a child between fork
/// and exec (async-signal-safe: system calls only).
fn close_all_at_exec() {
    // SAFETY: close_range only changes descriptor flags of this process.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if marked != 0 {
        // Kernels before 5.11: one descriptor at a time.
        for fd in 3..4096 {
            // SAFETY: as above; fcntl on a closed descriptor only fails.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

/// Waits (at most a few seconds) until the jail's first process blocks
/// reading `fd`: bwrap has then set up the jail's own loopback interface,
/// which slirp4netns must not race (it brings `lo` up too, and bwrap's
/// adding of 127.0.0.1 then fails). Read from `/proc/PID/syscall`.
async fn wait_until_blocked(pid: u32, fd: u32) {
    let reading = format!("{} 0x{fd:x} ", libc::SYS_read);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            Ok(now) if now.starts_with(&reading) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            // Not readable here (or gone): go on, as before.
            Err(_) => return,
        }
    }
}

/// Reads bwrap's `--info-fd` report: `{"child-pid": N}`.
async fn read_child_pid(fd: OwnedFd) -> anyhow::Result<u32> {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "child-pid")]
        child_pid: u32,
    }
    let mut info = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    let read = async {
        loop {
            let n = info.read(&mut chunk).await?;
            if n == 0 {
                anyhow::bail!("bwrap exited before the sandbox started");
            }
            text.extend_from_slice(&chunk[..n]);
            if let Ok(info) = serde_json::from_slice::<Info>(&text) {
                return Ok(info.child_pid);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("bwrap did not report the sandbox's pid")?
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Folders the jail sees anyway (under `/usr`, or a top-level system link).
fn is_system(path: &Path) -> bool {
    ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"]
        .iter()
        .any(|sys| path.starts_with(sys))
}

/// Toolchain managers whose whole folder a shim on `PATH` needs (the shims
/// run the manager, which reads its installed versions): the folder under
/// the home folder, and the variable that moves it.
const TOOL_MANAGERS: &[(&str, &str)] = &[
    (".pyenv", "PYENV_ROOT"),
    (".rbenv", "RBENV_ROOT"),
    (".nodenv", "NODENV_ROOT"),
    (".nvm", "NVM_DIR"),
    (".asdf", "ASDF_DATA_DIR"),
    (".rustup", "RUSTUP_HOME"),
];

/// The toolchains of the environment renga was started in, which builds
/// see read-only at the same paths: every `PATH` folder outside the system
/// folders (only that folder: `~/.cargo/bin`, never `~/.cargo` with its
/// registry and credentials, nor `~/.local` with renga's own data), and
/// the whole folder of a known toolchain manager that one of them belongs
/// to or that is installed (`~/.pyenv` for `~/.pyenv/shims`, rustup's
/// `~/.rustup`). The home folder itself and `/` are never shown.
pub fn host_toolchains() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let managers: Vec<PathBuf> = TOOL_MANAGERS
        .iter()
        .filter_map(|(folder, variable)| {
            std::env::var_os(variable)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(folder)))
        })
        .filter(|p| p.is_absolute() && p.is_dir())
        .collect();
    let mut found: Vec<PathBuf> = Vec::new();
    let mut add = |path: PathBuf| {
        let forbidden = path.parent().is_none() || home.as_ref().is_some_and(|h| *h == path);
        if forbidden || found.iter().any(|f| path.starts_with(f)) {
            return;
        }
        found.retain(|f| !f.starts_with(&path));
        found.push(path);
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if !dir.is_absolute() || is_system(&dir) || !dir.is_dir() {
            continue;
        }
        match managers.iter().find(|m| dir.starts_with(m)) {
            Some(manager) => add(manager.clone()),
            None => add(dir),
        }
    }
    if let Some(rustup) = managers.iter().find(|m| m.ends_with(".rustup")) {
        add(rustup.clone());
    }
    found
}

/// Drops toolchain folders that are, hold, or lie inside one of `private`
/// (the data and cache folders): a build must never see renga's own files,
/// whatever `PATH` the server was started with.
pub fn without_private(toolchains: Vec<PathBuf>, private: &[&Path]) -> Vec<PathBuf> {
    toolchains
        .into_iter()
        .filter(|t| {
            let t = std::fs::canonicalize(t).unwrap_or_else(|_| t.clone());
            !private.iter().any(|p| {
                let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                t.starts_with(&p) || p.starts_with(&t)
            })
        })
        .collect()
}

/// Removes a folder a jail wrote, even where the jail made parts of it
/// unreadable (renga without root cannot otherwise enter a `chmod 000`
/// folder): on a failure, gives every folder inside back its owner's
/// permissions, without following links, and tries again. Blocking.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            open_up(&entry.path());
        }
    }
}

/// `chown -hR uid:uid path`. Blocking.
fn chown_tree(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchains_never_include_cargos_registry_or_the_home_folder() {
        let found = host_toolchains();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        for path in &found {
            assert!(!is_system(path), "{}", path.display());
            assert!(path.parent().is_some(), "never /");
            if let Some(home) = &home {
                assert_ne!(path, home);
                assert!(!path.ends_with(".cargo"), "{}", path.display());
                assert!(!path.ends_with(".local"), "{}", path.display());
            }
        }
    }

    #[test]
    fn toolchains_inside_or_around_the_data_folder_are_dropped() {
        let kept = without_private(
            vec![
                PathBuf::from("/home/op/.local"),
                PathBuf::from("/home/op/.local/share/renga/bin"),
                PathBuf::from("/home/op/.pyenv"),
            ],
            &[Path::new("/home/op/.local/share/renga")],
        );
        assert_eq!(kept, vec![PathBuf::from("/home/op/.pyenv")]);
    }

    #[test]
    fn usage_counts_bytes_and_files() {
        let dir = std::env::temp_dir().join(format!("renga-usage-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), vec![1u8; 10_000]).unwrap();
        let limits = JailLimits {
            memory: 0,
            processes: 0,
            disk: u64::MAX,
            files: u64::MAX,
            tmp: 0,
            cpu_shares: 1024,
        };
        let mut usage = Usage::default();
        usage.add_tree(&dir, limits);
        assert_eq!(usage.files, 3);
        assert!(usage.bytes >= 10_000, "{}", usage.bytes);
        let _ = std::fs::remove_dir_all(dir);
    }
}
