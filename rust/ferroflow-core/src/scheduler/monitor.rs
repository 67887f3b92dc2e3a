//! The one process-wide thread that watches growable pools for stalled workers, and the
//! fork generation that tells threads' owners their threads did not survive a `fork`.
//!
//! The monitor knows nothing of pools: it calls tickers, each a closure a pool gave it,
//! every [`TICK`] while any ticker wants to go on, and sleeps otherwise.

use std::sync::atomic::AtomicPtr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::{Condvar, Mutex};

const TICK: Duration = Duration::from_millis(1);

/// Checks one watched pool; `None` once its engine is gone, else whether to keep watching.
pub(crate) type Ticker = Box<dyn Fn() -> Option<bool> + Send>;

/// Bumped in a forked child: threads do not survive `fork`, so every pool created
/// before it forgets its workers and starts afresh when next given work.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Acquire)
}

/// Call in the child process after `fork()`.
pub fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
    // The parent's monitor may have held its lock at the fork (its thread takes it on
    // every tick), and its tickers are the parent's pools, whose workers are gone: the
    // child gets a monitor of its own and never touches the parent's (left as it is).
    MONITOR.store(Box::into_raw(Box::new(Monitor::new())), Ordering::Release);
}

struct Monitor {
    tickers: Mutex<Vec<Ticker>>,
    wake: Condvar,
    /// The fork generation the monitor thread was started in (threads do not survive
    /// fork); `u64::MAX` while none runs.
    thread_generation: AtomicU64,
}

/// The process's monitor: made on first use, replaced (never freed) in a forked child.
static MONITOR: AtomicPtr<Monitor> = AtomicPtr::new(std::ptr::null_mut());

impl Monitor {
    fn new() -> Self {
        Monitor {
            tickers: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            thread_generation: AtomicU64::new(u64::MAX),
        }
    }
}

fn monitor() -> &'static Monitor {
    let mut current = MONITOR.load(Ordering::Acquire);
    if current.is_null() {
        let fresh = Box::into_raw(Box::new(Monitor::new()));
        current = match MONITOR.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(installed) => {
                // SAFETY: `fresh` was never shared: another thread installed its monitor first.
                drop(unsafe { Box::from_raw(fresh) });
                installed
            }
        };
    }
    // SAFETY: a monitor is never freed once installed (a forked child leaves the
    // parent's in place and installs its own), so the reference is valid for 'static.
    unsafe { &*current }
}

/// Adds the ticker `make` returns, if any. `make` runs under the monitor's lock, which
/// the monitor also holds while it calls tickers, so a pool's "am I watched" flag, set in
/// `make` and cleared by its ticker, always agrees with the list.
///
/// If the monitor thread cannot be started, the ticker stays listed and the next call
/// tries again (see [`is_running`]): meanwhile pools grow only through their first
/// worker, and nothing fails.
pub(crate) fn watch(make: impl FnOnce() -> Option<Ticker>) {
    let this = monitor();
    let mut tickers = this.tickers.lock();
    if let Some(ticker) = make() {
        tickers.push(ticker);
    }
    let current = fork_generation();
    if this.thread_generation.swap(current, Ordering::AcqRel) != current {
        let started = std::thread::Builder::new()
            .name("ferroflow-monitor".into())
            .spawn(|| monitor().run());
        if started.is_err() {
            this.thread_generation.store(u64::MAX, Ordering::Release);
        }
    }
    drop(tickers);
    this.wake.notify_one();
}

/// Whether the monitor thread runs (in this process: not one lost to a fork or a failed start).
pub(crate) fn is_running() -> bool {
    monitor().thread_generation.load(Ordering::Acquire) == fork_generation()
}

impl Monitor {
    fn run(&self) {
        loop {
            let mut tickers = self.tickers.lock();
            tickers.retain(|tick| tick() == Some(true));
            if tickers.is_empty() {
                drop(self.wake.wait(tickers));
            } else {
                drop(tickers);
                std::thread::sleep(TICK);
            }
        }
    }
}
