//! The Python functions the engine calls back: building `State` objects and writing
//! Prefect's log lines. They live in `ferroflow._runtime`, are looked up once, and are
//! only called off the hot path (a finished line is skipped when its level is off).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

pub(crate) struct Hooks {
    /// `make_state(name, value, finished_at, task_run_id, upstream_id) -> State`
    pub make_state: Py<PyAny>,
    /// `task_finished(context, task, run_name, state_name, value, upstream_id)`
    pub task_finished: Py<PyAny>,
    /// `task_failed(context, task, run_name, exception, attempt, retries, delay, exhausted, timed_out)`
    pub task_failed: Py<PyAny>,
    /// `task_state_hooks(hooks, state_name, value)`: a task's hooks for the state the
    /// current run enters (only called for a task that has some)
    pub on_state: Py<PyAny>,
    /// `retry_allowed(condition, failure) -> bool`: the task's `retry_condition_fn`
    pub retry_allowed: Py<PyAny>,
    /// `jittered_delay(delay, factor) -> float`: a retry delay with `retry_jitter_factor`
    pub jittered_delay: Py<PyAny>,
    /// `map_finished(context, task, counts: dict[str, int], elapsed_seconds)`
    pub map_finished: Py<PyAny>,
    /// `run_name(task, name_fn, args, kwargs) -> str` for a custom `task_run_name`
    pub run_name: Py<PyAny>,
    /// `returned_state(state) -> (completed: bool, value)` for a task that returns a State
    pub returned_state: Py<PyAny>,
    /// `is_cache_hit(state) -> bool`: a completed State returned for a cache hit
    pub is_cache_hit: Py<PyAny>,
    /// `finished_lines_enabled() -> bool`: whether INFO lines of task runs are emitted
    pub finished_lines_enabled: Py<PyAny>,
    /// `warn_if_blocking_loop()`: a one-time warning for `.result()` called on a running loop
    pub warn_if_blocking_loop: Py<PyAny>,
    pub state_type: Py<PyType>,
    pub uuid_type: Py<PyType>,
    /// `copy.copy`: the first step of copying a container subclass or a dataclass while
    /// resolving arguments (its fields are replaced afterwards, so cycles keep their shape).
    pub shallow_copy: Py<PyAny>,
    /// `object.__setattr__`, which also sets fields of frozen dataclasses.
    pub object_setattr: Py<PyAny>,
    /// `contextvars.copy_context`: each submitted run executes in a copy of its submitter's context.
    pub copy_context: Py<PyAny>,
}

static HOOKS: PyOnceLock<Hooks> = PyOnceLock::new();

pub(crate) fn hooks(py: Python<'_>) -> PyResult<&Hooks> {
    HOOKS.get_or_try_init(py, || {
        let runtime = py.import("ferroflow._runtime")?;
        let get = |name: &str| runtime.getattr(name).map(Bound::unbind);
        Ok(Hooks {
            make_state: get("make_state")?,
            task_finished: get("task_finished")?,
            task_failed: get("task_failed")?,
            on_state: get("task_state_hooks")?,
            retry_allowed: get("retry_allowed")?,
            jittered_delay: get("jittered_delay")?,
            map_finished: get("map_finished")?,
            run_name: get("run_name")?,
            returned_state: get("returned_state")?,
            is_cache_hit: get("is_cache_hit")?,
            finished_lines_enabled: get("finished_lines_enabled")?,
            warn_if_blocking_loop: get("warn_if_blocking_loop")?,
            state_type: py
                .import("ferroflow.states")?
                .getattr("State")?
                .cast_into::<PyType>()?
                .unbind(),
            uuid_type: py.import("uuid")?.getattr("UUID")?.cast_into::<PyType>()?.unbind(),
            shallow_copy: py.import("copy")?.getattr("copy")?.unbind(),
            object_setattr: py
                .import("builtins")?
                .getattr("object")?
                .getattr("__setattr__")?
                .unbind(),
            copy_context: py.import("contextvars")?.getattr("copy_context")?.unbind(),
        })
    })
}

/// The hooks of `ferroflow._async`, loaded only when coroutines are run or awaited, so
/// that sync code never imports asyncio.
pub(crate) struct AsyncHooks {
    /// `await_future(future)` / `await_future_list(futures)`: coroutines for `await`
    pub await_future: Py<PyAny>,
    pub await_future_list: Py<PyAny>,
}

static ASYNC_HOOKS: PyOnceLock<AsyncHooks> = PyOnceLock::new();

pub(crate) fn async_hooks(py: Python<'_>) -> PyResult<&AsyncHooks> {
    ASYNC_HOOKS.get_or_try_init(py, || {
        let module = py.import("ferroflow._async")?;
        let get = |name: &str| module.getattr(name).map(Bound::unbind);
        Ok(AsyncHooks {
            await_future: get("await_future")?,
            await_future_list: get("await_future_list")?,
        })
    })
}

/// The annotation classes of `ferroflow.utilities.annotations`.
pub(crate) struct Annotations {
    pub unmapped: Py<PyType>,
    pub allow_failure: Py<PyType>,
    pub quote: Py<PyType>,
    pub opaque: Py<PyType>,
}

static ANNOTATIONS: PyOnceLock<Annotations> = PyOnceLock::new();

pub(crate) fn annotations(py: Python<'_>) -> PyResult<&Annotations> {
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

/// `types.GenericAlias`, for `PrefectConcurrentFuture[int]` and friends. Apart from the
/// hooks: class definitions subscript futures while `import ferroflow` runs, and loading
/// the hooks then would import what only runs need (`uuid` alone costs ~2 ms).
static GENERIC_ALIAS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(crate) fn generic_alias<'py>(cls: &Bound<'py, PyType>, item: &Bound<'py, PyAny>) -> PyResult<Py<PyAny>> {
    let py = cls.py();
    GENERIC_ALIAS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("types")?.getattr("GenericAlias")?.unbind())
        })?
        .call1(py, (cls, item))
}

/// `call_done_callback(flow_run_context, fn, future)`: calls a future's done-callback as
/// part of the future's flow run (work it submits goes to that flow run's runner).
static DONE_CALLBACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(crate) fn call_done_callback(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    DONE_CALLBACK.get_or_try_init(py, || {
        Ok(py.import("ferroflow.context")?.getattr("call_done_callback")?.unbind())
    })
}

/// Reports an error raised by a hook itself: it must not take a run down with it.
pub(crate) fn report_hook_error(py: Python<'_>, err: PyErr) {
    err.write_unraisable(py, None);
}
