//! The key-value benchmark's reference: the same `renga-kv` backend a guest
//! reaches through `wasi:keyvalue`, called directly from 32 tokio tasks (as
//! many as wrk's connections to the guest), with no HTTP, router or Wasm in
//! between. It prints get, set and increment operations per second.
//!
//! Usage: kv-direct SECONDS

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use renga::provider::AddonRef;
use renga::provider::kv::KvStore;

const TASKS: usize = 32;

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("renga-kv-direct-{}", std::process::id()));
    let store = Arc::new(KvStore::new(
        AddonRef::local("bench".into(), "renga-kv-bench".into(), 256 << 20),
        dir.clone(),
    ));
    store
        .set("k".into(), b"16 bytes of data".to_vec())
        .await
        .unwrap();
    for op in ["get", "set", "increment"] {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        match op {
                            "get" => drop(store.get("k".into()).await.unwrap()),
                            "set" => store
                                .set("k".into(), b"16 bytes of data".to_vec())
                                .await
                                .unwrap(),
                            _ => drop(
                                store
                                    .increment("n".into(), 1, (i64::MIN.into(), i64::MAX.into()))
                                    .await
                                    .unwrap(),
                            ),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        println!(
            "{op} {:.0}",
            done.load(Ordering::Relaxed) as f64 / seconds as f64
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
