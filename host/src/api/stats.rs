//! `GET /server/stats` (admin only): what the server holds right now, so
//! that an operator (and the tests) can see instances, tasks, processes and
//! files come back to their baseline after load, traps, timeouts and
//! abandoned clients.

use serde_json::{Value, json};

use crate::platform::Platform;

pub(super) fn server(platform: &Platform) -> Value {
    let tasks = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks())
        .unwrap_or(0);
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "wasmtime": crate::runtime::WASMTIME_VERSION,
        "live": {
            "instances": crate::runtime::live_instances(),
            "guest_tasks": crate::runtime::live_guest_tasks(),
            "tasks": tasks,
            "jails": crate::sandbox::live_jails(),
            "one_off_dynos": platform.one_off_total(),
            "drains": crate::drain::deliver::live_drains(),
            "child_processes": child_processes(),
            "open_files": open_files(),
        },
        "waiting_for_cpu": platform.runtime().waiting_for_cpu(),
        "max_instances": platform.runtime().max_instances(),
        "rss_bytes": rss_bytes(),
    })
}

/// File descriptors this process holds.
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Processes whose parent is this one (any of its threads).
fn child_processes() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .map(|children| children.split_whitespace().count())
        .sum()
}

/// Resident memory, in bytes.
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
