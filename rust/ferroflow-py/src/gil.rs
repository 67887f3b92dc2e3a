//! Every crossing between the interpreter and the engine, in one place.
//!
//! Rules (see DESIGN.md): never block on an engine lock or condvar while attached, and
//! never call into Python while holding an engine lock. Python threads enter the engine
//! through [`block_detached`], which waits in slices and re-attaches between them to run
//! signal handlers, so Ctrl-C interrupts any wait. Engine threads enter Python through
//! [`attach_for_batch`], once per batch of runs.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Longest a detached wait goes without checking for signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// Runs `step` detached, in slices of at most [`SIGNAL_SLICE`] up to `deadline`, until
/// it returns `Some`. Between slices it re-attaches and runs pending signal handlers (a
/// `KeyboardInterrupt` propagates as the error). Returns `Ok(None)` at the deadline.
pub(crate) fn block_detached<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    step: impl Fn(Option<Instant>) -> Option<T> + Send + Sync,
) -> PyResult<Option<T>> {
    loop {
        let slice_end = Instant::now() + SIGNAL_SLICE;
        let slice_deadline = Some(deadline.map_or(slice_end, |at| at.min(slice_end)));
        if let Some(done) = py.detach(|| step(slice_deadline)) {
            return Ok(Some(done));
        }
        py.check_signals()?;
        if deadline.is_some_and(|at| Instant::now() >= at) {
            return Ok(None);
        }
    }
}

/// Runs `f` detached, for engine calls that do not wait on runs (joining workers).
pub(crate) fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}

/// Attaches a worker (or helping) thread for one batch. `None` while the interpreter is
/// shutting down, when no Python code may run.
pub(crate) fn attach_for_batch<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
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
