//! The worker pool: native threads that take ready runs in batches.
//!
//! A pool starts with no thread and starts one when work first arrives. It grows only
//! when work is queued, no worker is idle, and every worker has been inside one job for
//! longer than [`STALLED_AFTER`] (a blocked or slow task); then it quadruples. That check needs a clock, so
//! one process-wide monitor thread looks at every growable pool each millisecond while
//! any of them has queued work, and sleeps otherwise. Trivial tasks therefore run on a
//! single thread (no hand-off per task), while `sleep`-heavy fan-outs reach
//! `max_workers` within a few milliseconds. Idle workers exit after [`IDLE_EXIT`].
//!
//! Batches adapt: a worker sizes its next batch so that it lasts about [`BATCH_TIME`]
//! (between 1 and [`MAX_BATCH`] runs), and never takes more than its share of the queue.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::engine::{Batch, Shared};
use crate::Executor;

const STALLED_AFTER: Duration = Duration::from_millis(2);
const IDLE_EXIT: Duration = Duration::from_secs(2);
const BATCH_TIME: Duration = Duration::from_micros(200);
const MAX_BATCH: usize = 1024;
const MONITOR_TICK: Duration = Duration::from_millis(1);

/// Bumped in a forked child: threads do not survive `fork`, so every pool created
/// before it forgets its workers and starts afresh when next given work.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

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

thread_local! {
    /// The engine whose worker this thread is (0 for other threads).
    static WORKER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What the monitor reads of one worker. The worker only bumps a counter per job start
/// and end (odd while inside a job: no clock read); the monitor notes when it last saw
/// the counter change, and a worker whose counter stayed odd and unchanged for
/// [`STALLED_AFTER`] is stalled in one job.
pub(crate) struct WorkerStat {
    job_edges: AtomicU64,
    /// The monitor's own notes: the count it last saw, and since when.
    seen: Mutex<(u64, Instant)>,
}

impl WorkerStat {
    fn new() -> Self {
        WorkerStat {
            job_edges: AtomicU64::new(0),
            seen: Mutex::new((0, Instant::now())),
        }
    }

    /// Called when a job starts and when it ends.
    pub(crate) fn job_edge(&self) {
        self.job_edges.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the worker has been inside the same job for `STALLED_AFTER` (monitor only).
    fn is_stalled(&self, now: Instant) -> bool {
        let edges = self.job_edges.load(Ordering::Relaxed);
        let mut seen = self.seen.lock();
        if seen.0 != edges {
            *seen = (edges, now);
            return false;
        }
        edges % 2 == 1 && now.saturating_duration_since(seen.1) >= STALLED_AFTER
    }
}

pub(crate) struct Pool {
    max_workers: usize,
    live: AtomicUsize,
    idle: AtomicUsize,
    /// Workers inside a wait on another run (see `Shared::wait`).
    waiting: AtomicUsize,
    stats: Mutex<Vec<Arc<WorkerStat>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    generation: AtomicU64,
    watched: AtomicBool,
}

impl Pool {
    pub(crate) fn new(max_workers: usize) -> Self {
        Pool {
            max_workers,
            live: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            stats: Mutex::new(Vec::new()),
            handles: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            generation: AtomicU64::new(FORK_GENERATION.load(Ordering::Acquire)),
            watched: AtomicBool::new(false),
        }
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Whether the calling thread is one of this engine's workers.
    pub(crate) fn is_own_worker(engine_id: usize) -> bool {
        WORKER_OF.with(std::cell::Cell::get) == engine_id
    }

    /// No worker can make progress: all are waiting on other runs, and no more may start.
    pub(crate) fn is_stuck(&self) -> bool {
        let live = self.live();
        live >= self.max_workers && self.waiting.load(Ordering::Acquire) >= live
    }

    pub(crate) fn enter_wait(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn leave_wait(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// Forget threads inherited across a fork (they do not exist in this process).
    fn check_fork(&self) {
        let current = FORK_GENERATION.load(Ordering::Acquire);
        if self.generation.swap(current, Ordering::AcqRel) != current {
            self.live.store(0, Ordering::Release);
            self.idle.store(0, Ordering::Release);
            self.waiting.store(0, Ordering::Release);
            self.stats.lock().clear();
            std::mem::forget(std::mem::take(&mut *self.handles.lock()));
            self.watched.store(false, Ordering::Release);
        }
    }

    /// New runs are queued: wake an idle worker, or start the first one.
    pub(crate) fn on_work<E: Executor>(&self, shared: &Arc<Shared<E>>, added: usize) {
        self.check_fork();
        if self.stopping.load(Ordering::Acquire) {
            shared.work.notify_all();
            return;
        }
        let idle = self.idle.load(Ordering::Acquire);
        if idle > 0 {
            if added >= idle {
                shared.work.notify_all();
            } else {
                for _ in 0..added {
                    shared.work.notify_one();
                }
            }
        } else if self.live() == 0 && self.max_workers > 0 {
            self.spawn(shared);
        }
        if self.max_workers > 1 && !self.watched.load(Ordering::Acquire) {
            monitor().watch(shared);
        }
    }

    /// A retry timer was added: sleeping workers must shorten their wait to its due time.
    pub(crate) fn on_timer<E: Executor>(&self, shared: &Arc<Shared<E>>) {
        self.check_fork();
        shared.work.notify_all();
        if self.live() == 0 && self.max_workers > 0 && !self.stopping.load(Ordering::Acquire) {
            self.spawn(shared);
        }
    }

    fn spawn<E: Executor>(&self, shared: &Arc<Shared<E>>) {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_workers {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let stat = Arc::new(WorkerStat::new());
        self.stats.lock().push(Arc::clone(&stat));
        let worker_shared = Arc::clone(shared);
        let handle = std::thread::Builder::new()
            .name("ferroflow-worker".into())
            .spawn(move || worker_loop(&worker_shared, &stat))
            .expect("failed to start a ferroflow worker thread");
        self.handles.lock().push(handle);
    }

    /// Lets workers drain the queue, then joins them. The caller must not hold anything
    /// a worker needs to finish its batch (in the bindings: it must be detached).
    pub(crate) fn stop<E: Executor>(&self, shared: &Arc<Shared<E>>) {
        self.check_fork();
        self.stopping.store(true, Ordering::Release);
        shared.work.notify_all();
        let handles = std::mem::take(&mut *self.handles.lock());
        let me = std::thread::current().id();
        for handle in handles {
            // A worker that drops the last handle of its own engine cannot join itself.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }

    /// Called by the monitor: start workers if every live one is stalled in a job.
    /// Returns whether the pool still needs watching.
    fn grow_if_stalled<E: Executor>(&self, shared: &Arc<Shared<E>>) -> bool {
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        let queued = shared.queue.lock().len();
        if queued == 0 {
            return false;
        }
        let live = self.live();
        if live >= self.max_workers || self.idle.load(Ordering::Acquire) > 0 {
            return true;
        }
        let now = Instant::now();
        // Observe every worker on every tick (no short-circuit): a worker's stall is only
        // known after two observations, and skipping some would delay it by ticks.
        let stalled = self
            .stats
            .lock()
            .iter()
            .fold(true, |all, stat| stat.is_stalled(now) & all);
        if stalled {
            // Quadruple, so a pool of sleeping tasks reaches its bound in a few ticks
            // (1, 4, 16, 64, ...) while a burst of slow CPU-bound tasks does not jump
            // straight to `max_workers` threads.
            let wanted = queued.min(self.max_workers - live).min(3 * live.max(1));
            for _ in 0..wanted {
                self.spawn(shared);
            }
        }
        true
    }
}

fn worker_loop<E: Executor>(shared: &Arc<Shared<E>>, stat: &Arc<WorkerStat>) {
    /// Takes the worker out of the pool's counts when it exits, also by a panic. An idle
    /// exit leaves `live` itself, under the queue lock (see `take_work`).
    struct Leaving<'a>(&'a Pool, &'a Arc<WorkerStat>, bool);
    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            self.0.stats.lock().retain(|other| !Arc::ptr_eq(other, self.1));
            if !self.2 {
                self.0.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    let pool = &shared.pool;
    let mut leaving = Leaving(pool, stat, false);
    WORKER_OF.with(|cell| cell.set(shared.id()));
    let mut batch_size = 1;
    let mut candidates = Vec::with_capacity(MAX_BATCH);
    loop {
        match take_work(shared, batch_size, &mut candidates) {
            Take::Work => {}
            Take::Stop => return,
            Take::IdleExit => {
                leaving.2 = true;
                return;
            }
        }
        let started = Instant::now();
        let mut batch = Batch::queued(shared, std::mem::take(&mut candidates), stat, batch_size);
        // A panic in the executor ends its run Crashed (when `batch` drops) and must not
        // take the worker with it: runs queued behind it would have no thread to run them.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.executor().run_batch(&mut batch)));
        let taken = batch.handed();
        drop(batch);
        candidates = Vec::with_capacity(MAX_BATCH);
        let per_run = started.elapsed() / u32::try_from(taken.max(1)).unwrap_or(u32::MAX);
        batch_size = if per_run.is_zero() {
            MAX_BATCH
        } else {
            usize::try_from(BATCH_TIME.as_nanos() / per_run.as_nanos().max(1))
                .unwrap_or(MAX_BATCH)
                .clamp(1, MAX_BATCH)
        };
    }
}

enum Take {
    Work,
    Stop,
    /// Idle too long: the worker has already left `live`.
    IdleExit,
}

/// Blocks until there is work (filling `out`) or the worker should exit.
fn take_work<E: Executor>(shared: &Arc<Shared<E>>, batch_size: usize, out: &mut Vec<u32>) -> Take {
    let pool = &shared.pool;
    let mut idle_since = None;
    loop {
        let now = Instant::now();
        if shared.next_timer().is_some_and(|due| due <= now) {
            shared.fire_due_timers();
        }
        let mut queue = shared.queue.lock();
        if queue.len() > 0 {
            let share = queue.len().div_ceil(pool.live().max(1));
            queue.pop_into(batch_size.min(share).max(1), out);
            return Take::Work;
        }
        if pool.stopping.load(Ordering::Acquire) {
            return Take::Stop;
        }
        let idle_start = *idle_since.get_or_insert(now);
        if now.duration_since(idle_start) >= IDLE_EXIT && queue.next_timer().is_none() {
            // Leave `live` before the queue lock is released: work queued after this
            // sees one worker fewer and starts a new one, instead of counting on us.
            pool.live.fetch_sub(1, Ordering::AcqRel);
            return Take::IdleExit;
        }
        let wake_at = queue
            .next_timer()
            .map_or(idle_start + IDLE_EXIT, |due| due.min(idle_start + IDLE_EXIT));
        pool.idle.fetch_add(1, Ordering::AcqRel);
        shared.work.wait_until(&mut queue, wake_at);
        pool.idle.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Checks one watched pool; `None` once its engine is gone, else whether to keep watching.
type Ticker = Box<dyn Fn() -> Option<bool> + Send>;

/// The one thread that watches growable pools for stalls.
struct Monitor {
    tickers: Mutex<Vec<Ticker>>,
    wake: Condvar,
    /// The fork generation the monitor thread was started in (threads do not survive fork).
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

impl Monitor {
    fn watch<E: Executor>(&self, shared: &Arc<Shared<E>>) {
        let mut tickers = self.tickers.lock();
        if !shared.pool.watched.swap(true, Ordering::AcqRel) {
            let engine: Weak<Shared<E>> = Arc::downgrade(shared);
            tickers.push(Box::new(move || {
                let shared = engine.upgrade()?;
                let keep = shared.pool.grow_if_stalled(&shared);
                if !keep {
                    shared.pool.watched.store(false, Ordering::Release);
                }
                Some(keep)
            }));
        }
        let current = FORK_GENERATION.load(Ordering::Acquire);
        if self.thread_generation.swap(current, Ordering::AcqRel) != current {
            std::thread::Builder::new()
                .name("ferroflow-monitor".into())
                .spawn(|| monitor().run())
                .expect("failed to start the ferroflow monitor thread");
        }
        drop(tickers);
        self.wake.notify_one();
    }

    fn run(&self) {
        loop {
            let mut tickers = self.tickers.lock();
            tickers.retain(|tick| tick() == Some(true));
            if tickers.is_empty() {
                self.wake.wait(&mut tickers);
            } else {
                drop(tickers);
                std::thread::sleep(MONITOR_TICK);
            }
        }
    }
}
