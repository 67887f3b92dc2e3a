//! The futures of a `.map` (Prefect's `PrefectFutureList`): a view over a range of runs
//! that makes a future object only when one is asked for.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferroflow_core::{RunId, RunState, WaitAll};
use pyo3::exceptions::{PyIndexError, PyStopIteration, PyTimeoutError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice, PyType};

use crate::errors::engine_error;
use crate::executor::CoreShared;
use crate::future::PyFuture;
use crate::gil::{attach_worker, deadline_after, wait_detached};
use crate::hooks::{generic_alias, hooks, report_hook_error};
use crate::remote;

/// What a future list holds: a map's contiguous range, or any futures.
enum Members {
    /// `held`: the list owns a handle on each run of the range (see `PyFuture::held`).
    Range {
        shared: CoreShared,
        runs: Range<RunId>,
        held: bool,
    },
    Items(Vec<Py<PyFuture>>),
}

/// The futures of a `.map` (Prefect's `PrefectFutureList`): a view over a range of runs
/// that makes a future object only when one is asked for.
#[pyclass(frozen, sequence, name = "PrefectFutureList", module = "ferroflow.futures")]
pub struct PyFutureList {
    members: Members,
}

impl PyFutureList {
    /// The list of a map just registered: it takes over the registration's handles.
    pub(crate) fn adopt_range(shared: CoreShared, runs: Range<RunId>) -> Self {
        let held = shared.counts_handles();
        PyFutureList {
            members: Members::Range { shared, runs, held },
        }
    }

    /// The future at `index` (which the caller has checked is within the list).
    fn get(&self, py: Python<'_>, index: usize) -> PyResult<Py<PyFuture>> {
        match &self.members {
            Members::Range { shared, runs, .. } => {
                let run = runs
                    .clone()
                    .nth(index)
                    .ok_or_else(|| PyIndexError::new_err("PrefectFutureList index out of range"))?;
                Py::new(py, PyFuture::new(Arc::clone(shared), run))
            }
            Members::Items(items) => Ok(items[index].clone_ref(py)),
        }
    }

    /// The runs of this engine the list covers in one range, if it is a map's (the
    /// argument walk then adds them as dependencies without a future object per run).
    pub(crate) fn range_of(&self, engine: &CoreShared) -> Option<Range<RunId>> {
        match &self.members {
            Members::Range { shared, runs, .. } if Arc::ptr_eq(shared, engine) => Some(runs.clone()),
            _ => None,
        }
    }

    /// The members' values, as a dependent (executing in `place`, see `remote`) receives
    /// them: a plain list, as in Prefect.
    pub(crate) fn values_for_dependent<'py>(
        &self,
        py: Python<'py>,
        place: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let futures = self.futures(py)?;
        if place.is_none() {
            remote::prefetch(py, futures.iter().filter_map(|future| future.get().stored_value(py)))?;
        }
        let values = futures
            .iter()
            .map(|future| future.get().value_for_dependent(py, place))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, values)
    }

    pub(crate) fn futures(&self, py: Python<'_>) -> PyResult<Vec<Py<PyFuture>>> {
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
            Members::Range { shared, runs, .. } => runs
                .clone()
                .all(|run| shared.state(run).is_some_and(RunState::is_final)),
            Members::Items(items) => items.iter().all(|item| item.get().run_state().is_final()),
        };
        if !all_final {
            hooks(py)?.warn_if_blocking_loop.call0(py)?;
        }
        let help = deadline.is_none();
        match &self.members {
            Members::Range { shared, runs, .. } => {
                shared.executor().check_same_process()?;
                // The runs not yet seen final: each slice resumes where the last one stopped.
                let mut remaining = runs.clone();
                let waited = wait_detached(py, shared.id(), deadline, |slice| {
                    match shared.wait_range(&mut remaining, slice, help, stop_on_failure)? {
                        WaitAll::TimedOut => Ok(None),
                        other => Ok(Some(other)),
                    }
                })?;
                match waited {
                    None | Some(WaitAll::TimedOut) => Ok(Err(None)),
                    Some(WaitAll::AllFinal) => Ok(Ok(())),
                    Some(WaitAll::Failed(run)) => Ok(Err(Some((run - runs.start) as usize))),
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
            let mut picked = Vec::with_capacity(indices.slicelength);
            let mut at = indices.start;
            for _ in 0..indices.slicelength {
                // `indices` keeps every position of the slice within 0..len.
                picked.push(self.get(py, usize::try_from(at).unwrap_or_default())?);
                at += indices.step;
            }
            return Ok(PyList::new(py, picked)?.into_any());
        }
        let raw: isize = index.extract()?;
        let from_end = raw.checked_neg().and_then(|back| usize::try_from(back).ok());
        let position = match usize::try_from(raw) {
            Ok(position) => Some(position),
            Err(_) => from_end.and_then(|back| len.checked_sub(back)),
        };
        match position {
            Some(position) if position < len => Ok(self.get(py, position)?.into_bound(py).into_any()),
            _ => Err(PyIndexError::new_err("PrefectFutureList index out of range")),
        }
    }

    fn __iter__(slf: Bound<'_, Self>) -> FutureListIter {
        FutureListIter {
            list: slf.unbind(),
            next: AtomicUsize::new(0),
        }
    }

    fn __add__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let joined = PyList::new(py, self.futures(py)?)?;
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
        for future in self.futures(py)? {
            joined.append(future)?;
        }
        Ok(joined)
    }

    /// `await futures`: waits for all without blocking the event loop; gives the results.
    fn __await__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
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
            Members::Range { shared, runs, .. } => {
                let callback = r#fn;
                return shared
                    .on_all_done(
                        runs.clone(),
                        Box::new(move |_| {
                            attach_worker(|py| {
                                if let Err(err) = callback.call0(py) {
                                    report_hook_error(py, err);
                                }
                            });
                        }),
                    )
                    .map_err(|err| engine_error(err, shared.id()));
            }
            Members::Items(items) => items
                .iter()
                .map(|item| (Arc::clone(&item.get().shared), item.get().run))
                .collect(),
        };
        // One count per run, plus one held while registering, so the callback cannot
        // fire before every run has been counted.
        let remaining = Arc::new(AtomicUsize::new(runs.len() + 1));
        let callback = Arc::new(r#fn);
        let count_down = move |remaining: &AtomicUsize, callback: &Py<PyAny>| {
            if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                attach_worker(|py| {
                    if let Err(err) = callback.call0(py) {
                        report_hook_error(py, err);
                    }
                });
            }
        };
        for (shared, run) in runs {
            if shared.state(run).is_some_and(RunState::is_final) {
                remaining.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let (remaining, callback) = (Arc::clone(&remaining), Arc::clone(&callback));
            shared
                .on_done(run, Box::new(move |_| count_down(&remaining, &callback)))
                .map_err(|err| engine_error(err, shared.id()))?;
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
                self.get(py, index)?.get().final_result(py, true)?;
                unreachable!("a failed run's result raises");
            }
            Ok(()) => {}
        }
        match &self.members {
            Members::Range { shared, runs, .. } => {
                let list = PyList::empty(py);
                let plain = !shared.executor().may_hold_returned_states();
                remote::prefetch(
                    py,
                    runs.clone()
                        .filter_map(|run| shared.outcome(run).and_then(|outcome| outcome.value.get(py))),
                )?;
                for run in runs.clone() {
                    let outcome = shared.outcome(run).expect("waited for every run");
                    match outcome.value.get(py) {
                        Some(value) if plain && outcome.state.state().is_success() => {
                            list.append(remote::local(value)?)?;
                        }
                        None if outcome.state.state().is_success() => list.append(py.None())?,
                        _ => list.append(PyFuture::new(Arc::clone(shared), run).final_result(py, raise_on_failure)?)?,
                    }
                }
                Ok(list)
            }
            Members::Items(items) => {
                remote::prefetch(py, items.iter().filter_map(|item| item.get().stored_value(py)))?;
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

    /// `PrefectFutureList[int]`, as type hints write it.
    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        generic_alias(cls, item)
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

impl Drop for PyFutureList {
    fn drop(&mut self) {
        if let Members::Range {
            shared,
            runs,
            held: true,
        } = &self.members
        {
            for run in runs.clone() {
                shared.unhold(run);
            }
        }
    }
}

#[pyclass(frozen, name = "PrefectFutureListIterator", module = "ferroflow.futures")]
pub struct FutureListIter {
    list: Py<PyFutureList>,
    next: AtomicUsize,
}

#[pymethods]
impl FutureListIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyFuture>> {
        let list = self.list.get();
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        if next >= list.__len__() {
            self.next.store(list.__len__(), Ordering::Relaxed); // stays exhausted
            return Err(PyStopIteration::new_err(()));
        }
        list.get(py, next)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.list)
    }
}
