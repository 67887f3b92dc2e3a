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
//!
//! The modules, bottom up (each uses only those before it; this file only re-exports):
//!
//! | module | what |
//! |---|---|
//! | `state` | the run state machine ([`RunState::can_become`]) |
//! | `run` | ids and the plain data callers pass and get back |
//! | `arena` | chunked storage: an index per run, addresses that never move |
//! | `slot` | one run's storage: state, flags, handle count, payload, outcome |
//! | `graph` | edges, blocked counts, dooms, callbacks, range watches (the graph lock) |
//! | `signal`, `clock` | how waiters sleep and wake; timestamps |
//! | `scheduler` | the ready queue, the worker pool that owns it, the monitor |
//! | `engine` | [`Executor`], [`Shared`], [`Engine`], [`Batch`]: registration, settling, cancelling, handles |
//! | `batch` | what a batch does; the engine's side of the pool's `Host` trait |
//! | `wait` | waiting, helping, stuck detection |

mod arena;
mod batch;
mod clock;
mod engine;
mod graph;
mod run;
mod scheduler;
mod signal;
mod slot;
mod state;
mod sync;
mod wait;

pub use engine::{Batch, Engine, Executor, Progress, Shared};
pub use run::{Dep, Disposition, DoneCallback, EngineError, Job, Outcome, RunId, WaitAll};
pub use scheduler::after_fork_in_child;
pub use state::{Final, RunState, StateType};
