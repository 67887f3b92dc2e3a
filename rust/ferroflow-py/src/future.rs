//! Futures: thin handles (engine + run index) that answer from memory and block detached.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use ferroflow_core::{EngineError, RunId, RunState, WaitAll};
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyStopIteration, PyTimeoutError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySlice};

use crate::engine::CoreShared;
use crate::gil::{block_detached, deadline_after};
use crate::hooks::{hooks, report_hook_error};

/// The `task_run_id` of a run: the engine's random seed with the run index in the last
/// four bytes, so ids cost no memory and stay unique across engines.
pub(crate) fn run_uuid(py: Python<'_>, engine: &CoreShared, run: RunId) -> PyResult<Py<PyAny>> {
    let mut bytes = engine.executor().uuid_seed;
    bytes[12..].copy_from_slice(&run.to_be_bytes());
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("bytes", PyBytes::new(py, &bytes))?;
    Ok(hooks(py)?.uuid_type.bind(py).call((), Some(&kwargs))?.unbind())
}

pub(crate) fn engine_error(err: EngineError) -> PyErr {
    if let EngineError::WaitsOnItself(_) = err {
        // The thread is executing that very run: name it as the user knows it.
        if let Some(name) = crate::executor::with_current(|current| current.map(crate::executor::Executing::run_name)) {
            return PyRuntimeError::new_err(format!(
                "Task run '{name}' waits on its own future, whose result can never arrive"
            ));
        }
    }
    PyRuntimeError::new_err(err.to_string())
}

/// A task run's future (Prefect's `PrefectConcurrentFuture`).
#[pyclass(frozen, name = "PrefectConcurrentFuture", module = "ferroflow.futures")]
pub struct PyFuture {
    pub(crate) shared: CoreShared,
    pub(crate) run: RunId,
}

impl PyFuture {
    pub(crate) fn new(shared: CoreShared, run: RunId) -> Self {
        PyFuture { shared, run }
    }

    fn run_state(&self) -> RunState {
        self.shared.state(self.run).expect("a future's run exists")
    }

    pub(crate) fn describe(&self, py: Python<'_>) -> String {
        run_uuid(py, &self.shared, self.run).map_or_else(|_| format!("run {}", self.run), |id| format!("task run {id}"))
    }

    /// The run's `State` object, built from the engine's byte and outcome.
    pub(crate) fn state_object<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.run_state();
        let (value, finished_at) = match self.shared.outcome(self.run) {
            Some(outcome) => {
                let seconds = outcome.finished_at_micros as f64 / 1e6;
                (outcome.value.as_ref().map(|v| v.clone_ref(py)), Some(seconds))
            }
            None => (None, None::<f64>),
        };
        let id = run_uuid(py, &self.shared, self.run)?;
        hooks(py)?
            .make_state
            .bind(py)
            .call1((state.name(), value, finished_at, id))
    }

    /// What a dependent receives for this (final) run: its result, or for a failure that
    /// the dependent allows, the exception.
    pub(crate) fn value_for_dependent<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(outcome) = self.shared.outcome(self.run) {
            if outcome.state.state().is_success() {
                return Ok(outcome
                    .value
                    .as_ref()
                    .map_or_else(|| py.None().into_bound(py), |v| v.bind(py).clone()));
            }
        }
        match self.state_object(py)?.call_method1("result", (false,)) {
            Ok(value) => Ok(value),
            Err(err) => Ok(err.into_value(py).into_bound(py).into_any()),
        }
    }

    /// Blocks until final or `deadline`; helps run the run itself when waiting unboundedly.
    fn wait_until(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        if self.run_state().is_final() {
            return Ok(true);
        }
        hooks(py)?.warn_if_blocking_loop.call0(py)?;
        let help = deadline.is_none();
        let finished = block_detached(py, deadline, |slice| match self.shared.wait(self.run, slice, help) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(err) => Some(Err(err)),
        })?;
        match finished {
            Some(Ok(())) => Ok(true),
            Some(Err(err)) => Err(engine_error(err)),
            None => Ok(false),
        }
    }

    /// The run's result, raising its exception (or `UnfinishedRun`) as `State.result` does.
    pub(crate) fn final_result<'py>(&self, py: Python<'py>, raise_on_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        if let Some(outcome) = self.shared.outcome(self.run) {
            if outcome.state.state().is_success() {
                return Ok(outcome
                    .value
                    .as_ref()
                    .map_or_else(|| py.None().into_bound(py), |v| v.bind(py).clone()));
            }
        }
        self.state_object(py)?.call_method1("result", (raise_on_failure,))
    }
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

    /// Calls `fn(future)` once the run is final (at once if it already is).
    fn add_done_callback(slf: Bound<'_, Self>, r#fn: Py<PyAny>) -> PyResult<()> {
        let future = slf.clone().unbind();
        let me = slf.get();
        me.shared
            .on_done(
                me.run,
                Box::new(move |_| {
                    Python::attach(|py| {
                        if let Err(err) = r#fn.call1(py, (future.bind(py),)) {
                            report_hook_error(py, err);
                        }
                    });
                }),
            )
            .map_err(engine_error)
    }

    /// `await future`: waits without blocking the event loop, then gives the result.
    fn __await__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        crate::hooks::async_hooks(py)?
            .await_future
            .bind(py)
            .call1((slf,))?
            .call_method0(pyo3::intern!(py, "__await__"))
    }

    /// Cancels the run if it has not started (an awaiting coroutine was cancelled).
    /// Returns whether it was cancelled.
    fn _cancel_if_pending(&self) -> bool {
        self.shared.cancel(self.run)
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

/// What a future list holds: a map's contiguous range, or any futures.
enum Members {
    Range { shared: CoreShared, runs: Range<RunId> },
    Items(Vec<Py<PyFuture>>),
}

/// The futures of a `.map` (Prefect's `PrefectFutureList`): a view over a range of runs
/// that makes a future object only when one is asked for.
#[pyclass(frozen, sequence, name = "PrefectFutureList", module = "ferroflow.futures")]
pub struct PyFutureList {
    members: Members,
}

impl PyFutureList {
    pub(crate) fn from_range(shared: CoreShared, runs: Range<RunId>) -> Self {
        PyFutureList {
            members: Members::Range { shared, runs },
        }
    }

    fn get(&self, py: Python<'_>, index: usize) -> Py<PyFuture> {
        match &self.members {
            Members::Range { shared, runs } => {
                Py::new(py, PyFuture::new(Arc::clone(shared), runs.start + index as RunId))
                    .expect("allocating a future")
            }
            Members::Items(items) => items[index].clone_ref(py),
        }
    }

    /// Adds every member as a dependency (see `call::collect_deps`); a range of this
    /// engine costs no future object per run.
    pub(crate) fn collect_deps(
        &self,
        py: Python<'_>,
        engine: &CoreShared,
        deps: &mut smallvec::SmallVec<[ferroflow_core::Dep; 2]>,
        allow_failure: bool,
    ) -> PyResult<()> {
        match &self.members {
            Members::Range { shared, runs } if Arc::ptr_eq(shared, engine) => {
                deps.extend(runs.clone().map(|run| ferroflow_core::Dep { run, allow_failure }));
                Ok(())
            }
            _ => {
                for future in self.futures(py) {
                    crate::call::collect_deps(future.bind(py).as_any(), engine, deps, allow_failure)?;
                }
                Ok(())
            }
        }
    }

    /// The members' values, as a dependent receives them (a plain list, as in Prefect).
    pub(crate) fn values_for_dependent<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let values = (0..self.__len__())
            .map(|i| self.get(py, i).get().value_for_dependent(py))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, values)
    }

    fn futures(&self, py: Python<'_>) -> Vec<Py<PyFuture>> {
        (0..self.__len__()).map(|i| self.get(py, i)).collect()
    }

    /// Waits for all (ordered, fail-fast when `stop_on_failure`). Returns `Err(None)` on
    /// timeout and `Err(Some(index))` when the future at `index` failed first.
    fn wait_all(
        &self,
        py: Python<'_>,
        deadline: Option<Instant>,
        stop_on_failure: bool,
    ) -> PyResult<Result<(), Option<usize>>> {
        let all_final = match &self.members {
            Members::Range { shared, runs } => runs
                .clone()
                .all(|run| shared.state(run).is_some_and(RunState::is_final)),
            Members::Items(items) => items.iter().all(|item| item.get().run_state().is_final()),
        };
        if !all_final {
            hooks(py)?.warn_if_blocking_loop.call0(py)?;
        }
        let help = deadline.is_none();
        match &self.members {
            Members::Range { shared, runs } => {
                let waited = block_detached(py, deadline, |slice| {
                    match shared.wait_range(runs.clone(), slice, help, stop_on_failure) {
                        Ok(WaitAll::TimedOut) => None,
                        other => Some(other),
                    }
                })?;
                match waited {
                    None => Ok(Err(None)),
                    Some(Ok(WaitAll::AllFinal)) => Ok(Ok(())),
                    Some(Ok(WaitAll::Failed(run))) => Ok(Err(Some((run - runs.start) as usize))),
                    Some(Ok(WaitAll::TimedOut)) => unreachable!("slices that time out are retried"),
                    Some(Err(err)) => Err(engine_error(err)),
                }
            }
            Members::Items(items) => {
                for (index, item) in items.iter().enumerate() {
                    let future = item.get();
                    if !future.wait_until(py, deadline)? {
                        return Ok(Err(None));
                    }
                    if stop_on_failure && !future.run_state().is_success() {
                        return Ok(Err(Some(index)));
                    }
                }
                Ok(Ok(()))
            }
        }
    }
}

#[pymethods]
impl PyFutureList {
    #[new]
    #[pyo3(signature = (futures=None))]
    fn new(futures: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut items = Vec::new();
        if let Some(futures) = futures {
            for item in futures.try_iter()? {
                let item = item?;
                let future = item.cast::<PyFuture>().map_err(|_| {
                    PyTypeError::new_err(format!("PrefectFutureList holds futures, got {}", item.get_type()))
                })?;
                items.push(future.clone().unbind());
            }
        }
        Ok(PyFutureList {
            members: Members::Items(items),
        })
    }

    fn __len__(&self) -> usize {
        match &self.members {
            Members::Range { runs, .. } => runs.len(),
            Members::Items(items) => items.len(),
        }
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let len = self.__len__();
        if let Ok(slice) = index.cast::<PySlice>() {
            let indices = slice.indices(isize::try_from(len).unwrap_or(isize::MAX))?;
            let picked: Vec<Py<PyFuture>> = (0..indices.slicelength)
                .map(|k| self.get(py, (indices.start + k as isize * indices.step) as usize))
                .collect();
            return Ok(PyList::new(py, picked)?.into_any());
        }
        let raw: isize = index.extract()?;
        let position = if raw < 0 { raw + len as isize } else { raw };
        if position < 0 || position as usize >= len {
            return Err(PyIndexError::new_err("PrefectFutureList index out of range"));
        }
        Ok(self.get(py, position as usize).into_bound(py).into_any())
    }

    fn __iter__(slf: Bound<'_, Self>) -> FutureListIter {
        FutureListIter {
            list: slf.unbind(),
            next: Mutex::new(0),
        }
    }

    fn __add__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let joined = PyList::new(py, self.futures(py))?;
        for item in other.try_iter()? {
            joined.append(item?)?;
        }
        Ok(joined)
    }

    fn __radd__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let joined = PyList::empty(py);
        for item in other.try_iter()? {
            joined.append(item?)?;
        }
        for future in self.futures(py) {
            joined.append(future)?;
        }
        Ok(joined)
    }

    /// `await futures`: waits for all without blocking the event loop; gives the results.
    fn __await__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        crate::hooks::async_hooks(py)?
            .await_future_list
            .bind(py)
            .call1((slf,))?
            .call_method0(pyo3::intern!(py, "__await__"))
    }

    /// Calls `fn()` once every future is done: at once if they all are, else from the
    /// thread that finishes the last. For `await futures`: one Python call per list,
    /// not one per run.
    fn _when_all_done(&self, r#fn: Py<PyAny>) -> PyResult<()> {
        let runs: Vec<(CoreShared, RunId)> = match &self.members {
            // A map's range: one count in the engine, one callback for the whole list.
            Members::Range { shared, runs } => {
                let callback = r#fn;
                return shared
                    .on_all_done(
                        runs.clone(),
                        Box::new(move |_| {
                            Python::attach(|py| {
                                if let Err(err) = callback.call0(py) {
                                    report_hook_error(py, err);
                                }
                            });
                        }),
                    )
                    .map_err(engine_error);
            }
            Members::Items(items) => items
                .iter()
                .map(|item| (Arc::clone(&item.get().shared), item.get().run))
                .collect(),
        };
        // One count per run, plus one held while registering, so the callback cannot
        // fire before every run has been counted.
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(runs.len() + 1));
        let callback = Arc::new(r#fn);
        let count_down = move |remaining: &std::sync::atomic::AtomicUsize, callback: &Py<PyAny>| {
            if remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                Python::attach(|py| {
                    if let Err(err) = callback.call0(py) {
                        report_hook_error(py, err);
                    }
                });
            }
        };
        for (shared, run) in runs {
            if shared.state(run).is_some_and(RunState::is_final) {
                remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                continue;
            }
            let (remaining, callback) = (Arc::clone(&remaining), Arc::clone(&callback));
            shared
                .on_done(run, Box::new(move |_| count_down(&remaining, &callback)))
                .map_err(engine_error)?;
        }
        count_down(&remaining, &callback);
        Ok(())
    }

    /// Waits for every future; never raises on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let _timed_out_or_failed = self.wait_all(py, deadline_after(timeout)?, false)?;
        Ok(())
    }

    /// The results in input order; the first failure to finish raises (fail-fast).
    #[pyo3(signature = (timeout=None, raise_on_failure=true))]
    fn result<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        raise_on_failure: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        match self.wait_all(py, deadline_after(timeout)?, raise_on_failure)? {
            Err(None) => {
                return Err(PyTimeoutError::new_err(format!(
                    "Timed out waiting for all futures to complete within {} seconds",
                    timeout.unwrap_or_default()
                )));
            }
            Err(Some(index)) => {
                self.get(py, index).get().final_result(py, true)?;
                unreachable!("a failed run's result raises");
            }
            Ok(()) => {}
        }
        match &self.members {
            Members::Range { shared, runs } => {
                let list = PyList::empty(py);
                for run in runs.clone() {
                    let outcome = shared.outcome(run).expect("waited for every run");
                    match (&outcome.value, outcome.state.state().is_success()) {
                        (Some(value), true) => list.append(value.bind(py))?,
                        (None, true) => list.append(py.None())?,
                        _ => list.append(PyFuture::new(Arc::clone(shared), run).final_result(py, raise_on_failure)?)?,
                    }
                }
                Ok(list)
            }
            Members::Items(items) => {
                let values = items
                    .iter()
                    .map(|item| item.get().final_result(py, raise_on_failure))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, values)
            }
        }
    }

    fn __repr__(&self) -> String {
        format!("PrefectFutureList(<{} futures>)", self.__len__())
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Members::Items(items) = &self.members {
            for item in items {
                visit.call(item)?;
            }
        }
        Ok(())
    }
}

#[pyclass(frozen, name = "PrefectFutureListIterator", module = "ferroflow.futures")]
pub struct FutureListIter {
    list: Py<PyFutureList>,
    next: Mutex<usize>,
}

#[pymethods]
impl FutureListIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyFuture>> {
        let list = self.list.get();
        let mut next = self.next.lock();
        if *next >= list.__len__() {
            return Err(PyStopIteration::new_err(()));
        }
        *next += 1;
        Ok(list.get(py, *next - 1))
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.list)
    }
}

/// Futures in the order they finish (for `as_completed` and `wait`): each future's
/// completion pushes its position here from whichever thread finishes it.
#[pyclass(frozen, name = "Completions", module = "ferroflow._core")]
pub struct Completions {
    arrived: Arc<(Mutex<VecDeque<usize>>, Condvar)>,
    remaining: Mutex<usize>,
}

#[pymethods]
impl Completions {
    #[new]
    fn new(futures: Vec<Bound<'_, PyFuture>>) -> PyResult<Self> {
        let arrived = Arc::new((Mutex::new(VecDeque::new()), Condvar::new()));
        for (position, future) in futures.iter().enumerate() {
            let sink = Arc::clone(&arrived);
            let future = future.get();
            future
                .shared
                .on_done(
                    future.run,
                    Box::new(move |_| {
                        sink.0.lock().push_back(position);
                        sink.1.notify_all();
                    }),
                )
                .map_err(engine_error)?;
        }
        Ok(Completions {
            arrived,
            remaining: Mutex::new(futures.len()),
        })
    }

    /// Position of the next future to finish; `None` at the deadline. `StopIteration`
    /// once all have been returned.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<usize>> {
        if *self.remaining.lock() == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        let deadline = deadline_after(timeout)?;
        let arrived = &self.arrived;
        let got = block_detached(py, deadline, |slice| {
            let mut queue = arrived.0.lock();
            if queue.is_empty() {
                if let Some(at) = slice {
                    arrived.1.wait_until(&mut queue, at);
                }
            }
            queue.pop_front()
        })?;
        if got.is_some() {
            *self.remaining.lock() -= 1;
        }
        Ok(got)
    }

    #[getter]
    fn remaining(&self) -> usize {
        *self.remaining.lock()
    }
}
