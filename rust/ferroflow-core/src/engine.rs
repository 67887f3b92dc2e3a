//! The engine: registers runs and their dependencies, hands ready runs to threads,
//! records outcomes, releases dependents, and lets any thread wait.
//!
//! Locks, always taken in this order and never while calling the executor:
//! `graph` (dependency edges, blocked runs, dooms, callbacks) → `queue` (ready runs,
//! retry timers) → `done` (the generation that waiters sleep on). A run's payload has
//! its own lock in its slot; taking the payload out of the slot is what claims a run.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use smallvec::SmallVec;

use crate::arena::Arena;
use crate::pool::Pool;
use crate::queue::ReadyQueue;
use crate::state::{Final, RunState};
use crate::{Executor, RunId};

/// Runs registered under one take of the graph lock, so a huge `.map` never holds it long.
const REGISTER_PIECE: usize = 4096;
/// Most runs a waiting thread takes at once when it helps run what it waits for.
const HELP_BATCH: usize = 256;

/// An upstream run that a new run waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dep {
    pub run: RunId,
    /// Start even if the upstream does not complete (Prefect's `allow_failure`).
    pub allow_failure: bool,
}

/// What the thread that took a run must do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Execute it.
    Run,
    /// Do not execute it: `upstream` did not complete. End it [`Final::NotReady`].
    NotReady { upstream: RunId },
    /// Do not execute it: it was cancelled before it started. End it [`Final::Cancelled`].
    Cancel,
}

/// A run taken by a thread: the payload is now that thread's to execute or discard.
pub struct Job<P> {
    pub run: RunId,
    /// 0 for the first attempt, then 1, 2, ... for retries.
    pub attempt: u32,
    pub payload: P,
    pub disposition: Disposition,
}

/// How a run ended, readable by any thread once the run's state is final.
pub struct Outcome<V> {
    pub state: Final,
    pub value: V,
    /// When the run ended, in microseconds since the Unix epoch (8 bytes, not 16).
    pub finished_at_micros: u64,
}

/// Called once, with the run, after the run reaches a final state.
pub type DoneCallback = Box<dyn FnOnce(RunId) + Send>;

/// Why a call into the engine was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The engine was shut down; it takes no new runs.
    Closed,
    /// A dependency names a run this engine never registered.
    UnknownRun(RunId),
    /// The calling thread waits on a run it is itself executing (it would wait forever).
    WaitsOnItself(RunId),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Closed => f.write_str("the task runner has been shut down and takes no new runs"),
            EngineError::UnknownRun(run) => write!(f, "run {run} does not belong to this task runner"),
            EngineError::WaitsOnItself(run) => write!(f, "run {run} waits on its own result, which can never arrive"),
        }
    }
}

impl std::error::Error for EngineError {}

/// How waiting for several runs ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitAll {
    AllFinal,
    /// With `stop_on_failure`: this run ended without completing before the rest finished.
    Failed(RunId),
    TimedOut,
}

const FLAG_INLINE: u8 = 1;
const FLAG_DOOMED: u8 = 2;
/// A thread sleeps until this run is final or ready: finishing or readying it wakes waiters.
const FLAG_WATCHED: u8 = 4;
/// `settle` has processed the run's end (set under the graph lock).
const FLAG_SETTLED: u8 = 8;

struct Parked<P> {
    payload: P,
    attempt: u32,
}

pub(crate) struct Slot<P, V> {
    state: AtomicU8,
    flags: AtomicU8,
    parked: Mutex<Option<Parked<P>>>,
    /// Written once, by the thread that ends the run, before the state turns final
    /// (a Release store); read only by threads that have seen a final state (Acquire).
    /// The state machine is the guard: no `Once` per run.
    outcome: UnsafeCell<MaybeUninit<Outcome<V>>>,
}

// SAFETY: every field but `outcome` is Sync. `outcome` is written once, by the single
// thread that ends the run (`record` refuses a final run), strictly before the run's
// state becomes final with Release ordering, and is read only after an Acquire load
// sees that final state; it is never written again until the slot is dropped.
unsafe impl<P: Send, V: Send + Sync> Sync for Slot<P, V> {}

impl<P, V> Drop for Slot<P, V> {
    fn drop(&mut self) {
        if RunState::from_u8(*self.state.get_mut()).is_final() {
            // SAFETY: a final state means `record` initialised the outcome; `&mut self`
            // means no reader is left.
            unsafe { self.outcome.get_mut().assume_init_drop() };
        }
    }
}

impl<P, V> Slot<P, V> {
    fn vacant() -> Self {
        Slot {
            state: AtomicU8::new(RunState::Vacant as u8),
            flags: AtomicU8::new(0),
            parked: Mutex::new(None),
            outcome: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The outcome, once the run is final.
    fn outcome(&self) -> Option<&Outcome<V>> {
        if !self.state().is_final() {
            return None;
        }
        // SAFETY: the Acquire load above saw a final state, which `record` stores only
        // after initialising the outcome (see the `Sync` impl).
        Some(unsafe { (*self.outcome.get()).assume_init_ref() })
    }

    #[inline]
    fn state(&self) -> RunState {
        RunState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the state on, checking the machine in debug builds.
    fn become_(&self, next: RunState) {
        let previous = RunState::from_u8(self.state.swap(next as u8, Ordering::AcqRel));
        debug_assert!(previous.can_become(next), "illegal transition {previous:?} -> {next:?}");
    }

    /// Moves `from` → `to` only if the run is still in `from`.
    fn try_become(&self, from: RunState, to: RunState) -> bool {
        debug_assert!(from.can_become(to), "illegal transition {from:?} -> {to:?}");
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn has(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Acquire) & flag != 0
    }
}

struct Blocked {
    waiting: u32,
}

/// Where a newly registered run stands.
enum Linked {
    Ready,
    /// Waits on unfinished upstreams.
    Blocked,
    /// An upstream already ended without completing.
    Doomed(Disposition),
}

struct Edge {
    dependent: RunId,
    allow_failure: bool,
}

#[derive(Default)]
struct Graph {
    blocked: HashMap<RunId, Blocked>,
    dependents: HashMap<RunId, SmallVec<[Edge; 2]>>,
    dooms: HashMap<RunId, Disposition>,
    callbacks: HashMap<RunId, Vec<DoneCallback>>,
    ranges: Vec<RangeWatch>,
}

/// A callback for when every run of a range has settled (`await` of a map's futures):
/// one count per range instead of one callback per run.
struct RangeWatch {
    runs: Range<RunId>,
    unsettled: usize,
    callback: DoneCallback,
}

thread_local! {
    /// Runs this thread is executing right now (innermost last), across engines, so a
    /// wait on one of them is refused instead of hanging.
    static EXECUTING: std::cell::RefCell<Vec<(usize, RunId)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The state shared by an engine's handle, its workers and the futures users hold.
pub struct Shared<E: Executor> {
    executor: E,
    slots: Arena<Slot<E::Payload, E::Value>>,
    graph: Mutex<Graph>,
    pub(crate) queue: Mutex<ReadyQueue>,
    pub(crate) work: Condvar,
    done: Mutex<u64>,
    done_signal: Condvar,
    /// Threads inside `wait_*`; completions skip the `done` lock when there are none.
    sleepers: AtomicUsize,
    unfinished: AtomicUsize,
    failures: Mutex<Vec<RunId>>,
    closed: AtomicBool,
    pub(crate) pool: Pool,
}

/// An engine: owns the worker pool; dropping it (or [`Engine::shutdown`]) stops the pool.
/// Everything else lives in [`Shared`], which futures keep alive to read outcomes.
pub struct Engine<E: Executor> {
    shared: Arc<Shared<E>>,
}

impl<E: Executor> Engine<E> {
    /// An engine whose pool grows up to `max_workers` threads; 0 means runs execute only
    /// in threads that wait for them (a sequential runner).
    pub fn new(executor: E, max_workers: usize) -> Self {
        let shared = Arc::new(Shared {
            executor,
            slots: Arena::new(Slot::vacant),
            graph: Mutex::new(Graph::default()),
            queue: Mutex::new(ReadyQueue::default()),
            work: Condvar::new(),
            done: Mutex::new(0),
            done_signal: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            unfinished: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            pool: Pool::new(max_workers),
        });
        Engine { shared }
    }

    pub fn shared(&self) -> &Arc<Shared<E>> {
        &self.shared
    }

    /// Refuses new runs, cancels the ones that have not started, lets running ones
    /// finish and joins the workers. Idempotent. Call it where workers can make progress
    /// (in the bindings: detached), since it waits for them.
    pub fn shutdown(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.cancel_pending();
        self.shared.pool.stop(&self.shared);
        // Workers drain the queue before they exit; with none (a sequential engine) the
        // cancelled runs are ended here.
        while self.shared.help_from_queue(true) {}
    }
}

impl<E: Executor> Drop for Engine<E> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<E: Executor> std::ops::Deref for Engine<E> {
    type Target = Shared<E>;
    fn deref(&self) -> &Shared<E> {
        &self.shared
    }
}

impl<E: Executor> Shared<E> {
    pub fn executor(&self) -> &E {
        &self.executor
    }

    /// A number that tells this engine apart from others in the process.
    pub fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    pub fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    /// Worker threads alive now.
    pub fn workers(&self) -> usize {
        self.pool.live()
    }

    /// Runs registered so far.
    pub fn len(&self) -> u32 {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs registered and not yet final.
    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    pub fn state(&self, run: RunId) -> Option<RunState> {
        self.slots.get(run).map(Slot::state)
    }

    /// The outcome of a final run.
    pub fn outcome(&self, run: RunId) -> Option<&Outcome<E::Value>> {
        self.slots.get(run).and_then(Slot::outcome)
    }

    /// Registers one run for the worker pool.
    pub fn submit(self: &Arc<Self>, payload: E::Payload, deps: &[Dep]) -> Result<RunId, EngineError> {
        self.register(vec![(payload, SmallVec::from_slice(deps))], false)
            .map(|range| range.start)
    }

    /// Registers many runs in one contiguous range (a `.map`).
    pub fn submit_many(
        self: &Arc<Self>,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
    ) -> Result<Range<RunId>, EngineError> {
        self.register(runs, false)
    }

    /// Registers a run that only the calling thread executes (a direct task call). The
    /// caller then [`Self::wait`]s for it with `help`, which waits for its upstreams
    /// (helping them along) and then executes it on the calling thread.
    pub fn submit_inline(self: &Arc<Self>, payload: E::Payload, deps: &[Dep]) -> Result<RunId, EngineError> {
        self.register(vec![(payload, SmallVec::from_slice(deps))], true)
            .map(|range| range.start)
    }

    fn register(
        self: &Arc<Self>,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
        inline: bool,
    ) -> Result<Range<RunId>, EngineError> {
        // Refuse before reserving, so a refused submit leaves no trace.
        let known = self.slots.len();
        if let Some(dep) = runs
            .iter()
            .flat_map(|(_, deps)| deps.iter())
            .find(|dep| dep.run >= known)
        {
            return Err(EngineError::UnknownRun(dep.run));
        }
        let range = self.reserve(u32::try_from(runs.len()).expect("more than 4 billion runs in one call"))?;
        if let Err(err) = self.fill(range.start, runs, inline) {
            self.release_reserved(range);
            return Err(err);
        }
        Ok(range)
    }

    /// Reserves `count` consecutive runs, to be registered with [`Self::register_reserved`].
    /// A `.map` reserves all its runs first, so that they stay contiguous while it builds
    /// and registers their payloads piece by piece.
    pub fn reserve(self: &Arc<Self>, count: u32) -> Result<Range<RunId>, EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        let range = self.slots.reserve(count);
        self.unfinished.fetch_add(count as usize, Ordering::AcqRel);
        Ok(range)
    }

    /// Registers runs into reserved slots, the first at `first`.
    pub fn register_reserved(
        self: &Arc<Self>,
        first: RunId,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
    ) -> Result<(), EngineError> {
        self.fill(first, runs, false)
    }

    /// Gives back reserved runs that will never be registered (a map whose inputs failed
    /// part way): they no longer count as unfinished.
    pub fn release_reserved(&self, runs: Range<RunId>) {
        self.unfinished.fetch_sub(runs.len(), Ordering::AcqRel);
        self.wake_sleepers();
    }

    fn fill(
        self: &Arc<Self>,
        first: RunId,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
        inline: bool,
    ) -> Result<(), EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        if let Some(dep) = runs
            .iter()
            .flat_map(|(_, deps)| deps.iter())
            .find(|dep| dep.run >= first)
        {
            return Err(EngineError::UnknownRun(dep.run));
        }
        let end = first + u32::try_from(runs.len()).expect("more than 4 billion runs in one call");
        let mut runs = runs.into_iter();
        let mut next = first;
        let mut ready = Vec::new();
        while next < end {
            let piece_end = end.min(next + REGISTER_PIECE as u32);
            ready.clear();
            let mut graph = self.graph.lock();
            for run in next..piece_end {
                let (payload, deps) = runs.next().expect("one payload per reserved run");
                let slot = self.slot(run);
                if inline {
                    slot.flags.fetch_or(FLAG_INLINE, Ordering::Release);
                }
                // SAFETY: the slot is reserved by this call and still Vacant: no thread
                // reads or claims a run before its state is published (Release) below, so
                // its payload is written without taking the payload lock.
                unsafe { *slot.parked.data_ptr() = Some(Parked { payload, attempt: 0 }) };
                match self.link(&mut graph, run, &deps) {
                    Linked::Blocked => slot.become_(RunState::Blocked),
                    Linked::Ready => {
                        slot.become_(RunState::Ready);
                        ready.push(run);
                    }
                    Linked::Doomed(doom) => {
                        graph.dooms.insert(run, doom);
                        slot.flags.fetch_or(FLAG_DOOMED, Ordering::Release);
                        slot.become_(RunState::Ready);
                        ready.push(run);
                    }
                }
            }
            drop(graph);
            if !inline {
                self.enqueue(ready.drain(..));
            }
            next = piece_end;
        }
        Ok(())
    }

    /// Adds `run`'s edges under the graph lock, and says where it stands.
    fn link(&self, graph: &mut Graph, run: RunId, deps: &[Dep]) -> Linked {
        // Read each upstream's state once: an upstream read as unfinished gets an edge,
        // and since it settles under the graph lock (which we hold), it will find the
        // edge; one read as final is judged on that same read. (Reading twice lets an
        // upstream that fails between the reads slip through as if it had completed.)
        let mut unfinished: SmallVec<[Dep; 4]> = SmallVec::new();
        for dep in deps {
            let state = self.slot(dep.run).state();
            if !state.is_final() {
                unfinished.push(*dep);
            } else if !state.is_success() && !dep.allow_failure {
                return Linked::Doomed(Disposition::NotReady { upstream: dep.run });
            }
        }
        if unfinished.is_empty() {
            return Linked::Ready;
        }
        let waiting = unfinished.len() as u32;
        for dep in unfinished {
            graph.dependents.entry(dep.run).or_default().push(Edge {
                dependent: run,
                allow_failure: dep.allow_failure,
            });
        }
        graph.blocked.insert(run, Blocked { waiting });
        Linked::Blocked
    }

    fn slot(&self, run: RunId) -> &Slot<E::Payload, E::Value> {
        self.slots.get(run).expect("run index within the arena")
    }

    fn enqueue(self: &Arc<Self>, runs: impl IntoIterator<Item = RunId>) {
        let mut queue = self.queue.lock();
        let before = queue.len();
        queue.push_runs(runs);
        let added = queue.len() - before;
        drop(queue);
        if added > 0 {
            self.pool.on_work(self, added);
            if self.pool.is_stuck() {
                self.wake_sleepers(); // waiters are the only threads that can take it
            }
        }
    }

    /// Ends a run that was deferred from a batch ([`Batch::defer`]) or claimed with
    /// [`Self::claim_ready`], from whichever thread finished it.
    pub fn finish_claimed(self: &Arc<Self>, run: RunId, state: Final, value: E::Value) {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.record(run, state, value, micros);
        self.settle(&[run]);
    }

    /// Moves a claimed run between its attempts while its holder waits out a retry
    /// delay itself: `AwaitingRetry` when an attempt failed, `Retrying` when the next starts.
    pub fn retry_claimed(&self, run: RunId, next: RunState) {
        assert!(
            matches!(next, RunState::AwaitingRetry | RunState::Retrying),
            "not a retry state: {next:?}"
        );
        self.slot(run).become_(next);
    }

    /// Takes a ready run for the calling thread, to execute it itself (an inline call of
    /// a coroutine, which runs on the caller's event loop instead of in a batch).
    pub fn claim_ready(&self, run: RunId) -> Option<Job<E::Payload>> {
        self.claim(run)
    }

    /// Takes a ready run for the calling thread: whoever takes the payload owns the run.
    pub(crate) fn claim(&self, run: RunId) -> Option<Job<E::Payload>> {
        let slot = self.slots.get(run)?;
        if slot.state() != RunState::Ready {
            return None;
        }
        let parked = slot.parked.lock().take()?;
        let disposition = if slot.has(FLAG_DOOMED) {
            self.graph.lock().dooms.remove(&run).unwrap_or(Disposition::Run)
        } else {
            Disposition::Run
        };
        if disposition == Disposition::Run {
            slot.become_(if parked.attempt == 0 {
                RunState::Running
            } else {
                RunState::Retrying
            });
        }
        Some(Job {
            run,
            attempt: parked.attempt,
            payload: parked.payload,
            disposition,
        })
    }

    /// Records a final outcome. Dependents and waiters learn of it in [`Self::settle`].
    pub(crate) fn record(&self, run: RunId, state: Final, value: E::Value, finished_at_micros: u64) {
        let slot = self.slot(run);
        assert!(!slot.state().is_final(), "run {run} finished twice");
        // SAFETY: the run is not final and only the thread that took it (this one) ends
        // it, so nobody reads or writes the outcome now; the state store below publishes it.
        unsafe {
            (*slot.outcome.get()).write(Outcome {
                state,
                value,
                finished_at_micros,
            });
        }
        slot.become_(state.state());
    }

    /// Parks a failed attempt until its retry is due.
    pub(crate) fn reschedule(self: &Arc<Self>, job: Job<E::Payload>, delay: Duration) {
        let slot = self.slot(job.run);
        *slot.parked.lock() = Some(Parked {
            payload: job.payload,
            attempt: job.attempt + 1,
        });
        slot.become_(RunState::AwaitingRetry);
        let due = Instant::now() + delay;
        self.queue.lock().add_timer(due, job.run);
        self.pool.on_timer(self);
        self.wake_sleepers();
    }

    /// Moves runs whose retry delay has passed back to ready.
    pub(crate) fn fire_due_timers(self: &Arc<Self>) {
        let due = self.queue.lock().take_due_timers(Instant::now());
        if due.is_empty() {
            return;
        }
        let mut to_queue = Vec::with_capacity(due.len());
        for run in due {
            let slot = self.slot(run);
            // A run cancelled while it waited is already Ready (and queued) or final.
            if !slot.try_become(RunState::AwaitingRetry, RunState::Ready) {
                continue;
            }
            if !slot.has(FLAG_INLINE) {
                to_queue.push(run);
            }
        }
        self.enqueue(to_queue);
        self.wake_sleepers();
    }

    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.queue.lock().next_timer()
    }

    /// After runs were recorded final: release or doom their dependents, queue what
    /// became ready, wake waiters, and call done-callbacks (outside every lock).
    pub(crate) fn settle(self: &Arc<Self>, finished: &[RunId]) {
        if finished.is_empty() {
            return;
        }
        let mut ready = Vec::new();
        let mut callbacks = Vec::new();
        let mut failed = Vec::new();
        let mut watched = false;
        {
            let mut graph = self.graph.lock();
            // A flat map has no callbacks or dependents: skip the lookups per run.
            let any_callbacks = !graph.callbacks.is_empty();
            let any_dependents = !graph.dependents.is_empty();
            if !graph.ranges.is_empty() {
                for watch in &mut graph.ranges {
                    watch.unsettled -= finished.iter().filter(|run| watch.runs.contains(run)).count();
                }
                let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut graph.ranges)
                    .into_iter()
                    .partition(|watch| watch.unsettled == 0);
                graph.ranges = waiting;
                callbacks.extend(done.into_iter().map(|watch| (watch.runs.start, watch.callback)));
            }
            for &run in finished {
                let slot = self.slot(run);
                slot.flags.fetch_or(FLAG_SETTLED, Ordering::Release);
                let state = slot.state();
                watched |= slot.has(FLAG_WATCHED);
                if !state.is_success() {
                    failed.push(run);
                }
                if any_callbacks {
                    if let Some(found) = graph.callbacks.remove(&run) {
                        callbacks.extend(found.into_iter().map(|callback| (run, callback)));
                    }
                }
                if !any_dependents {
                    continue;
                }
                let Some(edges) = graph.dependents.remove(&run) else {
                    continue;
                };
                for edge in edges {
                    let dependent = self.slot(edge.dependent);
                    if !graph.blocked.contains_key(&edge.dependent) {
                        continue; // already doomed by another upstream
                    }
                    if state.is_success() || edge.allow_failure {
                        let blocked = graph.blocked.get_mut(&edge.dependent).expect("checked above");
                        blocked.waiting -= 1;
                        if blocked.waiting > 0 {
                            continue;
                        }
                        graph.blocked.remove(&edge.dependent);
                    } else {
                        graph.blocked.remove(&edge.dependent);
                        graph
                            .dooms
                            .insert(edge.dependent, Disposition::NotReady { upstream: run });
                        dependent.flags.fetch_or(FLAG_DOOMED, Ordering::Release);
                    }
                    dependent.become_(RunState::Ready);
                    watched |= dependent.has(FLAG_WATCHED);
                    if !dependent.has(FLAG_INLINE) {
                        ready.push(edge.dependent);
                    }
                }
            }
        }
        let any_failed = !failed.is_empty();
        if any_failed {
            self.failures.lock().extend(failed);
        }
        self.enqueue(ready);
        let now_idle = self.unfinished.fetch_sub(finished.len(), Ordering::AcqRel) == finished.len();
        // Wake only the waiters this can concern: those watching one of these runs, and
        // those waiting for any failure or for the engine to be idle. A thread waiting on
        // the last run of a long chain sleeps through the rest of it.
        if watched || any_failed || now_idle {
            self.wake_sleepers();
        }
        for (run, callback) in callbacks {
            callback(run);
        }
    }

    fn wake_sleepers(&self) {
        // Orders the state changes this wake-up announces before the read of `sleepers`
        // (which pairs with the SeqCst increment in `sleeping`).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            *self.done.lock() += 1;
            self.done_signal.notify_all();
        }
    }

    /// Counts the caller as a sleeper for the whole of a wait, so that every change
    /// made while it waits bumps the generation (see [`Self::sleep_until_change`]).
    fn sleeping(&self) -> Sleeping<'_> {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        Sleeping(&self.sleepers)
    }

    /// The wake-up generation; read it before checking what a wait waits for.
    fn generation(&self) -> u64 {
        *self.done.lock()
    }

    /// Asks completions of `run` (and its becoming ready) to wake sleepers. The fence pairs
    /// with the one in `wake_sleepers`: either `settle` sees the flag, or the caller's next
    /// read of the run's state sees what `settle` announced.
    fn watch(&self, run: RunId) {
        let slot = self.slot(run);
        if !slot.has(FLAG_WATCHED) {
            slot.flags.fetch_or(FLAG_WATCHED, Ordering::SeqCst);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Sleeps until a wake-up after generation `seen` (a run finished or became ready, a
    /// timer was added), a timer may be due, or `deadline`. Since the caller read `seen`
    /// before it checked the states it waits on, a change after that check is never
    /// missed: the caller was already counted in `sleepers`, so the change bumped it.
    fn sleep_until_change(&self, seen: u64, deadline: Option<Instant>) {
        let wake_at = match (deadline, self.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut generation = self.done.lock();
        if *generation == seen {
            match wake_at {
                Some(at) => {
                    self.done_signal.wait_until(&mut generation, at);
                }
                None => self.done_signal.wait(&mut generation),
            }
        }
    }

    /// Calls `callback` once `run` is final (at once, on this thread, if it already is).
    pub fn on_done(&self, run: RunId, callback: DoneCallback) -> Result<(), EngineError> {
        let slot = self.slots.get(run).ok_or(EngineError::UnknownRun(run))?;
        let mut graph = self.graph.lock();
        if slot.state().is_final() {
            drop(graph);
            callback(run);
        } else {
            graph.callbacks.entry(run).or_default().push(callback);
        }
        Ok(())
    }

    /// Calls `callback` once every run in `runs` has ended (at once, on this thread, if
    /// all have). Counting runs not yet settled, under the graph lock that settling takes,
    /// makes the count exact however runs finish meanwhile.
    pub fn on_all_done(&self, runs: Range<RunId>, callback: DoneCallback) -> Result<(), EngineError> {
        if runs.end > self.slots.len() {
            return Err(EngineError::UnknownRun(runs.end - 1));
        }
        let mut graph = self.graph.lock();
        let unsettled = runs.clone().filter(|&run| !self.slot(run).has(FLAG_SETTLED)).count();
        if unsettled == 0 {
            drop(graph);
            callback(runs.start);
        } else {
            graph.ranges.push(RangeWatch {
                runs,
                unsettled,
                callback,
            });
        }
        Ok(())
    }

    /// Blocks until `run` is final or `deadline` passes; returns whether it is final.
    ///
    /// With `help`, the calling thread executes a ready run it waits for, instead of
    /// waiting, when that adds no concurrency (see `help_with`: it is suspended inside a
    /// run of this engine, or it is its own direct call), and runs other queued work when
    /// every worker is itself stuck waiting: so nested waits cannot deadlock a bounded pool.
    pub fn wait(self: &Arc<Self>, run: RunId, deadline: Option<Instant>, help: bool) -> Result<bool, EngineError> {
        let slot = self.slots.get(run).ok_or(EngineError::UnknownRun(run))?;
        if !slot.state().is_final() && self.is_executing_here(run) {
            return Err(EngineError::WaitsOnItself(run));
        }
        let _waiting = self.waiting_guard();
        let _sleeping = self.sleeping();
        self.watch(run);
        loop {
            let seen = self.generation();
            if slot.state().is_final() {
                return Ok(true);
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(false);
            }
            self.fire_due_timers();
            if help && self.help_with(run..run + 1) {
                continue;
            }
            self.sleep_until_change(seen, deadline);
        }
    }

    /// Waits for every run in `runs` (a map's range), in order, helping as [`Self::wait`]
    /// does, and with `stop_on_failure` returning as soon as any of them fails.
    pub fn wait_range(
        self: &Arc<Self>,
        runs: Range<RunId>,
        deadline: Option<Instant>,
        help: bool,
        stop_on_failure: bool,
    ) -> Result<WaitAll, EngineError> {
        if runs.end > self.slots.len() {
            return Err(EngineError::UnknownRun(runs.end - 1));
        }
        self.wait_each(
            |index| runs.start + index as RunId,
            |run| runs.contains(&run),
            runs.len(),
            deadline,
            help,
            stop_on_failure,
        )
    }

    /// [`Self::wait_range`] for runs in any order.
    pub fn wait_all(
        self: &Arc<Self>,
        runs: &[RunId],
        deadline: Option<Instant>,
        help: bool,
        stop_on_failure: bool,
    ) -> Result<WaitAll, EngineError> {
        if runs.is_empty() {
            return Ok(WaitAll::AllFinal);
        }
        if let Some(&unknown) = runs.iter().find(|&&run| run >= self.slots.len()) {
            return Err(EngineError::UnknownRun(unknown));
        }
        // Only a failure of one of `runs` stops the wait (the set is needed only then).
        let members: std::collections::HashSet<RunId> = if stop_on_failure {
            runs.iter().copied().collect()
        } else {
            Default::default()
        };
        self.wait_each(
            |index| runs[index],
            |run| members.contains(&run),
            runs.len(),
            deadline,
            help,
            stop_on_failure,
        )
    }

    fn wait_each(
        self: &Arc<Self>,
        run_at: impl Fn(usize) -> RunId,
        is_member: impl Fn(RunId) -> bool,
        count: usize,
        deadline: Option<Instant>,
        help: bool,
        stop_on_failure: bool,
    ) -> Result<WaitAll, EngineError> {
        let _waiting = self.waiting_guard();
        let _sleeping = self.sleeping();
        let mut failures_seen = 0;
        let mut index = 0;
        while index < count {
            let run = run_at(index);
            let slot = self.slot(run);
            if slot.state().is_final() {
                if stop_on_failure && !slot.state().is_success() {
                    return Ok(WaitAll::Failed(run));
                }
                index += 1;
                continue;
            }
            // Registered before the re-check below, so its completion cannot be missed.
            self.watch(run);
            let seen = self.generation();
            if slot.state().is_final() {
                continue;
            }
            if stop_on_failure {
                if let Some(failed) = self.new_failure_in(&is_member, &mut failures_seen) {
                    return Ok(WaitAll::Failed(failed));
                }
            }
            if self.is_executing_here(run) {
                return Err(EngineError::WaitsOnItself(run));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(WaitAll::TimedOut);
            }
            self.fire_due_timers();
            let ahead = (index..count.min(index + HELP_BATCH)).map(&run_at);
            if help && self.help_with(ahead) {
                continue;
            }
            self.sleep_until_change(seen, deadline);
        }
        Ok(WaitAll::AllFinal)
    }

    /// A failure recorded since `seen` (advancing it) of a run waited for.
    fn new_failure_in(&self, is_member: &impl Fn(RunId) -> bool, seen: &mut usize) -> Option<RunId> {
        let failures = self.failures.lock();
        let found = failures[*seen..].iter().copied().find(|&run| is_member(run));
        *seen = failures.len();
        found
    }

    /// Blocks until every registered run is final (a flow run ending). With `help`, the
    /// caller runs queued work only when the pool is stuck or has no workers.
    pub fn wait_idle(self: &Arc<Self>, deadline: Option<Instant>, help: bool) -> bool {
        let _waiting = self.waiting_guard();
        let _sleeping = self.sleeping();
        loop {
            let seen = self.generation();
            if self.unfinished() == 0 {
                return true;
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return false;
            }
            self.fire_due_timers();
            if help && self.help_from_queue(false) {
                continue;
            }
            self.sleep_until_change(seen, deadline);
        }
    }

    /// Runs, on this thread, ready runs among `wanted` (or queued work if the pool is
    /// stuck). Returns whether it ran anything.
    ///
    /// Helping must not raise concurrency above `max_workers`, so a thread takes a run
    /// only when doing so replaces work it is not doing: it is suspended inside a run
    /// of this engine (a task waiting on a future), or the run is its own direct call,
    /// or no worker can make progress. A flow's thread merely waiting on results does
    /// not execute tasks beside the pool.
    fn help_with(self: &Arc<Self>, wanted: impl Iterator<Item = RunId>) -> bool {
        let may_take_any = self.is_inside_own_run() || self.pool.is_stuck();
        let mut ready = Vec::new();
        for run in wanted {
            let slot = self.slot(run);
            let takeable = slot.state() == RunState::Ready && (may_take_any || slot.has(FLAG_INLINE));
            if !takeable {
                if ready.is_empty() {
                    continue;
                }
                break; // keep the batch to a contiguous stretch of ready runs
            }
            ready.push(run);
        }
        // Claim one run now; the rest only as the batch reaches them, so that a run the
        // first one waits on, or that a worker is free to take, is not held back.
        let mut ready = ready.into_iter();
        if let Some(first) = ready.by_ref().find_map(|run| self.claim(run)) {
            let mut batch = Batch::helping(self, first, Vec::new(), ready.collect());
            self.executor.run_batch(&mut batch);
            return true;
        }
        self.help_from_queue(false)
    }

    /// Takes queued work if `always`, or if every worker is busy waiting on something
    /// and the pool cannot grow (the deadlock a bounded pool would otherwise hit).
    fn help_from_queue(self: &Arc<Self>, always: bool) -> bool {
        if !always && !self.pool.is_stuck() {
            return false;
        }
        let mut candidates = Vec::new();
        self.queue.lock().pop_into(HELP_BATCH, &mut candidates);
        let mut candidates = candidates.into_iter();
        let Some(first) = candidates.by_ref().find_map(|run| self.claim(run)) else {
            return false;
        };
        // The rest stay queue-owned candidates: claimed lazily, handed back if slow.
        let mut batch = Batch::helping(self, first, candidates.collect(), Vec::new());
        self.executor.run_batch(&mut batch);
        true
    }

    /// Cancels every run that has not started: they end [`Final::Cancelled`] through the
    /// executor like any other run, so nothing is left waiting. Running runs go on.
    /// Returns how many runs were cancelled.
    pub fn cancel_pending(self: &Arc<Self>) -> usize {
        if self.unfinished() == 0 {
            return 0; // nothing to scan for (a flow run ending normally)
        }
        let mut cancelled = Vec::new();
        {
            let mut graph = self.graph.lock();
            for run in 0..self.slots.len() {
                if self.doom_unstarted(&mut graph, run) {
                    cancelled.push(run);
                }
            }
        }
        let count = cancelled.len();
        self.enqueue_doomed(cancelled);
        count
    }

    /// Cancels one run if it has not started. Returns whether it was cancelled.
    pub fn cancel(self: &Arc<Self>, run: RunId) -> bool {
        if run >= self.slots.len() || !self.doom_unstarted(&mut self.graph.lock(), run) {
            return false;
        }
        self.enqueue_doomed(vec![run]);
        true
    }

    /// Dooms `run` to end Cancelled if no thread has taken it. The doom is written while
    /// holding the payload lock, and `claim` reads it after taking the payload, so a run
    /// is either cancelled or executed, never both.
    fn doom_unstarted(&self, graph: &mut Graph, run: RunId) -> bool {
        let slot = self.slot(run);
        let state = slot.state();
        if !matches!(state, RunState::Blocked | RunState::Ready | RunState::AwaitingRetry) {
            return false;
        }
        let parked = slot.parked.lock();
        if parked.is_none() || slot.has(FLAG_DOOMED) {
            return false; // taken by a thread, or already doomed (cancelled or NotReady)
        }
        graph.blocked.remove(&run);
        graph.dooms.insert(run, Disposition::Cancel);
        slot.flags.fetch_or(FLAG_DOOMED, Ordering::Release);
        if state != RunState::Ready {
            // Blocked, or AwaitingRetry racing its timer (which may have made it Ready).
            slot.try_become(state, RunState::Ready);
        }
        drop(parked);
        true
    }

    /// Any thread may end a cancelled run, inline or not (its caller may be gone).
    fn enqueue_doomed(self: &Arc<Self>, runs: Vec<RunId>) {
        self.enqueue(runs);
        self.wake_sleepers();
    }

    /// Marks a worker of this engine as waiting for the duration of a wait, so that
    /// `Pool::is_stuck` sees it. Every waiter registers before it checks, so two workers
    /// waiting at once cannot both conclude that the other will make progress.
    fn waiting_guard(&self) -> Option<WaitingGuard<'_>> {
        crate::pool::Pool::is_own_worker(self.id()).then(|| {
            self.pool.enter_wait();
            WaitingGuard(&self.pool)
        })
    }

    /// Whether the calling thread is executing (and so, now, suspended in) a run of this engine.
    fn is_inside_own_run(&self) -> bool {
        let me = self.id();
        EXECUTING.with(|executing| executing.borrow().iter().any(|&(engine, _)| engine == me))
    }

    fn is_executing_here(&self, run: RunId) -> bool {
        let me = self.id();
        EXECUTING.with(|executing| executing.borrow().iter().any(|&(engine, r)| engine == me && r == run))
    }
}

struct Sleeping<'a>(&'a AtomicUsize);

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct WaitingGuard<'a>(&'a crate::pool::Pool);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.leave_wait();
    }
}

/// Runs a thread took to execute now, handed to [`Executor::run_batch`].
///
/// The executor pulls jobs with [`Batch::next_job`] and ends each with
/// [`Batch::finish`] or [`Batch::retry`]. Outcomes become visible to dependents and
/// waiters when the batch is dropped, or early, whenever a job turns out slow.
pub struct Batch<'a, E: Executor> {
    shared: &'a Arc<Shared<E>>,
    /// Runs popped from the queue and not yet claimed (a worker's batch).
    candidates: std::vec::IntoIter<RunId>,
    /// The run a waiting thread claimed up front.
    claimed: Option<Job<E::Payload>>,
    /// Ready runs a waiting thread wants next (not queue-owned): claimed lazily, dropped if slow.
    wanted: std::vec::IntoIter<RunId>,
    /// The job handed out and not yet finished.
    current: Option<RunId>,
    started: Option<Instant>,
    finished: Vec<RunId>,
    busy: Option<&'a crate::pool::WorkerStat>,
    /// A worker's batch refills from the queue up to this many runs at a time...
    refill: usize,
    /// ...until it has lasted this long, so a chain of runs, each made ready by the one
    /// before, runs under one attach instead of one hand-off per run.
    extend_until: Option<Instant>,
    /// Jobs handed out, for the worker's batch sizing.
    handed: usize,
    /// When the last job finished (the next job's start), as last read.
    clock: Option<Instant>,
    /// Jobs finished since the clock was last read.
    since_clock: u32,
    clock_base: WallClock,
}

/// Converts `Instant`s to wall-clock time with one `SystemTime` read per batch.
#[derive(Clone, Copy)]
struct WallClock {
    instant: Instant,
    micros: u64,
}

impl WallClock {
    fn new() -> Self {
        WallClock {
            instant: Instant::now(),
            micros: Self::now_micros(),
        }
    }

    fn now_micros() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }

    fn micros_at(self, at: Instant) -> u64 {
        self.micros + at.saturating_duration_since(self.instant).as_micros() as u64
    }
}

/// A job slower than this makes a batch hand back its unstarted runs and publish its outcomes.
const SLOW_JOB: Duration = Duration::from_millis(2);
/// A batch reads the clock once every this many jobs (a clock read per trivial job was
/// 5% of a million-run map).
const CLOCK_EVERY: u32 = 16;
/// How long a worker's batch keeps refilling from the queue under one attach.
const BATCH_EXTEND: Duration = Duration::from_millis(5);

impl<'a, E: Executor> Batch<'a, E> {
    pub(crate) fn queued(
        shared: &'a Arc<Shared<E>>,
        candidates: Vec<RunId>,
        busy: &'a crate::pool::WorkerStat,
        refill: usize,
    ) -> Self {
        Batch {
            shared,
            candidates: candidates.into_iter(),
            claimed: None,
            wanted: Vec::new().into_iter(),
            current: None,
            started: None,
            finished: Vec::new(),
            busy: Some(busy),
            refill,
            extend_until: Some(Instant::now() + BATCH_EXTEND),
            handed: 0,
            clock: None,
            since_clock: 0,
            clock_base: WallClock::new(),
        }
    }

    /// Jobs this batch handed out so far.
    pub(crate) fn handed(&self) -> usize {
        self.handed
    }

    fn helping(shared: &'a Arc<Shared<E>>, first: Job<E::Payload>, candidates: Vec<RunId>, wanted: Vec<RunId>) -> Self {
        Batch {
            shared,
            candidates: candidates.into_iter(),
            claimed: Some(first),
            wanted: wanted.into_iter(),
            current: None,
            started: None,
            finished: Vec::new(),
            busy: None,
            refill: 0,
            extend_until: None,
            handed: 0,
            clock: None,
            since_clock: 0,
            clock_base: WallClock::new(),
        }
    }

    /// The engine, to read the outcomes of upstream runs. (Borrowed for the batch's
    /// lifetime, not the call's, so it can be held while jobs are finished.)
    pub fn engine(&self) -> &'a Arc<Shared<E>> {
        self.shared
    }

    /// The next job to execute, or `None` when the batch is done.
    pub fn next_job(&mut self) -> Option<Job<E::Payload>> {
        assert!(
            self.current.is_none(),
            "finish or retry the previous job before taking the next"
        );
        let now = self.clock.unwrap_or_else(Instant::now);
        let mut last_was_slow = false;
        if let Some(started) = self.started.take() {
            if now.saturating_duration_since(started) >= SLOW_JOB {
                last_was_slow = true;
                self.extend_until = None;
                self.publish();
                self.wanted = Vec::new().into_iter();
                let rest: Vec<RunId> = self.candidates.by_ref().collect();
                if !rest.is_empty() {
                    self.shared.queue.lock().push_front_runs(&rest);
                    self.shared.pool.on_work(self.shared, rest.len());
                }
            }
        }
        let shared = self.shared;
        let job = loop {
            let next = self.claimed.take().or_else(|| {
                self.candidates
                    .by_ref()
                    .chain(self.wanted.by_ref())
                    .find_map(|run| shared.claim(run))
            });
            if let Some(job) = next {
                break job;
            }
            if last_was_slow || !self.refill_from_queue() {
                return None;
            }
        };
        self.handed += 1;
        self.current = Some(job.run);
        self.started = Some(now);
        if let Some(busy) = self.busy {
            busy.job_edge();
        }
        EXECUTING.with(|executing| executing.borrow_mut().push((self.shared.id(), job.run)));
        Some(job)
    }

    /// A worker's batch that ran dry and still has time: publish what finished (which may
    /// make dependents ready) and take more from the queue. Returns whether it took any.
    fn refill_from_queue(&mut self) -> bool {
        if self.extend_until.is_none_or(|until| Instant::now() >= until) {
            return false;
        }
        self.publish();
        let mut more = Vec::new();
        {
            let mut queue = self.shared.queue.lock();
            let share = queue.len().div_ceil(self.shared.pool.live().max(1));
            queue.pop_into(self.refill.min(share), &mut more);
        }
        if more.is_empty() {
            return false;
        }
        self.candidates = more.into_iter();
        true
    }

    fn end_current(&mut self, run: RunId) {
        assert_eq!(
            self.current.take(),
            Some(run),
            "a job can only be ended by the batch that handed it out"
        );
        EXECUTING.with(|executing| executing.borrow_mut().pop());
        if let Some(busy) = self.busy {
            busy.job_edge();
        }
    }

    /// Ends the current job in a final state with the executor's value for it.
    pub fn finish(&mut self, run: RunId, state: Final, value: E::Value) {
        self.end_current(run);
        // The clock is read every CLOCK_EVERY jobs, and at the end of the first: a job's
        // end (its timestamp, the next job's start) is known to within a few fast jobs,
        // and a slow job is noticed at most that many jobs late.
        self.since_clock += 1;
        let now = match self.clock {
            Some(clock) if self.since_clock < CLOCK_EVERY => clock,
            _ => {
                self.since_clock = 0;
                Instant::now()
            }
        };
        self.clock = Some(now);
        self.shared.record(run, state, value, self.clock_base.micros_at(now));
        self.finished.push(run);
    }

    /// Sends the current job back to wait `delay` before its next attempt.
    pub fn retry(&mut self, job: Job<E::Payload>, delay: Duration) {
        self.end_current(job.run);
        self.shared.reschedule(job, delay);
    }

    /// Hands the current job off to finish later, from any thread (a coroutine that runs
    /// on an event loop): it stays Running until [`Shared::finish_claimed`].
    pub fn defer(&mut self, job: Job<E::Payload>) -> Job<E::Payload> {
        self.end_current(job.run);
        job
    }

    fn publish(&mut self) {
        let finished = std::mem::take(&mut self.finished);
        self.shared.settle(&finished);
    }
}

impl<E: Executor> Drop for Batch<'_, E> {
    fn drop(&mut self) {
        // A job handed out but never ended means the executor panicked: end it Crashed
        // so nothing waits on it forever.
        if let Some(run) = self.current {
            self.end_current(run);
            self.shared.record(
                run,
                Final::Crashed,
                self.shared.executor.abandoned(run),
                WallClock::now_micros(),
            );
            self.finished.push(run);
        }
        // Unclaimed candidates go back to the queue; a job claimed up front and never
        // handed out (the executor stopped early) goes back to its slot.
        let rest: Vec<RunId> = self.candidates.by_ref().collect();
        if !rest.is_empty() {
            self.shared.queue.lock().push_front_runs(&rest);
            self.shared.pool.on_work(self.shared, rest.len());
        }
        if let Some(job) = self.claimed.take() {
            let slot = self.shared.slot(job.run);
            if job.disposition == Disposition::Run {
                slot.state.store(RunState::Ready as u8, Ordering::Release); // un-claim: it never started
            } else {
                self.shared.graph.lock().dooms.insert(job.run, job.disposition);
            }
            *slot.parked.lock() = Some(Parked {
                payload: job.payload,
                attempt: job.attempt,
            });
            if !slot.has(FLAG_INLINE) {
                self.shared.enqueue([job.run]);
            }
        }
        self.publish();
    }
}
