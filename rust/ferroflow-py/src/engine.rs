//! The engine as Python sees it: one per task runner (per flow run), owning the pool.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use ferroflow_core::{Dep, Engine, RunId};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple};
use smallvec::SmallVec;
use std::sync::Mutex;

use crate::args::{collect_call_deps, collect_deps, dedup_deps};
use crate::async_run::AsyncRun;
use crate::errors::engine_error;
use crate::executor::{CoreShared, PyExecutor, RunnerLink};
use crate::future::PyFuture;
use crate::future_list::PyFutureList;
use crate::gil::{deadline_after, detached, detached_from_drop, draining, wait_detached};
use crate::hooks::hooks;
use crate::plan::{ArgSlot, Call, CallPlan, MapTally, MappedSource, Naming};
use crate::spec::TaskSpec;
use crate::sync::lock;

#[pyclass(frozen, name = "Engine", module = "ferroflow._core")]
pub struct PyEngine {
    engine: Arc<Engine<PyExecutor>>,
    /// Next number of each task name's runs (`inc-0`, `inc-1`, ...) in this flow run.
    names: Mutex<HashMap<String, u64>>,
}

/// Map runs built and registered together (the transient payloads of one piece).
const MAP_PIECE: usize = 8192;

/// The payloads and dependencies of one piece of a map.
type Piece = Vec<(Call, SmallVec<[Dep; 2]>)>;

/// The runs of a map for `indices`: each with the fixed dependencies, plus those
/// `item_deps` adds for the run's position (the futures inside its items).
fn build_piece(
    plan: &Arc<CallPlan>,
    fixed_deps: &SmallVec<[Dep; 2]>,
    indices: Range<usize>,
    mut item_deps: impl FnMut(u32, &mut SmallVec<[Dep; 2]>) -> PyResult<()>,
) -> PyResult<Piece> {
    let piece = plan.piece();
    indices
        .map(|index| {
            let position = run_count(index)?;
            let mut deps = fixed_deps.clone();
            item_deps(position, &mut deps)?;
            Ok((piece.call(position), deps))
        })
        .collect()
}

impl PyEngine {
    /// Adds the futures inside the items of the run at `position` (one item per mapped
    /// iterable) to its dependencies.
    fn item_deps(
        &self,
        py: Python<'_>,
        plan: &CallPlan,
        position: u32,
        fixed: usize,
        deps: &mut SmallVec<[Dep; 2]>,
    ) -> PyResult<()> {
        for source in plan.sources().iter().filter(|source| source.may_hold_futures()) {
            let item = source.item(py, position)?;
            if collect_deps(&item, self.shared(), deps)? && deps.len() > fixed + 1 {
                dedup_deps(deps);
            }
        }
        Ok(())
    }

    /// Builds the runs of a map reserved at `range` piece by piece (see [`build_piece`]),
    /// and registers each piece, so workers start on the first at once. On an error,
    /// returns it with the first run left unregistered.
    fn register_map(
        &self,
        range: &Range<RunId>,
        plan: &Arc<CallPlan>,
        fixed_deps: &SmallVec<[Dep; 2]>,
        mut item_deps: impl FnMut(u32, &mut SmallVec<[Dep; 2]>) -> PyResult<()>,
    ) -> Result<(), (RunId, PyErr)> {
        let shared = self.shared();
        let count = (range.end - range.start) as usize;
        let mut start = 0;
        while start < count {
            let end = count.min(start + MAP_PIECE);
            // Below `range.end`, so it fits.
            let first = range.start + RunId::try_from(start).unwrap_or(RunId::MAX);
            build_piece(plan, fixed_deps, start..end, &mut item_deps)
                .and_then(|runs| {
                    shared
                        .register_reserved(first, runs)
                        .map_err(|err| engine_error(err, shared.id()))
                })
                .map_err(|err| (first, err))?;
            start = end;
        }
        Ok(())
    }

    fn shared(&self) -> &CoreShared {
        self.engine.shared()
    }

    fn reserve_names(&self, name: &str, count: usize) -> u64 {
        let mut names = lock(&self.names);
        if let Some(next) = names.get_mut(name) {
            let first = *next;
            *next += count as u64;
            return first;
        }
        names.insert(name.to_owned(), count as u64);
        0
    }

    /// Registers a direct call: a run only the calling thread executes.
    fn register_inline(
        &self,
        spec: &Bound<'_, TaskSpec>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        wait_for: Option<&Bound<'_, PyAny>>,
        bare_name: bool,
    ) -> PyResult<RunId> {
        self.shared().executor().check_same_process()?;
        let mut deps = SmallVec::new();
        let resolve_fixed = collect_call_deps(args, kwargs, wait_for, self.shared(), &mut deps)?;
        let naming = if bare_name {
            Naming::Bare
        } else {
            Naming::Numbered {
                first: self.reserve_names(&spec.get().name, 1),
            }
        };
        let plan = Self::plan(spec, args, kwargs, resolve_fixed, naming, None);
        self.shared()
            .submit_inline(plan.into_call(), &deps)
            .map_err(|err| engine_error(err, self.shared().id()))
    }

    fn plan(
        spec: &Bound<'_, TaskSpec>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        resolve_fixed: bool,
        naming: Naming,
        context: Option<Py<PyAny>>,
    ) -> CallPlan {
        CallPlan::new(
            spec.py(),
            spec.clone().unbind(),
            args.clone().unbind(),
            kwargs.map(|k| k.clone().unbind()),
            Vec::new(),
            Vec::new(),
            resolve_fixed,
            naming,
            None,
            context,
        )
    }
}

/// Every engine alive in the process, so that the exit can shut them all down before
/// finalization (see `gil.rs`).
mod live_engines {
    use std::sync::{Arc, Weak};

    use ferroflow_core::Engine;
    use pyo3::prelude::*;
    use std::sync::Mutex;

    use crate::executor::PyExecutor;
    use crate::gil;

    static LIVE: Mutex<Vec<Weak<Engine<PyExecutor>>>> = Mutex::new(Vec::new());

    pub(super) fn register(engine: Engine<PyExecutor>) -> Arc<Engine<PyExecutor>> {
        let engine = Arc::new(engine);
        let mut live = crate::sync::lock(&LIVE);
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|weak| weak.strong_count() > 0); // amortised: engines come and go per flow run
        }
        live.push(Arc::downgrade(&engine));
        engine
    }

    /// The last step of the exit, from `atexit`: cancels what has not started in every
    /// live engine, lets running runs finish, joins every worker; then no engine thread
    /// enters Python again.
    #[pyfunction]
    pub(crate) fn shut_down_engines_at_exit(py: Python<'_>) {
        gil::begin_exit();
        loop {
            let engines: Vec<Arc<Engine<PyExecutor>>> = crate::sync::lock(&LIVE)
                .drain(..)
                .filter_map(|weak| weak.upgrade())
                .filter(|engine| !engine.shared().executor().is_from_parent_process())
                .collect();
            if engines.is_empty() {
                break; // (a run finishing may have made an engine meanwhile: go round again)
            }
            gil::detached(py, || engines.iter().for_each(|engine| engine.shutdown()));
        }
        gil::mark_exited();
    }
}

pub(crate) use live_engines::shut_down_engines_at_exit;

/// A copy of the calling thread's `contextvars` context, which a submitted run executes in.
fn submitter_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    hooks(py)?.copy_context.call0(py)
}

/// A run's place in a map, which must fit the engine's run index.
fn run_count(count: usize) -> PyResult<u32> {
    u32::try_from(count)
        .map_err(|_| PyOverflowError::new_err(format!("a .map() can have at most {} runs; got {count}", u32::MAX)))
}

#[pymethods]
impl PyEngine {
    /// `seed` is 16 random bytes (a uuid4's) from which run ids are made; `execute(runs)`
    /// takes the runs a batch claimed to execute elsewhere (coroutines; see below). With
    /// `release_unread`, a run's value is freed as soon as it is final and no future,
    /// future list or dependent can read it (a long-lived runner outside flows).
    #[new]
    /// With `executes_elsewhere`, every submitted or mapped run goes to `execute` (a
    /// process pool), and those runs do not count against `max_workers`.
    #[pyo3(signature = (max_workers, context, seed, execute, release_unread=false, executes_elsewhere=false))]
    fn new(
        max_workers: usize,
        context: Py<PyAny>,
        seed: [u8; 16],
        execute: Py<PyAny>,
        release_unread: bool,
        executes_elsewhere: bool,
    ) -> Self {
        let executor = PyExecutor::new(seed, RunnerLink { context, execute }, executes_elsewhere);
        let engine = if release_unread {
            Engine::with_handles(executor, max_workers)
        } else {
            Engine::new(executor, max_workers)
        };
        PyEngine {
            engine: live_engines::register(engine),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// Registers one run; returns its future at once.
    #[pyo3(signature = (spec, args, kwargs=None, wait_for=None))]
    fn submit(
        &self,
        spec: &Bound<'_, TaskSpec>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        wait_for: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyFuture> {
        let shared = self.shared();
        shared.executor().check_same_process()?;
        let mut deps = SmallVec::new();
        let resolve_fixed = collect_call_deps(args, kwargs, wait_for, shared, &mut deps)?;
        let first = self.reserve_names(&spec.get().name, 1);
        let context = submitter_context(spec.py())?;
        let plan = Self::plan(
            spec,
            args,
            kwargs,
            resolve_fixed,
            Naming::Numbered { first },
            Some(context),
        );
        let run = shared
            .submit(plan.into_call(), &deps)
            .map_err(|err| engine_error(err, shared.id()))?;
        let future = PyFuture::adopt(Arc::clone(shared), run);
        if draining() {
            shared.cancel(run); // the interpreter is exiting: it ends Cancelled, logged
        }
        Ok(future)
    }

    /// Runs a task in the calling thread once its upstreams are done (a direct call), and
    /// returns its future, final. `bare_name` names the run after the task alone.
    #[pyo3(signature = (spec, args, kwargs=None, wait_for=None, bare_name=false))]
    fn call(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, TaskSpec>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        wait_for: Option<&Bound<'_, PyAny>>,
        bare_name: bool,
    ) -> PyResult<PyFuture> {
        let shared = self.shared();
        let run = self.register_inline(spec, args, kwargs, wait_for, bare_name)?;
        let future = PyFuture::adopt_direct_call(Arc::clone(shared), run);
        if draining() {
            shared.cancel(run); // the interpreter is exiting: it ends Cancelled, logged
        }
        let waited = wait_detached(py, shared.id(), None, |slice| {
            Ok(shared.wait(run, slice, true)?.then_some(()))
        });
        if let Err(interrupt) = waited {
            shared.cancel(run); // interrupted while its upstreams ran: it never starts
            return Err(interrupt);
        }
        Ok(future)
    }

    /// Registers a direct call of a task that may suspend and claims it for the caller,
    /// which runs the coroutine on its own event loop (`await task(x)`). Its upstreams
    /// must be final already: the caller awaits them first, without blocking its loop.
    #[pyo3(signature = (spec, args, kwargs=None, wait_for=None, bare_name=false))]
    fn claim_call(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, TaskSpec>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        wait_for: Option<&Bound<'_, PyAny>>,
        bare_name: bool,
    ) -> PyResult<AsyncRun> {
        let shared = self.shared();
        let run = self.register_inline(spec, args, kwargs, wait_for, bare_name)?;
        if let Some(job) = shared.claim_ready(run) {
            return Ok(AsyncRun::claimed(py, shared, job));
        }
        shared.cancel(run);
        Err(PyRuntimeError::new_err(format!(
            "task {:?}: the futures it depends on must be final before an inline call; await them first",
            spec.get().name
        )))
    }

    /// One run per element of the `iterables` (lists of equal length, zipped), whose
    /// values go to the `mapped` slots (an int: a position in `args`; a str: a keyword).
    #[pyo3(signature = (spec, args, kwargs, mapped, iterables, wait_for=None))]
    fn map(
        &self,
        spec: &Bound<'_, TaskSpec>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        mapped: Vec<Bound<'_, PyAny>>,
        iterables: Vec<Bound<'_, PyAny>>,
        wait_for: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyFutureList> {
        let shared = self.shared();
        shared.executor().check_same_process()?;
        if mapped.is_empty() || mapped.len() != iterables.len() {
            return Err(PyValueError::new_err("map needs one mapped slot per iterable"));
        }
        let slots = mapped
            .iter()
            .map(|slot| {
                if let Ok(position) = slot.cast::<PyInt>() {
                    Ok(ArgSlot::Position(position.extract()?))
                } else if let Ok(name) = slot.cast::<PyString>() {
                    Ok(ArgSlot::Keyword(name.clone().unbind()))
                } else {
                    Err(PyTypeError::new_err(
                        "a mapped slot is a position (int) or a keyword (str)",
                    ))
                }
            })
            .collect::<PyResult<Vec<_>>>()?;
        let py = args.py();
        let count = iterables[0].len()?;
        for input in &iterables {
            if input.len()? != count {
                return Err(PyValueError::new_err("mapped iterables must have equal lengths"));
            }
        }
        let runs = run_count(count)?;
        let sources = iterables.iter().map(MappedSource::new).collect::<PyResult<Vec<_>>>()?;
        let mut fixed_deps = SmallVec::new();
        let resolve_fixed = collect_call_deps(args, kwargs, wait_for, shared, &mut fixed_deps)?;
        let first = self.reserve_names(&spec.get().name, count);
        let plan = Arc::new(CallPlan::new(
            spec.py(),
            spec.clone().unbind(),
            args.clone().unbind(),
            kwargs.map(|k| k.clone().unbind()),
            slots,
            sources,
            resolve_fixed,
            Naming::Numbered { first },
            Some(MapTally::new(count)),
            Some(submitter_context(py)?),
        ));
        // All runs are reserved first (one contiguous range, the future list's), then
        // built and registered piece by piece: workers start on the first piece at once,
        // and no payload vector for the whole map is ever held.
        let range = shared.reserve(runs).map_err(|err| engine_error(err, shared.id()))?;
        let registered = if plan.sources().iter().any(MappedSource::may_hold_futures) {
            self.register_map(&range, &plan, &fixed_deps, |position, deps| {
                self.item_deps(py, &plan, position, fixed_deps.len(), deps)
            })
        } else {
            // Nothing to look into: registering needs no Python, so it runs detached and
            // the workers execute the first pieces meanwhile (attached, it held them off
            // until the whole map was registered: a sixth of a 10^6 map's time).
            detached(py, || self.register_map(&range, &plan, &fixed_deps, |_, _| Ok(())))
        };
        if let Err((failed_at, err)) = registered {
            shared.release_reserved(failed_at..range.end);
            // The runs registered before the error go on, but no future list will own
            // their handles: drop them, so their values go once they end.
            for run in range.start..failed_at {
                shared.unhold(run);
            }
            return Err(err);
        }
        let futures = PyFutureList::adopt_range(Arc::clone(shared), range);
        if draining() {
            shared.cancel_pending(); // the interpreter is exiting: they end Cancelled, logged
        }
        Ok(futures)
    }

    /// Blocks until every run registered so far is final, helping with queued work.
    /// Returns false at the timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait_idle(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let shared = self.shared();
        shared.executor().check_same_process()?;
        let done = wait_detached(py, shared.id(), deadline_after(timeout)?, |slice| {
            Ok(shared.wait_idle(slice, true).then_some(()))
        })?;
        Ok(done.is_some())
    }

    /// Cancels every run that has not started; returns how many.
    fn cancel_pending(&self) -> usize {
        if self.shared().executor().is_from_parent_process() {
            return 0; // nothing of it runs in this process (see `Drop`)
        }
        self.shared().cancel_pending()
    }

    /// Stops the pool: unstarted runs end Cancelled, running ones finish, workers exit.
    fn shutdown(&self, py: Python<'_>) {
        if self.shared().executor().is_from_parent_process() {
            return; // nothing of it runs in this process (see `Drop`)
        }
        detached(py, || self.engine.shutdown());
        drop(self.shared().executor().unlink());
    }

    #[getter]
    fn max_workers(&self) -> usize {
        self.shared().max_workers()
    }

    /// Worker threads alive now.
    #[getter]
    fn workers(&self) -> usize {
        self.shared().workers()
    }

    #[getter]
    fn unfinished(&self) -> usize {
        self.shared().unfinished()
    }

    #[getter]
    fn runs(&self) -> u32 {
        self.shared().len()
    }

    /// `(registered, done, failed, running)`: how far this engine's runs have got, from
    /// counters the engine keeps anyway (a few atomic loads; nothing is counted per run
    /// for it), for a progress line read a few times a second. `failed` counts every run
    /// that ended without completing; `running` is what workers execute now.
    fn progress(&self) -> (u32, u32, u32, u32) {
        let progress = self.shared().progress();
        (progress.registered, progress.done, progress.failed, progress.running)
    }

    #[getter]
    fn context(&self, py: Python<'_>) -> Py<PyAny> {
        self.shared().executor().context(py)
    }

    /// The engine holds its runner (through the link), and a failed run's exception can
    /// refer back to it: its traceback holds the frames of a direct call's caller, which
    /// hold the runner. Reporting the link and the failures' values (not every value: a
    /// traversal runs at every young-generation collection and must not cost a pass over
    /// a million runs) lets the collector free such cycles.
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        let shared = self.shared();
        shared.executor().traverse_link(&visit)?;
        let visited = shared.try_for_each_failure(|run| match shared.outcome(run) {
            Some(outcome) => outcome.value.traverse(&visit),
            None => Ok(()),
        });
        visited.unwrap_or(Ok(())) // being written now: under-reporting only keeps objects alive
    }

    /// Breaks the cycles `__traverse__` reported: the engine is garbage, nothing reads it.
    fn __clear__(&self) {
        let shared = self.shared();
        drop(shared.executor().unlink());
        for run in 0..shared.len() {
            if let Some(outcome) = shared.outcome(run) {
                outcome.value.release();
            }
        }
    }
}

impl Drop for PyEngine {
    fn drop(&mut self) {
        if self.shared().executor().is_from_parent_process() {
            // Made before a fork: its workers do not exist here, and its condvars may
            // list waiters that are gone (their stacks are reused by new threads), so
            // touching it could corrupt memory. It is left as it is, for good.
            std::mem::forget(Arc::clone(&self.engine));
            return;
        }
        // Workers attach to finish their batches, so they must be joined detached.
        detached_from_drop(|| self.engine.shutdown());
    }
}
