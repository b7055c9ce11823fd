//! Handles on a running jail apart from the jail itself: signalling its
//! processes and reading their memory ([`JailHandle`]), and opening
//! connections inside its network namespace ([`Connector`]).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use super::cgroup::oom_kills;

/// Signals a jail's processes and reads their memory. Meaningless (and
/// harmless: it signals nothing) once the jail is gone.
#[derive(Clone, Debug)]
pub struct JailHandle {
    /// bwrap itself, outside the jail (in its cgroup too).
    pub(super) bwrap: Option<u32>,
    pub(super) init: Option<u32>,
    pub(super) memory_dir: Option<(PathBuf, bool)>,
}

impl JailHandle {
    /// Sends `signal` to every process of the jail but its pid 1 (which
    /// would take them all with it): Heroku's SIGTERM to all processes.
    pub fn signal(&self, signal: i32) {
        let Some(init) = self.init else { return };
        let pids = match &self.memory_dir {
            Some((dir, _)) => std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            None => descendants(init),
        };
        for pid in pids
            .into_iter()
            .filter(|p: &u32| *p != init && Some(*p) != self.bwrap)
        {
            // SAFETY: kill takes a pid and a signal number, no memory.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// The memory the jail's processes use now (page cache included, as
    /// the cgroup counts it), when it has a cgroup.
    pub fn memory_used(&self) -> Option<u64> {
        let (dir, v2) = self.memory_dir.as_ref()?;
        let file = if *v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the kernel has killed one of the jail's processes for going
    /// over its memory limit.
    pub fn ran_out_of_memory(&self) -> bool {
        self.memory_dir
            .as_ref()
            .is_some_and(|(dir, v2)| oom_kills(dir, *v2) > 0)
    }
}

/// Every descendant of `pid`, from `/proc/PID/task/TID/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if found.len() < 100_000 && !found.contains(&child) {
                    found.push(child);
                    next.push(child);
                }
            }
        }
    }
    found
}

/// Makes sockets inside one network namespace: a thread of its own enters
/// the namespace once (`setns` changes only the calling thread's) and hands
/// out sockets, which keep their namespace wherever they are used. The
/// thread ends when the connector is dropped.
pub struct Connector {
    requests: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<std::io::Result<OwnedFd>>>,
}

impl Connector {
    pub(super) fn new(netns: std::fs::File) -> std::io::Result<Connector> {
        let (requests, received) =
            std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<std::io::Result<OwnedFd>>>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("renga-netns".into())
            .spawn(move || {
                // SAFETY: setns takes an open namespace descriptor and a
                // namespace type; it changes only this thread.
                let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                let entered = if entered == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                };
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                drop(netns);
                if !ok {
                    return;
                }
                while let Ok(reply) = received.recv() {
                    // SAFETY: socket returns a new descriptor or -1.
                    let fd = unsafe {
                        libc::socket(
                            libc::AF_INET,
                            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                            0,
                        )
                    };
                    let socket = if fd < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        // SAFETY: the descriptor was just made and is owned
                        // by nothing else.
                        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
                    };
                    let _ = reply.send(socket);
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the namespace thread ended"))??;
        Ok(Connector { requests })
    }

    /// Connects to `port` on the namespace's loopback.
    pub async fn connect(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let (reply, socket) = tokio::sync::oneshot::channel();
        self.requests
            .send(reply)
            .map_err(|_| std::io::Error::other("the namespace thread ended"))?;
        let fd = socket
            .await
            .map_err(|_| std::io::Error::other("the namespace thread ended"))??;
        let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
        socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
    }
}
