//! metrics: what every app and dyno is doing, for Prometheus (`GET
//! /metrics`) and for the app's own log (`log-runtime-metrics`).
//!
//! The request path only adds to relaxed atomics in a meter it already
//! holds (the router's line, an instance's end, a guest's call to an
//! add-on or out to the network); meters are looked up by name only when a
//! dyno is made. Figures are per dyno (`web.1`, and `router` for what the
//! router did without one: H14, H80, wakes), kept across releases, and
//! summed per app by whoever reads them. [`history`] keeps the last hour
//! of each app for the dashboard's graphs.

pub mod history;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The router's service-time buckets, in seconds (Prometheus's `le`).
pub const SERVICE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// One dyno's counters.
pub struct DynoMeter {
    enabled: bool,
    /// Requests by status class: 1xx to 5xx.
    requests: [AtomicU64; 5],
    /// Per bucket of `SERVICE_BUCKETS`, then +Inf (not cumulative here).
    service: [AtomicU64; SERVICE_BUCKETS.len() + 1],
    service_us: AtomicU64,
    wakes: AtomicU64,
    wake_us: AtomicU64,
    instances: AtomicU64,
    cpu_us: AtomicU64,
    /// Linear memory of this dyno's live instances (running or kept).
    memory: AtomicU64,
    /// The most one instance has used.
    memory_peak: AtomicU64,
    /// The most `memory` has been since the history's last sample.
    memory_high: AtomicU64,
    outbound: AtomicU64,
    addon_calls: AtomicU64,
}

static OFF: LazyLock<Arc<DynoMeter>> = LazyLock::new(|| Arc::new(DynoMeter::new(false)));

impl DynoMeter {
    fn new(enabled: bool) -> DynoMeter {
        DynoMeter {
            enabled,
            requests: Default::default(),
            service: Default::default(),
            service_us: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            wake_us: AtomicU64::new(0),
            instances: AtomicU64::new(0),
            cpu_us: AtomicU64::new(0),
            memory: AtomicU64::new(0),
            memory_peak: AtomicU64::new(0),
            memory_high: AtomicU64::new(0),
            outbound: AtomicU64::new(0),
            addon_calls: AtomicU64::new(0),
        }
    }

    /// A meter that counts nothing (a dyno nobody reads figures of).
    pub fn off() -> Arc<DynoMeter> {
        OFF.clone()
    }

    /// A request the router answered, and how long the app took.
    pub fn request(&self, status: u16, service: Duration) {
        if !self.enabled {
            return;
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Relaxed);
        let seconds = service.as_secs_f64();
        let bucket = SERVICE_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(SERVICE_BUCKETS.len());
        self.service[bucket].fetch_add(1, Relaxed);
        self.service_us.fetch_add(micros(service), Relaxed);
    }

    pub fn wake(&self, took: Duration) {
        if self.enabled {
            self.wakes.fetch_add(1, Relaxed);
            self.wake_us.fetch_add(micros(took), Relaxed);
        }
    }

    pub fn instance_started(&self) {
        if self.enabled {
            self.instances.fetch_add(1, Relaxed);
        }
    }

    pub fn cpu(&self, used: Duration) {
        if self.enabled {
            self.cpu_us.fetch_add(micros(used), Relaxed);
        }
    }

    /// An instance's memory grew by `bytes`, to `total`.
    pub fn memory_grew(&self, bytes: u64, total: u64) {
        if self.enabled {
            let live = self.memory.fetch_add(bytes, Relaxed).saturating_add(bytes);
            self.memory_high.fetch_max(live, Relaxed);
            self.memory_peak.fetch_max(total, Relaxed);
        }
    }

    /// An instance that held `bytes` is gone.
    pub fn instance_ended(&self, bytes: u64) {
        if self.enabled {
            self.memory.fetch_sub(bytes, Relaxed);
        }
    }

    /// The most memory the dyno's live instances held at once since the
    /// last call, which starts the next period at what they hold now.
    fn take_memory_high(&self) -> u64 {
        let live = self.memory.load(Relaxed);
        self.memory_high.swap(live, Relaxed).max(live)
    }

    pub fn outbound(&self) {
        if self.enabled {
            self.outbound.fetch_add(1, Relaxed);
        }
    }

    pub fn addon_call(&self) {
        if self.enabled {
            self.addon_calls.fetch_add(1, Relaxed);
        }
    }

    /// Runs `future`, adding the time spent in its polls to the dyno's CPU
    /// time (the guest runs only inside them).
    pub fn timed<F: Future>(self: &Arc<Self>, future: F) -> Timed<F> {
        Timed {
            future,
            meter: self.enabled.then(|| self.clone()),
        }
    }

    pub fn snapshot(&self) -> DynoFigures {
        let load = |a: &AtomicU64| a.load(Relaxed);
        DynoFigures {
            requests: std::array::from_fn(|i| load(&self.requests[i])),
            service: std::array::from_fn(|i| load(&self.service[i])),
            service_seconds: load(&self.service_us) as f64 / 1e6,
            wakes: load(&self.wakes),
            wake_seconds: load(&self.wake_us) as f64 / 1e6,
            instances: load(&self.instances),
            cpu_seconds: load(&self.cpu_us) as f64 / 1e6,
            memory: load(&self.memory),
            memory_peak: load(&self.memory_peak),
            outbound: load(&self.outbound),
            addon_calls: load(&self.addon_calls),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pin_project_lite::pin_project! {
    /// A future whose polls are timed into a dyno's CPU figure.
    pub struct Timed<F> {
        #[pin]
        future: F,
        meter: Option<Arc<DynoMeter>>,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(meter) = this.meter else {
            return this.future.poll(cx);
        };
        let started = Instant::now();
        let poll = this.future.poll(cx);
        meter.cpu(started.elapsed());
        poll
    }
}

/// A dyno's figures at one moment.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DynoFigures {
    pub requests: [u64; 5],
    pub service: [u64; SERVICE_BUCKETS.len() + 1],
    pub service_seconds: f64,
    pub wakes: u64,
    pub wake_seconds: f64,
    pub instances: u64,
    pub cpu_seconds: f64,
    pub memory: u64,
    pub memory_peak: u64,
    pub outbound: u64,
    pub addon_calls: u64,
}

/// One app's meters, by dyno name.
pub struct AppMeter {
    enabled: bool,
    dynos: Mutex<BTreeMap<String, Arc<DynoMeter>>>,
    history: Mutex<history::History>,
}

impl AppMeter {
    /// The meter of the dyno `name` (made on first use; the same one for
    /// every release's `web.1`).
    pub fn dyno(&self, name: &str) -> Arc<DynoMeter> {
        if !self.enabled {
            return DynoMeter::off();
        }
        self.dynos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(DynoMeter::new(true)))
            .clone()
    }

    /// What the router does for the app without a dyno: refusals, wakes.
    pub fn router(&self) -> Arc<DynoMeter> {
        self.dyno("router")
    }

    /// Adds what the app did since the last sample to its history; `at` is
    /// in Unix seconds.
    pub fn sample(&self, at: u64) {
        let dynos: Vec<Arc<DynoMeter>> = self
            .dynos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut requests = [0u64; 5];
        let mut service = [0u64; SERVICE_BUCKETS.len() + 1];
        let mut memory = 0u64;
        for dyno in &dynos {
            for (sum, n) in requests.iter_mut().zip(&dyno.requests) {
                *sum += n.load(Relaxed);
            }
            for (sum, n) in service.iter_mut().zip(&dyno.service) {
                *sum += n.load(Relaxed);
            }
            memory = memory.saturating_add(dyno.take_memory_high());
        }
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(at, requests, service, memory);
    }

    /// The samples of the last hour, oldest first.
    pub fn history(&self, now: u64) -> Vec<history::Sample> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since(now.saturating_sub(history::KEPT.as_secs()))
    }

    pub fn snapshot(&self) -> Vec<(String, DynoFigures)> {
        self.dynos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, meter)| (name.clone(), meter.snapshot()))
            .collect()
    }
}

/// Every app's meters, by app id.
pub struct Metrics {
    enabled: bool,
    apps: Mutex<HashMap<String, Arc<AppMeter>>>,
}

/// The host's own figures, read when metrics are shown.
pub struct HostFigures {
    pub instances: usize,
    pub max_instances: usize,
    pub waiting_for_cpu: usize,
    pub rss_bytes: u64,
    pub drains: usize,
}

impl Metrics {
    /// `enabled: false` makes every meter count nothing.
    pub fn new(enabled: bool) -> Metrics {
        Metrics {
            enabled,
            apps: Mutex::default(),
        }
    }

    pub fn app(&self, app_id: &str) -> Arc<AppMeter> {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_insert_with(|| {
                Arc::new(AppMeter {
                    enabled: self.enabled,
                    dynos: Mutex::default(),
                    history: Mutex::default(),
                })
            })
            .clone()
    }

    /// The app's meters, if it has any (never makes them).
    pub fn find(&self, app_id: &str) -> Option<Arc<AppMeter>> {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
            .cloned()
    }

    /// Samples every app's history (see [`AppMeter::sample`]).
    pub fn sample_all(&self, at: u64) {
        let apps: Vec<Arc<AppMeter>> = self
            .apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for app in apps {
            app.sample(at);
        }
    }

    pub fn remove(&self, app_id: &str) {
        self.apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
    }
}

/// Writes `apps` (name and figures per dyno) and, when given, the host's
/// figures in Prometheus's text format (version 0.0.4).
pub fn render(apps: &[(String, Vec<(String, DynoFigures)>)], host: Option<&HostFigures>) -> String {
    let mut out = String::with_capacity(4096 + apps.len() * 2048);
    let series = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let each = |out: &mut String, value: &dyn Fn(&DynoFigures) -> Option<f64>, name: &str| {
        for (app, dynos) in apps {
            for (dyno, f) in dynos {
                if let Some(v) = value(f) {
                    let _ = writeln!(
                        out,
                        "{name}{{app=\"{}\",dyno=\"{}\"}} {v}",
                        label(app),
                        label(dyno)
                    );
                }
            }
        }
    };

    series(
        &mut out,
        "renga_router_requests_total",
        "counter",
        "Requests the router answered, by status class.",
    );
    for (app, dynos) in apps {
        for (dyno, f) in dynos {
            for (i, n) in f.requests.iter().enumerate() {
                if *n > 0 {
                    let _ = writeln!(
                        out,
                        "renga_router_requests_total{{app=\"{}\",dyno=\"{}\",status=\"{}xx\"}} {n}",
                        label(app),
                        label(dyno),
                        i + 1
                    );
                }
            }
        }
    }
    series(
        &mut out,
        "renga_router_service_seconds",
        "histogram",
        "Time the app took to answer (the router line's service), in seconds.",
    );
    for (app, dynos) in apps {
        for (dyno, f) in dynos {
            let count: u64 = f.service.iter().sum();
            if count == 0 {
                continue;
            }
            let labels = format!("app=\"{}\",dyno=\"{}\"", label(app), label(dyno));
            let mut cumulative = 0;
            for (i, le) in SERVICE_BUCKETS.iter().enumerate() {
                cumulative += f.service[i];
                let _ = writeln!(
                    out,
                    "renga_router_service_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "renga_router_service_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "renga_router_service_seconds_sum{{{labels}}} {}",
                f.service_seconds
            );
            let _ = writeln!(
                out,
                "renga_router_service_seconds_count{{{labels}}} {count}"
            );
        }
    }
    series(
        &mut out,
        "renga_app_wakes_total",
        "counter",
        "Times the app was woken from zero by a request.",
    );
    each(
        &mut out,
        &|f| (f.wakes > 0).then_some(f.wakes as f64),
        "renga_app_wakes_total",
    );
    series(
        &mut out,
        "renga_app_wake_seconds_total",
        "counter",
        "Time spent waking the app, in seconds.",
    );
    each(
        &mut out,
        &|f| (f.wakes > 0).then_some(f.wake_seconds),
        "renga_app_wake_seconds_total",
    );
    series(
        &mut out,
        "renga_dyno_instances_total",
        "counter",
        "Instances the dyno started.",
    );
    each(
        &mut out,
        &|f| (f.instances > 0).then_some(f.instances as f64),
        "renga_dyno_instances_total",
    );
    series(
        &mut out,
        "renga_dyno_cpu_seconds_total",
        "counter",
        "Time the dyno's guests computed, in seconds.",
    );
    each(
        &mut out,
        &|f| (f.instances > 0).then_some(f.cpu_seconds),
        "renga_dyno_cpu_seconds_total",
    );
    series(
        &mut out,
        "renga_dyno_memory_bytes",
        "gauge",
        "Linear memory of the dyno's live instances (serving or kept), in bytes.",
    );
    each(
        &mut out,
        &|f| (f.instances > 0).then_some(f.memory as f64),
        "renga_dyno_memory_bytes",
    );
    series(
        &mut out,
        "renga_dyno_instance_memory_peak_bytes",
        "gauge",
        "The most linear memory one of the dyno's instances has used, in bytes.",
    );
    each(
        &mut out,
        &|f| (f.instances > 0).then_some(f.memory_peak as f64),
        "renga_dyno_instance_memory_peak_bytes",
    );
    series(
        &mut out,
        "renga_dyno_outbound_requests_total",
        "counter",
        "HTTP requests the dyno's guests sent out.",
    );
    each(
        &mut out,
        &|f| (f.instances > 0).then_some(f.outbound as f64),
        "renga_dyno_outbound_requests_total",
    );
    series(
        &mut out,
        "renga_dyno_addon_calls_total",
        "counter",
        "Calls the dyno's guests made to add-ons (key-value, SQL, blobs).",
    );
    each(
        &mut out,
        &|f| (f.instances > 0).then_some(f.addon_calls as f64),
        "renga_dyno_addon_calls_total",
    );

    if let Some(host) = host {
        let gauges: [(&str, &str, f64); 5] = [
            (
                "renga_host_instances",
                "Instances alive on this host.",
                host.instances as f64,
            ),
            (
                "renga_host_instance_pool_size",
                "Instances this host's pool can hold.",
                host.max_instances as f64,
            ),
            (
                "renga_host_waiting_for_cpu",
                "Guests waiting for a turn on the CPU.",
                host.waiting_for_cpu as f64,
            ),
            (
                "renga_host_resident_memory_bytes",
                "The server's resident memory, in bytes.",
                host.rss_bytes as f64,
            ),
            (
                "renga_host_drains",
                "Log drains being delivered.",
                host.drains as f64,
            ),
        ];
        for (name, help, value) in gauges {
            series(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
}

/// A label value, escaped as the text format asks.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_class_and_bucket() {
        let metrics = Metrics::new(true);
        let app = metrics.app("a1");
        let web = app.dyno("web.1");
        web.request(200, Duration::from_micros(300));
        web.request(204, Duration::from_millis(3));
        web.request(503, Duration::from_secs(60));
        app.router().wake(Duration::from_millis(2));
        assert!(
            Arc::ptr_eq(&web, &app.dyno("web.1")),
            "one meter per dyno name"
        );
        let text = render(&[("hello".into(), app.snapshot())], None);
        assert!(
            text.contains(
                "renga_router_requests_total{app=\"hello\",dyno=\"web.1\",status=\"2xx\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "renga_router_requests_total{app=\"hello\",dyno=\"web.1\",status=\"5xx\"} 1"
        ));
        assert!(text.contains(
            "renga_router_service_seconds_bucket{app=\"hello\",dyno=\"web.1\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "renga_router_service_seconds_bucket{app=\"hello\",dyno=\"web.1\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "renga_router_service_seconds_bucket{app=\"hello\",dyno=\"web.1\",le=\"30\"} 2"
        ));
        assert!(text.contains(
            "renga_router_service_seconds_bucket{app=\"hello\",dyno=\"web.1\",le=\"+Inf\"} 3"
        ));
        assert!(
            text.contains("renga_router_service_seconds_count{app=\"hello\",dyno=\"web.1\"} 3")
        );
        assert!(text.contains("renga_app_wakes_total{app=\"hello\",dyno=\"router\"} 1"));
    }

    #[test]
    fn a_disabled_registry_counts_nothing() {
        let metrics = Metrics::new(false);
        let app = metrics.app("a1");
        let web = app.dyno("web.1");
        web.request(200, Duration::from_millis(1));
        assert_eq!(web.snapshot().requests, [0; 5]);
        assert!(app.snapshot().is_empty());
    }
}
