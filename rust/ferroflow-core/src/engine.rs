//! The engine: registers runs and their dependencies, records outcomes, releases
//! dependents, cancels, and counts the handles on runs.
//!
//! Locks, always taken in this order and never while calling the executor:
//! `graph` (dependency edges, blocked runs, dooms, callbacks) → the pool's `queue` (ready
//! runs, retry timers) → the signal's `generation` (what waiters sleep on). A run's
//! payload has its own lock in its slot; taking the payload out of the slot is what
//! claims a run, and nothing else is locked while it is held, except that a doom is
//! written under both the graph lock and the payload lock (graph first).
//!
//! [`Executor`], [`Shared`], [`Engine`] and [`Batch`] are defined together, here, because
//! they name one another (an executor runs a batch, a batch belongs to an engine, an
//! engine is generic over its executor). What a batch does is in `batch.rs`, how threads
//! wait and help in `wait.rs`; both build on this module, which reaches them only through
//! traits: the pool calls back through `scheduler::Host` (implemented in `batch.rs`), and
//! the executor is handed batches. The crate's modules, each using only those before it:
//! `state`, `run` → `arena`, `slot`, `graph`, `signal`, `clock` → `scheduler` →
//! `engine` → `batch` → `wait`.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::arena::Arena;
use crate::clock::{now_micros, WallClock};
use crate::graph::{Freed, Graph, Linked};
use crate::run::{Dep, Disposition, DoneCallback, EngineError, Job, Outcome, RunId};
use crate::scheduler::{Pool, WorkerStat};
use crate::signal::Signal;
use crate::slot::{flag, Parked, Slot};
use crate::state::{Final, RunState};

/// Runs registered under one take of the graph lock, so a huge `.map` never holds it long.
const REGISTER_PIECE: u32 = 4096;

/// Executes runs for an [`Engine`].
pub trait Executor: Send + Sync + Sized + 'static {
    /// What a run carries until it executes (a callable and its arguments).
    type Payload: Send + 'static;
    /// What a finished run holds (its result, or its error), readable by every thread.
    type Value: Send + Sync + 'static;

    /// Executes the jobs of a batch on the calling thread: take each with
    /// [`Batch::next_job`], then end it with [`Batch::finish`] or [`Batch::retry`], or
    /// hand it off with [`Batch::defer`]. A job whose disposition is not
    /// [`Disposition::Run`] must not be executed, only ended in the final state it names.
    fn run_batch(&self, batch: &mut Batch<'_, Self>);

    /// The value of a run whose execution panicked; the run ends [`Final::Crashed`].
    fn abandoned(&self, run: RunId) -> Self::Value;

    /// Called once per run, in an engine made with [`Engine::with_handles`], when the run
    /// is final and no handle on it is left (see [`Shared::hold`]): nothing can ask for
    /// its value any more, so the executor may drop what the value holds. The engine
    /// neither moves nor drops `value` (outcomes are read by reference, and a reference
    /// may outlive this call); the value type's interior mutability empties it. Called
    /// with no engine lock held, from whichever thread ended the run or dropped the last
    /// handle. The default keeps values until the engine is dropped.
    fn release(&self, value: &Self::Value) {
        let _ = value;
    }
}

/// How far an engine's runs have got, read from counters the engine keeps anyway
/// ([`Shared::progress`]): no count is added per run for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Runs registered (or reserved by a map being registered) so far.
    pub registered: u32,
    /// Registered runs that are final and settled (done-callbacks called).
    pub done: u32,
    /// Of those, the runs that ended without completing: `Failed`, `Crashed`, `TimedOut`,
    /// `Cancelled`, `NotReady`.
    pub failed: u32,
    /// Runs executing now (see `Pool::running`: what a waiting thread executes itself is
    /// not counted), never more than those not done.
    pub running: u32,
}

/// The state shared by an engine's handle, its workers and the futures users hold.
pub struct Shared<E: Executor> {
    executor: E,
    slots: Arena<Slot<E::Payload, E::Value>>,
    graph: Mutex<Graph>,
    signal: Signal,
    unfinished: AtomicUsize,
    failures: Mutex<Vec<RunId>>,
    closed: AtomicBool,
    /// Whether runs' values are released when final and unheld ([`Engine::with_handles`]).
    /// A plain field: fixed at construction, so engines without it pay one predictable
    /// branch per run and no atomic.
    counts_handles: bool,
    pool: Pool,
}

/// An engine: owns the worker pool; dropping it (or [`Engine::shutdown`]) stops the pool.
/// Everything else lives in [`Shared`], which futures keep alive to read outcomes.
pub struct Engine<E: Executor> {
    shared: Arc<Shared<E>>,
}

/// Runs a thread took to execute now, handed to [`Executor::run_batch`].
///
/// The executor pulls jobs with [`Batch::next_job`] and ends each with
/// [`Batch::finish`] or [`Batch::retry`] (or hands it off with [`Batch::defer`]).
/// Outcomes become visible to dependents and waiters when the batch is dropped, or early,
/// whenever a job turns out slow. Runs are claimed one at a time as the batch reaches
/// them, never ahead, so a batch that stops early has nothing to give back but the
/// indices it took off the queue. (Its behaviour is in `batch.rs`.)
pub struct Batch<'a, E: Executor> {
    pub(crate) shared: &'a Arc<Shared<E>>,
    /// Runs popped from the queue and not yet claimed (a worker's batch, or a waiter
    /// running queued work): handed back to the queue if the batch stops early.
    pub(crate) candidates: std::vec::IntoIter<RunId>,
    /// Ready runs a waiting thread wants (not queue-owned): claimed lazily, dropped if slow.
    pub(crate) wanted: std::vec::IntoIter<RunId>,
    /// The job handed out and not yet finished.
    pub(crate) current: Option<RunId>,
    pub(crate) started: Option<Instant>,
    pub(crate) finished: Vec<RunId>,
    /// Set for a worker's batch: the worker's stat, bumped per job for the monitor.
    pub(crate) worker: Option<&'a WorkerStat>,
    /// A worker's batch refills from the queue up to this many runs at a time...
    pub(crate) refill: usize,
    /// ...until it has lasted this long, so a chain of runs, each made ready by the one
    /// before, runs under one attach instead of one hand-off per run.
    pub(crate) extend_until: Option<Instant>,
    /// Jobs handed out, for the worker's batch sizing.
    pub(crate) handed: usize,
    /// When the last job finished (the next job's start), as last read.
    pub(crate) clock: Option<Instant>,
    /// Jobs finished since the clock was last read.
    pub(crate) since_clock: u32,
    pub(crate) clock_base: WallClock,
}

impl<E: Executor> Engine<E> {
    /// An engine whose pool grows up to `max_workers` threads; 0 means runs execute only
    /// in threads that wait for them (a sequential runner). Values of finished runs stay
    /// until the engine is dropped (a flow run's engine: it lives as long as its runs).
    pub fn new(executor: E, max_workers: usize) -> Self {
        Self::build(executor, max_workers, false)
    }

    /// As [`Engine::new`], but counting the handles on each run, so that a run's value is
    /// released ([`Executor::release`]) as soon as the run is final and nothing holds it:
    /// for a long-lived engine (outside flows, the process-wide runner) whose users drop
    /// futures they no longer need. Every registered run starts with one handle, owned by
    /// whoever registered it; see [`Shared::hold`] and [`Shared::unhold`].
    pub fn with_handles(executor: E, max_workers: usize) -> Self {
        Self::build(executor, max_workers, true)
    }

    fn build(executor: E, max_workers: usize, counts_handles: bool) -> Self {
        let shared = Arc::new(Shared {
            executor,
            slots: Arena::new(Slot::vacant),
            graph: Mutex::new(Graph::default()),
            signal: Signal::default(),
            unfinished: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            counts_handles,
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
        // Workers drain the queue before they exit; with none (a sequential engine) the
        // pool ends the cancelled runs on this thread.
        self.shared.pool.stop(&self.shared);
    }
}

impl<E: Executor> Drop for Engine<E> {
    fn drop(&mut self) {
        self.shutdown();
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

    /// Runs registered (or reserved) so far.
    pub fn len(&self) -> u32 {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs registered and not yet final, or final with done-callbacks still running.
    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    /// A snapshot of the engine's counts, for a progress line: a few atomic loads and the
    /// length of the failures list (its lock is taken only when runs fail, once per
    /// settled batch), so it can be read a few times a second while runs execute. The
    /// counts are read one after the other, not at one instant; each is clamped so that
    /// `failed <= done <= registered` and `running <= registered - done`.
    pub fn progress(&self) -> Progress {
        let to_u32 = |count: usize| u32::try_from(count).unwrap_or(u32::MAX);
        let failed = to_u32(self.failures.lock().len());
        // `registered` first: a reservation made in between raises `unfinished` only,
        // which can make `done` read low for a moment, never high.
        let registered = self.slots.len();
        let done = registered.saturating_sub(to_u32(self.unfinished()));
        Progress {
            registered,
            done,
            failed: failed.min(done),
            running: to_u32(self.pool.running()).min(registered - done),
        }
    }

    pub fn state(&self, run: RunId) -> Option<RunState> {
        self.slots.get(run).map(Slot::state)
    }

    /// The outcome of a final run.
    pub fn outcome(&self, run: RunId) -> Option<&Outcome<E::Value>> {
        self.slots.get(run).and_then(Slot::outcome)
    }

    /// Whether this engine counts handles and releases values ([`Engine::with_handles`]).
    pub fn counts_handles(&self) -> bool {
        self.counts_handles
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Runs that ended without completing, in the order they were settled.
    pub(crate) fn failures(&self) -> MutexGuard<'_, Vec<RunId>> {
        self.failures.lock()
    }

    /// Calls `visit` with each run that has ended without completing so far, without
    /// waiting: returns `None`, calling nothing, when the list is being written this very
    /// moment. For a garbage collector's traversal (the values of failed runs are where
    /// reference cycles back to their owner form: exceptions hold tracebacks), which
    /// must neither block nor cost a pass over every run.
    pub fn try_for_each_failure<R>(&self, mut visit: impl FnMut(RunId) -> Result<(), R>) -> Option<Result<(), R>> {
        let failures = self.failures.try_lock()?;
        Some(failures.iter().try_for_each(|&run| visit(run)))
    }

    /// The slot of a run known to be registered (an index the engine handed out).
    pub(crate) fn slot(&self, run: RunId) -> &Slot<E::Payload, E::Value> {
        self.slots.get(run).expect("run index within the arena")
    }

    /// Registers one run for the worker pool.
    ///
    /// # Errors
    /// [`EngineError::Closed`] after shutdown; [`EngineError::UnknownRun`] for a
    /// dependency on a run this engine never registered. Nothing is registered then.
    pub fn submit(self: &Arc<Self>, payload: E::Payload, deps: &[Dep]) -> Result<RunId, EngineError> {
        self.register(vec![(payload, SmallVec::from_slice(deps))], false)
            .map(|range| range.start)
    }

    /// Registers many runs in one contiguous range (a `.map`).
    ///
    /// # Errors
    /// As [`Self::submit`], and [`EngineError::TooManyRuns`].
    pub fn submit_many(
        self: &Arc<Self>,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
    ) -> Result<Range<RunId>, EngineError> {
        self.register(runs, false)
    }

    /// Registers a run that only the calling thread executes (a direct task call). The
    /// caller then [`Self::wait`]s for it with `help`, which waits for its upstreams
    /// (helping them along) and then executes it on the calling thread.
    ///
    /// # Errors
    /// As [`Self::submit`].
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
        self.check_deps(&runs, self.slots.len())?;
        let count = u32::try_from(runs.len()).map_err(|_| EngineError::TooManyRuns { requested: runs.len() })?;
        let range = self.reserve(count)?;
        if let Err(err) = self.fill(range.start, runs, inline, false) {
            self.release_reserved(range);
            return Err(err);
        }
        Ok(range)
    }

    /// Every dependency must name a run registered (or reserved) before `first`.
    fn check_deps(&self, runs: &[(E::Payload, SmallVec<[Dep; 2]>)], first: RunId) -> Result<(), EngineError> {
        let known = first.min(self.slots.len());
        match runs
            .iter()
            .flat_map(|(_, deps)| deps.iter())
            .find(|dep| dep.run >= known)
        {
            Some(dep) => Err(EngineError::UnknownRun(dep.run)),
            None => Ok(()),
        }
    }

    /// Reserves `count` consecutive runs, to be registered with [`Self::register_reserved`].
    /// A `.map` reserves all its runs first, so that they stay contiguous while it builds
    /// and registers their payloads piece by piece. Reserved runs count as unfinished
    /// until registered and final, or given back with [`Self::release_reserved`].
    ///
    /// # Errors
    /// [`EngineError::Closed`] after shutdown; [`EngineError::TooManyRuns`] if the engine
    /// would pass `u32::MAX` runs (or memory for their slots). Nothing is reserved then.
    pub fn reserve(self: &Arc<Self>, count: u32) -> Result<Range<RunId>, EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        let range = self.slots.reserve(count).ok_or(EngineError::TooManyRuns {
            requested: count as usize,
        })?;
        self.unfinished.fetch_add(count as usize, Ordering::AcqRel);
        Ok(range)
    }

    /// Registers runs into reserved slots, the first at `first`.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] for a slot that was not reserved, or was already
    /// registered or given back, or for a dependency on a run at or after `first`.
    /// Runs registered before the error stay registered (they will run); give back the
    /// rest with [`Self::release_reserved`], which skips registered runs.
    pub fn register_reserved(
        self: &Arc<Self>,
        first: RunId,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
    ) -> Result<(), EngineError> {
        self.check_deps(&runs, first)?;
        self.fill(first, runs, false, true)
    }

    /// Gives back reserved runs that will never be registered (a map whose inputs failed
    /// part way): they no longer count as unfinished, and runs registered meanwhile that
    /// depend on them end `NotReady`, as for an upstream that did not complete. Runs of
    /// `runs` that are registered (or were given back already, or were never reserved)
    /// are skipped.
    pub fn release_reserved(self: &Arc<Self>, runs: Range<RunId>) {
        let end = runs.end.min(self.slots.len());
        let mut given_back = 0;
        let mut ready = Vec::new();
        {
            // Registration writes a slot under this lock, so a slot read here as Vacant
            // stays unregistered.
            let mut graph = self.graph.lock();
            let any_dependents = graph.has_dependents();
            for run in runs.start..end {
                let slot = self.slot(run);
                if slot.state() == RunState::Vacant && slot.set(flag::GIVEN_BACK) & flag::GIVEN_BACK == 0 {
                    given_back += 1;
                    if any_dependents {
                        graph.release_dependents(run, false, |freed| {
                            self.free_dependent(freed, &mut ready);
                        });
                    }
                }
            }
        }
        if !ready.is_empty() {
            self.enqueue(ready);
        }
        if given_back > 0 {
            self.unfinished.fetch_sub(given_back, Ordering::AcqRel);
            self.wake_sleepers();
        }
    }

    /// A dependent an upstream's end freed (under the graph lock): it turns Ready (doomed
    /// if the upstream did not complete) and, unless only its caller may run it, is to be
    /// queued. Returns whether a thread watches it.
    fn free_dependent(&self, freed: Freed, ready: &mut Vec<RunId>) -> bool {
        let (dependent, doomed) = match freed {
            Freed::Ready(dependent) => (dependent, false),
            Freed::Doomed(dependent) => (dependent, true),
        };
        let slot = self.slot(dependent);
        if doomed {
            slot.set(flag::DOOMED);
        }
        slot.become_(RunState::Ready);
        if !slot.has(flag::INLINE) {
            ready.push(dependent);
        }
        slot.has(flag::WATCHED)
    }

    fn fill(
        self: &Arc<Self>,
        first: RunId,
        runs: Vec<(E::Payload, SmallVec<[Dep; 2]>)>,
        inline: bool,
        into_reserved: bool,
    ) -> Result<(), EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        let too_many = EngineError::TooManyRuns { requested: runs.len() };
        let end = u32::try_from(runs.len())
            .ok()
            .and_then(|count| first.checked_add(count))
            .ok_or(too_many)?;
        if end > self.slots.len() {
            return Err(EngineError::UnknownRun(first.max(self.slots.len())));
        }
        let mut runs = runs.into_iter();
        let mut next = first;
        let mut ready = Vec::new();
        let mut refused = None;
        while next < end && refused.is_none() {
            let piece_end = end.min(next.saturating_add(REGISTER_PIECE));
            ready.clear();
            let mut graph = self.graph.lock();
            for (run, (payload, deps)) in (next..piece_end).zip(runs.by_ref()) {
                let slot = self.slot(run);
                // A slot of someone else's reservation may have been registered or given
                // back meanwhile: both happen under the graph lock, which we hold.
                if into_reserved && (slot.state() != RunState::Vacant || slot.has(flag::GIVEN_BACK)) {
                    refused = Some(EngineError::UnknownRun(run));
                    break;
                }
                if inline {
                    slot.set(flag::INLINE);
                }
                slot.park_unpublished(Parked { payload, attempt: 0 });
                match graph.link(run, &deps, |up| self.upstream_state(up)) {
                    Linked::Blocked => slot.publish(RunState::Blocked),
                    Linked::Ready => {
                        slot.publish(RunState::Ready);
                        ready.push(run);
                    }
                    Linked::Doomed(doom) => {
                        graph.doom(run, doom);
                        slot.set(flag::DOOMED);
                        slot.publish(RunState::Ready);
                        ready.push(run);
                    }
                }
            }
            drop(graph);
            if !inline && !ready.is_empty() {
                self.enqueue(ready.drain(..));
            }
            next = piece_end;
        }
        refused.map_or(Ok(()), Err)
    }

    /// An upstream's state for a run being linked to it: `None` for a run reserved and
    /// given back unregistered, which will never end (so it counts as not completed).
    fn upstream_state(&self, run: RunId) -> Option<RunState> {
        let slot = self.slot(run);
        let state = slot.state();
        (state != RunState::Vacant || !slot.has(flag::GIVEN_BACK)).then_some(state)
    }

    /// Queues ready runs; if no worker can take them, wakes the waiters that can.
    pub(crate) fn enqueue(self: &Arc<Self>, runs: impl IntoIterator<Item = RunId>) {
        if self.pool.push(self, runs) > 0 && self.pool.is_stuck() {
            self.wake_sleepers(); // waiters are the only threads that can take them
        }
    }

    /// Ends a run that was deferred from a batch ([`Batch::defer`]) or claimed with
    /// [`Self::claim_ready`], from whichever thread finished it. Only the holder of the
    /// claimed job may end it, once; a call for a run that is not claimed (unknown,
    /// still parked, or already final) changes nothing and drops `value`.
    pub fn finish_claimed(self: &Arc<Self>, run: RunId, state: Final, value: E::Value) {
        if self.record_claimed_end(run, state, value, now_micros()) {
            self.settle(&[run]);
        }
    }

    /// [`Self::finish_claimed`] for many runs at once: each end is recorded, then they
    /// settle together, in one pass over the dependency graph and one wake-up of the
    /// threads waiting on them (one per run would wake a waiter for every run).
    pub fn finish_claimed_all(self: &Arc<Self>, ends: impl IntoIterator<Item = (RunId, Final, E::Value)>) {
        // They end now, together: one reading of the clock.
        let now = now_micros();
        let finished: Vec<RunId> = ends
            .into_iter()
            .filter_map(|(run, state, value)| self.record_claimed_end(run, state, value, now).then_some(run))
            .collect();
        self.settle(&finished);
    }

    /// Records the end of a claimed run at `now` (see [`Self::finish_claimed`]) but does
    /// not settle it; returns whether it ended (false if it was not claimed).
    fn record_claimed_end(&self, run: RunId, state: Final, value: E::Value, now: u64) -> bool {
        let Some(slot) = self.slots.get(run) else {
            return false;
        };
        {
            // The payload lock makes two ends of one run take turns: the second sees it final.
            let parked = slot.parked();
            // Claimed: its payload is out of the slot, and it runs (or waits out a retry
            // delay), or it is a doomed run its claimer ends without running it. (A
            // ready run not doomed, with no payload, is being claimed by another thread.)
            let claimed = parked.is_none()
                && match slot.state() {
                    RunState::Running | RunState::Retrying | RunState::AwaitingRetry => true,
                    RunState::Ready => slot.has(flag::DOOMED),
                    _ => false,
                };
            if !claimed {
                return false;
            }
            Self::write_final(slot, run, state, value, now);
        }
        // (Read first: most claimed runs were never counted, and a load costs no write.
        // `BOUNDED` was set before the job reached whoever ends it.)
        if slot.has(flag::BOUNDED) {
            let flags = slot.clear(flag::BOUNDED | flag::SUSPENDED);
            if flags & flag::SUSPENDED == 0 {
                self.pool.deferred_ended();
            }
        }
        self.release_if_unheld(slot);
        true
    }

    /// Moves a claimed run between its attempts while its holder waits out a retry
    /// delay itself: `AwaitingRetry` when an attempt failed, `Retrying` when the next
    /// starts. Anything else (another state, a run not claimed, or not in the state
    /// this follows) changes nothing.
    pub fn retry_claimed(&self, run: RunId, next: RunState) {
        let Some(slot) = self.slots.get(run) else {
            return;
        };
        let parked = slot.parked();
        if parked.is_some() {
            return; // a parked run's retries are the engine's own (timers)
        }
        match next {
            RunState::AwaitingRetry => {
                let _ = slot.try_become(RunState::Running, RunState::AwaitingRetry)
                    || slot.try_become(RunState::Retrying, RunState::AwaitingRetry);
            }
            RunState::Retrying => {
                slot.try_become(RunState::AwaitingRetry, RunState::Retrying);
            }
            _ => {}
        }
    }

    /// Takes a ready run for the calling thread, to execute it itself (an inline call of
    /// a coroutine, which runs on the caller's event loop instead of in a batch). It does
    /// not count against `max_workers`.
    pub fn claim_ready(&self, run: RunId) -> Option<Job<E::Payload>> {
        self.claim(run)
    }

    /// Takes a ready run for the calling thread: whoever takes the payload owns the run.
    pub(crate) fn claim(&self, run: RunId) -> Option<Job<E::Payload>> {
        let slot = self.slots.get(run)?;
        if slot.state() != RunState::Ready {
            return None;
        }
        let parked = slot.parked().take()?;
        let disposition = if slot.has(flag::DOOMED) {
            self.graph.lock().take_doom(run)
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

    /// Records a final outcome (a batch's job). Dependents and waiters learn of it in
    /// [`Self::settle`].
    pub(crate) fn record(&self, run: RunId, state: Final, value: E::Value, finished_at_micros: u64) {
        let slot = self.slot(run);
        Self::write_final(slot, run, state, value, finished_at_micros);
        self.release_if_unheld(slot);
    }

    fn write_final(
        slot: &Slot<E::Payload, E::Value>,
        run: RunId,
        state: Final,
        value: E::Value,
        finished_at_micros: u64,
    ) {
        assert!(!slot.state().is_final(), "run {run} finished twice");
        // SAFETY: the run is not final and only the thread that took it (this one) ends
        // it, so nobody reads or writes the outcome now; the state store below publishes it.
        unsafe {
            slot.write_outcome(Outcome {
                state,
                value,
                finished_at_micros,
            });
        }
        slot.become_(state.state());
    }

    /// Adds a handle on `run` (a future or future list copied, in a handle-counting
    /// engine). The caller must own a handle already: a handle is only ever copied.
    /// Returns false, changing nothing, when the engine does not count handles, the run is
    /// unknown, or no handle on it is left (its value may be gone).
    pub fn hold(&self, run: RunId) -> bool {
        self.counts_handles && self.slots.get(run).is_some_and(Slot::hold)
    }

    /// Drops a handle on `run`. When it is the last and the run is final, the executor
    /// releases the run's value ([`Executor::release`]) before this returns; when the run
    /// is not final yet, that happens when it ends. Returns false, changing nothing, when
    /// the engine does not count handles, the run is unknown, or no handle was left.
    ///
    /// Whoever will read a run's value (a future, a future list, a dependent's arguments,
    /// a done-callback) must hold a handle until it has read it.
    pub fn unhold(&self, run: RunId) -> bool {
        if !self.counts_handles {
            return false;
        }
        let Some(slot) = self.slots.get(run) else {
            return false;
        };
        match slot.unhold() {
            None => false,
            Some(false) => true,
            Some(true) => {
                if slot.is_final_after_fence() {
                    self.release(slot);
                }
                true
            }
        }
    }

    /// Releases a run that was just recorded final, if nothing holds it.
    ///
    /// The two moments a value may go: the run turns final with no handle left (here), or
    /// the last handle goes when the run is final ([`Self::unhold`]). Each side changes
    /// its own atomic, then (after a `SeqCst` fence) reads the other's, so at least one of
    /// them sees both done; the `RELEASED` flag makes sure only one releases. Every reader
    /// of the value held a handle while reading and dropped it (Release) before the last
    /// one went (Acquire, see `Slot::unhold`), so no read is still going on; and the value
    /// is emptied in place, never moved or dropped, so a reference to the outcome stays
    /// valid even past that point.
    fn release_if_unheld(&self, slot: &Slot<E::Payload, E::Value>) {
        if self.counts_handles && slot.is_unheld_after_fence() {
            self.release(slot);
        }
    }

    fn release(&self, slot: &Slot<E::Payload, E::Value>) {
        if slot.set(flag::RELEASED) & flag::RELEASED != 0 {
            return;
        }
        if let Some(outcome) = slot.outcome() {
            self.executor.release(&outcome.value);
        }
    }

    /// A deferred run (a coroutine on an event loop) that waits on other runs (awaits a
    /// future, or blocks on a result) stops counting against `max_workers` until
    /// [`Self::resume_deferred`], so that the runs it waits for can start even when
    /// deferred runs fill the bound. Suspending does not nest: the first resume counts
    /// the run again. Returns whether the run stopped counting (false for a run that was
    /// not counted: not deferred from a worker's batch, already suspended, or ended).
    pub fn suspend_deferred(&self, run: RunId) -> bool {
        let Some(slot) = self.slots.get(run) else {
            return false;
        };
        let before = slot.set(flag::SUSPENDED);
        let counted = before & flag::BOUNDED != 0 && before & flag::SUSPENDED == 0;
        if counted {
            self.pool.deferred_ended();
        }
        counted
    }

    /// Counts a suspended deferred run against `max_workers` again (it resumed). It may
    /// briefly take the engine past the bound; workers then take nothing new until the
    /// count drops. Returns whether the run counts again.
    pub fn resume_deferred(&self, run: RunId) -> bool {
        let Some(slot) = self.slots.get(run) else {
            return false;
        };
        let before = slot.clear(flag::SUSPENDED);
        let resumed = before & flag::BOUNDED != 0 && before & flag::SUSPENDED != 0;
        if resumed {
            self.pool.deferred_started();
        }
        resumed
    }

    /// Counts a job a worker's batch deferred against the bound, until it ends.
    pub(crate) fn count_deferred(&self, run: RunId) {
        self.slot(run).set(flag::BOUNDED);
        self.pool.deferred_started();
    }

    /// Parks a failed attempt until its retry is due.
    pub(crate) fn reschedule(self: &Arc<Self>, job: Job<E::Payload>, delay: Duration) {
        let slot = self.slot(job.run);
        *slot.parked() = Some(Parked {
            payload: job.payload,
            attempt: job.attempt.saturating_add(1),
        });
        slot.become_(RunState::AwaitingRetry);
        // A delay past what an `Instant` can hold waits "forever" (a century) instead.
        let now = Instant::now();
        let due = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        self.pool.add_timer(self, due, job.run);
        self.wake_sleepers();
    }

    /// Moves runs whose retry delay has passed back to ready.
    pub(crate) fn fire_due_timers(self: &Arc<Self>) {
        let due = self.pool.take_due_timers(Instant::now());
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
            if !slot.has(flag::INLINE) {
                to_queue.push(run);
            }
        }
        self.enqueue(to_queue);
        self.wake_sleepers();
    }

    /// After runs were recorded final: release or doom their dependents, queue what
    /// became ready, wake the waiters on these runs, call done-callbacks (outside every
    /// lock), and only then stop counting the runs as unfinished: a callback that submits
    /// more work registers it while its run still counts, so a wait for the engine to be
    /// idle cannot return in between.
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
            let any_callbacks = graph.has_callbacks();
            let any_dependents = graph.has_dependents();
            graph.settle_ranges(finished, &mut callbacks);
            for &run in finished {
                let slot = self.slot(run);
                slot.set(flag::SETTLED);
                let state = slot.state();
                watched |= slot.has(flag::WATCHED);
                if !state.is_success() {
                    failed.push(run);
                }
                if any_callbacks {
                    if let Some(found) = graph.take_callbacks(run) {
                        callbacks.extend(found.into_iter().map(|callback| (run, callback)));
                    }
                }
                if any_dependents {
                    graph.release_dependents(run, state.is_success(), |freed| {
                        watched |= self.free_dependent(freed, &mut ready);
                    });
                }
            }
        }
        let any_failed = !failed.is_empty();
        if any_failed {
            self.failures.lock().extend(failed);
        }
        if !ready.is_empty() {
            self.enqueue(ready);
        }
        // Wake only the waiters this can concern: those watching one of these runs, and
        // those waiting for any failure or for the engine to be idle. A thread waiting on
        // the last run of a long chain sleeps through the rest of it.
        let concerned = watched || any_failed;
        let mut woke = false;
        let mut panicked = None;
        if !callbacks.is_empty() {
            if concerned {
                self.wake_sleepers(); // waiters on the runs themselves need not wait for callbacks
                woke = true;
            }
            panicked = call_back(callbacks);
        }
        let now_idle = self.unfinished.fetch_sub(finished.len(), Ordering::AcqRel) == finished.len();
        if now_idle || (concerned && !woke) {
            self.wake_sleepers();
        }
        if let Some(panic) = panicked {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    pub(crate) fn wake_sleepers(&self) {
        self.signal.wake();
    }

    /// Calls `callback` once `run` is final (at once, on this thread, if it already is).
    /// A callback called by the engine runs while its run still counts as unfinished, so
    /// it must not wait for the engine to be idle.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] if `run` is not registered.
    pub fn on_done(&self, run: RunId, callback: DoneCallback) -> Result<(), EngineError> {
        let slot = self.slots.get(run).ok_or(EngineError::UnknownRun(run))?;
        let mut graph = self.graph.lock();
        if slot.state().is_final() {
            drop(graph);
            callback(run);
        } else {
            graph.add_callback(run, callback);
        }
        Ok(())
    }

    /// Calls `callback` once every run in `runs` has ended (at once, on this thread, if
    /// all have). Counting runs not yet settled, under the graph lock that settling takes,
    /// makes the count exact however runs finish meanwhile.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`] if the range reaches past the registered runs.
    pub fn on_all_done(&self, runs: Range<RunId>, callback: DoneCallback) -> Result<(), EngineError> {
        if runs.end > self.slots.len() {
            return Err(EngineError::UnknownRun(runs.end - 1));
        }
        let mut graph = self.graph.lock();
        let unsettled = runs.clone().filter(|&run| !self.slot(run).has(flag::SETTLED)).count();
        if unsettled == 0 {
            drop(graph);
            callback(runs.start);
        } else {
            graph.watch_range(runs, unsettled, callback);
        }
        Ok(())
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
        let parked = slot.parked();
        if parked.is_none() || slot.has(flag::DOOMED) {
            return false; // taken by a thread, or already doomed (cancelled or NotReady)
        }
        graph.unblock(run);
        graph.doom(run, Disposition::Cancel);
        slot.set(flag::DOOMED);
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

    /// Makes the next `count` attempts to start a worker thread fail, as if the OS
    /// refused one: for tests of what a failed start does (nothing panics, the pool can
    /// grow again later, waiters run the work while there is no worker). Not for use.
    #[doc(hidden)]
    pub fn fail_worker_starts(&self, count: usize) {
        self.pool.fail_spawns(count);
    }
}

/// Calls done-callbacks, each to its end even if one panics (so none is skipped and the
/// engine's counts stay right); returns the first panic, for the caller to resume.
fn call_back(callbacks: Vec<(RunId, DoneCallback)>) -> Option<Box<dyn std::any::Any + Send>> {
    let mut first_panic = None;
    for (run, callback) in callbacks {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || callback(run))) {
            first_panic.get_or_insert(panic);
        }
    }
    first_panic
}
