//! The one process-wide thread that watches growable pools for stalled workers, and the
//! fork generation that tells threads' owners their threads did not survive a `fork`.
//!
//! The monitor knows nothing of pools: it calls tickers, each a closure a pool gave it,
//! every [`TICK`] while any ticker wants to go on, and sleeps otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

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
    // The parent's monitor thread takes this lock on every tick; if it held it at the
    // fork, the child inherited it locked by a thread that does not exist here.
    let monitor = monitor();
    if monitor.tickers.is_locked() {
        // SAFETY: in a forked child only the forking thread exists, so the lock's holder
        // is gone and can neither use what it guards nor unlock it.
        unsafe { monitor.tickers.force_unlock() };
    }
    monitor.tickers.lock().clear(); // the parent's pools: their workers are gone too
}

struct Monitor {
    tickers: Mutex<Vec<Ticker>>,
    wake: Condvar,
    /// The fork generation the monitor thread was started in (threads do not survive
    /// fork); `u64::MAX` while none runs.
    thread_generation: AtomicU64,
}

fn monitor() -> &'static Monitor {
    static MONITOR: OnceLock<Monitor> = OnceLock::new();
    MONITOR.get_or_init(|| Monitor {
        tickers: Mutex::new(Vec::new()),
        wake: Condvar::new(),
        thread_generation: AtomicU64::new(u64::MAX),
    })
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
                self.wake.wait(&mut tickers);
            } else {
                drop(tickers);
                std::thread::sleep(TICK);
            }
        }
    }
}
