//! ferroflow-core: the scheduling engine behind ferroflow, with no knowledge of Python.
//!
//! An [`Engine`] owns an arena of task runs (an index per run, no heap object per run),
//! their dependency counts and dependents, the ready queue and a native worker pool.
//! It is generic over an [`Executor`], which says what a run's payload is and how to
//! execute it; the Python bindings implement one for Python callables, the tests here
//! implement one for closures.
//!
//! The life of a run: registered `Blocked` (upstreams unfinished) or `Ready`; taken by a
//! worker, or by a thread that waits for it (so nested waits never deadlock); `Running`
//! → a final state, or `AwaitingRetry` → `Ready` → `Retrying` → ... A run whose upstream
//! does not complete is never executed and ends `NotReady`. Every run, executed or not,
//! passes through the executor exactly once at its end, so the executor can release the
//! payload and report (log, count) every outcome.

mod arena;
mod engine;
mod pool;
mod queue;
mod state;

pub use engine::{Batch, Dep, Disposition, DoneCallback, Engine, EngineError, Job, Outcome, Shared, WaitAll};
pub use pool::after_fork_in_child;
pub use state::{Final, RunState, StateType};

/// A run's index in its engine's arena.
pub type RunId = u32;

/// Executes runs for an [`Engine`].
pub trait Executor: Send + Sync + Sized + 'static {
    /// What a run carries until it executes (a callable and its arguments).
    type Payload: Send + 'static;
    /// What a finished run holds (its result, or its error), readable by every thread.
    type Value: Send + Sync + 'static;

    /// Executes the jobs of a batch on the calling thread: take each with
    /// [`Batch::next_job`], then end it with [`Batch::finish`] or [`Batch::retry`].
    /// A job whose disposition is not [`Disposition::Run`] must not be executed, only
    /// ended in the final state it names.
    fn run_batch(&self, batch: &mut Batch<'_, Self>);

    /// The value of a run whose execution panicked; the run ends [`Final::Crashed`].
    fn abandoned(&self, run: RunId) -> Self::Value;
}
