//! CPU fairness between apps.
//!
//! Guests run on the async worker threads and yield at every epoch tick (a
//! millisecond), to the back of the run queue, so a waiting request waits
//! at most a tick for a worker. A guest that has been computing for
//! [`HOT_AFTER`] ticks of one request (or one process run) is *hot*: before
//! each further slice it asks the [`CpuScheduler`] for one. The scheduler
//! hands out one slice per tick for every core but one, so hot guests never
//! take the last core from the requests that are not hot; when more slices
//! are asked for, the apps that wait take turns round-robin, each taking as
//! many slices in a row as its weight, and the rest of their guests wait off
//! the run queue. So a busy app cannot crowd a neighbour's requests out of
//! the workers, and two busy apps share the cores by weight. Ordinary
//! requests (a few milliseconds of computing at most, an interpreter's
//! start included) never meet the scheduler.
//!
//! Slices are leases, not locks: a guest that stops computing (it waits for
//! I/O, or ends) holds nothing, so no guest can hoard the cores by asking for
//! a slice and then sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Ticks of computing within one request (or process run) after which a
/// guest is hot.
pub const HOT_AFTER: u32 = 10;

/// Hands out CPU slices, fairly between apps.
pub struct CpuScheduler {
    per_tick: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Slices left in the current tick.
    available: u32,
    /// Apps with a guest waiting, in the order they take turns.
    ring: VecDeque<u64>,
    waiting: HashMap<u64, Waiting>,
}

struct Waiting {
    guests: VecDeque<oneshot::Sender<()>>,
    weight: u32,
    /// Slices this app has taken in a row in the current round.
    streak: u32,
}

/// One app's claim on the CPU: its identity in the round-robin and its
/// weight. Cloned into every instance the app runs.
#[derive(Debug)]
pub struct AppCpu {
    id: u64,
    weight: AtomicU32,
}

impl AppCpu {
    pub fn new(weight: u32) -> Arc<AppCpu> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(AppCpu {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            weight: AtomicU32::new(weight.max(1)),
        })
    }

    /// Slices the app may take in a row when others wait (its largest dyno
    /// size's CPU share).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
}

impl CpuScheduler {
    /// For `cores` cores: hot guests get all of them but one (all of the
    /// one there is).
    pub fn new(cores: u32) -> CpuScheduler {
        let per_tick = cores.saturating_sub(1).max(1);
        CpuScheduler {
            per_tick,
            state: Mutex::new(State {
                available: per_tick,
                ..State::default()
            }),
        }
    }

    /// A new tick: a fresh set of slices, first to the guests that wait.
    pub fn tick(&self) {
        let mut state = self.lock();
        state.available = self.per_tick;
        dispatch(&mut state);
    }

    /// A hot guest of `app` asks for its next slice: `None` when it may go on
    /// at once, else a receiver that resolves when its turn comes.
    pub fn slice(&self, app: &AppCpu) -> Option<oneshot::Receiver<()>> {
        let mut state = self.lock();
        if state.available > 0 && state.ring.is_empty() {
            state.available -= 1;
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let weight = app.weight();
        let entry = state.waiting.entry(app.id).or_insert_with(|| Waiting {
            guests: VecDeque::new(),
            weight,
            streak: 0,
        });
        entry.weight = weight;
        entry.guests.push_back(tx);
        if entry.guests.len() == 1 {
            state.ring.push_back(app.id);
        }
        dispatch(&mut state);
        Some(rx)
    }

    /// Guests waiting for a slice, across every app.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.values().map(|w| w.guests.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Gives the slices left to waiting guests, round-robin by app and weight.
fn dispatch(state: &mut State) {
    while state.available > 0 {
        let Some(&app) = state.ring.front() else {
            return;
        };
        let Some(entry) = state.waiting.get_mut(&app) else {
            state.ring.pop_front();
            continue;
        };
        let Some(guest) = entry.guests.pop_front() else {
            state.ring.pop_front();
            state.waiting.remove(&app);
            continue;
        };
        // A guest whose request ended while it waited has dropped its
        // receiver; the slice goes to the next one.
        if guest.send(()).is_ok() {
            state.available -= 1;
            entry.streak += 1;
        }
        if entry.guests.is_empty() {
            state.ring.pop_front();
            state.waiting.remove(&app);
        } else if entry.streak >= entry.weight {
            entry.streak = 0;
            state.ring.rotate_left(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(rx: &mut oneshot::Receiver<()>) -> bool {
        rx.try_recv().is_ok()
    }

    #[test]
    fn an_app_alone_uses_every_slice_without_waiting() {
        let scheduler = CpuScheduler::new(3);
        let app = AppCpu::new(1);
        assert!(scheduler.slice(&app).is_none());
        assert!(scheduler.slice(&app).is_none());
        let mut third = scheduler
            .slice(&app)
            .expect("the tick's slices are used up");
        assert!(!granted(&mut third));
        scheduler.tick();
        assert!(granted(&mut third));
    }

    #[test]
    fn waiting_apps_take_turns_by_weight() {
        let scheduler = CpuScheduler::new(2);
        let busy = AppCpu::new(1);
        let neighbour = AppCpu::new(1);
        let heavy = AppCpu::new(2);
        assert!(scheduler.slice(&busy).is_none());
        // The busy app queues many slices before the others ask for one.
        let mut busy_waits: Vec<_> = (0..6).map(|_| scheduler.slice(&busy).unwrap()).collect();
        let mut neighbour_wait = scheduler.slice(&neighbour).unwrap();
        let mut heavy_waits: Vec<_> = (0..4).map(|_| scheduler.slice(&heavy).unwrap()).collect();
        let mut order = Vec::new();
        for _ in 0..6 {
            scheduler.tick();
            if busy_waits.iter_mut().any(granted) {
                order.push("busy");
            }
            if granted(&mut neighbour_wait) {
                order.push("neighbour");
            }
            if heavy_waits.iter_mut().any(granted) {
                order.push("heavy");
            }
        }
        assert_eq!(
            order,
            ["busy", "neighbour", "heavy", "heavy", "busy", "heavy"]
        );
        assert_eq!(scheduler.waiting(), 5);
    }

    #[test]
    fn hot_guests_never_take_the_last_core() {
        assert_eq!(CpuScheduler::new(1).per_tick, 1);
        assert_eq!(CpuScheduler::new(2).per_tick, 1);
        assert_eq!(CpuScheduler::new(16).per_tick, 15);
    }

    #[test]
    fn a_guest_that_stopped_waiting_does_not_use_a_slice() {
        let scheduler = CpuScheduler::new(2);
        let app = AppCpu::new(1);
        assert!(scheduler.slice(&app).is_none());
        let gone = scheduler.slice(&app).unwrap();
        let mut next = scheduler.slice(&app).unwrap();
        drop(gone);
        scheduler.tick();
        assert!(granted(&mut next));
        assert_eq!(scheduler.waiting(), 0);
    }
}
