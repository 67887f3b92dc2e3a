//! The one walk over arguments. Every place that looks for futures inside a value, or
//! replaces them, goes through [`walk`] with its own [`Visit`]: finding a new run's
//! dependencies ([`collect_call_deps`]), resolving a run's arguments before it executes
//! ([`resolve`]), and the package's `contains_futures` / `futures_in` / `replace_futures`
//! (a flow's return value).
//!
//! The walk goes through lists, tuples, dicts, sets, frozensets (and their subclasses),
//! dataclasses and Prefect's annotations. It keeps its own stack instead of recursing,
//! so nesting depth is bounded by memory, not by the C stack, and it visits every
//! container once: a structure that contains itself, or shares sub-structures (40 lists
//! each holding the previous one twice: 2^40 paths, 41 containers), costs its size.
//! A copy keeps the shape of what it copies: a list or dict that contains itself is
//! copied into one that contains *itself*. Tuples and sets are built after their items,
//! so an item that refers back to a tuple or set being copied gets the original.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ferroflow_core::Dep;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType};
use smallvec::SmallVec;

use crate::executor::CoreShared;
use crate::future::PyFuture;
use crate::future_list::PyFutureList;
use crate::hooks::{annotations, hooks};

/// What a walk does with what it meets.
pub(crate) trait Visit<'py> {
    /// Whether the walk builds a copy with futures replaced (else it only looks).
    const REBUILD: bool;
    /// Whether annotations are unwrapped in the copy (a task receives the inner value).
    const UNWRAP_ANNOTATIONS: bool;
    /// A future; in a copy, it becomes what this returns. `allow_failure` when it sits
    /// inside `allow_failure(...)`.
    fn future(&mut self, future: &Bound<'py, PyFuture>, allow_failure: bool) -> PyResult<Bound<'py, PyAny>>;
    /// A future list; in a copy, it becomes what this returns.
    fn future_list(&mut self, list: &Bound<'py, PyFutureList>, allow_failure: bool) -> PyResult<Bound<'py, PyAny>>;
    /// An annotation (`quote`, `allow_failure`, `unmapped`, `opaque`).
    fn annotation(&mut self) {}
    /// Whether the walk can stop now (a scan found what it looked for).
    fn finished(&self) -> bool {
        false
    }
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    Dataclass,
    /// `allow_failure(x)` or `unmapped(x)`: one child, the wrapped value.
    Wrapper,
}

/// A container being walked: its children, and (in a copy) what they became.
struct Frame<'py> {
    src: Bound<'py, PyAny>,
    kind: Container,
    children: Vec<Bound<'py, PyAny>>,
    next: usize,
    results: Vec<Bound<'py, PyAny>>,
    /// The copy made before the children (lists, dicts, dataclasses), so that a child
    /// referring back to this container gets the copy.
    copy: Option<Bound<'py, PyAny>>,
    /// Dataclass field names, in the order of `children`.
    fields: Vec<Bound<'py, PyString>>,
    allow_failure: bool,
}

/// Containers met so far, by address: their copy (or `None` while one cannot exist yet,
/// and in scans, where only having met one matters).
type Seen<'py> = HashMap<usize, Option<Bound<'py, PyAny>>, BuildHasherDefault<AddressHasher>>;

/// Addresses are already well spread; one multiply mixes the low bits.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8 | u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, value: usize) {
        self.0 = (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What the walk does next with the value it just met.
enum Step<'py> {
    /// The value is dealt with: this is what it becomes.
    Done(Bound<'py, PyAny>),
    /// A container to walk into.
    Enter(Frame<'py>),
}

/// Walks `root` with `visit`; returns the copy (or `root` itself when not rebuilding).
pub(crate) fn walk<'py, V: Visit<'py>>(root: &Bound<'py, PyAny>, visit: &mut V) -> PyResult<Bound<'py, PyAny>> {
    if is_leaf(root) {
        return Ok(root.clone());
    }
    if let Some(done) = walk_flat(root, visit)? {
        return Ok(done);
    }
    let mut seen = Seen::default();
    let mut stack: Vec<Frame<'py>> = Vec::new();
    let mut step = meet(root, false, visit, &mut seen)?;
    loop {
        match step {
            Step::Enter(frame) => stack.push(frame),
            Step::Done(result) => match stack.last_mut() {
                None => return Ok(result),
                Some(parent) => {
                    if V::REBUILD {
                        parent.results.push(result);
                    }
                }
            },
        }
        if visit.finished() {
            return Ok(root.clone());
        }
        let top = stack.last_mut().expect("a frame was just pushed or given a result");
        step = if top.next < top.children.len() {
            let child = top.children[top.next].clone();
            top.next += 1;
            let allow_failure = top.allow_failure;
            meet(&child, allow_failure, visit, &mut seen)?
        } else {
            let frame = stack.pop().expect("the top frame");
            Step::Done(finish::<V>(frame, &mut seen)?)
        };
    }
}

/// The walk of a call's usual arguments: a tuple or list none of whose items is a
/// container or an annotation (`(future, 3)`). It cannot hold a cycle, so it needs no
/// stack and no record of containers met: no allocation but the copy. `None` for
/// anything else.
fn walk_flat<'py, V: Visit<'py>>(root: &Bound<'py, PyAny>, visit: &mut V) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(tuple) = root.cast_exact::<PyTuple>() {
        walk_flat_items(root, || tuple.iter(), visit)
    } else if let Ok(list) = root.cast_exact::<PyList>() {
        walk_flat_items(root, || list.iter(), visit)
    } else {
        Ok(None)
    }
}

fn walk_flat_items<'py, V: Visit<'py>, I: Iterator<Item = Bound<'py, PyAny>>>(
    root: &Bound<'py, PyAny>,
    items: impl Fn() -> I,
    visit: &mut V,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let mut only_leaves = true;
    let flat = items().all(|item| {
        is_leaf(&item) || {
            only_leaves = false;
            is_flat(&item)
        }
    });
    if !flat {
        return Ok(None);
    }
    if only_leaves && !V::REBUILD {
        return Ok(Some(root.clone())); // nothing to visit
    }
    let mut replaced = Vec::new();
    for item in items() {
        // Most items are plain values: exact-type checks only, before the subclass checks
        // (a flow returning a million ints is walked for futures at its end).
        let done = if is_leaf(&item) {
            if !V::REBUILD {
                continue;
            }
            item
        } else if let Ok(future) = item.cast::<PyFuture>() {
            visit.future(future, false)?
        } else if let Ok(list) = item.cast::<PyFutureList>() {
            visit.future_list(list, false)?
        } else {
            item
        };
        if visit.finished() {
            return Ok(Some(root.clone()));
        }
        if V::REBUILD {
            replaced.push(done);
        }
    }
    if !V::REBUILD {
        return Ok(Some(root.clone()));
    }
    Ok(Some(if root.is_exact_instance_of::<PyTuple>() {
        PyTuple::new(root.py(), replaced)?.into_any()
    } else {
        PyList::new(root.py(), replaced)?.into_any()
    }))
}

/// An item [`walk_flat`] can take as it is: it holds nothing to walk into.
fn is_flat(item: &Bound<'_, PyAny>) -> bool {
    is_leaf(item)
        || item.is_instance_of::<PyFuture>()
        || item.is_instance_of::<PyFutureList>()
        || !(item.is_instance_of::<PyTuple>()
            || item.is_instance_of::<PyList>()
            || item.is_instance_of::<PyDict>()
            || item.is_instance_of::<PySet>()
            || item.is_instance_of::<PyFrozenSet>()
            || is_dataclass_instance(item))
}

/// Classifies a value the walk meets: a future, an annotation or a container to enter,
/// or anything else (passed through as is).
fn meet<'py, V: Visit<'py>>(
    obj: &Bound<'py, PyAny>,
    allow_failure: bool,
    visit: &mut V,
    seen: &mut Seen<'py>,
) -> PyResult<Step<'py>> {
    if is_leaf(obj) {
        return Ok(Step::Done(obj.clone()));
    }
    if let Ok(future) = obj.cast::<PyFuture>() {
        return Ok(Step::Done(visit.future(future, allow_failure)?));
    }
    if let Ok(list) = obj.cast::<PyFutureList>() {
        return Ok(Step::Done(visit.future_list(list, allow_failure)?));
    }
    let kind = if obj.is_exact_instance_of::<PyList>() {
        Container::List
    } else if obj.is_exact_instance_of::<PyDict>() {
        Container::Dict
    } else if obj.is_exact_instance_of::<PyTuple>() {
        Container::Tuple
    } else if obj.is_instance_of::<PyTuple>() {
        // Annotations are one-element tuple subclasses: look for them only here.
        if let Some(step) = meet_annotation(obj, allow_failure, visit)? {
            return Ok(step);
        }
        Container::Tuple
    } else if obj.is_instance_of::<PyList>() {
        Container::List
    } else if obj.is_instance_of::<PyDict>() {
        Container::Dict
    } else if obj.is_instance_of::<PySet>() {
        Container::Set
    } else if obj.is_instance_of::<PyFrozenSet>() {
        Container::FrozenSet
    } else if is_dataclass_instance(obj) {
        Container::Dataclass
    } else {
        return Ok(Step::Done(obj.clone()));
    };
    // A scan meets a container again when it first met it inside `allow_failure(...)`
    // and now outside (its futures are then strict dependencies too); a copy never does.
    // Addresses are aligned, so the low bit is free.
    let address = obj.as_ptr() as usize | usize::from(!V::REBUILD && allow_failure);
    if let Some(copy) = seen.get(&address) {
        // Met before: in a scan there is nothing new inside; in a copy, its copy (or the
        // original, for a tuple or set still being built around this very reference).
        return Ok(Step::Done(copy.clone().unwrap_or_else(|| obj.clone())));
    }
    let frame = enter::<V>(obj, kind, allow_failure)?;
    seen.insert(address, frame.copy.clone());
    Ok(Step::Enter(frame))
}

/// `quote`, `opaque`, `allow_failure` and `unmapped`; `None` for any other tuple subclass.
fn meet_annotation<'py, V: Visit<'py>>(
    obj: &Bound<'py, PyAny>,
    allow_failure: bool,
    visit: &mut V,
) -> PyResult<Option<Step<'py>>> {
    let py = obj.py();
    let marks = annotations(py)?;
    let inner = || -> PyResult<Bound<'py, PyAny>> { obj.cast::<PyTuple>()?.get_item(0) };
    if obj.is_instance(marks.quote.bind(py))? {
        // Handed over as is: nothing inside is looked at.
        visit.annotation();
        return Ok(Some(Step::Done(if V::UNWRAP_ANNOTATIONS {
            inner()?
        } else {
            obj.clone()
        })));
    }
    if obj.is_instance(marks.opaque.bind(py))? {
        // Only a future directly inside is resolved; its value is never walked into.
        visit.annotation();
        let inner = inner()?;
        let Ok(future) = inner.cast::<PyFuture>() else {
            return Ok(Some(Step::Done(if V::UNWRAP_ANNOTATIONS {
                inner
            } else {
                obj.clone()
            })));
        };
        let value = visit.future(future, allow_failure)?;
        return Ok(Some(Step::Done(if !V::REBUILD {
            obj.clone()
        } else if V::UNWRAP_ANNOTATIONS {
            value
        } else {
            obj.get_type().call1((value,))?
        })));
    }
    let allows = obj.is_instance(marks.allow_failure.bind(py))?;
    if allows || obj.is_instance(marks.unmapped.bind(py))? {
        visit.annotation();
        let mut frame = enter::<V>(obj, Container::Wrapper, allow_failure || allows)?;
        frame.children = vec![inner()?];
        return Ok(Some(Step::Enter(frame)));
    }
    Ok(None)
}

fn is_dataclass_instance(obj: &Bound<'_, PyAny>) -> bool {
    !obj.is_instance_of::<PyType>()
        && obj
            .get_type()
            .hasattr(pyo3::intern!(obj.py(), "__dataclass_fields__"))
            .unwrap_or(false)
}

/// A frame for `obj`: its children now (a snapshot: the walk never sees a container
/// change under it), and in a copy of a list, dict or dataclass, the copy itself.
fn enter<'py, V: Visit<'py>>(obj: &Bound<'py, PyAny>, kind: Container, allow_failure: bool) -> PyResult<Frame<'py>> {
    let py = obj.py();
    let mut fields = Vec::new();
    let children: Vec<Bound<'py, PyAny>> = match kind {
        Container::List => obj.cast::<PyList>()?.iter().collect(),
        Container::Tuple => obj.cast::<PyTuple>()?.iter().collect(),
        Container::Dict => obj
            .cast::<PyDict>()?
            .iter()
            .flat_map(|(key, value)| [key, value])
            .collect(),
        Container::Set | Container::FrozenSet => obj.try_iter()?.collect::<PyResult<_>>()?,
        Container::Dataclass => {
            let declared = obj.getattr(pyo3::intern!(py, "__dataclass_fields__"))?;
            let mut values = Vec::new();
            for name in declared.cast::<PyDict>()?.keys() {
                let name = name.cast_into::<PyString>()?;
                if let Ok(value) = obj.getattr(&name) {
                    fields.push(name);
                    values.push(value);
                }
            }
            values
        }
        Container::Wrapper => Vec::new(), // its one child is set by the caller
    };
    let copy = if V::REBUILD {
        match kind {
            Container::List if obj.is_exact_instance_of::<PyList>() => Some(PyList::empty(py).into_any()),
            Container::Dict if obj.is_exact_instance_of::<PyDict>() => Some(PyDict::new(py).into_any()),
            // Subclasses keep their type (a defaultdict stays one); their items are replaced.
            Container::List | Container::Dict | Container::Dataclass => {
                Some(hooks(py)?.shallow_copy.bind(py).call1((obj,))?)
            }
            _ => None,
        }
    } else {
        None
    };
    Ok(Frame {
        src: obj.clone(),
        kind,
        results: Vec::with_capacity(if V::REBUILD { children.len() } else { 0 }),
        children,
        next: 0,
        copy,
        fields,
        allow_failure,
    })
}

/// All children of `frame` are done: build its copy (when rebuilding).
fn finish<'py, V: Visit<'py>>(frame: Frame<'py>, seen: &mut Seen<'py>) -> PyResult<Bound<'py, PyAny>> {
    if !V::REBUILD {
        return Ok(frame.src);
    }
    let py = frame.src.py();
    let results = frame.results;
    let built = match frame.kind {
        Container::List => {
            let copy = frame.copy.expect("lists are copied up front");
            let list = copy.cast::<PyList>()?;
            list.del_slice(0, list.len())?;
            for item in results {
                list.append(item)?;
            }
            copy
        }
        Container::Dict => {
            let copy = frame.copy.expect("dicts are copied up front");
            let dict = copy.cast::<PyDict>()?;
            dict.clear();
            let mut pairs = results.into_iter();
            while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
                dict.set_item(key, value)?;
            }
            copy
        }
        Container::Dataclass => {
            let copy = frame.copy.expect("dataclasses are copied up front");
            let setattr = &hooks(py)?.object_setattr;
            for ((name, value), original) in frame.fields.iter().zip(results).zip(&frame.children) {
                if !value.is(original) {
                    setattr.call1(py, (&copy, name, value))?;
                }
            }
            copy
        }
        Container::Tuple => {
            if frame.src.is_exact_instance_of::<PyTuple>() {
                PyTuple::new(py, results)?.into_any()
            } else {
                let class = frame.src.get_type();
                if class.hasattr(pyo3::intern!(py, "_make"))? {
                    class.call_method1(pyo3::intern!(py, "_make"), (results,))? // a named tuple
                } else {
                    class.call1((results,))?
                }
            }
        }
        Container::Set if frame.src.is_exact_instance_of::<PySet>() => PySet::new(py, results)?.into_any(),
        Container::FrozenSet if frame.src.is_exact_instance_of::<PyFrozenSet>() => {
            PyFrozenSet::new(py, results)?.into_any()
        }
        Container::Set | Container::FrozenSet => frame.src.get_type().call1((PyList::new(py, results)?,))?,
        Container::Wrapper => {
            let inner = results.into_iter().next().expect("a wrapper has one child");
            if V::UNWRAP_ANNOTATIONS {
                inner
            } else {
                frame.src.get_type().call1((inner,))?
            }
        }
    };
    if frame.kind != Container::Wrapper {
        seen.insert(frame.src.as_ptr() as usize, Some(built.clone())); // (copies are keyed by address alone)
    }
    Ok(built)
}

// -- the walks ---------------------------------------------------------------------------

/// Finds a new run's dependencies: futures of `engine` become [`Dep`]s.
struct Collect<'a> {
    engine: &'a CoreShared,
    deps: &'a mut SmallVec<[Dep; 2]>,
    /// A future or annotation was met: the argument must be resolved before the call.
    found: bool,
}

impl Collect<'_> {
    fn add(&mut self, future: &Bound<'_, PyFuture>, allow_failure: bool) -> PyResult<()> {
        self.found = true;
        let py = future.py();
        let future = future.get();
        if std::sync::Arc::ptr_eq(&future.shared, self.engine) {
            self.deps.push(Dep {
                run: future.run,
                allow_failure,
            });
        } else if !future.run_state().is_final() {
            // Another engine's run is read once final; this engine cannot wait on it.
            return Err(PyValueError::new_err(format!(
                "a future of another flow run's task runner ({}) was passed as an argument; pass its .result() instead",
                future.describe(py)
            )));
        }
        Ok(())
    }
}

impl<'py> Visit<'py> for Collect<'_> {
    const REBUILD: bool = false;
    const UNWRAP_ANNOTATIONS: bool = false;

    fn future(&mut self, future: &Bound<'py, PyFuture>, allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.add(future, allow_failure)?;
        Ok(future.clone().into_any())
    }

    fn future_list(&mut self, list: &Bound<'py, PyFutureList>, allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.found = true;
        if let Some(runs) = list.get().range_of(self.engine) {
            // A map's range of this engine: no future object per run.
            self.deps.extend(runs.map(|run| Dep { run, allow_failure }));
        } else {
            for future in list.get().futures(list.py())? {
                self.add(future.bind(list.py()), allow_failure)?;
            }
        }
        Ok(list.clone().into_any())
    }

    fn annotation(&mut self) {
        self.found = true;
    }
}

/// Adds the futures inside `obj` as dependencies of a new run of `engine`. Returns
/// whether the argument must be resolved before the call (it holds futures or
/// annotations). A future of another engine is accepted only once final.
pub(crate) fn collect_deps(
    obj: &Bound<'_, PyAny>,
    engine: &CoreShared,
    deps: &mut SmallVec<[Dep; 2]>,
) -> PyResult<bool> {
    let mut collect = Collect {
        engine,
        deps,
        found: false,
    };
    walk(obj, &mut collect)?;
    Ok(collect.found)
}

/// The dependencies of a whole call (arguments, keyword arguments and `wait_for`),
/// sorted and without duplicates. Returns whether the arguments must be resolved.
pub(crate) fn collect_call_deps(
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    wait_for: Option<&Bound<'_, PyAny>>,
    engine: &CoreShared,
    deps: &mut SmallVec<[Dep; 2]>,
) -> PyResult<bool> {
    let mut resolve_fixed = collect_deps(args.as_any(), engine, deps)?;
    if let Some(kwargs) = kwargs {
        resolve_fixed |= collect_deps(kwargs.as_any(), engine, deps)?;
    }
    if let Some(wait_for) = wait_for {
        for item in wait_for.try_iter()? {
            collect_deps(&item?, engine, deps)?;
        }
    }
    dedup_deps(deps);
    Ok(resolve_fixed)
}

/// Sorts dependencies and keeps one per run. A run met both inside `allow_failure(...)`
/// and outside keeps the strict edge: as in Prefect, the plain reference cannot take a
/// failure's exception, so the run does not start (NotReady).
pub(crate) fn dedup_deps(deps: &mut SmallVec<[Dep; 2]>) {
    deps.sort_unstable_by_key(|dep| (dep.run, dep.allow_failure));
    deps.dedup_by_key(|dep| dep.run);
}

/// Resolves a run's argument: futures become their values (an allowed failure its
/// exception), annotations are unwrapped, containers are copied (as in Prefect). A run
/// prepared for a cluster (`place`) gets the handles of values kept there (see `remote`).
struct Resolve<'a, 'py> {
    place: Option<&'a Bound<'py, PyAny>>,
}

impl<'py> Visit<'py> for Resolve<'_, 'py> {
    const REBUILD: bool = true;
    const UNWRAP_ANNOTATIONS: bool = true;

    fn future(&mut self, future: &Bound<'py, PyFuture>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        future.get().value_for_dependent(future.py(), self.place)
    }

    fn future_list(&mut self, list: &Bound<'py, PyFutureList>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        Ok(list.get().values_for_dependent(list.py(), self.place)?.into_any())
    }
}

/// A run's argument with its futures replaced by their values (see [`Resolve`]), for a
/// run that executes in `place` (a cluster), or here (None).
pub(crate) fn resolve<'py>(obj: &Bound<'py, PyAny>, place: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    walk(obj, &mut Resolve { place })
}

/// Whether a future is anywhere inside.
struct Contains(bool);

impl<'py> Visit<'py> for Contains {
    const REBUILD: bool = false;
    const UNWRAP_ANNOTATIONS: bool = false;

    fn future(&mut self, future: &Bound<'py, PyFuture>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.0 = true;
        Ok(future.clone().into_any())
    }

    fn future_list(&mut self, list: &Bound<'py, PyFutureList>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.0 = true;
        Ok(list.clone().into_any())
    }

    fn finished(&self) -> bool {
        self.0
    }
}

/// Whether `obj` holds a future anywhere inside (not inside `quote`): lets the package
/// skip its work on a flow's return value of a million plain results.
#[pyfunction]
pub(crate) fn contains_futures(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let mut contains = Contains(false);
    walk(obj, &mut contains)?;
    Ok(contains.0)
}

/// The futures inside, each once, in the order met.
struct FuturesIn<'py>(Vec<Bound<'py, PyAny>>);

impl<'py> Visit<'py> for FuturesIn<'py> {
    const REBUILD: bool = false;
    const UNWRAP_ANNOTATIONS: bool = false;

    fn future(&mut self, future: &Bound<'py, PyFuture>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.0.push(future.clone().into_any());
        Ok(future.clone().into_any())
    }

    fn future_list(&mut self, list: &Bound<'py, PyFutureList>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.0.extend(
            list.get()
                .futures(list.py())?
                .into_iter()
                .map(|f| f.into_bound(list.py()).into_any()),
        );
        Ok(list.clone().into_any())
    }
}

/// The futures inside `obj` (through future lists too), for awaiting them.
#[pyfunction]
pub(crate) fn futures_in<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    let mut found = FuturesIn(Vec::new());
    walk(obj, &mut found)?;
    PyList::new(obj.py(), found.0)
}

/// A copy with every future replaced by `replace(future)` (a future list by a list of
/// them); annotations are kept.
struct Replace<'py>(Bound<'py, PyAny>);

impl<'py> Visit<'py> for Replace<'py> {
    const REBUILD: bool = true;
    const UNWRAP_ANNOTATIONS: bool = false;

    fn future(&mut self, future: &Bound<'py, PyFuture>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        self.0.call1((future,))
    }

    fn future_list(&mut self, list: &Bound<'py, PyFutureList>, _allow_failure: bool) -> PyResult<Bound<'py, PyAny>> {
        let py = list.py();
        let replaced = list
            .get()
            .futures(py)?
            .into_iter()
            .map(|future| self.0.call1((future,)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, replaced)?.into_any())
    }
}

/// A copy of `obj` with every future replaced by `replace(future)`, through lists,
/// tuples, sets, dicts and dataclasses, but not inside `quote` (Prefect's
/// `visit_collection` for futures). `obj` itself when it holds no future.
#[pyfunction]
pub(crate) fn replace_futures<'py>(obj: &Bound<'py, PyAny>, replace: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if !contains_futures(obj)? {
        return Ok(obj.clone());
    }
    walk(obj, &mut Replace(replace))
}
