//! A task's fixed options, built once per `Task` object and read by every run.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

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

#[pymethods]
impl TaskSpec {
    #[new]
    /// `body` is "sync", "eager-coroutine" or "coroutine" (see `Body`).
    #[pyo3(signature = (task, func, name, retries, delays, custom_name, body="sync"))]
    fn new(
        task: Py<PyAny>,
        func: Py<PyAny>,
        name: String,
        retries: u32,
        delays: Vec<f64>,
        custom_name: Option<Py<PyAny>>,
        body: &str,
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
        Ok(TaskSpec {
            task,
            func,
            name,
            retries,
            delays,
            custom_name,
            body,
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.task)?;
        visit.call(&self.func)?;
        visit.call(&self.custom_name)
    }
}

impl TaskSpec {
    pub(crate) fn retry_delay(&self, attempt: u32) -> f64 {
        match self.delays.len() {
            0 => 0.0,
            len => self.delays[(attempt as usize).min(len - 1)],
        }
    }
}
