//! A task's fixed options, built once per `Task` object and read by every run.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

#[pyclass(frozen, name = "TaskSpec", module = "ferroflow._core")]
pub struct TaskSpec {
    /// The Python `Task`, handed to hooks.
    pub(crate) task: Py<PyAny>,
    /// The user's function.
    pub(crate) func: Py<PyAny>,
    pub(crate) name: String,
    pub(crate) retries: u32,
    /// Delay before retry k is `delays[min(k, len - 1)]` seconds; empty means none.
    pub(crate) delays: Vec<f64>,
    /// `task_run_name` when it is set (a template or a callable).
    pub(crate) custom_name: Option<Py<PyAny>>,
    pub(crate) body: Body,
    pub(crate) hooks: StateHooks,
    /// `retry_condition_fn`, asked on a failed attempt while retries remain.
    pub(crate) retry_condition: Option<Py<PyAny>>,
    /// `retry_jitter_factor`; 0 for none.
    pub(crate) jitter: f64,
}

/// What calling the task's function gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// The result.
    Sync,
    /// A coroutine whose code cannot suspend (no `await`, `async for`, `async with`):
    /// it runs to completion in one step, on the executing thread.
    EagerCoroutine,
    /// A coroutine that may suspend: it runs as an asyncio task on an event loop.
    Coroutine,
}

/// The state a run enters that a task may have hooks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookKind {
    /// An attempt starts (Running, or Retrying after a failed one).
    Running,
    /// The run completed (Completed, or a cache hit's Cached).
    Completion,
    /// The run failed for good (Failed, TimedOut).
    Failure,
}

/// The task's hook lists themselves (`on_running_hooks`, ...), not copies: a hook added
/// after the task was made (`@my_task.on_failure`, or `append`) is seen. Reading whether
/// one is empty is a length check, so a task without hooks pays no Python call.
pub(crate) struct StateHooks {
    running: Option<Py<PyList>>,
    completion: Option<Py<PyList>>,
    failure: Option<Py<PyList>>,
}

impl StateHooks {
    /// The hooks for `kind`, if there are any.
    pub(crate) fn of<'py>(&self, py: Python<'py>, kind: HookKind) -> Option<&Bound<'py, PyList>> {
        let list = match kind {
            HookKind::Running => &self.running,
            HookKind::Completion => &self.completion,
            HookKind::Failure => &self.failure,
        };
        list.as_ref().map(|list| list.bind(py)).filter(|list| !list.is_empty())
    }
}

#[pymethods]
impl TaskSpec {
    #[new]
    /// `body` is "sync", "eager-coroutine" or "coroutine" (see `Body`); the hooks are the
    /// task's lists (see `StateHooks`); `retry_jitter_factor` is a finite number >= 0.
    #[pyo3(signature = (
        task, func, name, retries, delays, custom_name, body="sync", *,
        on_running=None, on_completion=None, on_failure=None, retry_condition=None, retry_jitter_factor=0.0,
    ))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments: one per task option
    fn new(
        task: Py<PyAny>,
        func: Py<PyAny>,
        name: String,
        retries: u32,
        delays: Vec<f64>,
        custom_name: Option<Py<PyAny>>,
        body: &str,
        on_running: Option<Py<PyList>>,
        on_completion: Option<Py<PyList>>,
        on_failure: Option<Py<PyList>>,
        retry_condition: Option<Py<PyAny>>,
        retry_jitter_factor: f64,
    ) -> PyResult<Self> {
        let body = match body {
            "sync" => Body::Sync,
            "eager-coroutine" => Body::EagerCoroutine,
            "coroutine" => Body::Coroutine,
            other => return Err(PyValueError::new_err(format!("unknown task body {other:?}"))),
        };
        if delays.iter().any(|d| !d.is_finite() || *d < 0.0) {
            return Err(PyValueError::new_err(format!(
                "task '{name}': retry delays must be non-negative numbers, got {delays:?}"
            )));
        }
        if !(retry_jitter_factor.is_finite() && retry_jitter_factor >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "task '{name}': retry_jitter_factor must be a finite number >= 0, got {retry_jitter_factor}"
            )));
        }
        Ok(TaskSpec {
            task,
            func,
            name,
            retries,
            delays,
            custom_name,
            body,
            hooks: StateHooks {
                running: on_running,
                completion: on_completion,
                failure: on_failure,
            },
            retry_condition,
            jitter: retry_jitter_factor,
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.task)?;
        visit.call(&self.func)?;
        visit.call(&self.custom_name)?;
        visit.call(&self.hooks.running)?;
        visit.call(&self.hooks.completion)?;
        visit.call(&self.hooks.failure)?;
        visit.call(&self.retry_condition)
    }
}

impl TaskSpec {
    /// The delay before retry `attempt + 1`, before any jitter.
    pub(crate) fn retry_delay(&self, attempt: u32) -> f64 {
        match self.delays.len() {
            0 => 0.0,
            len => self.delays[(attempt as usize).min(len - 1)],
        }
    }
}
