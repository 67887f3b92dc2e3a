//! Waiting: for one run, for several, for the engine to be idle; with deadlines, from any
//! thread, never polling (see `signal.rs`).
//!
//! A waiter may run work itself ("help") when that adds no concurrency: it is suspended
//! inside a run of the same engine (a task waiting on a future), the run is its own
//! direct call, or no worker can make progress (the pool is stuck: every worker is
//! itself waiting, in this engine or any other, or none can start). That is what keeps
//! nested waits from deadlocking a bounded pool, including across engines (a task that
//! runs a subflow, whose tasks wait on its flow's queued runs).

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::batch::{is_executing, is_executing_in};
use crate::engine::{Batch, Executor, Shared};
use crate::run::{EngineError, RunId, WaitAll};
use crate::scheduler::{waiting, Host};
use crate::slot::flag;
use crate::state::RunState;

/// Most runs a waiting thread takes at once when it helps run what it waits for.
const HELP_BATCH: usize = 256;

impl<E: Executor> Shared<E> {
    /// Blocks until `run` is final or `deadline` passes; returns whether it is final.
    ///
    /// With `help`, the calling thread executes a ready run it waits for, instead of
    /// waiting, when that adds no concurrency (see the module docs), and runs other
    /// queued work when the pool is stuck: so nested waits cannot deadlock a bounded pool.
    ///
    /// # Errors
    /// [`EngineError::UnknownRun`]; [`EngineError::WaitsOnItself`] when the calling
    /// thread is executing `run`.
    pub fn wait(self: &Arc<Self>, run: RunId, deadline: Option<Instant>, help: bool) -> Result<bool, EngineError> {
        if run >= self.len() {
            return Err(EngineError::UnknownRun(run));
        }
        let slot = self.slot(run);
        if !slot.state().is_final() && is_executing(self.id(), run) {
            return Err(EngineError::WaitsOnItself(run));
        }
        let _waiting = waiting();
        let _sleeping = self.signal().sleeping();
        self.watch(run);
        loop {
            let seen = self.signal().generation();
            if slot.state().is_final() {
                return Ok(true);
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(false);
            }
            self.fire_due_timers();
            if help && self.help_with(run..=run) {
                continue;
            }
            self.sleep_until_change(seen, deadline);
        }
    }

    /// Waits for every run in `runs` (a map's range), in order, helping as [`Self::wait`]
    /// does, and with `stop_on_failure` returning as soon as any of them fails.
    ///
    /// `runs` is what remains to wait for: its start moves past each run found final,
    /// so a caller waiting in slices (to check for signals) resumes where the last slice
    /// stopped instead of scanning a million finished runs again.
    ///
    /// # Errors
    /// As [`Self::wait`].
    pub fn wait_range(
        self: &Arc<Self>,
        runs: &mut Range<RunId>,
        deadline: Option<Instant>,
        help: bool,
        stop_on_failure: bool,
    ) -> Result<WaitAll, EngineError> {
        if runs.end > self.len() {
            return Err(EngineError::UnknownRun(runs.end - 1));
        }
        let (start, whole) = (runs.start, runs.clone());
        let mut pending = 0..whole.len();
        let waited = self.wait_each(
            // Below `whole.len()`, so the sum stays within the range.
            |index| start + RunId::try_from(index).unwrap_or(RunId::MAX),
            |run| whole.contains(&run),
            &mut pending,
            deadline,
            help,
            stop_on_failure,
        );
        runs.start = start + RunId::try_from(pending.start).unwrap_or(RunId::MAX);
        waited
    }

    /// [`Self::wait_range`] for runs in any order; `runs` likewise shrinks to what remains.
    ///
    /// # Errors
    /// As [`Self::wait`].
    pub fn wait_all(
        self: &Arc<Self>,
        runs: &mut &[RunId],
        deadline: Option<Instant>,
        help: bool,
        stop_on_failure: bool,
    ) -> Result<WaitAll, EngineError> {
        let whole: &[RunId] = runs;
        if whole.is_empty() {
            return Ok(WaitAll::AllFinal);
        }
        if let Some(&unknown) = whole.iter().find(|&&run| run >= self.len()) {
            return Err(EngineError::UnknownRun(unknown));
        }
        // Only a failure of one of `runs` stops the wait (the set is needed only then).
        let members: HashSet<RunId> = if stop_on_failure {
            whole.iter().copied().collect()
        } else {
            HashSet::new()
        };
        let mut pending = 0..whole.len();
        let waited = self.wait_each(
            |index| whole[index],
            |run| members.contains(&run),
            &mut pending,
            deadline,
            help,
            stop_on_failure,
        );
        *runs = &whole[pending.start..];
        waited
    }

    /// Waits for the runs at positions `pending` (mapped to runs by `run_at`); its start
    /// advances past each run found final, so on return it is what remains.
    fn wait_each(
        self: &Arc<Self>,
        run_at: impl Fn(usize) -> RunId,
        is_member: impl Fn(RunId) -> bool,
        pending: &mut Range<usize>,
        deadline: Option<Instant>,
        help: bool,
        stop_on_failure: bool,
    ) -> Result<WaitAll, EngineError> {
        let _waiting = waiting();
        let _sleeping = self.signal().sleeping();
        let mut failures_seen = 0;
        let count = pending.end;
        let index = &mut pending.start;
        while *index < count {
            let run = run_at(*index);
            let slot = self.slot(run);
            if slot.state().is_final() {
                if stop_on_failure && !slot.state().is_success() {
                    return Ok(WaitAll::Failed(run));
                }
                *index += 1;
                continue;
            }
            // Registered before the re-check below, so its completion cannot be missed.
            self.watch(run);
            let seen = self.signal().generation();
            if slot.state().is_final() {
                continue;
            }
            if stop_on_failure {
                if let Some(failed) = self.new_failure_in(&is_member, &mut failures_seen) {
                    return Ok(WaitAll::Failed(failed));
                }
            }
            if is_executing(self.id(), run) {
                return Err(EngineError::WaitsOnItself(run));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(WaitAll::TimedOut);
            }
            self.fire_due_timers();
            let ahead = (*index..count.min(*index + HELP_BATCH)).map(&run_at);
            if help && self.help_with(ahead) {
                continue;
            }
            self.sleep_until_change(seen, deadline);
        }
        Ok(WaitAll::AllFinal)
    }

    /// A failure recorded since `seen` (advancing it) of a run waited for.
    fn new_failure_in(&self, is_member: &impl Fn(RunId) -> bool, seen: &mut usize) -> Option<RunId> {
        let failures = self.failures();
        let found = failures[*seen..].iter().copied().find(|&run| is_member(run));
        *seen = failures.len();
        found
    }

    /// Blocks until every registered run is final and its done-callbacks have returned
    /// (a flow run ending). With `help`, the caller runs queued work only when the pool is
    /// stuck or has no workers. Returns false at the deadline.
    pub fn wait_idle(self: &Arc<Self>, deadline: Option<Instant>, help: bool) -> bool {
        let _waiting = waiting();
        let _sleeping = self.signal().sleeping();
        loop {
            let seen = self.signal().generation();
            if self.unfinished() == 0 {
                return true;
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return false;
            }
            self.fire_due_timers();
            if help && self.help_from_queue() {
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
        let may_take_any = is_executing_in(self.id()) || self.pool().is_stuck();
        let mut ready = Vec::new();
        for run in wanted {
            let slot = self.slot(run);
            let takeable = slot.state() == RunState::Ready && (may_take_any || slot.has(flag::INLINE));
            if !takeable {
                if ready.is_empty() {
                    continue;
                }
                break; // keep the batch to a contiguous stretch of ready runs
            }
            ready.push(run);
        }
        if !ready.is_empty() {
            // Each run is claimed only as the batch reaches it, so that a run the first one
            // waits on, or that a worker is free to take, is not held back.
            let mut batch = Batch::helping(self, ready);
            self.executor().run_batch(&mut batch);
            if batch.handed() > 0 {
                return true;
            }
        }
        self.help_from_queue()
    }

    /// Takes queued work if every worker is busy waiting on something and the pool cannot
    /// grow, or has no worker at all (the deadlock a bounded pool would otherwise hit).
    /// Returns whether it ran anything.
    fn help_from_queue(self: &Arc<Self>) -> bool {
        if !self.pool().is_stuck() {
            return false;
        }
        let mut candidates = Vec::new();
        self.pool().pop(HELP_BATCH, &mut candidates);
        // Entries for runs another thread took are stale: drop them, and make no batch
        // (nor attach an interpreter) for nothing.
        let Some(first) = candidates
            .iter()
            .position(|&run| self.slot(run).state() == RunState::Ready)
        else {
            return false;
        };
        candidates.drain(..first);
        // The rest stay queue-owned candidates: claimed lazily, handed back if slow.
        self.run_queued(candidates, None) > 0
    }

    /// Asks completions of `run` (and its becoming ready) to wake sleepers. The fence pairs
    /// with the one in `Signal::wake`: either `settle` sees the flag, or the caller's next
    /// read of the run's state sees what `settle` announced.
    fn watch(&self, run: RunId) {
        let slot = self.slot(run);
        if !slot.has(flag::WATCHED) {
            slot.set_seq_cst(flag::WATCHED);
        }
        fence(Ordering::SeqCst);
    }

    /// Sleeps until a wake-up after generation `seen` (a run finished or became ready, a
    /// timer was added), a timer may be due, or `deadline`. Since the caller read `seen`
    /// before it checked the states it waits on, a change after that check is never
    /// missed: the caller was already counted a sleeper, so the change bumped it.
    fn sleep_until_change(&self, seen: u64, deadline: Option<Instant>) {
        let wake_at = match (deadline, self.pool().next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.signal().sleep_until_change(seen, wake_at);
    }
}
