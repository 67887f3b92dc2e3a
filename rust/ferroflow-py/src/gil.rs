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
//! Exiting: CPython 3.10–3.13 ends a thread that tries to take the GIL during
//! finalization with `pthread_exit`, which unwinds through Rust frames and aborts the
//! process. PyO3's own check for that exists only on 3.13+ builds (we are abi3), so
//! ferroflow keeps its own: `ferroflow` marks the interpreter exiting from `atexit`
//! (after its runners have shut down, before finalization starts); from then on worker
//! threads never attach, and a Python thread other than the one finalizing that comes
//! back from a detached wait parks forever instead of re-attaching (as CPython 3.14 does
//! for daemon threads), since it could only be killed mid-Rust.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroflow_core::EngineError;
use pyo3::prelude::*;

use crate::errors::engine_error;

/// Longest a detached wait goes without checking for signals.
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

static EXITING: AtomicBool = AtomicBool::new(false);
/// The thread that marked the interpreter exiting (it finalizes): it may still attach.
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

/// Called from `atexit`, after ferroflow's runners have shut down: no engine thread may
/// enter Python from now on.
#[pyfunction]
pub(crate) fn mark_interpreter_exiting() {
    FINALIZING_THREAD.store(thread_key(), Ordering::Release);
    EXITING.store(true, Ordering::Release);
}

/// Whether the interpreter is exiting (see the module docs).
pub(crate) fn interpreter_exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// A Python thread is about to re-attach: if the interpreter is exiting and this is not
/// the finalizing thread, it would be killed inside Rust; park it for good instead.
fn park_if_exiting() {
    if interpreter_exiting() && FINALIZING_THREAD.load(Ordering::Acquire) != thread_key() {
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
    step: impl Fn(Option<Instant>) -> Result<Option<T>, EngineError> + Send + Sync,
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
/// done-callbacks). `None` once the interpreter is exiting, when no Python code may run.
pub(crate) fn attach_worker<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    if interpreter_exiting() {
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
