//! The worker pool: native threads that take ready runs in batches, and the ready queue
//! they take them from (with its condvar, on which idle workers sleep).
//!
//! A pool starts with no thread and starts one when work first arrives. It grows only
//! when work is queued, no worker is idle, and every worker has been inside one job for
//! longer than [`STALLED_AFTER`] (a blocked or slow task); then it quadruples. That check
//! needs a clock, so the process-wide monitor (`monitor.rs`) looks at every growable
//! pool each millisecond while any of them has queued work, and sleeps otherwise.
//! Trivial tasks therefore run on a single thread (no hand-off per task), while
//! `sleep`-heavy fan-outs reach `max_workers` within a few milliseconds. Idle workers
//! exit after [`IDLE_EXIT`].
//!
//! Batches adapt: a worker sizes its next batch so that it lasts about [`BATCH_TIME`]
//! (between 1 and [`MAX_BATCH`] runs), and never takes more than its share of the queue.
//!
//! `max_workers` bounds what runs at once, counting runs a batch *deferred* (coroutines
//! that go on running on an event loop until the engine hears of their end): jobs
//! executing in workers' batches plus deferred runs in flight stay within
//! `max(1, max_workers)`. A worker at that bound takes nothing from the queue and
//! sleeps until a deferred run ends.
//!
//! The pool knows runs only by their index. What to do with them it asks its [`Host`]
//! (the engine), a trait defined here: the engine depends on the pool, never the reverse.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};

use super::monitor::{self, Ticker};
use super::queue::ReadyQueue;
use crate::run::RunId;

const STALLED_AFTER: Duration = Duration::from_millis(2);
const IDLE_EXIT: Duration = Duration::from_secs(2);
const BATCH_TIME: Duration = Duration::from_micros(200);
const MAX_BATCH: usize = 1024;
/// Runs the thread that drains a stopped pool (with no workers) takes at a time.
const DRAIN_BATCH: usize = 256;

/// What a pool needs from the engine whose runs it executes.
pub(crate) trait Host: Send + Sync + Sized + 'static {
    fn pool(&self) -> &Pool;

    /// Executes `candidates` (runs just popped from the queue, claimed one by one as the
    /// batch reaches them, and handed back to the queue if it stops early) as one batch
    /// on the calling thread. `worker` is the worker's stat and batch size, or `None` for
    /// the thread that drains a stopped pool. Returns how many jobs it handed out.
    fn run_queued(self: &Arc<Self>, candidates: Vec<RunId>, worker: Option<(&WorkerStat, usize)>) -> usize;

    /// Moves runs whose retry delay has passed back to the queue.
    fn fire_due_timers(self: &Arc<Self>);

    /// Wakes the threads that wait on the engine's runs (they may now take queued work).
    fn wake_waiters(&self);
}

/// The part of a [`Host`] a worker's thread-local needs, as a trait object.
trait Seat: Send + Sync {
    fn pool(&self) -> &Pool;
    fn wake_waiters(&self);
}

impl<H: Host> Seat for H {
    fn pool(&self) -> &Pool {
        Host::pool(self)
    }
    fn wake_waiters(&self) {
        Host::wake_waiters(self);
    }
}

/// A worker thread's own pool, and how many waits it is nested in.
struct OwnPool {
    seat: Arc<dyn Seat>,
    waits: usize,
}

thread_local! {
    /// The pool whose worker this thread is (`None` for every other thread). Set for the
    /// whole of the worker's loop, so a wait anywhere under it (in any engine: a task
    /// that runs a subflow waits in the subflow's engine) counts for this pool.
    static OWN_POOL: RefCell<Option<OwnPool>> = const { RefCell::new(None) };
}

/// Counts the calling worker as waiting in its own pool until dropped (see [`waiting`]).
/// Not `Send`: it must be dropped on the thread that made it.
pub(crate) struct WaitingGuard(PhantomData<*const ()>);

/// If the calling thread is a worker, counts it as waiting in its own pool for as long
/// as the guard lives, whichever engine it waits in: a worker that waits cannot make
/// progress for its pool, so when all of them wait, the pool is stuck
/// ([`Pool::is_stuck`]) and waiters run its queued work instead. Nested waits count
/// once. A wait that makes the pool stuck wakes the engine's waiters, since one of them
/// (in another engine's run, say) may be the only thread left to run that work.
///
/// Every waiter calls this before it checks what it waits for, so two workers waiting at
/// once cannot both conclude that the other will make progress.
pub(crate) fn waiting() -> Option<WaitingGuard> {
    // (`try_with`: a wait from a thread-local's destructor is no worker's.)
    OWN_POOL
        .try_with(|own| {
            let mut own = own.borrow_mut();
            let own = own.as_mut()?;
            own.waits += 1;
            if own.waits == 1 {
                let pool = own.seat.pool();
                pool.waiting.fetch_add(1, Ordering::AcqRel);
                if pool.is_stuck() && pool.queued() > 0 {
                    own.seat.wake_waiters();
                }
            }
            Some(WaitingGuard(PhantomData))
        })
        .ok()
        .flatten()
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        let _ = OWN_POOL.try_with(|own| {
            if let Some(own) = own.borrow_mut().as_mut() {
                own.waits -= 1;
                if own.waits == 0 {
                    own.seat.pool().waiting.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
    }
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

    /// Called when a job starts and when it ends, by the worker only. A single writer
    /// needs no read-modify-write: a load and a store, not a locked add on every edge of
    /// every run (the monitor only reads the count).
    pub(crate) fn job_edge(&self) {
        let edges = self.job_edges.load(Ordering::Relaxed);
        self.job_edges.store(edges.wrapping_add(1), Ordering::Relaxed);
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
    queue: Mutex<ReadyQueue>,
    /// Idle and throttled workers sleep on it, under the queue lock.
    work: Condvar,
    live: AtomicUsize,
    idle: AtomicUsize,
    /// Workers inside a wait, in any engine (see [`waiting`]).
    waiting: AtomicUsize,
    /// Workers inside a batch (taken under the queue lock, left after the batch).
    in_batch: AtomicUsize,
    /// Runs deferred out of workers' batches and not yet ended (nor suspended).
    deferred: AtomicUsize,
    /// Workers asleep at the bound, waiting for a deferred run to end.
    throttled: AtomicUsize,
    /// The last attempt to start a worker failed and none is alive: waiters must run the
    /// queue themselves (see [`Pool::is_stuck`]).
    starved: AtomicBool,
    /// Worker starts still to fail on purpose (tests of the failure path).
    failing_spawns: AtomicUsize,
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
            queue: Mutex::new(ReadyQueue::default()),
            work: Condvar::new(),
            live: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            in_batch: AtomicUsize::new(0),
            deferred: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            failing_spawns: AtomicUsize::new(0),
            stats: Mutex::new(Vec::new()),
            handles: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            generation: AtomicU64::new(monitor::fork_generation()),
            watched: AtomicBool::new(false),
        }
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Runs executing now, as the bound counts them: workers inside a batch (each runs
    /// one job at a time) plus deferred runs in flight. Two loads of counters the pool
    /// keeps anyway (per batch and per deferred run, never per job); runs a waiting
    /// thread executes itself are not counted. For a progress line, not for decisions.
    pub(crate) fn running(&self) -> usize {
        self.in_batch.load(Ordering::Relaxed) + self.deferred.load(Ordering::Relaxed)
    }

    /// Runs queued (some may already have been taken by a waiter: see `queue.rs`).
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    /// No worker can make progress: all are waiting on other runs and no more may
    /// start; or there is none and none can start (`max_workers` is 0, or starting one
    /// failed). Waiters then run queued work themselves.
    pub(crate) fn is_stuck(&self) -> bool {
        let live = self.live();
        if live == 0 {
            return self.max_workers == 0 || self.starved.load(Ordering::Acquire);
        }
        live >= self.max_workers && self.waiting.load(Ordering::Acquire) >= live
    }

    /// Appends ready runs and lets a worker know. Returns how many were added.
    pub(crate) fn push<H: Host>(&self, host: &Arc<H>, runs: impl IntoIterator<Item = RunId>) -> usize {
        let mut queue = self.queue.lock();
        let before = queue.len();
        queue.push_runs(runs);
        let added = queue.len() - before;
        drop(queue);
        if added > 0 {
            self.on_work(host, added);
        }
        added
    }

    /// Puts runs a batch did not start back at the head of the queue, in order.
    pub(crate) fn push_front<H: Host>(&self, host: &Arc<H>, runs: &[RunId]) {
        if runs.is_empty() {
            return;
        }
        self.queue.lock().push_front_runs(runs);
        self.on_work(host, runs.len());
    }

    /// Moves up to `max` runs from the head of the queue into `out` (a waiter helping).
    pub(crate) fn pop(&self, max: usize, out: &mut Vec<RunId>) {
        self.queue.lock().pop_into(max, out);
    }

    /// Moves up to `max` runs, and no more than a worker's share of the queue, into
    /// `out` (a worker's batch refilling).
    pub(crate) fn pop_share(&self, max: usize, out: &mut Vec<RunId>) {
        let mut queue = self.queue.lock();
        let share = queue.len().div_ceil(self.live().max(1));
        queue.pop_into(max.min(share), out);
    }

    /// Parks `run` until `due` (a retry delay); sleeping workers shorten their wait to it.
    pub(crate) fn add_timer<H: Host>(&self, host: &Arc<H>, due: Instant, run: RunId) {
        self.queue.lock().add_timer(due, run);
        self.on_timer(host);
    }

    /// Removes and returns the runs whose retry delay has passed.
    pub(crate) fn take_due_timers(&self, now: Instant) -> Vec<RunId> {
        self.queue.lock().take_due_timers(now)
    }

    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.queue.lock().next_timer()
    }

    /// The most runs taken from the queue that may be in flight at once.
    fn bound(&self) -> usize {
        self.max_workers.max(1)
    }

    /// Whether a worker inside a batch must stop handing out jobs: deferred runs in flight
    /// plus workers inside batches (this one included) exceed the bound. (Without
    /// deferred runs they never do: there are at most `max_workers` workers.) Stopping
    /// lifts the bound: what is left in the queue then is cancelled runs to end.
    pub(crate) fn is_over_bound(&self) -> bool {
        let deferred = self.deferred.load(Ordering::SeqCst);
        deferred != 0
            && deferred + self.in_batch.load(Ordering::SeqCst) > self.bound()
            && !self.stopping.load(Ordering::Acquire)
    }

    /// Whether a worker outside a batch must not start one (it would be over the bound).
    fn is_at_bound(&self) -> bool {
        self.deferred.load(Ordering::SeqCst) + self.in_batch.load(Ordering::SeqCst) >= self.bound()
    }

    /// A worker's batch deferred a run: it counts against the bound until it ends.
    pub(crate) fn deferred_started(&self) {
        self.deferred.fetch_add(1, Ordering::SeqCst);
    }

    /// A counted deferred run ended (or stopped counting while it waits): wakes workers
    /// asleep at the bound.
    pub(crate) fn deferred_ended(&self) {
        self.deferred.fetch_sub(1, Ordering::SeqCst);
        // A throttled worker counts itself (SeqCst) before it reads `deferred` (SeqCst),
        // under the queue lock: either it reads the decrement above, or this read sees it
        // counted, and the notify, under the same lock, reaches it once it sleeps.
        if self.throttled.load(Ordering::SeqCst) > 0 {
            let _queue = self.queue.lock();
            self.work.notify_all();
        }
    }

    /// The next `count` worker starts fail as if the OS refused a thread.
    pub(crate) fn fail_spawns(&self, count: usize) {
        self.failing_spawns.store(count, Ordering::Release);
    }

    /// Forget threads inherited across a fork (they do not exist in this process).
    fn check_fork(&self) {
        let current = monitor::fork_generation();
        if self.generation.swap(current, Ordering::AcqRel) != current {
            self.live.store(0, Ordering::Release);
            self.idle.store(0, Ordering::Release);
            self.waiting.store(0, Ordering::Release);
            self.in_batch.store(0, Ordering::Release);
            self.throttled.store(0, Ordering::Release);
            // The parent's deferred runs went on on its event loops, which are gone too.
            self.deferred.store(0, Ordering::Release);
            self.stats.lock().clear();
            std::mem::forget(std::mem::take(&mut *self.handles.lock()));
            self.watched.store(false, Ordering::Release);
        }
    }

    /// New runs are queued: wake an idle worker, or start the first one.
    fn on_work<H: Host>(&self, host: &Arc<H>, added: usize) {
        self.check_fork();
        if self.stopping.load(Ordering::Acquire) {
            let _queue = self.queue.lock();
            self.work.notify_all();
            return;
        }
        let idle = self.idle.load(Ordering::Acquire);
        if idle > 0 {
            if added >= idle {
                self.work.notify_all();
            } else {
                for _ in 0..added {
                    self.work.notify_one();
                }
            }
        } else if self.live() == 0 && self.max_workers > 0 {
            self.spawn(host);
        }
        if self.max_workers > 1 && (!self.watched.load(Ordering::Acquire) || !monitor::is_running()) {
            self.watch(host);
        }
    }

    /// A retry timer was added: sleeping workers must shorten their wait to its due time.
    fn on_timer<H: Host>(&self, host: &Arc<H>) {
        self.check_fork();
        self.work.notify_all();
        if self.live() == 0 && self.max_workers > 0 && !self.stopping.load(Ordering::Acquire) {
            self.spawn(host);
        }
    }

    fn watch<H: Host>(&self, host: &Arc<H>) {
        let engine: Weak<H> = Arc::downgrade(host);
        monitor::watch(|| {
            if self.watched.swap(true, Ordering::AcqRel) {
                return None;
            }
            let ticker: Ticker = Box::new(move || {
                let host = engine.upgrade()?;
                let pool = host.pool();
                let keep = pool.grow_if_stalled(&host);
                if !keep {
                    pool.watched.store(false, Ordering::Release);
                }
                Some(keep)
            });
            Some(ticker)
        });
    }

    /// Starts a worker if the pool is below `max_workers`. A failed start leaves no
    /// trace in the counts (the pool can grow again later) and panics nowhere; if it
    /// leaves the pool with no worker at all, the pool is stuck, so waiters run its work.
    fn spawn<H: Host>(&self, host: &Arc<H>) -> bool {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_workers {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let stat = Arc::new(WorkerStat::new());
        self.stats.lock().push(Arc::clone(&stat));
        let injected = self
            .failing_spawns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(1))
            .is_ok();
        let started = if injected {
            Err(std::io::Error::other("worker start refused on purpose"))
        } else {
            let worker_host = Arc::clone(host);
            let worker_stat = Arc::clone(&stat);
            std::thread::Builder::new()
                .name("ferroflow-worker".into())
                .spawn(move || worker_loop(&worker_host, &worker_stat))
        };
        if let Ok(handle) = started {
            self.starved.store(false, Ordering::Release);
            self.handles.lock().push(handle);
            true
        } else {
            self.stats.lock().retain(|other| !Arc::ptr_eq(other, &stat));
            if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.starved.store(true, Ordering::Release);
                // Waiters that looked while the start was under way saw a worker coming
                // (the pool not stuck) and sleep: they are the ones to run the work now.
                host.wake_waiters();
            }
            false
        }
    }

    /// Lets workers drain the queue and joins them; with no worker (a sequential engine,
    /// or one that could not start any), drains it on the calling thread. The caller must
    /// not hold anything a worker needs to finish its batch (in the bindings: it must be
    /// detached).
    pub(crate) fn stop<H: Host>(&self, host: &Arc<H>) {
        self.check_fork();
        self.stopping.store(true, Ordering::Release);
        {
            // Under the queue lock: a worker checks `stopping` under it before it sleeps.
            let _queue = self.queue.lock();
            self.work.notify_all();
        }
        let handles = std::mem::take(&mut *self.handles.lock());
        let me = std::thread::current().id();
        for handle in handles {
            // A worker that drops the last handle of its own engine cannot join itself.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
        let mut candidates = Vec::new();
        loop {
            candidates.clear();
            self.pop(DRAIN_BATCH, &mut candidates);
            if candidates.is_empty() {
                break;
            }
            let before = self.queued() + candidates.len();
            host.run_queued(std::mem::take(&mut candidates), None);
            if self.queued() >= before {
                break; // the executor gave everything back: do not spin on it
            }
        }
    }

    /// Called by the monitor: start workers if every live one is stalled in a job.
    /// Returns whether the pool still needs watching.
    fn grow_if_stalled<H: Host>(&self, host: &Arc<H>) -> bool {
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        let queued = self.queued();
        if queued == 0 {
            return false;
        }
        let live = self.live();
        // Deferred runs hold part of the bound: workers past the rest would only sleep.
        let room = self.bound().saturating_sub(self.deferred.load(Ordering::Acquire));
        if live >= self.max_workers.min(room) || self.idle.load(Ordering::Acquire) > 0 {
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
            let wanted = queued.min(self.max_workers.min(room) - live).min(3 * live.max(1));
            for _ in 0..wanted {
                if !self.spawn(host) {
                    break;
                }
            }
        }
        true
    }
}

fn worker_loop<H: Host>(host: &Arc<H>, stat: &Arc<WorkerStat>) {
    /// Takes the worker out of the pool's counts when it exits, also by a panic. An idle
    /// exit leaves `live` itself, under the queue lock (see `take_work`).
    struct Leaving<'a> {
        pool: &'a Pool,
        stat: &'a Arc<WorkerStat>,
        left_live: bool,
    }
    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            OWN_POOL.with(|own| own.borrow_mut().take());
            self.pool.stats.lock().retain(|other| !Arc::ptr_eq(other, self.stat));
            if !self.left_live {
                self.pool.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    let pool = host.pool();
    let mut leaving = Leaving {
        pool,
        stat,
        left_live: false,
    };
    let home: Arc<dyn Seat> = Arc::clone(host) as Arc<dyn Seat>;
    OWN_POOL.with(|own| *own.borrow_mut() = Some(OwnPool { seat: home, waits: 0 }));
    let mut batch_size = 1;
    let mut candidates = Vec::with_capacity(MAX_BATCH);
    loop {
        match take_work(host, batch_size, &mut candidates) {
            Take::Work => {}
            Take::Stop => return,
            Take::IdleExit => {
                leaving.left_live = true;
                return;
            }
        }
        let started = Instant::now();
        let batch = std::mem::replace(&mut candidates, Vec::with_capacity(MAX_BATCH));
        // A panic in the executor ends its run Crashed (when the engine's batch drops) and
        // must not take the worker with it: runs queued behind it would have no thread.
        let handed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            host.run_queued(batch, Some((stat, batch_size)))
        }))
        .unwrap_or(1);
        pool.in_batch.fetch_sub(1, Ordering::SeqCst);
        let per_run = started.elapsed() / u32::try_from(handed.max(1)).unwrap_or(u32::MAX);
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

/// Blocks until there is work the bound lets this worker take (filling `out`, and
/// counting the worker into `in_batch`) or the worker should exit.
fn take_work<H: Host>(host: &Arc<H>, batch_size: usize, out: &mut Vec<RunId>) -> Take {
    let pool = host.pool();
    let mut idle_since = None;
    loop {
        let now = Instant::now();
        if pool.next_timer().is_some_and(|due| due <= now) {
            host.fire_due_timers();
        }
        let mut queue = pool.queue.lock();
        let stopping = pool.stopping.load(Ordering::Acquire);
        if queue.len() > 0 {
            if !stopping && pool.deferred.load(Ordering::SeqCst) > 0 {
                // Counted before the check: see `deferred_ended`.
                pool.throttled.fetch_add(1, Ordering::SeqCst);
                let at_bound = pool.is_at_bound();
                if at_bound {
                    queue = match queue.next_timer() {
                        Some(due) => pool.work.wait_until(queue, due),
                        None => pool.work.wait(queue),
                    };
                }
                pool.throttled.fetch_sub(1, Ordering::SeqCst);
                if at_bound {
                    idle_since = None;
                    continue;
                }
            }
            let share = queue.len().div_ceil(pool.live().max(1));
            queue.pop_into(batch_size.min(share).max(1), out);
            pool.in_batch.fetch_add(1, Ordering::SeqCst);
            return Take::Work;
        }
        if stopping {
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
        drop(pool.work.wait_until(queue, wake_at));
        pool.idle.fetch_sub(1, Ordering::AcqRel);
    }
}
