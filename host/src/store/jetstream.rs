//! The cluster's backend: one NATS JetStream key-value bucket per tree.
//!
//! Each bucket (`renga-<tree>`) is a stream replicated on `replicas` NATS
//! servers; a write returns once the stream has acknowledged it, so what the
//! API acknowledges survives the loss of any host and of a minority of the
//! NATS servers. `put_new` and `update` are JetStream's `create` and its
//! revision-checked `update`: the cluster decides which of two hosts' writes
//! wins, and the loser runs its change again on the winner's record.
//!
//! Reads come from a mirror in memory that a watch on the bucket keeps
//! current (history first, then every change as it is acknowledged), so the
//! router's and the API's lookups never wait for the network and another
//! host's write reaches this host without polling. Each mirrored key keeps
//! the revision it was last changed at, and an older change never replaces
//! a newer one, whichever arrives first: this host's own acknowledged write
//! or the watch's copy of it.
//!
//! A watch follows its bucket through a NATS server's loss. Its consumer
//! lives on one server, not necessarily the one this host is connected to,
//! and when that server goes away nothing says so until the consumer's
//! heartbeats have been missing for ten seconds. So when the connection
//! moves to another server, and when any stream elects a new leader (which
//! is how a lost server shows itself within a few seconds), every watch is
//! replaced by one that starts from the revision it had reached; the old
//! one keeps applying changes until the new one is made. Requests that only
//! read (finding a bucket, starting a watch, reading a record) are sent
//! again when unanswered for [`ATTEMPT`]: one sent while a stream or the
//! cluster's JetStream has no leader is never answered.
//!
//! The store's interface is synchronous (sled answers in microseconds); a
//! write here waits for the cluster in `block_in_place`, which hands the
//! worker's other tasks to another worker for the round trip, and gives up
//! after [`OP_TIMEOUT`] with an error rather than wait forever on a cluster
//! that lost its quorum.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use futures::StreamExt as _;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_util::task::AbortOnDropHandle;

use super::{Entries, StoreError};

mod blobs;

pub(super) use blobs::Blobs;

/// How long one read or write may wait for the cluster.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a starting host waits for the cluster to make or find its
/// buckets and load them: a cluster started at the same time, or one
/// electing new leaders, may not answer for a while.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a request that only reads may go unanswered before it is
/// sent again. (Writes keep the client's own timeout: a write sent again
/// after its acknowledgement was merely slow is made twice.)
const ATTEMPT: Duration = Duration::from_secs(2);

/// The subjects on which JetStream announces a stream's new leader, one
/// per stream (`…LEADER_ELECTED.<stream>`).
const LEADER_ELECTED: &str = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>";

/// How long after one leader election the watches wait for the others
/// that the same event brings, to start again once for all of them.
const ELECTIONS_SETTLE: Duration = Duration::from_millis(250);

/// How to reach the cluster's store.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// NATS server URLs (`nats://host:port`); the client fails over between
    /// them.
    pub servers: Vec<String>,
    /// On how many NATS servers each bucket is kept (JetStream's R: 3 in a
    /// three-server cluster, 1 on a single server).
    pub replicas: usize,
    /// This host's name, as NATS shows the connection.
    pub host: String,
}

pub(super) struct Cluster {
    /// Counts the times every watch was told to start again from its last
    /// revision: on each reconnect, and after leader elections.
    restarts: tokio::sync::watch::Receiver<u64>,
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    handle: Handle,
    replicas: usize,
    buckets: Mutex<HashMap<&'static str, Arc<Bucket>>>,
    _elections: AbortOnDropHandle<()>,
}

impl Cluster {
    pub(super) async fn join(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let servers = options.servers.join(", ");
        let (restart, restarts) = tokio::sync::watch::channel(0u64);
        let restart = Arc::new(restart);
        let reconnected = restart.clone();
        let client = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    reconnected.send_modify(|n| *n += 1);
                }
                std::future::ready(())
            })
            .name(format!("renga {}", options.host))
            .connection_timeout(Duration::from_secs(5))
            .connect(options.servers.as_slice())
            .await
            .with_context(|| format!("connecting to the cluster's NATS servers ({servers})"))?;
        let mut elected = client
            .subscribe(LEADER_ELECTED)
            .await
            .context("subscribing to the cluster's leader elections")?;
        let elections = tokio::spawn(async move {
            while elected.next().await.is_some() {
                let mut streams = 1;
                while let Ok(Some(_)) = tokio::time::timeout(ELECTIONS_SETTLE, elected.next()).await
                {
                    streams += 1;
                }
                tracing::info!(
                    streams,
                    "the cluster's streams elected new leaders; following every bucket again"
                );
                restart.send_modify(|n| *n += 1);
            }
        });
        Ok(Cluster {
            restarts,
            _elections: AbortOnDropHandle::new(elections),
            jetstream: async_nats::jetstream::new(client.clone()),
            client,
            handle: Handle::current(),
            replicas: options.replicas,
            buckets: Mutex::default(),
        })
    }

    pub(super) fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The bucket for `tree`, created on first use (JetStream's create is
    /// idempotent, so hosts starting together agree on one bucket) and
    /// loaded into this host's mirror before it is handed out.
    pub(super) fn bucket(&self, tree: &'static str) -> anyhow::Result<Arc<Bucket>> {
        if let Some(bucket) = self.buckets.lock().unwrap().get(tree) {
            return Ok(bucket.clone());
        }
        let config = kv::Config {
            bucket: format!("renga-{tree}"),
            description: format!("renga's {tree} records"),
            history: 1,
            num_replicas: self.replicas,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        };
        // A cluster that is starting, or electing leaders, does not answer
        // for a moment; a starting host waits for it.
        let (jetstream, config) = (&self.jetstream, &config);
        let made = until_answered(&config.bucket, move || async move {
            match jetstream.create_key_value(config.clone()).await {
                Ok(store) => Ok(store),
                // Made by another host with a config that differs only in
                // what the server filled in.
                Err(made) => jetstream
                    .get_key_value(&config.bucket)
                    .await
                    .map_err(|found| format!("{made}; {found}")),
            }
        });
        let store = block_for(START_TIMEOUT, &self.handle, "creating the bucket", async {
            Ok::<_, String>(made.await)
        })?;
        let bucket = Arc::new(block_for(
            START_TIMEOUT,
            &self.handle,
            "loading the bucket",
            Bucket::load(store, self.handle.clone(), self.restarts.clone()),
        )?);
        Ok(self
            .buckets
            .lock()
            .unwrap()
            .entry(tree)
            .or_insert(bucket)
            .clone())
    }
}

/// One tree's bucket and this host's mirror of it.
pub(super) struct Bucket {
    store: kv::Store,
    mirror: Arc<Mirror>,
    handle: Handle,
    _follow: AbortOnDropHandle<()>,
}

struct Mirror {
    slots: RwLock<BTreeMap<Vec<u8>, Slot>>,
    /// The keys that changes made elsewhere (another host, or this host's
    /// write whose answer was lost) changed, as the watch brings them.
    changed: tokio::sync::broadcast::Sender<Vec<u8>>,
}

impl Default for Mirror {
    fn default() -> Mirror {
        Mirror {
            slots: RwLock::default(),
            changed: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

/// A key's newest known state: its record, or `None` once removed (kept,
/// with its revision, so that an older write arriving late cannot bring it
/// back).
struct Slot {
    revision: u64,
    value: Option<Arc<[u8]>>,
}

impl Mirror {
    /// Whether the change was news (newer than what the mirror held).
    fn apply(&self, key: Vec<u8>, revision: u64, value: Option<Arc<[u8]>>) -> bool {
        let mut slots = self.slots.write().unwrap();
        match slots.get_mut(&key) {
            Some(slot) if slot.revision >= revision => false,
            Some(slot) => {
                *slot = Slot { revision, value };
                true
            }
            None => {
                slots.insert(key, Slot { revision, value });
                true
            }
        }
    }

    fn apply_entry(&self, entry: kv::Entry) -> u64 {
        let value = match entry.operation {
            Operation::Put => Some(Arc::from(&entry.value[..])),
            Operation::Delete | Operation::Purge => None,
        };
        if let Some(key) = decode_key(&entry.key)
            && self.apply(key.clone(), entry.revision, value)
        {
            // Nobody listening is fine.
            let _ = self.changed.send(key);
        }
        entry.revision
    }
}

impl Bucket {
    /// Watches the bucket from its start and waits until every key's
    /// newest record is in the mirror; then keeps following.
    async fn load(
        store: kv::Store,
        handle: Handle,
        restarts: tokio::sync::watch::Receiver<u64>,
    ) -> Result<Bucket, String> {
        let mirror = Arc::new(Mirror::default());
        let (mut watch, status) = until_answered(&store.name, || async {
            Ok::<_, async_nats::Error>((
                store.watch_with_history(">").await?,
                store.status().await?,
            ))
        })
        .await;
        let mut last = 0;
        if status.values() > 0 {
            while let Some(entry) = watch.next().await {
                let entry = entry.map_err(|e| e.to_string())?;
                let caught_up = entry.delta == 0;
                last = mirror.apply_entry(entry);
                if caught_up {
                    break;
                }
            }
        }
        let follow = tokio::spawn(follow(store.clone(), mirror.clone(), watch, last, restarts));
        Ok(Bucket {
            store,
            mirror,
            handle,
            _follow: AbortOnDropHandle::new(follow),
        })
    }

    /// The keys changes from elsewhere change, from now on.
    pub(super) fn changes(&self) -> tokio::sync::broadcast::Receiver<Vec<u8>> {
        self.mirror.changed.subscribe()
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<(u64, Arc<[u8]>)> {
        let slots = self.mirror.slots.read().unwrap();
        let slot = slots.get(key)?;
        Some((slot.revision, slot.value.clone()?))
    }

    pub(super) fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        let name = encode_key(key);
        let value: Arc<[u8]> = value.into();
        let bytes = bytes::Bytes::copy_from_slice(&value);
        let revision = block(
            &self.handle,
            "writing a record",
            retrying(|| self.store.put(&name, bytes.clone())),
        )?;
        self.mirror.apply(key.to_vec(), revision, Some(value));
        Ok(())
    }

    /// Writes `value` if the key is still at `expected` (its revision, or
    /// `None` for absent). False if another write came first; the mirror
    /// then holds that write, for the caller's next try.
    pub(super) fn replace(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let name = encode_key(key);
        let value: Arc<[u8]> = value.into();
        let bytes = bytes::Bytes::copy_from_slice(&value);
        let written = block(
            &self.handle,
            "writing a record",
            retrying(|| self.write_if(&name, expected, bytes.clone())),
        )?;
        match written {
            Some(revision) => {
                self.mirror.apply(key.to_vec(), revision, Some(value));
                Ok(true)
            }
            None => {
                self.refresh(key, &name)?;
                Ok(false)
            }
        }
    }

    /// JetStream's create (`expected` is `None`) or revision-checked
    /// update; `None` when another write came first.
    async fn write_if(
        &self,
        name: &str,
        expected: Option<u64>,
        bytes: bytes::Bytes,
    ) -> Result<Option<u64>, String> {
        match expected {
            None => match self.store.create(name, bytes).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Some(revision) => match self.store.update(name, bytes, revision).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    pub(super) fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let name = encode_key(key);
        block(
            &self.handle,
            "removing a record",
            retrying(|| self.store.delete(&name)),
        )?;
        // The delete's own revision comes back through the watch; until
        // then the record is gone at the revision it was last seen at.
        if let Some(slot) = self.mirror.slots.write().unwrap().get_mut(key) {
            slot.value = None;
        }
        Ok(())
    }

    pub(super) fn scan(&self, prefix: &[u8]) -> Entries {
        let slots = self.mirror.slots.read().unwrap();
        slots
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, slot)| Some((key.clone(), slot.value.as_ref()?.to_vec())))
            .collect()
    }

    pub(super) fn last(&self, prefix: &[u8]) -> Option<Vec<u8>> {
        let slots = self.mirror.slots.read().unwrap();
        slots
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(_, slot)| slot.value.as_ref())
            .last()
            .map(|value| value.to_vec())
    }

    /// Reads one key from the cluster into the mirror: after a lost race,
    /// so that the caller's next try sees the winner.
    fn refresh(&self, key: &[u8], name: &str) -> Result<(), StoreError> {
        let entry = block(
            &self.handle,
            "reading a record",
            retrying(|| attempt(self.store.entry(name))),
        )?;
        if let Some(entry) = entry {
            self.mirror.apply(
                key.to_vec(),
                entry.revision,
                matches!(entry.operation, Operation::Put).then(|| Arc::from(&entry.value[..])),
            );
        }
        Ok(())
    }
}

/// Applies every change to the bucket as it comes. A watch ends when its
/// NATS server goes away, and is told to start again when the connection
/// or the stream's leader moves; a new one resumes after the last revision
/// seen.
async fn follow(
    store: kv::Store,
    mirror: Arc<Mirror>,
    mut watch: kv::Watch,
    mut last: u64,
    mut restarts: tokio::sync::watch::Receiver<u64>,
) {
    restarts.mark_unchanged();
    // The watch that will take over from `watch`, while it is being made.
    // The old one keeps applying changes until then (a restart asked for
    // on a hunch must not leave the mirror behind while the cluster takes
    // its time to answer), and the new one starts where the old one was
    // when it was asked for: what both bring is applied once.
    let mut replacing: Option<Pin<Box<dyn Future<Output = kv::Watch> + Send>>> = None;
    let mut broken = false;
    loop {
        tokio::select! {
            entry = watch.next(), if !broken => match entry {
                Some(Ok(entry)) => last = last.max(mirror.apply_entry(entry)),
                Some(Err(e)) => {
                    tracing::warn!(bucket = %store.name, error = %e, "the watch on the cluster's store broke");
                    broken = true;
                }
                None => broken = true,
            },
            changed = restarts.changed() => {
                if changed.is_err() {
                    return;
                }
                replacing.get_or_insert_with(|| Box::pin(resume(store.clone(), last)));
            }
            resumed = made(&mut replacing) => {
                watch = resumed;
                replacing = None;
                broken = false;
            }
        }
        if broken && replacing.is_none() {
            replacing = Some(Box::pin(resume(store.clone(), last)));
        }
    }
}

/// A new watch on the bucket, from the revision after `last`, once the
/// cluster makes one.
async fn resume(store: kv::Store, last: u64) -> kv::Watch {
    let asked = std::time::Instant::now();
    // Not at once: a watch that broke may break again as soon as it is
    // made, while its servers settle.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let watch = until_answered(&store.name, || store.watch_all_from_revision(last + 1)).await;
    tracing::info!(bucket = %store.name, after = ?asked.elapsed(), "following the cluster's store again");
    watch
}

/// The replacement being made, when it is ready; never without one.
async fn made(
    replacing: &mut Option<Pin<Box<dyn Future<Output = kv::Watch> + Send>>>,
) -> kv::Watch {
    match replacing {
        Some(watch) => watch.await,
        None => std::future::pending().await,
    }
}

/// `op`, or an error if the cluster has not answered it within [`ATTEMPT`].
async fn attempt<T, E: Display>(op: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(ATTEMPT, op).await {
        Ok(outcome) => outcome.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", ATTEMPT.as_secs())),
    }
}

/// Runs `op`, which only reads or is idempotent, until the cluster answers
/// it: again a quarter of a second after each failure or unanswered
/// [`ATTEMPT`]. The caller bounds the whole.
async fn until_answered<T, E: Display, F: Future<Output = Result<T, E>>>(
    bucket: &str,
    mut op: impl FnMut() -> F,
) -> T {
    loop {
        match attempt(op()).await {
            Ok(value) => return value,
            Err(e) => {
                tracing::info!(bucket, error = %e, "waiting for the cluster's JetStream");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Runs `op` again, a tenth of a second apart, while it fails, until
/// shortly before [`OP_TIMEOUT`]: for a moment after a NATS server is lost,
/// a stream it led refuses writes while its other servers elect a new
/// leader. (A write that reached the stream but whose acknowledgement was
/// lost is made again: the same record again for a put; for a create or an
/// update, a lost race, after which the caller sees its own write.)
async fn retrying<T, E: Display, F: Future<Output = Result<T, E>>>(
    mut op: impl FnMut() -> F,
) -> Result<T, String> {
    let deadline = std::time::Instant::now() + OP_TIMEOUT - Duration::from_secs(1);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.to_string()),
            Err(e) => {
                tracing::debug!(error = %e, "the cluster refused a store operation; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs `op` against the cluster from synchronous code, for at most
/// [`OP_TIMEOUT`].
fn block<T, E: Display>(
    handle: &Handle,
    what: &str,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    block_for(OP_TIMEOUT, handle, what, op)
}

/// The same, for at most `bound`.
fn block_for<T, E: Display>(
    bound: Duration,
    handle: &Handle,
    what: &str,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    let timed = tokio::time::timeout(bound, op);
    let outcome = match Handle::try_current() {
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| current.block_on(timed))
        }
        _ => handle.block_on(timed),
    };
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StoreError::Cluster(format!("{what}: {e}"))),
        Err(_) => Err(StoreError::Cluster(format!(
            "{what}: the NATS servers did not answer within {} s",
            bound.as_secs()
        ))),
    }
}

/// A key as a JetStream subject token: letters, digits, `-`, `_` and `/`
/// as they are, every other byte as `=XX`. Reversible, and it keeps the
/// keys readable to an operator with the `nats` CLI.
fn encode_key(key: &[u8]) -> String {
    let mut name = String::with_capacity(key.len());
    for &byte in key {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'/') {
            name.push(byte as char);
        } else {
            name.push_str(&format!("={byte:02X}"));
        }
    }
    name
}

fn decode_key(name: &str) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(name.len());
    let mut bytes = name.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'=' {
            let high = (bytes.next()? as char).to_digit(16)?;
            let low = (bytes.next()? as char).to_digit(16)?;
            key.push((high * 16 + low) as u8);
        } else {
            key.push(byte);
        }
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_trip_through_a_subject() {
        for key in [
            b"app-1/web".to_vec(),
            [b"rel/".as_slice(), &7u32.to_be_bytes()].concat(),
            b"a.b c=d".to_vec(),
        ] {
            let name = encode_key(&key);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b)),
                "{name}"
            );
            assert_eq!(decode_key(&name), Some(key));
        }
    }
}
