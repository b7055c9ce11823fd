//! The cgroups jails live in: one folder per jail under renga's own cgroup
//! (per controller on cgroup v1, one on v2), with its memory, process and
//! CPU limits; removed with every process left in it.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::JailLimits;

/// Where renga makes one cgroup per jail: a folder of its own under the
/// cgroup renga itself runs in, one per controller on cgroup v1.
pub(super) enum Cgroups {
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
    V2 {
        parent: PathBuf,
    },
}

/// One jail's cgroup.
pub(super) struct Cgroup {
    dirs: Vec<PathBuf>,
    pub(super) memory_dir: PathBuf,
    pub(super) v2: bool,
    pub(super) memory: u64,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Cgroups {
    pub(super) fn prepare() -> anyhow::Result<Cgroups> {
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let root = Path::new(CGROUP_ROOT);
        let name = format!("renga-sandbox-{}", std::process::id());
        if root.join("cgroup.controllers").is_file() {
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .context("no cgroup v2 entry in /proc/self/cgroup")?;
            let base = root.join(path.trim_start_matches('/'));
            clean_stale(&base);
            let parent = base.join(&name);
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu")
                .with_context(|| {
                    format!(
                        "enabling the memory, pids and cpu controllers under {} (renga's cgroup must delegate them)",
                        base.display()
                    )
                })?;
            return Ok(Cgroups::V2 { parent });
        }
        let dir_of = |controller: &str| -> Option<PathBuf> {
            let path = own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then(|| path.to_string())
            })?;
            let mount = root.join(controller);
            mount
                .is_dir()
                .then(|| mount.join(path.trim_start_matches('/')))
        };
        let memory = dir_of("memory").context("no cgroup v1 memory controller")?;
        let pids = dir_of("pids").context("no cgroup v1 pids controller")?;
        let cpu = dir_of("cpu");
        let mut parents = Vec::new();
        for base in [Some(&memory), Some(&pids), cpu.as_ref()]
            .into_iter()
            .flatten()
        {
            clean_stale(base);
            let parent = base.join(&name);
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            parents.push(parent);
        }
        Ok(Cgroups::V1 {
            memory: memory.join(&name),
            pids: pids.join(&name),
            cpu: cpu.map(|c| c.join(&name)),
        })
    }

    pub(super) fn create(&self, id: &str, limits: &JailLimits) -> anyhow::Result<Cgroup> {
        let write = |dir: &Path, file: &str, value: String| -> anyhow::Result<()> {
            std::fs::write(dir.join(file), &value)
                .with_context(|| format!("setting {file} to {value} in {}", dir.display()))
        };
        match self {
            Cgroups::V1 { memory, pids, cpu } => {
                let memory_dir = memory.join(id);
                // Made first, filled in after: a failure part way removes
                // what was made (its Drop).
                let mut cgroup = Cgroup {
                    dirs: Vec::new(),
                    memory_dir: memory_dir.clone(),
                    v2: false,
                    memory: limits.memory,
                };
                std::fs::create_dir_all(&memory_dir)?;
                cgroup.dirs.push(memory_dir.clone());
                write(
                    &memory_dir,
                    "memory.limit_in_bytes",
                    limits.memory.to_string(),
                )?;
                if memory_dir.join("memory.memsw.limit_in_bytes").exists() {
                    let _ = write(
                        &memory_dir,
                        "memory.memsw.limit_in_bytes",
                        limits.memory.to_string(),
                    );
                }
                let pids_dir = pids.join(id);
                std::fs::create_dir_all(&pids_dir)?;
                cgroup.dirs.push(pids_dir.clone());
                write(&pids_dir, "pids.max", limits.processes.to_string())?;
                if let Some(cpu) = cpu {
                    let cpu_dir = cpu.join(id);
                    std::fs::create_dir_all(&cpu_dir)?;
                    cgroup.dirs.push(cpu_dir.clone());
                    write(&cpu_dir, "cpu.shares", limits.cpu_shares.to_string())?;
                }
                Ok(cgroup)
            }
            Cgroups::V2 { parent } => {
                let dir = parent.join(id);
                std::fs::create_dir_all(&dir)?;
                let cgroup = Cgroup {
                    dirs: vec![dir.clone()],
                    memory_dir: dir.clone(),
                    v2: true,
                    memory: limits.memory,
                };
                write(&dir, "memory.max", limits.memory.to_string())?;
                let _ = write(&dir, "memory.swap.max", "0".into());
                write(&dir, "pids.max", limits.processes.to_string())?;
                let weight = (u64::from(limits.cpu_shares) * 100 / 1024).clamp(1, 10_000);
                let _ = write(&dir, "cpu.weight", weight.to_string());
                Ok(cgroup)
            }
        }
    }
}

impl Cgroup {
    pub(super) fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|d| {
                CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()
            })
            .collect()
    }

    pub(super) fn ran_out_of_memory(&self) -> bool {
        oom_kills(&self.memory_dir, self.v2) > 0
    }
}

/// Processes of a cgroup the kernel killed for memory.
pub(super) fn oom_kills(memory_dir: &Path, v2: bool) -> u64 {
    let (file, key) = if v2 {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    std::fs::read_to_string(memory_dir.join(file))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse::<u64>().ok())?
            })
        })
        .unwrap_or(0)
}

/// Kills whatever is left in the cgroup and removes it: off the async
/// workers, since the processes may take a while to die.
impl Drop for Cgroup {
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        if dirs.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || remove_cgroup_dirs(&dirs));
            }
            Err(_) => remove_cgroup_dirs(&dirs),
        }
    }
}

/// Kills every process in these cgroups and removes them, retrying while
/// the processes die.
fn remove_cgroup_dirs(dirs: &[PathBuf]) {
    for _ in 0..50 {
        let mut left = false;
        for dir in dirs {
            if !dir.exists() {
                continue;
            }
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    // SAFETY: only signals processes of this jail's cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            if std::fs::remove_dir(dir).is_err() {
                left = true;
            }
        }
        if !left {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(?dirs, "could not remove a build's cgroup");
}

/// Removes the cgroups of renga servers that are no longer running.
fn clean_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("renga-sandbox-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let parent = entry.path();
        if let Ok(children) = std::fs::read_dir(&parent) {
            let dirs: Vec<PathBuf> = children
                .flatten()
                .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
                .map(|c| c.path())
                .collect();
            remove_cgroup_dirs(&dirs);
        }
        let _ = std::fs::remove_dir(&parent);
    }
}
