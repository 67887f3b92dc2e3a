//! A task run's future: a thin handle (engine + run index) that answers from memory and
//! blocks detached.

use std::sync::Arc;
use std::time::Instant;

use ferroflow_core::{RunId, RunState};
use pyo3::exceptions::PyTimeoutError;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::executor::CoreShared;
use crate::gil::{attach_worker, deadline_after, wait_detached};
use crate::hooks::{call_done_callback, generic_alias, hooks, report_hook_error};
use crate::ids::run_uuid;
use crate::remote;

/// A task run's future (Prefect's `PrefectConcurrentFuture`).
#[pyclass(frozen, name = "PrefectConcurrentFuture", module = "ferroflow.futures")]
pub struct PyFuture {
    pub(crate) shared: CoreShared,
    pub(crate) run: RunId,
    /// The future of a direct call (`task(x)`): its result is a State the task returned
    /// as is, as Prefect's direct call gives it, instead of that State's result.
    direct_call: bool,
    /// It owns a handle on the run, dropped with it (in an engine that counts handles:
    /// the run's value is freed once nothing can read it, see `Shared::hold`).
    held: bool,
}

impl PyFuture {
    /// Another future of a run someone already holds (a map's member, the current run's).
    pub(crate) fn new(shared: CoreShared, run: RunId) -> Self {
        let held = shared.hold(run);
        PyFuture {
            shared,
            run,
            direct_call: false,
            held,
        }
    }

    /// The future of a run just registered: it takes over the registration's handle.
    pub(crate) fn adopt(shared: CoreShared, run: RunId) -> Self {
        let held = shared.counts_handles();
        PyFuture {
            shared,
            run,
            direct_call: false,
            held,
        }
    }

    /// The future of a direct call just registered (see `direct_call`), taking over the
    /// registration's handle.
    pub(crate) fn adopt_direct_call(shared: CoreShared, run: RunId) -> Self {
        let mut future = Self::adopt(shared, run);
        future.direct_call = true;
        future
    }

    /// Another future of a direct call's run (see `direct_call`).
    pub(crate) fn new_direct_call(shared: CoreShared, run: RunId) -> Self {
        let mut future = Self::new(shared, run);
        future.direct_call = true;
        future
    }

    /// A State the run's task returned (its recorded value), if any.
    fn returned_state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !self.shared.executor().may_hold_returned_states() {
            return Ok(None);
        }
        let Some(value) = self.shared.outcome(self.run).and_then(|outcome| outcome.value.get(py)) else {
            return Ok(None);
        };
        Ok(value.is_instance(hooks(py)?.state_type.bind(py))?.then_some(value))
    }

    /// The run's stored value as the engine holds it (a value kept on a cluster as its
    /// `RemoteResult`), if it has ended with one.
    pub(crate) fn stored_value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.shared.outcome(self.run).and_then(|outcome| outcome.value.get(py))
    }

    pub(crate) fn run_state(&self) -> RunState {
        self.shared.state(self.run).unwrap_or(RunState::Vacant)
    }

    pub(crate) fn describe(&self, py: Python<'_>) -> String {
        run_uuid(py, &self.shared, self.run).map_or_else(|_| format!("run {}", self.run), |id| format!("task run {id}"))
    }

    /// The run's `State` object, built from the engine's state and outcome.
    pub(crate) fn state_object<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.run_state();
        let (value, finished_at) = match self.shared.outcome(self.run) {
            #[allow(clippy::cast_precision_loss)] // microseconds since 1970 fit f64's 53 bits
            Some(outcome) => (
                outcome.value.get(py).map(remote::local).transpose()?,
                Some(outcome.finished_at_micros as f64 / 1e6),
            ),
            None => (None, None),
        };
        let id = run_uuid(py, &self.shared, self.run)?;
        hooks(py)?
            .make_state
            .bind(py)
            .call1((state.name(), value, finished_at, id))
    }

    /// The value of a run that completed: its result (a State it returned gives that
    /// State's result), for a reader in `place` (a cluster) or here (see `remote`).
    /// `None` if the run did not complete.
    fn completed_value<'py>(
        &self,
        py: Python<'py>,
        place: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(outcome) = self.shared.outcome(self.run) else {
            return Ok(None);
        };
        if !outcome.state.state().is_success() {
            return Ok(None);
        }
        let value = remote::resolved(outcome.value.get(py).unwrap_or_else(|| py.None().into_bound(py)), place)?;
        if self.shared.executor().may_hold_returned_states() && value.is_instance(hooks(py)?.state_type.bind(py))? {
            return value.call_method0(pyo3::intern!(py, "result")).map(Some);
        }
        Ok(Some(value))
    }

    /// What a dependent receives for this (final) run: its result, or for a failure that
    /// the dependent allows, the exception. A dependent that executes in `place` (a
    /// cluster) receives a result kept there as its handle.
    pub(crate) fn value_for_dependent<'py>(
        &self,
        py: Python<'py>,
        place: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(value) = self.completed_value(py, place)? {
            return Ok(value);
        }
        match self
            .state_object(py)?
            .call_method1(pyo3::intern!(py, "result"), (false,))
        {
            Ok(value) => Ok(value),
            Err(err) => Ok(err.into_value(py).into_bound(py).into_any()),
        }
    }

    /// Blocks until final or `deadline`; helps run the run itself when waiting unboundedly.
    pub(crate) fn wait_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        if self.run_state().is_final() {
            return Ok(true);
        }
        self.shared.executor().check_same_process()?;
        hooks(py)?.warn_if_blocking_loop.call0(py)?;
        let help = deadline.is_none();
        let shared = &self.shared;
        let finished = wait_detached(py, shared.id(), deadline, |slice| {
            Ok(shared.wait(self.run, slice, help)?.then_some(()))
        })?;
        Ok(finished.is_some())
    }

    /// The run's result, raising its exception (or `UnfinishedRun`) as `State.result` does.
    pub(crate) fn final_result<'py>(&self, py: Python<'py>, raise_on_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        if self.direct_call {
            if let Some(state) = self.returned_state(py)? {
                return Ok(state); // completed or failed, as Prefect's direct call returns it
            }
        }
        if let Some(value) = self.completed_value(py, None)? {
            return Ok(value);
        }
        self.state_object(py)?
            .call_method1(pyo3::intern!(py, "result"), (raise_on_failure,))
    }
}

impl Drop for PyFuture {
    fn drop(&mut self) {
        if self.held {
            self.shared.unhold(self.run);
        }
    }
}

/// Calls a done-callback `fn(future)` as part of the future's flow run, from whichever
/// thread finished the run; never once the interpreter is exiting.
pub(crate) fn call_back(callback: &Py<PyAny>, future: &Py<PyFuture>) {
    attach_worker(|py| {
        let context = future.get().shared.executor().context(py);
        let called = call_done_callback(py).and_then(|hook| hook.call1(py, (context, callback, future)));
        if let Err(err) = called {
            report_hook_error(py, err);
        }
    });
}

#[pymethods]
impl PyFuture {
    #[getter]
    fn task_run_id(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        run_uuid(py, &self.shared, self.run)
    }

    /// Whether the run is final (as `concurrent.futures.Future.done`).
    fn done(&self) -> bool {
        self.run_state().is_final()
    }

    /// The run's state, answered from memory.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.state_object(py)
    }

    /// Blocks until the run is final or `timeout` seconds pass; never raises on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        self.wait_until(py, deadline_after(timeout)?)?;
        Ok(())
    }

    /// Waits, then returns the result, or raises the run's exception.
    #[pyo3(signature = (timeout=None, raise_on_failure=true))]
    fn result<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        raise_on_failure: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !self.wait_until(py, deadline_after(timeout)?)? {
            let id = run_uuid(py, &self.shared, self.run)?;
            return Err(PyTimeoutError::new_err(format!(
                "Task run {} did not complete within {} seconds",
                id.bind(py),
                timeout.unwrap_or_default()
            )));
        }
        self.final_result(py, raise_on_failure)
    }

    /// Calls `fn(future)` once the run is final (at once if it already is), as part of
    /// the future's flow run.
    fn add_done_callback(slf: Bound<'_, Self>, r#fn: Py<PyAny>) -> PyResult<()> {
        let future = slf.clone().unbind();
        let me = slf.get();
        me.shared.executor().check_same_process()?;
        me.shared
            .on_done(me.run, Box::new(move |_| call_back(&r#fn, &future)))
            .map_err(|err| crate::errors::engine_error(err, me.shared.id()))
    }

    /// `await future`: waits without blocking the event loop, then gives the result.
    fn __await__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        crate::hooks::async_hooks(py)?
            .await_future
            .bind(py)
            .call1((slf,))?
            .call_method0(pyo3::intern!(py, "__await__"))
    }

    /// `PrefectConcurrentFuture[int]`, as type hints write it.
    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        generic_alias(cls, item)
    }

    /// Cancels the run if it has not started (an awaiting coroutine was cancelled).
    /// Returns whether it was cancelled.
    fn _cancel_if_pending(&self) -> bool {
        !self.shared.executor().is_from_parent_process() && self.shared.cancel(self.run)
    }

    /// The engine's run index (ferroflow's own; stable within a flow run).
    #[getter]
    fn _run_index(&self) -> RunId {
        self.run
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyFuture>()
            .is_ok_and(|o| Arc::ptr_eq(&o.get().shared, &self.shared) && o.get().run == self.run)
    }

    fn __hash__(&self) -> u64 {
        (self.shared.id() as u64).rotate_left(32) ^ u64::from(self.run)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let id = run_uuid(py, &self.shared, self.run).map_or_else(|_| "?".into(), |id| id.to_string());
        format!(
            "PrefectConcurrentFuture(task_run_id={id}, state={})",
            self.run_state().name()
        )
    }
}
