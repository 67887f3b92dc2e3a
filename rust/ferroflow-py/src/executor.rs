//! The engine's executor for Python callables: runs a batch of runs under one attach.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use ferroflow_core::{Batch, Disposition, Executor, Final, Job, RunId, Shared};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::async_run::AsyncRun;
use crate::call::{Body, Call, CallPlan};
use crate::engine::CoreShared;
use crate::gil::attach_for_batch;
use crate::hooks::{hooks, report_hook_error};

/// A finished run's value: its result, or its exception; `None` when it never ran.
pub(crate) type RunValue = Option<Py<PyAny>>;

pub struct PyExecutor {
    /// The first 12 bytes of every run's `task_run_id` (a random UUID's; see `run_uuid`).
    pub(crate) uuid_seed: [u8; 16],
    /// The flow run this engine serves (`None` outside flows), handed to hooks. Cleared
    /// at shutdown: it refers back to the runner that owns the engine.
    context: parking_lot::Mutex<Option<Py<PyAny>>>,
}

impl PyExecutor {
    pub(crate) fn new(uuid_seed: [u8; 16], context: Py<PyAny>) -> Self {
        PyExecutor {
            uuid_seed,
            context: parking_lot::Mutex::new(Some(context)),
        }
    }

    pub(crate) fn context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context
            .lock()
            .as_ref()
            .map_or_else(|| py.None(), |c| c.clone_ref(py))
    }

    pub(crate) fn clear_context(&self) -> Option<Py<PyAny>> {
        self.context.lock().take()
    }

    /// Hands coroutine runs set aside by a batch to the flow run's event loop.
    fn hand_over(&self, py: Python<'_>, handed_off: &mut Vec<Py<AsyncRun>>) {
        if handed_off.is_empty() {
            return;
        }
        let runs = std::mem::take(handed_off);
        let scheduled =
            crate::hooks::async_hooks(py).and_then(|h| h.schedule_coroutines.call1(py, (self.context(py), runs)));
        if let Err(err) = scheduled {
            report_hook_error(py, err);
        }
    }

    pub(crate) fn traverse_context(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        match self.context.try_lock() {
            Some(context) => visit.call(context.as_ref()),
            None => Ok(()),
        }
    }
}

/// What the current thread is executing: read by `get_run_logger()`, `print` capture and
/// a nested `.submit()` to find their run and flow run without passing anything around.
///
/// It points at the engine and the run's plan instead of owning them: an entry lives
/// only while `execute` runs the job (which owns the plan and borrows the engine) and is
/// popped before `execute` returns, so no reference count moves per run.
pub(crate) struct Executing {
    engine: *const Shared<PyExecutor>,
    plan: *const CallPlan,
    pub(crate) run: RunId,
    index: u32,
    /// The run's name when the task sets `task_run_name` (computed once, before it runs).
    custom_name: Option<String>,
}

impl Executing {
    pub(crate) fn plan(&self) -> &CallPlan {
        // SAFETY: the plan is owned by the job `execute` holds until after it pops this
        // entry, and the returned reference cannot outlive `&self` (see `with_current`).
        unsafe { &*self.plan }
    }

    /// A new strong handle on the engine, for a future of the current run.
    pub(crate) fn engine(&self) -> CoreShared {
        // SAFETY: `engine` came from `Arc::as_ptr` of the `Arc` that the running batch
        // borrows for longer than this entry exists, so the count is at least one; taking
        // one more reference and returning it as an `Arc` is balanced.
        unsafe {
            Arc::increment_strong_count(self.engine);
            Arc::from_raw(self.engine)
        }
    }

    pub(crate) fn run_name(&self) -> String {
        self.custom_name
            .clone()
            .unwrap_or_else(|| self.plan().run_name(self.index))
    }
}

thread_local! {
    static EXECUTING: RefCell<Vec<Executing>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the innermost run the current thread executes, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Executing>) -> R) -> R {
    EXECUTING.with(|stack| f(stack.borrow().last()))
}

impl Executor for PyExecutor {
    type Payload = Call;
    type Value = RunValue;

    fn run_batch(&self, batch: &mut Batch<'_, Self>) {
        let attached = attach_for_batch(|py| {
            let log_lines = hooks(py)
                .and_then(|h| h.finished_lines_enabled.call0(py)?.extract::<bool>(py))
                .unwrap_or(true);
            // Coroutine runs go to the event loop together: once per stretch of them in
            // the batch, before any other job runs (a slow sync run must not hold them).
            let mut handed_off = Vec::new();
            while let Some(job) = batch.next_job() {
                if job.payload.plan.spec.get().body != Body::Coroutine {
                    self.hand_over(py, &mut handed_off);
                }
                match job.disposition {
                    Disposition::Run => execute(py, batch, job, log_lines, &mut handed_off),
                    Disposition::NotReady { upstream } => end_unrun(py, batch, job, Final::NotReady, Some(upstream)),
                    Disposition::Cancel => end_unrun(py, batch, job, Final::Cancelled, None),
                }
            }
            self.hand_over(py, &mut handed_off);
        });
        if attached.is_none() {
            // The interpreter is finalizing: nothing can run any more; end what we took.
            while let Some(job) = batch.next_job() {
                let run = job.run;
                std::mem::forget(job.payload); // its Python objects cannot be released now
                batch.finish(run, Final::Crashed, None);
            }
        }
    }

    fn abandoned(&self, _run: RunId) -> RunValue {
        None
    }
}

fn execute(
    py: Python<'_>,
    batch: &mut Batch<'_, PyExecutor>,
    job: Job<Call>,
    log_lines: bool,
    handed_off: &mut Vec<Py<AsyncRun>>,
) {
    let engine = batch.engine();
    let call = &job.payload;
    let spec = call.plan.spec.get();
    if spec.body == Body::Coroutine {
        // It may suspend: it runs as an asyncio task on the flow run's event loop, which
        // ends it; the batch hands it over with the others at its end.
        let job = batch.defer(job);
        match Py::new(py, AsyncRun::new(engine, job)) {
            Ok(run) => handed_off.push(run),
            Err(err) => report_hook_error(py, err),
        }
        return;
    }
    let custom_name = call.custom_name(py);
    EXECUTING.with(|stack| {
        stack.borrow_mut().push(Executing {
            engine: Arc::as_ptr(engine),
            plan: Arc::as_ptr(&call.plan),
            run: job.run,
            index: call.index(),
            custom_name: custom_name.clone(),
        });
    });
    let returned = call
        .arguments(py)
        .and_then(|(args, kwargs)| spec.func.bind(py).call(args, kwargs.as_ref()));
    let returned = match (spec.body, returned) {
        (Body::EagerCoroutine, Ok(coroutine)) => run_to_completion(py, &coroutine),
        (_, returned) => returned,
    };
    EXECUTING.with(|stack| stack.borrow_mut().pop());
    match returned.and_then(|value| returned_value(py, value)) {
        Ok(value) => {
            report_completed(py, engine, call, custom_name, &value, log_lines);
            batch.finish(job.run, Final::Completed, Some(value.unbind()));
        }
        Err(err) => {
            let exception = err.into_value(py).into_any();
            let name = call.run_name(py);
            match after_failure(py, engine, call, job.attempt, exception.bind(py), &name) {
                AfterFailure::Retry(delay) => batch.retry(job, Duration::from_secs_f64(delay)),
                AfterFailure::End(state) => {
                    report_failed_end(py, engine, call, &name, state, exception.bind(py));
                    batch.finish(job.run, state, Some(exception));
                }
            }
        }
    }
}

/// Runs a coroutine that cannot suspend (its code has no `await`, `async for` or `async
/// with`) in one step, here, without an event loop: a trivial async task costs what a
/// sync one does.
fn run_to_completion<'py>(py: Python<'py>, coroutine: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let mut result: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: attached; `coroutine` and `None` are live objects; PyIter_Send (stable ABI
    // since 3.10) stores a new reference in `result` for RETURN and NEXT, none on ERROR.
    let sent = unsafe { pyo3::ffi::PyIter_Send(coroutine.as_ptr(), pyo3::ffi::Py_None(), &raw mut result) };
    match sent {
        // SAFETY: on RETURN `result` is a new, non-null reference to the return value.
        pyo3::ffi::PySendResult::PYGEN_RETURN => Ok(unsafe { Bound::from_owned_ptr(py, result) }),
        pyo3::ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
        pyo3::ffi::PySendResult::PYGEN_NEXT => {
            // SAFETY: on NEXT `result` is a new reference to the yielded value; drop it.
            drop(unsafe { Bound::from_owned_ptr(py, result) });
            let _ = coroutine.call_method0(pyo3::intern!(py, "close"));
            Err(pyo3::exceptions::PyRuntimeError::new_err(
                "ferroflow ran a coroutine without an event loop because its code has no await, and it suspended anyway",
            ))
        }
    }
}

/// Counts a completed run and writes its `Finished in state Completed()` line (not for
/// the runs of a map, which get one summary line).
pub(crate) fn report_completed(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    custom_name: Option<String>,
    value: &Bound<'_, PyAny>,
    log_lines: bool,
) {
    let own_line = call.tally(py, engine, Final::Completed) && !call.plan.is_map();
    if own_line && log_lines {
        let name = custom_name.unwrap_or_else(|| call.plan.run_name(call.index()));
        report_finished(py, engine, call, &name, Final::Completed, Some(value), None);
    }
}

/// What a failed attempt leads to.
pub(crate) enum AfterFailure {
    /// Another attempt after this many seconds.
    Retry(f64),
    /// The run ends in this state.
    End(Final),
}

/// Applies the task's retry policy to a failed attempt and writes Prefect's line for it.
/// BaseExceptions that are not Exceptions (KeyboardInterrupt, SystemExit) crash the run
/// and are never retried, as in Prefect.
pub(crate) fn after_failure(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    attempt: u32,
    exception: &Bound<'_, PyAny>,
    name: &str,
) -> AfterFailure {
    let spec = call.plan.spec.get();
    let is_error = exception.is_instance_of::<PyException>();
    let retry = is_error && attempt < spec.retries;
    let delay = retry.then(|| spec.retry_delay(attempt));
    let reported = hooks(py).and_then(|h| {
        h.task_failed.call1(
            py,
            (
                engine.executor().context(py),
                &spec.task,
                name,
                exception,
                attempt,
                spec.retries,
                delay,
            ),
        )
    });
    if let Err(hook_err) = reported {
        report_hook_error(py, hook_err);
    }
    match delay {
        Some(delay) => AfterFailure::Retry(delay),
        None if is_error => AfterFailure::End(Final::Failed),
        None => AfterFailure::End(Final::Crashed),
    }
}

/// Counts a run that failed for good and writes its `Finished in state Failed(...)` line.
pub(crate) fn report_failed_end(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    name: &str,
    state: Final,
    exception: &Bound<'_, PyAny>,
) {
    if call.tally(py, engine, state) {
        report_finished(py, engine, call, name, state, Some(exception), None);
    }
}

/// A task that returns a `State` ends in that state (Prefect): a failed one is a failure.
pub(crate) fn returned_value<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if crate::call::is_leaf(&value) {
        return Ok(value); // an int, str, float, bool, bytes or None is never a State
    }
    let hooks = hooks(py)?;
    if !value.is_instance(hooks.state_type.bind(py))? {
        return Ok(value);
    }
    let (completed, data): (bool, Bound<'py, PyAny>) = hooks.returned_state.call1(py, (value,))?.extract(py)?;
    if completed {
        Ok(data)
    } else {
        Err(PyErr::from_value(data))
    }
}

/// Ends a run that never executes (an upstream did not complete, or it was cancelled).
fn end_unrun(py: Python<'_>, batch: &mut Batch<'_, PyExecutor>, job: Job<Call>, state: Final, upstream: Option<RunId>) {
    let value = report_unrun(py, batch.engine(), &job.payload, state, upstream);
    batch.finish(job.run, state, value);
}

/// Counts and logs a run that never executes (an upstream did not complete, or it was
/// cancelled), and returns the value it ends with: for NotReady, the id of the upstream
/// that stopped it, for its state message.
pub(crate) fn report_unrun(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    state: Final,
    upstream: Option<RunId>,
) -> RunValue {
    let upstream_id = upstream.and_then(|run| {
        crate::future::run_uuid(py, engine, run)
            .map_err(|err| report_hook_error(py, err))
            .ok()
    });
    if call.tally(py, engine, state) {
        let name = call.run_name(py);
        report_finished(py, engine, call, &name, state, None, upstream_id.as_ref());
    }
    upstream_id
}

fn report_finished(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    name: &str,
    state: Final,
    value: Option<&Bound<'_, PyAny>>,
    upstream_id: Option<&Py<PyAny>>,
) {
    let reported = hooks(py).and_then(|h| {
        h.task_finished.call1(
            py,
            (
                engine.executor().context(py),
                &call.plan.spec.get().task,
                name,
                state.state().name(),
                value,
                upstream_id,
            ),
        )
    });
    if let Err(err) = reported {
        report_hook_error(py, err);
    }
}
