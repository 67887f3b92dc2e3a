//! What a run executes: a task's fixed options ([`TaskSpec`]), the arguments of one
//! `.submit` or one `.map` ([`CallPlan`], shared by all runs of a map) and a run's own
//! share of them ([`Call`]); plus the walk that finds futures inside arguments and later
//! replaces them with their values.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferroflow_core::{Dep, Final};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType};
use smallvec::SmallVec;

use crate::engine::CoreShared;
use crate::future::{PyFuture, PyFutureList};
use crate::hooks::hooks;

/// A task's options that every run reads, built once per `Task` object.
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

/// Where a mapped value goes in the call.
pub(crate) enum ArgSlot {
    Position(usize),
    Keyword(Py<PyString>),
}

/// How a run is named in log lines.
pub(crate) enum Naming {
    /// The bare task name (a direct call outside any flow, as in Prefect).
    Bare,
    /// `name-<first + index>`, numbers reserved for this plan within the flow run.
    Numbered { first: u64 },
}

/// Counts of a map's runs by final state, for its one summary line.
pub(crate) struct MapTally {
    remaining: AtomicUsize,
    counts: [AtomicUsize; 7],
    started: Instant,
    /// Runs that did not complete and were logged one by one (capped).
    logged: AtomicUsize,
}

/// Most runs of one map that get a line of their own for not completing.
const MAP_LINES_PER_MAP: usize = 20;

const FINALS: [Final; 7] = [
    Final::Completed,
    Final::Cached,
    Final::Failed,
    Final::TimedOut,
    Final::Crashed,
    Final::Cancelled,
    Final::NotReady,
];

impl MapTally {
    pub(crate) fn new(runs: usize) -> Self {
        MapTally {
            remaining: AtomicUsize::new(runs),
            counts: Default::default(),
            started: Instant::now(),
            logged: AtomicUsize::new(0),
        }
    }

    /// Counts one final run; returns the counts once the last run of the map is in.
    fn count(&self, state: Final) -> Option<Vec<(&'static str, usize)>> {
        let index = FINALS
            .iter()
            .position(|f| *f == state)
            .expect("every final state is counted");
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        Some(
            FINALS
                .iter()
                .zip(&self.counts)
                .map(|(f, c)| (f.state().name(), c.load(Ordering::Relaxed)))
                .filter(|(_, c)| *c > 0)
                .collect(),
        )
    }

    fn may_log_one(&self) -> bool {
        self.logged.fetch_add(1, Ordering::Relaxed) < MAP_LINES_PER_MAP
    }
}

/// The arguments of one `.submit()`, direct call, or `.map()` (shared by its runs).
pub(crate) struct CallPlan {
    pub(crate) spec: Py<TaskSpec>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    mapped: Vec<ArgSlot>,
    /// The fixed arguments hold futures or annotations that must be replaced per run.
    resolve_fixed: bool,
    /// One positional argument, mapped, and nothing else: the call is `fn(item)`.
    only_item_is_argument: bool,
    /// Where a map's runs take their values from, one per mapped slot (empty otherwise).
    sources: Vec<MappedSource>,
    naming: Naming,
    pub(crate) tally: Option<MapTally>,
}

/// Where the runs of a map find their values: the input sequence, which the plan keeps
/// (a tuple, or a list the map copied), or a range's arithmetic. A run takes its value by
/// index when it executes, so a registered run holds no object of its own, and the ints
/// of `map(range(n))` exist only while their runs execute.
pub(crate) enum MappedSource {
    Items(Py<PyAny>),
    Range { start: i64, step: i64 },
}

impl MappedSource {
    /// A list or tuple as is; a range by its start and step when they fit 64 bits.
    pub(crate) fn new(input: &Bound<'_, PyAny>) -> PyResult<Self> {
        if input.is_instance_of::<PyList>() || input.is_instance_of::<PyTuple>() {
            return Ok(MappedSource::Items(input.clone().unbind()));
        }
        if input.is_instance_of::<pyo3::types::PyRange>() {
            let bounds = (
                input.getattr("start")?.extract::<i64>(),
                input.getattr("step")?.extract::<i64>(),
                input.getattr("stop")?.extract::<i64>(),
            );
            if let (Ok(start), Ok(step), Ok(_)) = bounds {
                return Ok(MappedSource::Range { start, step });
            }
        }
        // Anything else (a range past 64 bits, a sequence type): its items, once.
        Ok(MappedSource::Items(
            PyList::new(input.py(), input.try_iter()?.collect::<PyResult<Vec<_>>>()?)?
                .into_any()
                .unbind(),
        ))
    }

    /// The value of the run at `index`.
    pub(crate) fn item<'py>(&self, py: Python<'py>, index: u32) -> PyResult<Bound<'py, PyAny>> {
        match self {
            MappedSource::Items(items) => {
                let items = items.bind(py);
                match items.cast::<PyList>() {
                    Ok(list) => list.get_item(index as usize),
                    Err(_) => items.cast::<PyTuple>()?.get_item(index as usize),
                }
            }
            MappedSource::Range { start, step } => Ok((i128::from(*start) + i128::from(*step) * i128::from(index))
                .into_pyobject(py)?
                .into_any()),
        }
    }

    /// Whether the values can hold futures (a range's ints cannot).
    pub(crate) fn may_hold_futures(&self) -> bool {
        matches!(self, MappedSource::Items(_))
    }
}

/// One run's payload: its plan, and its index in it (0 for a submit).
pub struct Call {
    pub(crate) plan: Arc<CallPlan>,
    /// The run's place in its map: its values and its name follow from it.
    index: u32,
}

impl CallPlan {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        py: Python<'_>,
        spec: Py<TaskSpec>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        mapped: Vec<ArgSlot>,
        sources: Vec<MappedSource>,
        resolve_fixed: bool,
        naming: Naming,
        tally: Option<MapTally>,
    ) -> Self {
        let only_item_is_argument = kwargs.is_none()
            && !resolve_fixed
            && matches!(mapped.as_slice(), [ArgSlot::Position(0)])
            && sources.len() == 1
            && args.bind(py).len() == 1;
        CallPlan {
            spec,
            args,
            kwargs,
            mapped,
            resolve_fixed,
            only_item_is_argument,
            sources,
            naming,
            tally,
        }
    }

    pub(crate) fn call(self: &Arc<Self>, index: u32) -> Call {
        Call {
            plan: Arc::clone(self),
            index,
        }
    }

    pub(crate) fn sources(&self) -> &[MappedSource] {
        &self.sources
    }

    /// The value for mapped slot `slot` of the run at `index`.
    pub(crate) fn mapped_value<'py>(&self, py: Python<'py>, slot: usize, index: u32) -> PyResult<Bound<'py, PyAny>> {
        self.sources[slot].item(py, index)
    }

    pub(crate) fn is_map(&self) -> bool {
        self.tally.is_some()
    }

    /// `inc-3` for the run at `index` of this plan, or the bare task name.
    pub(crate) fn run_name(&self, index: u32) -> String {
        let name = &self.spec.get().name;
        match self.naming {
            Naming::Bare => name.clone(),
            Naming::Numbered { first } => format!("{name}-{}", first + u64::from(index)),
        }
    }
}

impl Call {
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The run's name in log lines: a custom `task_run_name`, or the plan's naming.
    pub(crate) fn run_name(&self, py: Python<'_>) -> String {
        self.custom_name(py).unwrap_or_else(|| self.plan.run_name(self.index))
    }

    /// The custom `task_run_name` of this run, if the task has one.
    pub(crate) fn custom_name(&self, py: Python<'_>) -> Option<String> {
        let spec = self.plan.spec.get();
        let custom = spec.custom_name.as_ref()?;
        let named = self.arguments(py).and_then(|(args, kwargs)| {
            hooks(py)?
                .run_name
                .call1(py, (&spec.task, custom, args, kwargs))?
                .extract::<String>(py)
        });
        named.map_err(|err| crate::hooks::report_hook_error(py, err)).ok()
    }

    /// The positional and keyword arguments of this run, futures replaced by values.
    pub(crate) fn arguments<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        let plan = &*self.plan;
        let fixed = plan.args.bind(py);
        let mut kwargs = plan.kwargs.as_ref().map(|k| k.bind(py).clone());
        if plan.mapped.is_empty() && !plan.resolve_fixed {
            return Ok((fixed.clone(), kwargs));
        }
        // The common map, `task.map(xs)`: the run's own value is the only argument.
        if plan.only_item_is_argument {
            let value = plan.mapped_value(py, 0, self.index)?;
            return Ok((PyTuple::new(py, [resolve(py, &value)?])?, kwargs));
        }
        let mut args: Vec<Bound<'py, PyAny>> = fixed.iter().collect();
        if plan.resolve_fixed {
            for arg in &mut args {
                *arg = resolve(py, arg)?;
            }
            if let Some(k) = &kwargs {
                kwargs = Some(resolve(py, k.as_any())?.cast_into::<PyDict>()?);
            }
        }
        {
            for (position, slot) in plan.mapped.iter().enumerate() {
                let value = resolve(py, &plan.mapped_value(py, position, self.index)?)?;
                match slot {
                    ArgSlot::Position(i) => args[*i] = value,
                    ArgSlot::Keyword(name) => {
                        let dict = match &kwargs {
                            Some(k) if !plan.resolve_fixed => k.copy()?,
                            Some(k) => k.clone(),
                            None => PyDict::new(py),
                        };
                        dict.set_item(name.bind(py), value)?;
                        kwargs = Some(dict);
                    }
                }
            }
        }
        Ok((PyTuple::new(py, args)?, kwargs))
    }

    /// Counts the run in its map's summary; returns whether this run gets its own line.
    pub(crate) fn tally(&self, py: Python<'_>, engine: &CoreShared, state: Final) -> bool {
        let Some(tally) = &self.plan.tally else {
            return true;
        };
        let own_line = state != Final::Completed && state != Final::Cached && tally.may_log_one();
        if let Some(counts) = tally.count(state) {
            let elapsed = tally.started.elapsed().as_secs_f64();
            let spec = self.plan.spec.get();
            if let Err(err) = hooks(py).and_then(|h| {
                h.map_finished
                    .call1(py, (engine.executor().context(py), &spec.task, counts, elapsed))
            }) {
                crate::hooks::report_hook_error(py, err);
            }
        }
        own_line
    }
}

/// The annotation classes of `ferroflow.utilities.annotations`.
struct Annotations {
    unmapped: Py<PyType>,
    allow_failure: Py<PyType>,
    quote: Py<PyType>,
    opaque: Py<PyType>,
}

static ANNOTATIONS: PyOnceLock<Annotations> = PyOnceLock::new();

fn annotations(py: Python<'_>) -> PyResult<&Annotations> {
    ANNOTATIONS.get_or_try_init(py, || {
        let module = py.import("ferroflow.utilities.annotations")?;
        let class = |name: &str| -> PyResult<Py<PyType>> { Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind()) };
        Ok(Annotations {
            unmapped: class("unmapped")?,
            allow_failure: class("allow_failure")?,
            quote: class("quote")?,
            opaque: class("opaque")?,
        })
    })
}

/// Values that cannot hold a future: the walk stops at once.
pub(crate) fn is_leaf(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyString>()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_none()
        || obj.is_exact_instance_of::<PyBool>()
        || obj.is_exact_instance_of::<PyBytes>()
}

fn is_dataclass_instance(obj: &Bound<'_, PyAny>) -> bool {
    !obj.is_instance_of::<PyType>()
        && obj
            .get_type()
            .hasattr(pyo3::intern!(obj.py(), "__dataclass_fields__"))
            .unwrap_or(false)
}

/// Finds the futures inside an argument (through lists, tuples, sets, dicts, dataclasses
/// and annotations) and adds each as a dependency of the new run. Returns whether the
/// argument must be rebuilt before the call (it holds futures or annotations).
///
/// A future of another task runner (another flow run) is accepted only once final: its
/// value is read then; an unfinished one is an error, since this engine cannot wait on it.
pub(crate) fn collect_deps(
    obj: &Bound<'_, PyAny>,
    engine: &CoreShared,
    deps: &mut SmallVec<[Dep; 2]>,
    allow_failure: bool,
) -> PyResult<bool> {
    if is_leaf(obj) {
        return Ok(false);
    }
    let py = obj.py();
    if let Ok(future) = obj.cast::<PyFuture>() {
        let future = future.get();
        if Arc::ptr_eq(&future.shared, engine) {
            deps.push(Dep {
                run: future.run,
                allow_failure,
            });
        } else if !future.shared.state(future.run).is_some_and(|s| s.is_final()) {
            return Err(PyValueError::new_err(format!(
                "a future of another flow run's task runner ({}) was passed as an argument; pass its .result() instead",
                future.describe(py)
            )));
        }
        return Ok(true);
    }
    if let Ok(list) = obj.cast::<PyFutureList>() {
        list.get().collect_deps(py, engine, deps, allow_failure)?;
        return Ok(true);
    }
    let marks = annotations(py)?;
    if obj.is_instance(marks.allow_failure.bind(py))? {
        collect_deps(&obj.cast::<PyTuple>()?.get_item(0)?, engine, deps, true)?;
        return Ok(true);
    }
    if obj.is_instance(marks.quote.bind(py))? {
        return Ok(true);
    }
    if obj.is_instance(marks.opaque.bind(py))? {
        let inner = obj.cast::<PyTuple>()?.get_item(0)?;
        if inner.is_instance_of::<PyFuture>() {
            collect_deps(&inner, engine, deps, allow_failure)?;
        }
        return Ok(true);
    }
    if obj.is_instance(marks.unmapped.bind(py))? {
        collect_deps(&obj.cast::<PyTuple>()?.get_item(0)?, engine, deps, allow_failure)?;
        return Ok(true);
    }
    let mut found = false;
    if let Ok(list) = obj.cast::<PyList>() {
        for item in list.iter() {
            found |= collect_deps(&item, engine, deps, allow_failure)?;
        }
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        for item in tuple.iter() {
            found |= collect_deps(&item, engine, deps, allow_failure)?;
        }
    } else if let Ok(dict) = obj.cast::<PyDict>() {
        for (key, value) in dict.iter() {
            found |= collect_deps(&key, engine, deps, allow_failure)?;
            found |= collect_deps(&value, engine, deps, allow_failure)?;
        }
    } else if let Ok(set) = obj.cast::<PySet>() {
        for item in set.iter() {
            found |= collect_deps(&item, engine, deps, allow_failure)?;
        }
    } else if let Ok(set) = obj.cast::<PyFrozenSet>() {
        for item in set.iter() {
            found |= collect_deps(&item, engine, deps, allow_failure)?;
        }
    } else if is_dataclass_instance(obj) {
        for field in obj
            .getattr(pyo3::intern!(py, "__dataclass_fields__"))?
            .cast::<PyDict>()?
            .keys()
        {
            if let Ok(value) = obj.getattr(field.cast::<PyString>()?) {
                found |= collect_deps(&value, engine, deps, allow_failure)?;
            }
        }
    }
    Ok(found)
}

/// Whether `obj` holds a future anywhere inside lists, tuples, sets, dicts or
/// dataclasses (not inside `quote`): lets Python skip its walk over a flow's return
/// value of a million plain results.
#[pyfunction]
pub(crate) fn contains_futures(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    if is_leaf(obj) {
        return Ok(false);
    }
    if obj.is_instance_of::<PyFuture>() || obj.is_instance_of::<PyFutureList>() {
        return Ok(true);
    }
    let py = obj.py();
    if obj.is_instance(annotations(py)?.quote.bind(py))? {
        return Ok(false);
    }
    let any_inside = |items: &mut dyn Iterator<Item = Bound<'_, PyAny>>| -> PyResult<bool> {
        for item in items {
            if contains_futures(&item)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    if let Ok(list) = obj.cast::<PyList>() {
        return any_inside(&mut list.iter());
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return any_inside(&mut tuple.iter());
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return any_inside(&mut dict.iter().flat_map(|(key, value)| [key, value]));
    }
    if let Ok(set) = obj.cast::<PySet>() {
        return any_inside(&mut set.iter());
    }
    if let Ok(set) = obj.cast::<PyFrozenSet>() {
        return any_inside(&mut set.iter());
    }
    if is_dataclass_instance(obj) {
        let fields = obj.getattr(pyo3::intern!(py, "__dataclass_fields__"))?;
        for field in fields.cast::<PyDict>()?.keys() {
            if let Ok(value) = obj.getattr(field.cast::<PyString>()?) {
                if contains_futures(&value)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Rebuilds an argument with every future replaced by its value (an allowed failure by
/// its exception) and every annotation unwrapped. Containers are copied, as in Prefect;
/// dataclasses are rebuilt with `dataclasses.replace`.
pub(crate) fn resolve<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if is_leaf(obj) {
        return Ok(obj.clone());
    }
    if let Ok(future) = obj.cast::<PyFuture>() {
        return future.get().value_for_dependent(py);
    }
    if let Ok(list) = obj.cast::<PyFutureList>() {
        return Ok(list.get().values_for_dependent(py)?.into_any());
    }
    let marks = annotations(py)?;
    let is_mark = |class: &Py<PyType>| obj.is_instance(class.bind(py));
    if is_mark(&marks.quote)? {
        return obj.cast::<PyTuple>()?.get_item(0);
    }
    if is_mark(&marks.allow_failure)? || is_mark(&marks.unmapped)? {
        return resolve(py, &obj.cast::<PyTuple>()?.get_item(0)?);
    }
    if is_mark(&marks.opaque)? {
        let inner = obj.cast::<PyTuple>()?.get_item(0)?;
        return match inner.cast::<PyFuture>() {
            Ok(future) => future.get().value_for_dependent(py),
            Err(_) => Ok(inner),
        };
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let items = list
            .iter()
            .map(|item| resolve(py, &item))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyList::new(py, items)?.into_any());
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let items = tuple
            .iter()
            .map(|item| resolve(py, &item))
            .collect::<PyResult<Vec<_>>>()?;
        if obj.is_exact_instance_of::<PyTuple>() {
            return Ok(PyTuple::new(py, items)?.into_any());
        }
        let class = obj.get_type();
        return if class.hasattr(pyo3::intern!(py, "_make"))? {
            class.call_method1(pyo3::intern!(py, "_make"), (items,)) // a named tuple
        } else {
            class.call1((items,))
        };
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let copy = PyDict::new(py);
        for (key, value) in dict.iter() {
            copy.set_item(resolve(py, &key)?, resolve(py, &value)?)?;
        }
        return Ok(copy.into_any());
    }
    if let Ok(set) = obj.cast::<PySet>() {
        let items = set
            .iter()
            .map(|item| resolve(py, &item))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PySet::new(py, items)?.into_any());
    }
    if let Ok(set) = obj.cast::<PyFrozenSet>() {
        let items = set
            .iter()
            .map(|item| resolve(py, &item))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyFrozenSet::new(py, items)?.into_any());
    }
    if is_dataclass_instance(obj) {
        let changes = PyDict::new(py);
        for field in obj
            .getattr(pyo3::intern!(py, "__dataclass_fields__"))?
            .cast::<PyDict>()?
            .keys()
        {
            let name = field.cast::<PyString>()?;
            if let Ok(value) = obj.getattr(name) {
                let resolved = resolve(py, &value)?;
                if !resolved.is(&value) {
                    changes.set_item(name, resolved)?;
                }
            }
        }
        if changes.is_empty() {
            return Ok(obj.clone());
        }
        return hooks(py)?.dataclass_replace.bind(py).call((obj,), Some(&changes));
    }
    Ok(obj.clone())
}

/// The dependencies of a whole call: fixed arguments, keyword arguments and `wait_for`.
pub(crate) fn collect_call_deps(
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    wait_for: Option<&Bound<'_, PyAny>>,
    engine: &CoreShared,
    deps: &mut SmallVec<[Dep; 2]>,
) -> PyResult<bool> {
    let mut resolve_fixed = collect_deps(args.as_any(), engine, deps, false)?;
    if let Some(kwargs) = kwargs {
        resolve_fixed |= collect_deps(kwargs.as_any(), engine, deps, false)?;
    }
    if let Some(wait_for) = wait_for {
        for item in wait_for.try_iter()? {
            collect_deps(&item?, engine, deps, false)?;
        }
    }
    deps.sort_unstable_by_key(|dep| (dep.run, !dep.allow_failure));
    deps.dedup_by_key(|dep| dep.run);
    Ok(resolve_fixed)
}
