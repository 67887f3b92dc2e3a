//! What every run of one engine shares: the executor's own state (the run-id seed, the
//! flow run it serves) and the cell a finished run's value lives in. How a batch of runs
//! executes is in `execute.rs`; this module is the bottom of the crate's dependencies.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use ferroflow_core::Shared;
use pyo3::prelude::*;
use std::sync::{Mutex, TryLockError};

use crate::sync::lock;

/// The engine as the bindings hold it.
pub(crate) type CoreShared = Arc<Shared<PyExecutor>>;

pub struct PyExecutor {
    /// The first 12 bytes of every run's `task_run_id` (a random UUID's; see `ids.rs`).
    pub(crate) uuid_seed: [u8; 16],
    /// The flow run this engine serves and the runner's `execute` (see [`RunnerLink`]).
    /// Cleared at shutdown: both refer back to the runner that owns the engine.
    link: Mutex<Option<RunnerLink>>,
    /// Set once any run returned a `State` (its value is that State): until then, reading
    /// results skips the check for one.
    returned_states: AtomicBool,
    /// Whether every submitted or mapped run executes elsewhere (the runner's `execute`
    /// takes them all, not only coroutines): a process pool's engine. Direct calls still
    /// execute in their caller's thread.
    pub(crate) executes_elsewhere: bool,
    /// The process that made the engine: in a child forked since, the engine's threads
    /// are gone and its locks and condvars may hold waiters that no longer exist, so it
    /// must never be used (or shut down) there.
    pid: u32,
}

impl PyExecutor {
    pub(crate) fn new(uuid_seed: [u8; 16], link: RunnerLink, executes_elsewhere: bool) -> Self {
        PyExecutor {
            uuid_seed,
            executes_elsewhere,
            link: Mutex::new(Some(link)),
            returned_states: AtomicBool::new(false),
            pid: this_process(),
        }
    }

    /// Whether this engine was made in a parent of this process (before an `os.fork()`).
    pub(crate) fn is_from_parent_process(&self) -> bool {
        self.pid != this_process()
    }

    /// Refuses any use of an engine made before a fork (see [`Self::is_from_parent_process`]).
    pub(crate) fn check_same_process(&self) -> PyResult<()> {
        if self.is_from_parent_process() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this task runner (or a future of it) was created before os.fork() in the parent process; \
                 its threads do not exist in the child: submit the work again in the child",
            ));
        }
        Ok(())
    }

    /// The flow run context (or None).
    pub(crate) fn context(&self, py: Python<'_>) -> Py<PyAny> {
        lock(&self.link)
            .as_ref()
            .map_or_else(|| py.None(), |link| link.context.clone_ref(py))
    }

    /// The runner's `execute(runs)`, which takes claimed runs to execute elsewhere.
    pub(crate) fn execute(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.link).as_ref().map(|link| link.execute.clone_ref(py))
    }

    /// Drops the references back to the runner (at shutdown, or when the GC clears it).
    pub(crate) fn unlink(&self) -> Option<RunnerLink> {
        lock(&self.link).take()
    }

    pub(crate) fn traverse_link(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        let visit_link = |link: &Option<RunnerLink>| match link {
            Some(link) => {
                visit.call(&link.context)?;
                visit.call(&link.execute)
            }
            None => Ok(()),
        };
        match self.link.try_lock() {
            Ok(link) => visit_link(&link),
            Err(TryLockError::Poisoned(link)) => visit_link(&link.into_inner()),
            Err(TryLockError::WouldBlock) => Ok(()),
        }
    }

    pub(crate) fn note_returned_state(&self) {
        self.returned_states.store(true, Ordering::Release);
    }

    /// Whether a run's value may be a State it returned (see [`Self::note_returned_state`]).
    pub(crate) fn may_hold_returned_states(&self) -> bool {
        self.returned_states.load(Ordering::Acquire)
    }
}

/// This process's id, read once and again in a forked child (`note_fork`): asking the
/// kernel on every submit and wait cost a system call each.
static PROCESS: AtomicU32 = AtomicU32::new(0);

fn this_process() -> u32 {
    match PROCESS.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PROCESS.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Called in a forked child, before anything else runs there.
pub(crate) fn note_fork() {
    PROCESS.store(std::process::id(), Ordering::Relaxed);
}

/// What an engine knows of the runner that owns it.
pub(crate) struct RunnerLink {
    /// The flow run context (`None` outside flows), handed to hooks.
    pub(crate) context: Py<PyAny>,
    /// `execute(runs)`: where runs claimed to execute elsewhere (coroutines, and the runs
    /// of runners that execute in other processes or clusters) are handed, a batch at a time.
    pub(crate) execute: Py<PyAny>,
}

/// A finished run's value: its result, or its exception; empty when it never ran, or
/// once released (no future or dependent can ask for it any more).
///
/// Not behind a lock, because results are read once per run on the hottest path
/// (`.result()` of a million-run map). It is written when the run ends, before its state
/// turns final (the engine publishes it with that state), and emptied at most once, by
/// [`RunValue::release`], which the engine calls only when no handle on the run is left.
pub struct RunValue(UnsafeCell<Option<Py<PyAny>>>);

// SAFETY: the value is written before the run is published final and read only after
// (the engine's Release/Acquire on the state byte); `release` writes it again only when
// no future, future list or dependent holds the run any more, so no reader can run at
// the same time (the handle count's AcqRel ordering puts every earlier read before it).
unsafe impl Sync for RunValue {}

impl RunValue {
    pub(crate) fn new(value: Option<Py<PyAny>>) -> Self {
        RunValue(UnsafeCell::new(value))
    }

    /// The value, if there is one.
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        // SAFETY: see the `Sync` impl: no `release` can run while a reader exists.
        unsafe { &*self.0.get() }.as_ref().map(|value| value.bind(py).clone())
    }

    /// Reports the value to the garbage collector (see `PyEngine::__traverse__`).
    pub(crate) fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // SAFETY: see the `Sync` impl; the collector runs attached, as every release does.
        visit.call(unsafe { &*self.0.get() })
    }

    /// Drops the value now (the run is final and nothing can ask for it any more). PyO3
    /// defers the decref if this thread is not attached.
    pub(crate) fn release(&self) {
        // SAFETY: see the `Sync` impl: the engine releases a value once, with no reader left.
        drop(unsafe { (*self.0.get()).take() });
    }
}
