//! ferroflow's Python bindings (`ferroflow._core`): the only Rust that touches the
//! interpreter. The engine lives in `ferroflow-core`; this crate implements its executor
//! for Python callables and exposes engines, task specs and futures to Python.
//!
//! Modules, from the bottom up (each uses only those above it in this list):
//! `hooks` (the Python functions the engine calls back), `executor` (what an engine's
//! runs share), `remote` (run values kept on a cluster), `current` (the run a thread executes), `errors`, `gil` (every attach and
//! detach), `ids`, `future`, `future_list`, `completions`, `args` (the one walk over
//! arguments), `spec`, `plan` (a call's arguments), `report` (state hooks, retries,
//! returned States, log lines), `async_run` (claimed runs executed elsewhere), `segments`
//! (claimed runs shipped to a process pool in groups), `execute`
//! (batches), and `engine` (the engine as Python sees it).

// PyO3 hands arguments over by value (`PyVisit`, `Vec<Bound>`, `slf`), and a job that
// ends is given away by value even where the callee only reads it before dropping it.
#![allow(clippy::needless_pass_by_value)]
// Prose names (CPython, PyO3, Prefect's state names) are words here, not code.
#![allow(clippy::doc_markdown)]

mod args;
mod async_run;
mod completions;
mod current;
mod engine;
mod errors;
mod execute;
mod executor;
mod future;
mod future_list;
mod gil;
mod hooks;
mod ids;
mod plan;
mod remote;
mod report;
mod segments;
mod spec;
mod sync;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::args::{contains_futures, futures_in, replace_futures};
    #[pymodule_export]
    use crate::async_run::{complete_runs, prepare_runs, AsyncRun};
    #[pymodule_export]
    use crate::completions::Completions;
    #[pymodule_export]
    use crate::engine::shut_down_engines_at_exit;
    #[pymodule_export]
    use crate::engine::PyEngine;
    #[pymodule_export]
    use crate::future::PyFuture;
    #[pymodule_export]
    use crate::future_list::{FutureListIter, PyFutureList};
    #[pymodule_export]
    use crate::gil::begin_exit;
    #[pymodule_export]
    use crate::plan::RunArguments;
    #[pymodule_export]
    use crate::remote::RemoteResult;
    #[pymodule_export]
    use crate::segments::prepare_segments;
    #[pymodule_export]
    use crate::spec::TaskSpec;

    /// The run the calling thread executes, or None: `(future, run_name, task,
    /// flow_run_context, run_count, arguments)`, as `AsyncRun.current` gives for a
    /// coroutine run.
    #[pyfunction]
    fn current_run(py: Python<'_>) -> PyResult<Option<crate::async_run::CurrentRun>> {
        crate::current::with_current(|current| {
            current
                .map(|running| {
                    let engine = running.engine();
                    let context = engine.executor().context(py);
                    let future = Py::new(py, PyFuture::new(engine, running.run()))?;
                    let arguments = running.arguments(py)?;
                    Ok((
                        future,
                        running.run_name(),
                        running.task(py),
                        context,
                        running.run_count(),
                        arguments,
                    ))
                })
                .transpose()
        })
    }

    /// Call in a forked child: worker threads did not survive the fork.
    #[pyfunction]
    fn after_fork_in_child() {
        crate::executor::note_fork();
        ferroflow_core::after_fork_in_child();
    }

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        module.add("__version__", env!("CARGO_PKG_VERSION"))?;
        // Registered when `_core` is first imported, before ferroflow's runners register
        // their own exit hook: atexit runs hooks last-in first-out, so this one runs
        // after the runners' (which log what they cancel) and leaves no engine thread
        // running at finalization (see `gil.rs`).
        let exiting = module.getattr("shut_down_engines_at_exit")?;
        module.py().import("atexit")?.call_method1("register", (exiting,))?;
        Ok(())
    }
}
