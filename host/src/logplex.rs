//! logplex: the per-app log stream.
//!
//! Owns log lines (Heroku's `TIMESTAMP source[process]: message` format), a
//! bounded buffer of recent lines and live tails. The router, dynos, builds and
//! the platform hand their lines here; nothing else prints app-facing logs.
//! It never makes a producer wait: a tail that falls behind loses lines and is
//! told how many, and an [`Outlet`] (a log drain's queue) that fills up drops
//! its oldest lines and counts them.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

/// Heroku keeps the last 1,500 lines of an app's log; so does renga.
pub const DEFAULT_BUFFER_LINES: usize = 1500;

/// Longer lines are cut here, as Heroku's logplex does.
pub const MAX_LINE_BYTES: usize = 10_000;

/// Lines a live tail may fall behind by before it is told it lost some.
const LIVE_CAPACITY: usize = 1024;

/// Who wrote a line: the app itself (`app[web.1]`) or the platform
/// (`renga[router]`, `renga[web.1]`, `renga[api]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    App,
    Renga,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::App => "app",
            Source::Renga => "renga",
        }
    }
}

/// The process a line belongs to: a dyno name (`web.1`), `router`, `api` or
/// `build`. Cheap to clone, because producers clone it for every line.
pub type Process = Arc<str>;

#[derive(Clone, Debug)]
pub struct LogLine {
    pub time: SystemTime,
    pub source: Source,
    pub process: Process,
    pub message: String,
}

const TIMESTAMP: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
);

/// Formats a time the way Heroku's log lines do: `2026-11-22T21:03:04.123456+00:00`.
pub fn timestamp(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(TIMESTAMP)
        .unwrap_or_else(|_| "0000-00-00T00:00:00.000000+00:00".to_string())
}

impl LogLine {
    /// Whether the line passes Heroku's log filters: `source` is `app` or
    /// the platform (`renga`, or `heroku` as Heroku's clients say), `dyno` a
    /// process (`web.1`, `router`) or a process type (`web`: every web dyno).
    pub fn matches(&self, source: Option<&str>, dyno: Option<&str>) -> bool {
        let source_ok = match source {
            None | Some("") => true,
            Some("app") => self.source == Source::App,
            Some("renga" | "heroku") => self.source == Source::Renga,
            Some(_) => false,
        };
        let dyno_ok = match dyno {
            None | Some("") => true,
            Some(dyno) => {
                let process: &str = &self.process;
                process == dyno
                    || process
                        .strip_prefix(dyno)
                        .is_some_and(|rest| rest.starts_with('.'))
            }
        };
        source_ok && dyno_ok
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}[{}]: {}",
            timestamp(self.time),
            self.source.as_str(),
            self.process,
            self.message
        )
    }
}

/// One app's log: a bounded buffer of recent lines plus live subscribers.
/// Clones share the same stream.
#[derive(Clone)]
pub struct AppLog {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    state: Mutex<State>,
    /// On a cluster: where this host's lines go for the other hosts.
    shipping: Option<Shipping>,
}

/// Where an app's lines are sent to the cluster, and as whose.
struct Shipping {
    app_id: Arc<str>,
    to: Arc<std::sync::OnceLock<ShipTo>>,
}

/// Which of an app's outlets (its drains) a line goes to.
#[derive(Clone, Copy)]
enum Offer<'a> {
    All,
    /// All but a drain's own overflow report, which it gets in its next
    /// batch instead.
    AllBut(&'a Arc<Outlet>),
    None,
}

/// Lines for the other hosts of a cluster, by app id; bounded, and never
/// waited on: a line that finds it full is not shipped (this host still
/// has it).
pub type ShipTo = tokio::sync::mpsc::Sender<(Arc<str>, Arc<LogLine>)>;

/// The recent lines, and the channel to live tails; the channel exists only
/// while someone follows the log, so an app nobody watches costs little
/// more than its lines.
struct State {
    buffer: VecDeque<Arc<LogLine>>,
    live: Option<broadcast::Sender<Arc<LogLine>>>,
    /// Where every line also goes: the app's log drains.
    outlets: Vec<Arc<Outlet>>,
}

impl State {
    fn subscribe(&mut self) -> broadcast::Receiver<Arc<LogLine>> {
        self.live
            .get_or_insert_with(|| broadcast::channel(LIVE_CAPACITY).0)
            .subscribe()
    }
}

impl Default for AppLog {
    fn default() -> Self {
        AppLog::new(DEFAULT_BUFFER_LINES)
    }
}

impl AppLog {
    pub fn new(capacity: usize) -> AppLog {
        AppLog {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                state: Mutex::new(State {
                    buffer: VecDeque::new(),
                    live: None,
                    outlets: Vec::new(),
                }),
                shipping: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a line stamped with the current time.
    pub fn emit(&self, source: Source, process: &Process, message: impl Into<String>) {
        let mut message = message.into();
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.push(LogLine {
            time: SystemTime::now(),
            source,
            process: process.clone(),
            message,
        });
    }

    pub fn push(&self, line: LogLine) {
        self.push_except(line, None);
    }

    /// Appends a line that every outlet gets except `except` (a drain's own
    /// overflow report, which it gets in its next batch instead).
    pub fn push_except(&self, line: LogLine, except: Option<&Arc<Outlet>>) {
        let line = Arc::new(line);
        if let Some(shipping) = &self.inner.shipping
            && let Some(to) = shipping.to.get()
        {
            let _ = to.try_send((shipping.app_id.clone(), line.clone()));
        }
        self.append(line, except.map_or(Offer::All, Offer::AllBut));
    }

    /// Appends a line another host of the cluster wrote, for this host's
    /// readers: it is not shipped back, and not offered to the drains
    /// (every host runs every drain and delivers the lines it writes).
    pub fn push_from_elsewhere(&self, line: LogLine) {
        self.append(Arc::new(line), Offer::None);
    }

    fn append(&self, line: Arc<LogLine>, offer: Offer<'_>) {
        let mut state = self.lock();
        for outlet in &state.outlets {
            let offered = match offer {
                Offer::All => true,
                Offer::AllBut(except) => !Arc::ptr_eq(except, outlet),
                Offer::None => false,
            };
            if offered {
                outlet.offer(line.clone());
            }
        }
        if state.buffer.len() == self.inner.capacity {
            state.buffer.pop_front();
        }
        state.buffer.push_back(line.clone());
        // Sent while the buffer is locked, so that `tail` sees every line
        // exactly once: either in its snapshot or on its receiver. Once the
        // last follower has gone, the channel goes too.
        if let Some(live) = &state.live
            && live.send(line).is_err()
        {
            state.live = None;
        }
    }

    /// Sends every line from now on to `outlet` too.
    pub fn attach(&self, outlet: Arc<Outlet>) {
        self.lock().outlets.push(outlet);
    }

    /// Stops sending lines to `outlet`, and closes it.
    pub fn detach(&self, outlet: &Arc<Outlet>) {
        self.lock().outlets.retain(|o| !Arc::ptr_eq(o, outlet));
        outlet.close();
    }

    /// The last `n` lines, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Arc<LogLine>> {
        let state = self.lock();
        let skip = state.buffer.len().saturating_sub(n);
        state.buffer.iter().skip(skip).cloned().collect()
    }

    /// The last `n` lines and a receiver for every line after them, with no
    /// gap and no repeat between the two.
    pub fn tail(&self, n: usize) -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
        let mut state = self.lock();
        let skip = state.buffer.len().saturating_sub(n);
        let lines = state.buffer.iter().skip(skip).cloned().collect();
        let receiver = state.subscribe();
        (lines, receiver)
    }

    /// Prints every new line to `out` from a background task, batching writes
    /// so that a busy app does not cost a system call per line.
    pub fn print_to<W: Write + Send + 'static>(&self, out: W) -> tokio::task::JoinHandle<()> {
        let mut receiver = self.lock().subscribe();
        tokio::spawn(async move {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            loop {
                let first = receiver.recv().await;
                if !write_received(&mut out, first) {
                    break;
                }
                loop {
                    match receiver.try_recv() {
                        Ok(line) => {
                            let _ = writeln!(out, "{line}");
                        }
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            let _ = writeln!(
                                out,
                                "(renga: {n} log lines dropped: the terminal fell behind)"
                            );
                        }
                        Err(_) => break,
                    }
                }
                let _ = out.flush();
            }
            let _ = out.flush();
        })
    }
}

/// A bounded queue of lines for one consumer that must never slow the app
/// (a log drain): when it is full, the oldest line makes room and is
/// counted as lost, for the consumer to report.
pub struct Outlet {
    capacity: usize,
    state: Mutex<OutletState>,
    ready: tokio::sync::Notify,
    closing: tokio::sync::Notify,
}

struct OutletState {
    lines: VecDeque<Arc<LogLine>>,
    /// Lines dropped since the consumer last asked, and when the first went.
    lost: u64,
    lost_since: Option<SystemTime>,
    closed: bool,
}

impl Outlet {
    pub fn new(capacity: usize) -> Arc<Outlet> {
        Arc::new(Outlet {
            capacity: capacity.max(1),
            state: Mutex::new(OutletState {
                lines: VecDeque::new(),
                lost: 0,
                lost_since: None,
                closed: false,
            }),
            ready: tokio::sync::Notify::new(),
            closing: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutletState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line, dropping the oldest if the queue is full. Never waits.
    pub fn offer(&self, line: Arc<LogLine>) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            if state.lines.len() == self.capacity {
                state.lines.pop_front();
                state.lost += 1;
                state.lost_since.get_or_insert(line.time);
            }
            state.lines.push_back(line);
        }
        self.ready.notify_one();
    }

    /// Up to `max` queued lines, oldest first; waits while there are none.
    /// Empty once the outlet is closed.
    pub async fn take(&self, max: usize) -> Vec<Arc<LogLine>> {
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return Vec::new();
                }
                if !state.lines.is_empty() {
                    let n = state.lines.len().min(max);
                    return state.lines.drain(..n).collect();
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a line
            // offered between the check above and this wait still wakes us.
            self.ready.notified().await;
        }
    }

    /// How many lines were dropped since the last call, and since when.
    pub fn take_lost(&self) -> Option<(u64, SystemTime)> {
        let mut state = self.lock();
        let since = state.lost_since.take()?;
        Some((std::mem::take(&mut state.lost), since))
    }

    /// Whether lines were dropped since the last [`Outlet::take_lost`].
    pub fn has_lost(&self) -> bool {
        self.lock().lost_since.is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the queue and wakes its consumer for good.
    pub fn close(&self) {
        {
            let mut state = self.lock();
            state.closed = true;
            state.lines.clear();
        }
        self.ready.notify_one();
        self.closing.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Resolves once the outlet is closed (for a consumer that waits on
    /// something else meanwhile).
    pub async fn closed(&self) {
        let closing = self.closing.notified();
        let mut closing = std::pin::pin!(closing);
        // Registered before the check, so a close in between still wakes it.
        closing.as_mut().enable();
        if !self.is_closed() {
            closing.await;
        }
    }
}

/// Every app's log, by app id.
#[derive(Default)]
pub struct Logplex {
    apps: Mutex<std::collections::HashMap<String, AppLog>>,
    ship_to: Arc<std::sync::OnceLock<ShipTo>>,
}

impl Logplex {
    /// The app's log, created on first use.
    pub fn app(&self, app_id: &str) -> AppLog {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_insert_with(|| {
                let mut log = AppLog::new(DEFAULT_BUFFER_LINES);
                Arc::get_mut(&mut log.inner)
                    .expect("a new log is not shared yet")
                    .shipping = Some(Shipping {
                    app_id: app_id.into(),
                    to: self.ship_to.clone(),
                });
                log
            })
            .clone()
    }

    /// From now on every app's lines are also sent to `to` (once: a
    /// second call changes nothing).
    pub fn ship_to(&self, to: ShipTo) {
        let _ = self.ship_to.set(to);
    }

    /// The app's log, if it has one (never makes it: a log asked for just
    /// after its app was destroyed would otherwise stay until a restart).
    pub fn find(&self, app_id: &str) -> Option<AppLog> {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
            .cloned()
    }

    pub fn remove(&self, app_id: &str) {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
    }
}

fn write_received<W: Write>(
    out: &mut W,
    received: Result<Arc<LogLine>, broadcast::error::RecvError>,
) -> bool {
    match received {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            true
        }
        Err(broadcast::error::RecvError::Lagged(n)) => {
            let _ = writeln!(
                out,
                "(renga: {n} log lines dropped: the terminal fell behind)"
            );
            true
        }
        Err(broadcast::error::RecvError::Closed) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_use_herokus_format() {
        let line = LogLine {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            source: Source::App,
            process: "web.1".into(),
            message: "hello".into(),
        };
        assert_eq!(
            line.to_string(),
            "2023-11-14T22:13:20.123456+00:00 app[web.1]: hello"
        );
    }

    #[test]
    fn buffer_keeps_the_newest_lines() {
        let log = AppLog::new(3);
        let p: Process = "router".into();
        for i in 0..5 {
            log.emit(Source::Renga, &p, format!("line {i}"));
        }
        let recent: Vec<_> = log.recent(10).iter().map(|l| l.message.clone()).collect();
        assert_eq!(recent, ["line 2", "line 3", "line 4"]);
        assert_eq!(log.recent(1)[0].message, "line 4");
    }

    #[test]
    fn tail_has_no_gap_between_snapshot_and_live_lines() {
        let log = AppLog::new(10);
        let p: Process = "web.1".into();
        log.emit(Source::App, &p, "before");
        let (snapshot, mut live) = log.tail(10);
        log.emit(Source::App, &p, "after");
        assert_eq!(snapshot.len(), 1);
        assert_eq!(live.try_recv().unwrap().message, "after");
    }

    #[test]
    fn a_log_nobody_follows_keeps_no_channel() {
        let log = AppLog::new(10);
        let p: Process = "web.1".into();
        log.emit(Source::App, &p, "one");
        assert!(log.lock().live.is_none());
        let (_, live) = log.tail(0);
        assert!(log.lock().live.is_some());
        drop(live);
        log.emit(Source::App, &p, "two");
        assert!(log.lock().live.is_none(), "the last follower left");
        assert_eq!(log.recent(5).len(), 2);
    }

    #[tokio::test]
    async fn a_full_outlet_drops_its_oldest_lines_and_counts_them() {
        let log = AppLog::new(10);
        let outlet = Outlet::new(3);
        log.attach(outlet.clone());
        let p: Process = "web.1".into();
        for i in 0..5 {
            log.emit(Source::App, &p, format!("line {i}"));
        }
        let (lost, _) = outlet.take_lost().unwrap();
        assert_eq!(lost, 2);
        assert!(outlet.take_lost().is_none(), "counted once");
        let kept: Vec<_> = outlet
            .take(10)
            .await
            .iter()
            .map(|l| l.message.clone())
            .collect();
        assert_eq!(kept, ["line 2", "line 3", "line 4"]);
        log.push_except(
            LogLine {
                time: SystemTime::now(),
                source: Source::Renga,
                process: "logplex".into(),
                message: "report".into(),
            },
            Some(&outlet),
        );
        assert!(
            outlet.is_empty(),
            "the excepted outlet does not get the line"
        );
        log.detach(&outlet);
        assert!(
            outlet.take(10).await.is_empty(),
            "a closed outlet ends its consumer"
        );
        log.emit(Source::App, &p, "after");
        assert!(outlet.is_empty());
    }

    #[test]
    fn long_lines_are_cut() {
        let log = AppLog::new(1);
        log.emit(Source::App, &"web.1".into(), "é".repeat(MAX_LINE_BYTES));
        assert!(log.recent(1)[0].message.len() <= MAX_LINE_BYTES);
    }
}
