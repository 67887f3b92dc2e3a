//! A run's value that stays where the run executed: a Dask future, a Ray ObjectRef.
//!
//! A runner that executes runs on a cluster completes each with a [`RemoteResult`]
//! (the handle, the identity of its cluster, and how to fetch values from there). The engine
//! stores it as the run's value like any other. Reading a run's value goes through
//! [`resolved`], the one place that decides what a reader gets: a run prepared for the
//! same cluster gets the handle (the cluster resolves it there, the value never comes
//! to this process); everyone else (`.result()`, states, hooks, dependents elsewhere)
//! gets the value, fetched once. Until the first `RemoteResult` exists, reading pays one
//! relaxed load of [`REMOTE_VALUES`].

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

/// Set once any `RemoteResult` was made in this process: until then no stored value can
/// be one, and readers skip the type check.
static REMOTE_VALUES: AtomicBool = AtomicBool::new(false);

/// A run's value held on a cluster: `handle` (what the cluster resolves in a run's
/// arguments), `place` (the cluster's identity, compared with `==`), and `fetch`:
/// `fetch([handle, ...])` brings the values of handles here, in one call for many (a
/// map's `.result()`, see [`prefetch`]); each value is fetched at most once.
///
/// `fetch` should be a plain function, not a method of the runner: the engine holds the
/// value, and a runner held back from it would make a cycle.
#[pyclass(frozen, name = "RemoteResult", module = "ferroflow._core")]
pub struct RemoteResult {
    handle: Py<PyAny>,
    place: Py<PyAny>,
    fetch: Py<PyAny>,
    fetched: PyOnceLock<Py<PyAny>>,
}

impl RemoteResult {
    /// The value, fetched on the first call (a second reader meanwhile waits for it).
    fn fetched<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.fetched
            .get_or_try_init(py, || {
                let values = self.fetch.call1(py, (PyList::new(py, [&self.handle])?,))?;
                Ok::<_, PyErr>(values.bind(py).get_item(0)?.unbind())
            })
            .map(|value| value.bind(py).clone())
    }
}

#[pymethods]
impl RemoteResult {
    #[new]
    fn new(handle: Py<PyAny>, place: Py<PyAny>, fetch: Py<PyAny>) -> Self {
        REMOTE_VALUES.store(true, Ordering::Relaxed);
        RemoteResult {
            handle,
            place,
            fetch,
            fetched: PyOnceLock::new(),
        }
    }

    /// The handle on the value in its cluster (a Dask future, a Ray ObjectRef).
    #[getter]
    fn handle(&self, py: Python<'_>) -> Py<PyAny> {
        self.handle.clone_ref(py)
    }

    /// The identity of the cluster that holds the value.
    #[getter]
    fn place(&self, py: Python<'_>) -> Py<PyAny> {
        self.place.clone_ref(py)
    }

    /// The value, brought to this process on the first call.
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.fetched(py)
    }

    /// Whether the value has been brought to this process.
    #[getter]
    fn fetched_here(&self, py: Python<'_>) -> bool {
        self.fetched.get(py).is_some()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RemoteResult(handle={}, place={})",
            self.handle.bind(py).repr()?,
            self.place.bind(py).repr()?
        ))
    }
}

/// What a reader gets for a stored run value: `value` itself, unless it is a
/// [`RemoteResult`]; then its handle if the reader executes in the same `place`, else
/// the value fetched here.
#[inline]
pub(crate) fn resolved<'py>(
    value: Bound<'py, PyAny>,
    place: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if !REMOTE_VALUES.load(Ordering::Relaxed) {
        return Ok(value);
    }
    let Ok(remote) = value.cast::<RemoteResult>() else {
        return Ok(value);
    };
    let remote = remote.get();
    let py = value.py();
    if let Some(place) = place {
        let home = remote.place.bind(py);
        if home.is(place) || home.eq(place)? {
            return Ok(remote.handle.bind(py).clone());
        }
    }
    remote.fetched(py)
}

/// The value of a stored run value, fetched here if it is a [`RemoteResult`].
#[inline]
pub(crate) fn local(value: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    resolved(value, None)
}

/// Whether `value` is a [`RemoteResult`] (a cheap no when none was ever made).
#[inline]
pub(crate) fn is_remote(value: &Bound<'_, PyAny>) -> bool {
    REMOTE_VALUES.load(Ordering::Relaxed) && value.is_instance_of::<RemoteResult>()
}

/// The results of one cluster (one `fetch`) that [`prefetch`] fetches together.
struct Batch<'py> {
    fetch: Bound<'py, PyAny>,
    results: Vec<Bound<'py, RemoteResult>>,
}

/// Fetches the values of the [`RemoteResult`]s among `values` not fetched yet, one
/// `fetch` call per cluster for all of them (a map's `.result()` asks for thousands:
/// one round trip instead of one each). Other values are skipped.
pub(crate) fn prefetch<'py>(py: Python<'py>, values: impl IntoIterator<Item = Bound<'py, PyAny>>) -> PyResult<()> {
    if !REMOTE_VALUES.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut batches: Vec<Batch<'py>> = Vec::new();
    for value in values {
        let Ok(remote) = value.cast_into::<RemoteResult>() else {
            continue;
        };
        if remote.get().fetched.get(py).is_some() {
            continue;
        }
        let fetch = remote.get().fetch.bind(py);
        match batches.iter_mut().find(|batch| batch.fetch.is(fetch)) {
            Some(batch) => batch.results.push(remote),
            None => batches.push(Batch {
                fetch: fetch.clone(),
                results: vec![remote],
            }),
        }
    }
    for batch in batches.into_iter().filter(|batch| batch.results.len() > 1) {
        let handles = PyList::new(py, batch.results.iter().map(|result| result.get().handle.bind(py)))?;
        let fetched = batch.fetch.call1((handles,))?;
        for (result, value) in batch.results.iter().zip(fetched.try_iter()?) {
            // A reader may have fetched it meanwhile: the first value stays.
            let _ = result.get().fetched.set(py, value?.unbind());
        }
    }
    Ok(())
}
