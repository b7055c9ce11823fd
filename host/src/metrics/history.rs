//! The last hour of an app, for the dashboard's graphs: every [`EVERY`],
//! the requests its dynos answered since the last sample (by status class
//! and service-time bucket) and the most memory its instances held at once.
//!
//! Only periods in which something happened are kept, so an idle app's
//! history costs nothing; a busy app's costs at most 360 samples of about
//! 90 bytes.

use std::collections::VecDeque;
use std::time::Duration;

use super::SERVICE_BUCKETS;

/// How often every app's history is sampled.
pub const EVERY: Duration = Duration::from_secs(10);

/// How far back the history goes.
pub const KEPT: Duration = Duration::from_secs(3600);

/// What an app did in one period.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// The end of the period, in Unix seconds.
    pub at: u64,
    /// Requests by status class, 1xx to 5xx.
    pub requests: [u32; 5],
    /// Requests by service-time bucket ([`SERVICE_BUCKETS`], then +Inf).
    pub service: [u32; SERVICE_BUCKETS.len() + 1],
    /// The most linear memory the app's instances held at once, in bytes.
    pub memory: u64,
}

impl Sample {
    pub fn total(&self) -> u64 {
        self.requests.iter().map(|&n| u64::from(n)).sum()
    }

    /// The service time below which a fraction `q` of the period's requests
    /// fell, in seconds, interpolated within its bucket (as Prometheus's
    /// `histogram_quantile` does); `None` without requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count: u64 = self.service.iter().map(|&n| u64::from(n)).sum();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.service.iter().enumerate() {
            let n = u64::from(n);
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { SERVICE_BUCKETS[i - 1] };
                // Past the last bound, the last bound is all that is known.
                let Some(&upper) = SERVICE_BUCKETS.get(i) else {
                    return Some(lower);
                };
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        SERVICE_BUCKETS.last().copied()
    }
}

/// One app's samples, and the totals the next one is measured from.
#[derive(Default)]
pub(super) struct History {
    requests: [u64; 5],
    service: [u64; SERVICE_BUCKETS.len() + 1],
    samples: VecDeque<Sample>,
}

impl History {
    /// Records the period that ends `at`, given the app's totals now.
    pub(super) fn record(
        &mut self,
        at: u64,
        requests: [u64; 5],
        service: [u64; SERVICE_BUCKETS.len() + 1],
        memory: u64,
    ) {
        let delta =
            |now: u64, before: u64| u32::try_from(now.saturating_sub(before)).unwrap_or(u32::MAX);
        let sample = Sample {
            at,
            requests: std::array::from_fn(|i| delta(requests[i], self.requests[i])),
            service: std::array::from_fn(|i| delta(service[i], self.service[i])),
            memory,
        };
        self.requests = requests;
        self.service = service;
        while self
            .samples
            .front()
            .is_some_and(|s| s.at + KEPT.as_secs() <= at)
        {
            self.samples.pop_front();
        }
        if sample.total() > 0 || sample.memory > 0 {
            self.samples.push_back(sample);
        }
    }

    /// The samples that end after `from`, oldest first.
    pub(super) fn since(&self, from: u64) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|s| s.at > from)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_SERVICE: [u64; SERVICE_BUCKETS.len() + 1] = [0; SERVICE_BUCKETS.len() + 1];

    #[test]
    fn a_sample_holds_the_periods_difference_and_idle_periods_are_not_kept() {
        let mut history = History::default();
        let mut service = NO_SERVICE;
        service[1] = 10; // up to 1 ms
        history.record(100, [0, 10, 0, 0, 0], service, 0);
        history.record(110, [0, 10, 0, 0, 0], service, 0);
        service[4] = 5; // 5 to 10 ms
        history.record(120, [0, 12, 0, 0, 3], service, 1 << 20);
        let samples = history.since(0);
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].requests, [0, 10, 0, 0, 0]);
        assert_eq!(samples[1].at, 120);
        assert_eq!(samples[1].requests, [0, 2, 0, 0, 3]);
        assert_eq!(samples[1].service[4], 5);
        assert_eq!(samples[1].service[1], 0);
        assert_eq!(samples[1].memory, 1 << 20);
        assert_eq!(history.since(110).len(), 1);
    }

    #[test]
    fn samples_older_than_an_hour_are_dropped() {
        let mut history = History::default();
        let mut requests = [0u64; 5];
        for minute in 0..120u64 {
            requests[1] += 1;
            history.record(minute * 60, requests, NO_SERVICE, 0);
        }
        let samples = history.since(0);
        assert_eq!(samples.len(), 60);
        assert_eq!(samples[0].at, 60 * 60);
    }

    #[test]
    fn quantiles_are_interpolated_within_their_bucket() {
        let mut sample = Sample::default();
        assert_eq!(sample.quantile(0.5), None);
        // 100 requests between 1 and 2.5 ms.
        sample.service[2] = 100;
        let p50 = sample.quantile(0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        // One slow request past the last bound.
        sample.service[SERVICE_BUCKETS.len()] = 1;
        assert_eq!(sample.quantile(1.0), Some(30.0));
        let p99 = sample.quantile(0.99).unwrap();
        assert!(p99 <= 0.0025, "{p99}");
    }
}
