//! Every crossing between the interpreter and the engine, in one place.
//!
//! Rules (see DESIGN.md): never block on an engine lock or condvar while attached, and
//! never call into Python while holding an engine lock.
//!
//! - Python threads enter the engine through [`wait_detached`]: detached, in slices,
//!   re-attaching between them to run signal handlers (so Ctrl-C interrupts any wait),
//!   with the engine's refusals mapped to Python exceptions. Every long call goes
//!   through it, like polars' `enter_polars`.
//! - Threads the engine made (workers) and the callbacks they run enter Python only
//!   through [`attach_worker`], which refuses once the interpreter is exiting.
//!
//! Exiting: CPython 3.10–3.13 ends a thread that takes the GIL during finalization with
//! `pthread_exit`, which unwinds through Rust frames and aborts the process (a worker in
//! `time.sleep` inside a task is enough). PyO3's own check exists only on 3.13+ builds
//! (we are abi3), and it could not help a thread already inside Python anyway. So ferroflow
//! leaves no engine thread running at finalization: from `atexit` it first *drains*
//! (every run registered from then on is cancelled, with its logged line), then shuts
//! every live engine down (unstarted runs cancelled, running ones finish, workers joined),
//! then marks the interpreter *exited*: from then on no engine thread attaches, and a
//! Python thread other than the finalizing one that comes back from a detached wait parks
//! forever instead of re-attaching (as CPython 3.14 does for daemon threads).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroflow_core::EngineError;
use pyo3::prelude::*;

use crate::errors::engine_error;

/// Longest a detached wait goes without checking for signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// The interpreter is exiting: runs registered from now on are cancelled.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Every engine has been shut down: no engine thread may attach any more.
static EXITED: AtomicBool = AtomicBool::new(false);
/// The thread that runs the exit (it finalizes): it may still attach.
static FINALIZING_THREAD: AtomicU64 = AtomicU64::new(0);

fn thread_key() -> u64 {
    thread_local! {
        static KEY: u64 = {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            NEXT.fetch_add(1, Ordering::Relaxed)
        };
    }
    KEY.with(|key| *key)
}

/// The exit begins (see the module docs): runs registered from now on are cancelled.
#[pyfunction]
pub(crate) fn begin_exit() {
    FINALIZING_THREAD.store(thread_key(), Ordering::Release);
    DRAINING.store(true, Ordering::Release);
}

/// Whether the exit has begun: a new run is cancelled as soon as it is registered.
pub(crate) fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

/// Every engine is shut down: no engine thread may enter Python from now on.
pub(crate) fn mark_exited() {
    EXITED.store(true, Ordering::Release);
}

fn exited() -> bool {
    EXITED.load(Ordering::Acquire)
}

/// A Python thread is about to re-attach: if the interpreter has exited and this is not
/// the finalizing thread, it would be killed inside Rust; park it for good instead.
fn park_if_exiting() {
    if exited() && FINALIZING_THREAD.load(Ordering::Acquire) != thread_key() {
        loop {
            std::thread::park();
        }
    }
}

/// Runs `step` detached, in slices of at most [`SIGNAL_SLICE`] up to `deadline`, until it
/// returns `Some`. Between slices it re-attaches and runs pending signal handlers (a
/// `KeyboardInterrupt` propagates as the error). Returns `Ok(None)` at the deadline; an
/// engine refusal becomes its Python exception.
pub(crate) fn wait_detached<T: Send>(
    py: Python<'_>,
    engine_id: usize,
    deadline: Option<Instant>,
    mut step: impl FnMut(Option<Instant>) -> Result<Option<T>, EngineError> + Send,
) -> PyResult<Option<T>> {
    loop {
        let slice_end = Instant::now() + SIGNAL_SLICE;
        let slice_deadline = Some(deadline.map_or(slice_end, |at| at.min(slice_end)));
        let stepped = py.detach(|| {
            let stepped = step(slice_deadline);
            park_if_exiting();
            stepped
        });
        match stepped {
            Ok(Some(done)) => return Ok(Some(done)),
            Ok(None) => {}
            Err(err) => return Err(engine_error(err, engine_id)),
        }
        py.check_signals()?;
        if deadline.is_some_and(|at| Instant::now() >= at) {
            return Ok(None);
        }
    }
}

/// Runs `f` detached, for engine calls that wait for workers but not on runs (joining
/// a pool).
pub(crate) fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(|| {
        let done = f();
        park_if_exiting();
        done
    })
}

/// [`detached`] from a destructor, which may run on a thread that is not attached (a
/// release PyO3 deferred): there `f` just runs.
pub(crate) fn detached_from_drop(f: impl Fn() + Send + Sync) {
    if Python::try_attach(|py| detached(py, &f)).is_none() {
        f();
    }
}

/// Attaches a thread the engine made (a worker running a batch, or a thread running
/// done-callbacks). `None` once the interpreter has exited, when no Python code may run.
pub(crate) fn attach_worker<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    if exited() {
        return None;
    }
    Python::try_attach(f)
}

/// A `timeout` in seconds as a deadline; negative timeouts are the caller's error.
pub(crate) fn deadline_after(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(seconds) if seconds < 0.0 || seconds.is_nan() => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number, got {seconds}"
        ))),
        Some(seconds) => Ok(Some(Instant::now() + Duration::from_secs_f64(seconds.min(1e9)))),
    }
}
