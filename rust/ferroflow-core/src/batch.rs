//! What a batch does: hands jobs to the executor one at a time, claiming each run only as
//! it hands it out, records their ends, publishes them to dependents and waiters, and
//! gives back what it did not start. Also how a worker runs a batch (the engine's side of
//! `scheduler::Host`), and which runs the calling thread is executing.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{now_micros, WallClock};
use crate::engine::{Batch, Executor, Shared};
use crate::run::{Job, RunId};
use crate::scheduler::{Host, Pool, WorkerStat};
use crate::state::Final;

/// A job slower than this makes a batch hand back its unstarted runs and publish its outcomes.
const SLOW_JOB: Duration = Duration::from_millis(2);
/// A batch reads the clock once every this many jobs (a clock read per trivial job was
/// 5% of a million-run map).
const CLOCK_EVERY: u32 = 16;
/// How long a worker's batch keeps refilling from the queue under one attach, from its
/// first job.
const BATCH_EXTEND: Duration = Duration::from_millis(5);

thread_local! {
    /// Runs this thread is executing right now (innermost last), across engines, as
    /// (engine id, run): a wait on one of them is refused instead of hanging, and a
    /// thread suspended inside a run of an engine may take that engine's work.
    static EXECUTING: RefCell<Vec<(usize, RunId)>> = const { RefCell::new(Vec::new()) };
}

/// Whether the calling thread is executing (and so, when it waits, suspended in) a run of
/// the engine `engine`.
pub(crate) fn is_executing_in(engine: usize) -> bool {
    EXECUTING.with(|executing| executing.borrow().iter().any(|&(owner, _)| owner == engine))
}

/// Whether the calling thread is executing `run` of the engine `engine`.
pub(crate) fn is_executing(engine: usize, run: RunId) -> bool {
    EXECUTING.with(|executing| executing.borrow().contains(&(engine, run)))
}

impl<E: Executor> Host for Shared<E> {
    fn pool(&self) -> &Pool {
        Shared::pool(self)
    }

    fn run_queued(self: &Arc<Self>, candidates: Vec<RunId>, worker: Option<(&WorkerStat, usize)>) -> usize {
        let mut batch = match worker {
            Some((stat, refill)) => Batch::queued(self, candidates, stat, refill),
            None => Batch::draining(self, candidates),
        };
        self.executor().run_batch(&mut batch);
        batch.handed()
    }

    fn fire_due_timers(self: &Arc<Self>) {
        Shared::fire_due_timers(self);
    }

    fn wake_waiters(&self) {
        self.wake_sleepers();
    }
}

impl<'a, E: Executor> Batch<'a, E> {
    fn new(
        shared: &'a Arc<Shared<E>>,
        candidates: Vec<RunId>,
        wanted: Vec<RunId>,
        worker: Option<&'a WorkerStat>,
        refill: usize,
    ) -> Self {
        Batch {
            shared,
            candidates: candidates.into_iter(),
            wanted: wanted.into_iter(),
            current: None,
            started: None,
            finished: Vec::new(),
            worker,
            refill,
            extend_until: worker.map(|_| Instant::now() + BATCH_EXTEND),
            handed: 0,
            clock: None,
            since_clock: 0,
            clock_base: WallClock::new(),
        }
    }

    /// A worker's batch: runs it popped from the queue, refilled from it for a while.
    pub(crate) fn queued(
        shared: &'a Arc<Shared<E>>,
        candidates: Vec<RunId>,
        worker: &'a WorkerStat,
        refill: usize,
    ) -> Self {
        Self::new(shared, candidates, Vec::new(), Some(worker), refill)
    }

    /// Queued runs a thread that is not a worker runs (a waiter, when the pool is stuck;
    /// or the thread that stops a pool without workers).
    pub(crate) fn draining(shared: &'a Arc<Shared<E>>, candidates: Vec<RunId>) -> Self {
        Self::new(shared, candidates, Vec::new(), None, 0)
    }

    /// Ready runs a waiting thread wants, in order (they stay on the queue if queued).
    pub(crate) fn helping(shared: &'a Arc<Shared<E>>, wanted: Vec<RunId>) -> Self {
        Self::new(shared, Vec::new(), wanted, None, 0)
    }

    /// Jobs this batch handed out so far.
    pub(crate) fn handed(&self) -> usize {
        self.handed
    }

    /// The engine, to read the outcomes of upstream runs. (Borrowed for the batch's
    /// lifetime, not the call's, so it can be held while jobs are finished.)
    pub fn engine(&self) -> &'a Arc<Shared<E>> {
        self.shared
    }

    /// The next job to execute, or `None` when the batch is done.
    ///
    /// # Panics
    /// If the previous job was neither finished, retried nor deferred (an executor bug).
    pub fn next_job(&mut self) -> Option<Job<E::Payload>> {
        assert!(
            self.current.is_none(),
            "finish or retry the previous job before taking the next"
        );
        let now = self.clock.unwrap_or_else(Instant::now);
        if self.handed == 0 {
            // The refill window counts from the first job, when the executor is ready to
            // run it (a worker waits for the interpreter first, and on a busy machine that
            // wait alone could close the window: a map's first run then went to a cluster
            // runner on its own, ahead of the rest).
            if let Some(until) = &mut self.extend_until {
                *until = now + BATCH_EXTEND;
            }
        }
        let mut last_was_slow = false;
        if let Some(started) = self.started.take() {
            if now.saturating_duration_since(started) >= SLOW_JOB {
                last_was_slow = true;
                self.stop_early();
            }
        }
        if self.worker.is_some() && self.shared.pool().is_over_bound() {
            // Deferred runs fill `max_workers`: take nothing more; the worker sleeps until
            // one of them ends.
            self.stop_early();
            return None;
        }
        let shared = self.shared;
        let job = loop {
            let next = self
                .candidates
                .by_ref()
                .chain(self.wanted.by_ref())
                .find_map(|run| shared.claim(run));
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
        if let Some(worker) = self.worker {
            worker.job_edge();
        }
        EXECUTING.with(|executing| executing.borrow_mut().push((self.shared.id(), job.run)));
        Some(job)
    }

    /// Publishes what finished and gives back what the batch did not start: queue-owned
    /// runs go back to the head of the queue, runs a waiter wanted are left alone.
    fn stop_early(&mut self) {
        self.extend_until = None;
        self.publish();
        self.wanted = Vec::new().into_iter();
        let rest: Vec<RunId> = self.candidates.by_ref().collect();
        self.shared.pool().push_front(self.shared, &rest);
    }

    /// A worker's batch that ran dry and still has time: publish what finished (which may
    /// make dependents ready) and take more from the queue. Returns whether it took any.
    fn refill_from_queue(&mut self) -> bool {
        if self.extend_until.is_none_or(|until| Instant::now() >= until) {
            return false;
        }
        self.publish();
        let mut more = Vec::new();
        self.shared.pool().pop_share(self.refill, &mut more);
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
        if let Some(worker) = self.worker {
            worker.job_edge();
        }
    }

    /// Ends the current job in a final state with the executor's value for it.
    ///
    /// # Panics
    /// If `run` is not the job this batch handed out last (an executor bug).
    pub fn finish(&mut self, run: RunId, state: Final, value: E::Value) {
        self.end_current(run);
        let now = self.tick();
        self.shared.record(run, state, value, self.clock_base.micros_at(now));
        self.finished.push(run);
    }

    /// The time a job ended. The clock is read every `CLOCK_EVERY` jobs, and at the end of
    /// the first: a job's end (its timestamp, the next job's start) is known to within a
    /// few fast jobs, and a slow job is noticed at most that many jobs late.
    fn tick(&mut self) -> Instant {
        self.since_clock += 1;
        let now = match self.clock {
            Some(clock) if self.since_clock < CLOCK_EVERY => clock,
            _ => {
                self.since_clock = 0;
                Instant::now()
            }
        };
        self.clock = Some(now);
        now
    }

    /// Sends the current job back to wait `delay` before its next attempt.
    ///
    /// # Panics
    /// As [`Batch::finish`].
    pub fn retry(&mut self, job: Job<E::Payload>, delay: Duration) {
        self.end_current(job.run);
        self.shared.reschedule(job, delay);
    }

    /// Hands the current job off to finish later, from any thread (a coroutine that runs
    /// on an event loop): it stays Running until [`Shared::finish_claimed`], which must
    /// come, whatever happens to the job. Deferred out of a worker's batch, it counts
    /// against `max_workers` until then (see [`Shared::suspend_deferred`] for a deferred
    /// run that waits on others).
    ///
    /// # Panics
    /// As [`Batch::finish`].
    pub fn defer(&mut self, job: Job<E::Payload>) -> Job<E::Payload> {
        self.end_current(job.run);
        self.tick();
        if self.worker.is_some() {
            self.shared.count_deferred(job.run);
        }
        job
    }

    /// Hands the current job off to finish later from any thread, like [`Batch::defer`],
    /// without counting it against `max_workers`: for runners that execute every run
    /// elsewhere (another process) and bound their own concurrency, so the engine keeps
    /// handing ready runs over while earlier ones execute.
    ///
    /// # Panics
    /// As [`Batch::finish`].
    pub fn hand_off(&mut self, job: Job<E::Payload>) -> Job<E::Payload> {
        self.end_current(job.run);
        self.tick();
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
            let value = self.shared.executor().abandoned(run);
            self.shared.record(run, Final::Crashed, value, now_micros());
            self.finished.push(run);
        }
        // Runs are claimed only as they are handed out, so what the batch did not start is
        // still Ready in its slot: queue-owned candidates go back to the queue.
        let rest: Vec<RunId> = self.candidates.by_ref().collect();
        self.shared.pool().push_front(self.shared, &rest);
        self.publish();
    }
}
