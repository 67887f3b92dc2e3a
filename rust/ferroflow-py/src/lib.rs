//! ferroflow's Python bindings (`ferroflow._core`): the only Rust that touches the
//! interpreter. The engine lives in `ferroflow-core`; this crate implements its executor
//! for Python callables and exposes engines, task specs and futures to Python.

mod async_run;
mod call;
mod engine;
mod executor;
mod future;
mod gil;
mod hooks;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    use super::*;

    #[pymodule_export]
    use crate::async_run::AsyncRun;
    #[pymodule_export]
    use crate::call::{contains_futures, TaskSpec};
    #[pymodule_export]
    use crate::engine::PyEngine;
    #[pymodule_export]
    use crate::future::{Completions, FutureListIter, PyFuture, PyFutureList};

    /// `(future, run_name, task, flow_run_context)` of a run being executed.
    type CurrentRun = (Py<PyFuture>, String, Py<PyAny>, Py<PyAny>);

    /// The run the calling thread executes, or None.
    #[pyfunction]
    fn current_run(py: Python<'_>) -> PyResult<Option<CurrentRun>> {
        crate::executor::with_current(|current| {
            current
                .map(|running| {
                    let future = Py::new(py, PyFuture::new(running.engine(), running.run))?;
                    Ok((
                        future,
                        running.run_name(),
                        running.plan().spec.get().task.clone_ref(py),
                        running.engine().executor().context(py),
                    ))
                })
                .transpose()
        })
    }

    /// Call in a forked child: worker threads did not survive the fork.
    #[pyfunction]
    fn after_fork_in_child() {
        ferroflow_core::after_fork_in_child();
    }

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
