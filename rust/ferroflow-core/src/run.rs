//! What the engine's callers hand in and get back for a run: plain data, no behaviour.
//!
//! These types sit at the bottom of the crate (only the state machine is below them), so
//! every other module can name a run, a dependency or an outcome without depending on
//! the engine itself.

use std::fmt;

use crate::state::Final;

/// A run's index in its engine's arena.
pub type RunId = u32;

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
    /// A run this engine never registered (for [`crate::Shared::register_reserved`]: a
    /// run it never reserved, or one already registered or given back).
    UnknownRun(RunId),
    /// The calling thread waits on a run it is itself executing (it would wait forever).
    WaitsOnItself(RunId),
    /// Registering `requested` more runs would pass what one engine can index (a run is
    /// a `u32`), or what memory can hold for their slots. Nothing was registered.
    TooManyRuns { requested: usize },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Closed => f.write_str("the task runner has been shut down and takes no new runs"),
            EngineError::UnknownRun(run) => write!(f, "run {run} does not belong to this task runner"),
            EngineError::WaitsOnItself(run) => write!(f, "run {run} waits on its own result, which can never arrive"),
            EngineError::TooManyRuns { requested } => write!(
                f,
                "cannot register {requested} more task runs: one task runner holds at most {} runs",
                RunId::MAX
            ),
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
