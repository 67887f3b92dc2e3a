//! What a run executes: the arguments of one `.submit`, direct call or `.map` ([`CallPlan`],
//! shared by all runs of a map) and a run's own share of them ([`Call`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ferroflow_core::Final;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyRange, PyString, PyTuple};
use smallvec::SmallVec;

use crate::args::resolve;
use crate::current::RunIdentity;
use crate::hooks::hooks;
use crate::spec::TaskSpec;

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
    pub(crate) fn count(&self, state: Final) -> Option<Vec<(&'static str, usize)>> {
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

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn may_log_one(&self) -> bool {
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
    /// The submitter's `contextvars` context (a copy), which its runs execute in; `None`
    /// for a direct call, which executes in its caller's own context.
    pub(crate) context: Option<Py<PyAny>>,
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
        if input.is_instance_of::<PyRange>() {
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
            MappedSource::Range { start, step } => {
                let value = i128::from(*start) + i128::from(*step) * i128::from(index);
                // Converted as an i64 when it fits (it always does when the range's stop
                // does): under the stable ABI, PyO3 builds an i128 from two halves with
                // Python arithmetic, which was an eighth of a trivial mapped run.
                match i64::try_from(value) {
                    Ok(small) => Ok(small.into_pyobject(py)?.into_any()),
                    Err(_) => Ok(value.into_pyobject(py)?.into_any()),
                }
            }
        }
    }

    /// Whether the values can hold futures (a range's ints cannot).
    pub(crate) fn may_hold_futures(&self) -> bool {
        matches!(self, MappedSource::Items(_))
    }
}

/// One run's payload: its plan, and its index in it (0 for a submit).
#[derive(Clone)]
pub struct Call {
    share: Arc<PlanShare>,
    /// The run's place in its map: its values and its name follow from it.
    index: u32,
}

/// How runs hold their plan. A submit's run owns it. The runs of a map share it through
/// the piece they were registered in, each piece with a reference count of its own: the
/// thread registering a map's next piece counts up its runs' references while a worker,
/// executing an earlier piece, counts down another's. With the plan's one count, those
/// two threads wrote the same cache line for every run (measured: about 4% of a 10^6
/// map, in `lock xadd` and `lock xsub`). A piece is as large as a plan, so two pieces'
/// counts never share a line.
pub(crate) enum PlanShare {
    Own(CallPlan),
    Piece(Arc<CallPlan>),
}

impl PlanShare {
    pub(crate) fn call(self: &Arc<Self>, index: u32) -> Call {
        Call {
            share: Arc::clone(self),
            index,
        }
    }
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
        context: Option<Py<PyAny>>,
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
            context,
        }
    }

    /// The one run of a submit or a direct call.
    pub(crate) fn into_call(self) -> Call {
        Call {
            share: Arc::new(PlanShare::Own(self)),
            index: 0,
        }
    }

    /// A new piece of this map, whose runs share one reference count (see `PlanShare`).
    pub(crate) fn piece(self: &Arc<Self>) -> Arc<PlanShare> {
        Arc::new(PlanShare::Piece(Arc::clone(self)))
    }

    pub(crate) fn sources(&self) -> &[MappedSource] {
        &self.sources
    }

    /// The value for mapped slot `slot` of the run at `index`.
    pub(crate) fn mapped_value<'py>(&self, py: Python<'py>, slot: usize, index: u32) -> PyResult<Bound<'py, PyAny>> {
        self.sources[slot].item(py, index)
    }

    /// Whether a run's only argument is its mapped item: the call is `fn(item)`.
    pub(crate) fn only_item_is_argument(&self) -> bool {
        self.only_item_is_argument
    }

    pub(crate) fn is_map(&self) -> bool {
        self.tally.is_some()
    }

    /// `inc-3` for the run at `index` of this plan, or the bare task name.
    pub(crate) fn run_name(&self, index: u32) -> String {
        let name = &self.spec.get().name;
        match self.run_number(index) {
            None => name.clone(),
            Some(number) => format!("{name}-{number}"),
        }
    }

    /// The number in the name of the run at `index` (`3` in `inc-3`); None when runs of
    /// this plan are named by the bare task name.
    pub(crate) fn run_number(&self, index: u32) -> Option<u64> {
        match self.naming {
            Naming::Bare => None,
            Naming::Numbered { first } => Some(first + u64::from(index)),
        }
    }
}

impl Call {
    /// The plan of the map this run belongs to (`None` for a submit's or a direct call's).
    pub(crate) fn map_plan(&self) -> Option<&Arc<CallPlan>> {
        match &*self.share {
            PlanShare::Own(_) => None,
            PlanShare::Piece(plan) => Some(plan),
        }
    }

    pub(crate) fn plan(&self) -> &CallPlan {
        match &*self.share {
            PlanShare::Own(plan) => plan,
            PlanShare::Piece(plan) => plan,
        }
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The run's name in log lines: a custom `task_run_name`, or the plan's naming.
    /// Fails when the task's `task_run_name` fails (the run then fails with that error).
    pub(crate) fn run_name(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self
            .custom_name(py)?
            .unwrap_or_else(|| self.plan().run_name(self.index)))
    }

    /// The custom `task_run_name` of this run, if the task has one.
    pub(crate) fn custom_name(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let spec = self.plan().spec.get();
        let Some(custom) = spec.custom_name.as_ref() else {
            return Ok(None);
        };
        let (args, kwargs) = self.arguments(py, None)?;
        let name = hooks(py)?.run_name.call1(py, (&spec.task, custom, args, kwargs))?;
        Ok(Some(name.extract::<String>(py)?))
    }

    /// The run's one argument when it has no other (`task.map(xs)`, the common map), a
    /// future replaced by its value: what [`Self::arguments`] would put alone in a tuple.
    pub(crate) fn only_argument<'py>(
        &self,
        py: Python<'py>,
        place: Option<&Bound<'py, PyAny>>,
    ) -> Option<PyResult<Bound<'py, PyAny>>> {
        let plan = self.plan();
        plan.only_item_is_argument
            .then(|| resolve(&plan.mapped_value(py, 0, self.index)?, place))
    }

    /// The positional and keyword arguments of this run, futures replaced by values,
    /// with `leading` first if given (the function, for a call through `Context.run`:
    /// one tuple per run instead of two).
    pub(crate) fn arguments<'py>(
        &self,
        py: Python<'py>,
        leading: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        self.arguments_for(py, leading, None)
    }

    /// [`Call::arguments`] for a run that executes in `place` (a cluster): the values of
    /// upstream runs kept there are their handles (see `remote`).
    pub(crate) fn arguments_for<'py>(
        &self,
        py: Python<'py>,
        leading: Option<&Bound<'py, PyAny>>,
        place: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        let plan = self.plan();
        let fixed = plan.args.bind(py);
        let mut kwargs = plan.kwargs.as_ref().map(|k| k.bind(py).clone());
        if plan.mapped.is_empty() && !plan.resolve_fixed && leading.is_none() {
            return Ok((fixed.clone(), kwargs));
        }
        // The common map, `task.map(xs)`: the run's own value is the only argument.
        if let Some(value) = self.only_argument(py, place) {
            let value = value?;
            let args = match leading {
                None => PyTuple::new(py, [value])?,
                Some(first) => PyTuple::new(py, [first.clone(), value])?,
            };
            return Ok((args, kwargs));
        }
        let skip = usize::from(leading.is_some());
        let mut args: SmallVec<[Bound<'py, PyAny>; 4]> = leading.cloned().into_iter().chain(fixed.iter()).collect();
        if plan.resolve_fixed {
            for arg in &mut args[skip..] {
                *arg = resolve(arg, place)?;
            }
            if let Some(k) = &kwargs {
                kwargs = Some(resolve(k.as_any(), place)?.cast_into::<PyDict>()?);
            }
        }
        for (position, slot) in plan.mapped.iter().enumerate() {
            let value = resolve(&plan.mapped_value(py, position, self.index)?, place)?;
            match slot {
                ArgSlot::Position(i) => args[skip + *i] = value,
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
        Ok((PyTuple::new(py, args)?, kwargs))
    }
}

impl RunIdentity for Call {
    fn run_name(&self) -> String {
        self.plan().run_name(self.index)
    }

    fn task(&self, py: Python<'_>) -> Py<PyAny> {
        self.plan().spec.get().task.clone_ref(py)
    }

    fn arguments(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, RunArguments { call: self.clone() })?.into_any())
    }
}

/// A run's arguments for code that asks for its parameters (`TaskRunContext.parameters`,
/// `ferroflow.runtime.task_run.parameters`): it holds the run's share of its call, and
/// resolves the arguments only when asked, so a run that never asks pays nothing.
#[pyclass(frozen, name = "RunArguments", module = "ferroflow._core")]
pub struct RunArguments {
    call: Call,
}

#[pymethods]
impl RunArguments {
    /// `(args, kwargs)` of the run, its upstream futures replaced by their results.
    fn resolved<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        self.call.arguments(py, None)
    }
}
