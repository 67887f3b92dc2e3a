//! Claimed runs shipped to a process pool's workers in *segments*: consecutive runs of
//! one task, prepared in one call. What a worker needs to know of each run (its name,
//! id and run count, read only if the run asks for its context) travels as three numbers
//! for a stretch of a map's runs, or packed in bytes, not as Python objects made per run
//! here and unpickled per run there.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::async_run::AsyncRun;

/// In a run's packed identity, the name number of a run named by the bare task name.
const BARE_NAME: u64 = u64::MAX;

/// Runs of one task of one engine, prepared for their next attempt.
struct Segment<'py> {
    engine: usize,
    task: Bound<'py, PyAny>,
    name: String,
    /// The first 12 bytes of the engine's run ids (the last 4 are the run's index).
    seed: [u8; 12],
    /// Position of the segment's first run in the list given.
    start: usize,
    /// Whether each run's only argument is its mapped item (`task.map(xs)`): `calls`
    /// then holds the items themselves, no tuple made per run.
    single: bool,
    /// Each run's positional arguments (a tuple; its item, for a `single` segment).
    calls: Bound<'py, PyList>,
    /// Each run's keyword arguments, kept only once one has some.
    kwargs: Vec<Option<Bound<'py, PyDict>>>,
    any_kwargs: bool,
    /// Per run: its name number (or `BARE_NAME`), its run index in the engine, its run count.
    identities: Vec<[u64; 3]>,
    /// Each run's `task_run_name`, for a task that has one.
    names: Option<Vec<String>>,
}

impl<'py> Segment<'py> {
    fn new(py: Python<'py>, run: &AsyncRun, start: usize) -> Self {
        let spec = run.call().plan().spec.get();
        let mut seed = [0; 12];
        seed.copy_from_slice(&run.engine().executor().uuid_seed[..12]);
        Segment {
            engine: Arc::as_ptr(run.engine()) as usize,
            task: spec.task.bind(py).clone(),
            name: spec.name.clone(),
            seed,
            start,
            single: run.call().plan().only_item_is_argument(),
            calls: PyList::empty(py),
            kwargs: Vec::new(),
            any_kwargs: false,
            identities: Vec::new(),
            names: spec.custom_name.as_ref().map(|_| Vec::new()),
        }
    }

    /// Whether `run` belongs with this segment's runs: same engine, same task, and its
    /// arguments take the same form.
    fn takes(&self, run: &AsyncRun) -> bool {
        let plan = run.call().plan();
        Arc::as_ptr(run.engine()) as usize == self.engine
            && plan.spec.get().task.is(&self.task)
            && plan.only_item_is_argument() == self.single
    }

    /// Adds a run whose attempt has begun, with its arguments.
    fn push(&mut self, py: Python<'py>, run: &AsyncRun) -> PyResult<()> {
        let call = run.call();
        if let Some(item) = call.only_argument(py, None) {
            self.calls.append(item?)?;
            self.kwargs.push(None);
        } else {
            let (args, kwargs) = call.arguments(py, None)?;
            self.calls.append(args)?;
            self.any_kwargs |= kwargs.is_some();
            self.kwargs.push(kwargs);
        }
        let number = call.plan().run_number(call.index()).unwrap_or(BARE_NAME);
        self.identities
            .push([number, u64::from(run.run()), u64::from(run.run_count())]);
        if let Some(names) = &mut self.names {
            names.push(run.line_name(py));
        }
        Ok(())
    }

    /// `(task, task name, start, single, calls, kwargs or None, identities, names or None,
    /// seed)`.
    fn into_tuple(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let kwargs = if self.any_kwargs {
            Some(PyList::new(py, self.kwargs)?)
        } else {
            None
        };
        (
            self.task,
            self.name,
            self.start,
            self.single,
            self.calls,
            kwargs,
            identities(py, &self.identities)?,
            self.names,
            PyBytes::new(py, &self.seed),
        )
            .into_pyobject(py)
    }
}

/// The runs' identities for a worker: `(first name number, first run index, run count)`
/// when each run follows the one before (numbers and indexes one up, or the bare name;
/// one run count), as a map's runs do; else three little-endian u64 per run, in bytes.
fn identities<'py>(py: Python<'py>, runs: &[[u64; 3]]) -> PyResult<Bound<'py, PyAny>> {
    let follows = |(before, run): (&[u64; 3], &[u64; 3])| {
        let number_follows = if before[0] == BARE_NAME {
            run[0] == BARE_NAME
        } else {
            run[0] == before[0] + 1
        };
        number_follows && run[1] == before[1] + 1 && run[2] == before[2]
    };
    if let Some(first) = runs.first().filter(|_| runs.iter().zip(&runs[1..]).all(follows)) {
        return Ok(PyTuple::new(py, first)?.into_any());
    }
    let packed: Vec<u8> = runs.iter().flatten().flat_map(|word| word.to_le_bytes()).collect();
    Ok(PyBytes::new(py, &packed).into_any())
}

/// Prepares the next attempt of each run (as `AsyncRun.prepare`: named, `on_running`
/// hooks run, arguments resolved) and groups them into segments of consecutive runs of
/// one task: returns `(segments, failures)`, each segment as `Segment::into_tuple` makes
/// it, each failure as `(position, exception)` for a run whose preparation raised.
#[pyfunction]
pub(crate) fn prepare_segments<'py>(
    py: Python<'py>,
    runs: &Bound<'py, PyList>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let segments = PyList::empty(py);
    let failures = PyList::empty(py);
    let mut open: Option<Segment<'py>> = None;
    for (position, item) in runs.iter().enumerate() {
        let run = item.cast::<AsyncRun>()?.get();
        if let Some(segment) = open.take_if(|segment| !segment.takes(run)) {
            segments.append(segment.into_tuple(py)?)?;
        }
        let segment = open.get_or_insert_with(|| Segment::new(py, run, position));
        if let Err(err) = run.begin_attempt(py).and_then(|()| segment.push(py, run)) {
            // The segment ends before the failed run: its runs are consecutive.
            if let Some(segment) = open.take().filter(|segment| !segment.calls.is_empty()) {
                segments.append(segment.into_tuple(py)?)?;
            }
            failures.append((position, err.into_value(py)))?;
        }
    }
    if let Some(segment) = open {
        segments.append(segment.into_tuple(py)?)?;
    }
    Ok((segments, failures))
}
