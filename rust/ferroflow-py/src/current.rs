//! Which run the calling thread executes: read by `get_run_logger()`, `print` capture, a
//! nested `.submit()` and error messages, to find their run and flow run without passing
//! anything around.
//!
//! An entry points at the engine and the run's identity instead of owning them, so no
//! reference count moves per run. That is sound because an entry exists only while its
//! [`Executing`] guard lives, and the guard borrows both for its whole life: it pops the
//! entry when dropped, on return and on unwind alike.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use ferroflow_core::{RunId, Shared};
use pyo3::prelude::*;

use crate::executor::{CoreShared, PyExecutor};

/// What a run is, as code inside it asks: implemented by a run's call.
pub(crate) trait RunIdentity {
    /// The run's name in log lines (`inc-3`) by its plan's naming.
    fn run_name(&self) -> String;
    /// The Python `Task` the run belongs to.
    fn task(&self, py: Python<'_>) -> Py<PyAny>;
    /// A handle on the run's arguments, resolved only when asked (`RunArguments`).
    fn arguments(&self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

#[derive(Clone)]
struct Entry {
    engine: *const Shared<PyExecutor>,
    identity: *const (dyn RunIdentity + 'static),
    run: RunId,
    /// 0 for the first attempt, then 1, 2, ... for retries.
    attempt: u32,
    /// The run's name when the task sets `task_run_name` (computed once it is entered,
    /// before its function runs; see `Executing::rename`).
    custom_name: Option<String>,
}

thread_local! {
    static EXECUTING: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Marks the calling thread as executing a run until dropped.
pub(crate) struct Executing<'a> {
    depth: usize,
    _borrows: PhantomData<(&'a CoreShared, &'a dyn RunIdentity)>,
}

/// Enters a run: until the guard drops, [`with_current`] on this thread sees it.
pub(crate) fn enter<'a>(
    engine: &'a CoreShared,
    identity: &'a (dyn RunIdentity + 'a),
    run: RunId,
    attempt: u32,
) -> Executing<'a> {
    let identity: *const (dyn RunIdentity + 'a) = identity;
    #[allow(clippy::transmute_ptr_to_ptr)] // `as` cannot widen a trait object's lifetime bound
    // SAFETY: only the lifetime bound of the trait object changes; the pointer is
    // dereferenced only while the guard, which borrows `identity` for 'a, is alive.
    let identity: *const (dyn RunIdentity + 'static) = unsafe { std::mem::transmute(identity) };
    let depth = EXECUTING.with(|stack| {
        let mut stack = stack.borrow_mut();
        stack.push(Entry {
            engine: Arc::as_ptr(engine),
            identity,
            run,
            attempt,
            custom_name: None,
        });
        stack.len()
    });
    Executing {
        depth,
        _borrows: PhantomData,
    }
}

impl Executing<'_> {
    /// Gives the run its custom name (`task_run_name`), computed once it was entered.
    pub(crate) fn rename(&mut self, name: String) {
        EXECUTING.with(|stack| {
            if let Some(entry) = stack.borrow_mut().get_mut(self.depth - 1) {
                entry.custom_name = Some(name);
            }
        });
    }
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        // Guards drop innermost first, so this entry is the top; truncating (not popping)
        // keeps the stack right even if an inner guard was leaked.
        EXECUTING.with(|stack| stack.borrow_mut().truncate(self.depth - 1));
    }
}

/// The innermost run the calling thread executes (a copy of its entry, so that no borrow
/// of the thread's stack is held while Python code runs).
pub(crate) struct CurrentRun {
    entry: Entry,
}

impl CurrentRun {
    pub(crate) fn run(&self) -> RunId {
        self.entry.run
    }

    /// A new strong handle on the run's engine.
    pub(crate) fn engine(&self) -> CoreShared {
        // SAFETY: the entry's guard borrows the engine's `Arc`, so the count is at least
        // one while the entry exists (and it outlives this `CurrentRun`, see `identity`);
        // taking one more reference is balanced by the returned `Arc`.
        unsafe {
            Arc::increment_strong_count(self.entry.engine);
            Arc::from_raw(self.entry.engine)
        }
    }

    pub(crate) fn run_name(&self) -> String {
        self.entry
            .custom_name
            .clone()
            .unwrap_or_else(|| self.identity().run_name())
    }

    pub(crate) fn task(&self, py: Python<'_>) -> Py<PyAny> {
        self.identity().task(py)
    }

    /// Attempts so far, this one included (Prefect's `run_count`).
    pub(crate) fn run_count(&self) -> u32 {
        self.entry.attempt.saturating_add(1)
    }

    pub(crate) fn arguments(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.identity().arguments(py)
    }

    fn identity(&self) -> &dyn RunIdentity {
        // SAFETY: the entry's guard borrows the identity for as long as the entry exists,
        // and a `CurrentRun` only lives inside `with_current`'s callback, which runs
        // nested inside the guard's scope on this thread.
        unsafe { &*self.entry.identity }
    }
}

/// Calls `f` with the innermost run the current thread executes, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&CurrentRun>) -> R) -> R {
    let current = EXECUTING.with(|stack| stack.borrow().last().cloned().map(|entry| CurrentRun { entry }));
    f(current.as_ref())
}

/// The name of `run` of `engine` if the calling thread executes it.
pub(crate) fn name_if_executing(engine_id: usize, run: RunId) -> Option<String> {
    EXECUTING.with(|stack| {
        stack
            .borrow()
            .iter()
            .rev()
            .find(|entry| entry.engine as usize == engine_id && entry.run == run)
            .map(|entry| CurrentRun { entry: entry.clone() }.run_name())
    })
}
