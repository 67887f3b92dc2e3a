//! How the engine executes Python runs: a batch of runs under one interpreter attach.

use std::sync::Arc;
use std::time::Duration;

use ferroflow_core::{Batch, Disposition, Executor, Final, Job, RunId};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::async_run::AsyncRun;
use crate::current;
use crate::executor::{CoreShared, PyExecutor, RunValue};
use crate::gil::attach_worker;
use crate::hooks::{hooks, report_hook_error};
use crate::plan::{Call, CallPlan};
use crate::report::{
    after_failure, report_completed, report_failed_end, report_unrun, returned, start_attempt, AfterFailure, Returned,
};
use crate::spec::Body;

impl Executor for PyExecutor {
    type Payload = Call;
    type Value = RunValue;

    fn run_batch(&self, batch: &mut Batch<'_, Self>) {
        let attached = attach_worker(|py| {
            adopt_as_non_daemon(py);
            let mut stretch = Stretch {
                log_lines: hooks(py)
                    .and_then(|h| h.finished_lines_enabled.call0(py)?.extract::<bool>(py))
                    .unwrap_or(true),
                handed_off: Vec::new(),
                map_context: None,
            };
            while let Some(job) = batch.next_job() {
                // Runs that execute elsewhere go to the runner together: once per stretch
                // of them in the batch, before any other job runs (a slow sync run must not
                // hold them).
                if !self.executes_elsewhere(&job.payload) {
                    self.hand_over(py, &mut stretch.handed_off);
                }
                match job.disposition {
                    Disposition::Run => execute(py, batch, job, &mut stretch),
                    Disposition::NotReady { upstream } => end_unrun(py, batch, job, Final::NotReady, Some(upstream)),
                    Disposition::Cancel => end_unrun(py, batch, job, Final::Cancelled, None),
                }
            }
            self.hand_over(py, &mut stretch.handed_off);
        });
        if attached.is_none() {
            // The interpreter is exiting: nothing can run any more; end what we took.
            while let Some(job) = batch.next_job() {
                let run = job.run;
                std::mem::forget(job.payload); // its Python objects cannot be released now
                batch.finish(run, Final::Crashed, RunValue::new(None));
            }
        }
    }

    fn abandoned(&self, _run: RunId) -> RunValue {
        RunValue::new(None)
    }

    fn release(&self, value: &RunValue) {
        value.release();
    }
}

/// Python sees an engine thread as a "dummy" thread, which is a daemon, so threads a
/// task starts would be daemons too and be killed at exit with their work (Prefect's
/// pool threads are ordinary, non-daemon threads). Once per thread, the first time it
/// runs tasks, its `threading` record is made non-daemon, as a pool thread's would be.
fn adopt_as_non_daemon(py: Python<'_>) {
    thread_local! {
        static ADOPTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if ADOPTED.with(std::cell::Cell::get) {
        return;
    }
    ADOPTED.with(|adopted| adopted.set(true));
    let adopted = py
        .import(pyo3::intern!(py, "threading"))
        .and_then(|threading| threading.call_method0(pyo3::intern!(py, "current_thread")))
        .and_then(|thread| thread.setattr(pyo3::intern!(py, "_daemonic"), false));
    if let Err(err) = adopted {
        report_hook_error(py, err);
    }
}

impl PyExecutor {
    /// Whether a run goes to the runner's `execute` instead of running in a batch: a
    /// coroutine that may suspend (to an event loop), or any submitted or mapped run of a
    /// runner that executes them all elsewhere (a direct call, which has no submitter
    /// context of its own, runs in its caller's thread).
    fn executes_elsewhere(&self, call: &Call) -> bool {
        let plan = call.plan();
        plan.spec.get().body == Body::Coroutine || (self.executes_elsewhere && plan.context.is_some())
    }

    /// Hands the runs a batch claimed to execute elsewhere (coroutines: to the flow run's
    /// event loop) to the runner's `execute`, in one call; if that fails, they end
    /// Crashed with the error (nothing may stay Running).
    fn hand_over(&self, py: Python<'_>, handed_off: &mut Vec<Py<AsyncRun>>) {
        if handed_off.is_empty() {
            return;
        }
        let runs = std::mem::take(handed_off);
        let scheduled = match self.execute(py) {
            Some(execute) => pyo3::types::PyList::new(py, &runs).and_then(|list| execute.call1(py, (list,))),
            None => Err(PyRuntimeError::new_err(
                "the task runner has been shut down and executes no more runs",
            )),
        };
        if let Err(err) = scheduled {
            let exception = err.into_value(py).into_any();
            for run in runs {
                run.get().crash_with(py, exception.bind(py));
            }
        }
    }
}

/// What a batch keeps between its jobs.
struct Stretch {
    /// Whether INFO lines of task runs are emitted (asked once per batch).
    log_lines: bool,
    /// Coroutine runs to hand to the event loop.
    handed_off: Vec<Py<AsyncRun>>,
    /// `Context.run` of this batch's copy of the last map's submitter context met (a
    /// map's runs come in stretches): the runs of a map share one context, which two
    /// threads may not enter at once, so each batch enters a copy of its own. The map's
    /// plan is held, so that its address cannot be reused by another map meanwhile.
    map_context: Option<(Arc<CallPlan>, Py<PyAny>)>,
}

impl Stretch {
    /// `Context.run` of the context the run executes in, if it has one: its submitter's
    /// (a submit's is already a copy of its own; a map's is copied per batch).
    fn context_for<'py>(&mut self, py: Python<'py>, call: &Call) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(context) = &call.plan().context else {
            return Ok(None);
        };
        let Some(map_plan) = call.map_plan() else {
            return context.bind(py).getattr(pyo3::intern!(py, "run")).map(Some);
        };
        if let Some((last, run)) = &self.map_context {
            if Arc::ptr_eq(last, map_plan) {
                return Ok(Some(run.bind(py).clone()));
            }
        }
        let run = context
            .bind(py)
            .call_method0(pyo3::intern!(py, "copy"))?
            .getattr(pyo3::intern!(py, "run"))?;
        self.map_context = Some((Arc::clone(map_plan), run.clone().unbind()));
        Ok(Some(run))
    }
}

fn execute(py: Python<'_>, batch: &mut Batch<'_, PyExecutor>, job: Job<Call>, stretch: &mut Stretch) {
    let engine = batch.engine();
    let executor = engine.executor();
    if executor.executes_elsewhere(&job.payload) {
        // It runs elsewhere (a coroutine as an asyncio task on the flow run's event loop;
        // any run of a process pool in a child), which ends it; the batch hands it over
        // with the others at its end. A runner that executes all runs elsewhere bounds
        // its own concurrency: its runs do not count against `max_workers`.
        let job = if executor.executes_elsewhere {
            batch.hand_off(job)
        } else {
            batch.defer(job)
        };
        let run = job.run;
        match Py::new(py, AsyncRun::new(engine, job)) {
            Ok(async_run) => stretch.handed_off.push(async_run),
            Err(err) => {
                report_hook_error(py, err);
                engine.finish_claimed(run, Final::Crashed, RunValue::new(None));
            }
        }
        return;
    }
    let run = job.run;
    match attempt(py, engine, &job.payload, run, job.attempt, stretch) {
        Attempt::Ended(state, value) => batch.finish(run, state, value),
        Attempt::Retry(delay) => batch.retry(job, Duration::try_from_secs_f64(delay).unwrap_or(Duration::MAX)),
    }
}

/// How an attempt of a run in a batch went.
enum Attempt {
    Ended(Final, RunValue),
    /// Another attempt after this many seconds.
    Retry(f64),
}

/// One attempt of a run: its `on_running` hooks, the call, and what its end leads to,
/// with the run current on this thread throughout (its hooks, retry condition and log
/// lines see it).
fn attempt(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    run: RunId,
    attempt: u32,
    stretch: &mut Stretch,
) -> Attempt {
    let spec = call.plan().spec.get();
    let mut executing = current::enter(engine, call, run, attempt);
    // Named while current (its name callable may read `ferroflow.runtime.task_run`); its
    // `task_run_name` failing fails the run, under its plain name.
    let custom_name = call.custom_name(py);
    if let Ok(Some(name)) = &custom_name {
        executing.rename(name.clone());
    }
    let in_context = stretch.context_for(py, call);
    let enter = in_context.as_ref().ok().and_then(Option::as_ref);
    let ready = match (&custom_name, &in_context) {
        (Err(err), _) | (_, Err(err)) => Err(err.clone_ref(py)),
        _ => Ok(()),
    };
    let called = ready.and_then(|()| {
        start_attempt(py, call, attempt, enter);
        call_function(py, call, spec.body, enter)
    });
    // Named only when a line is written: a map's completed runs never are.
    let name = || {
        custom_name
            .as_ref()
            .ok()
            .cloned()
            .flatten()
            .unwrap_or_else(|| call.plan().run_name(call.index()))
    };
    let (exception, recorded) = match called.and_then(|value| returned(py, engine, value)) {
        Ok(Returned::Succeeded { state, value }) => {
            report_completed(py, engine, call, name, state, &value, stretch.log_lines, enter);
            return Attempt::Ended(state, RunValue::new(Some(value.unbind())));
        }
        Ok(Returned::FailedState { state, exception }) => (exception, state),
        Err(err) => {
            let exception = err.into_value(py).into_bound(py).into_any();
            (exception.clone(), exception)
        }
    };
    let name = name();
    match after_failure(py, engine, call, attempt, &exception, &recorded, &name, enter) {
        AfterFailure::Retry(delay) => Attempt::Retry(delay),
        AfterFailure::End(state) => {
            report_failed_end(py, engine, call, &name, state, &recorded, enter);
            Attempt::Ended(state, RunValue::new(Some(recorded.unbind())))
        }
    }
}

/// Calls the task's function with the run's arguments, in the submitter's context when
/// it has one (`in_context` is its `run`); an eager coroutine is driven to its end here.
fn call_function<'py>(
    py: Python<'py>,
    call: &Call,
    body: Body,
    in_context: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let spec = call.plan().spec.get();
    let func = spec.func.bind(py);
    let called = match in_context {
        None => {
            let (args, kwargs) = call.arguments(py, None)?;
            func.call(args, kwargs.as_ref())?
        }
        Some(run) => {
            let (args, kwargs) = call.arguments(py, Some(func))?;
            run.call(args, kwargs.as_ref())?
        }
    };
    match body {
        Body::EagerCoroutine => run_to_completion(py, &called, in_context),
        _ => Ok(called),
    }
}

/// Runs a coroutine that cannot suspend (its code has no `await`, `async for` or `async
/// with`) in one step, here, without an event loop: a trivial async task costs what a
/// sync one does. In the submitter's context when it has one.
fn run_to_completion<'py>(
    py: Python<'py>,
    coroutine: &Bound<'py, PyAny>,
    in_context: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(run) = in_context else {
        return drive_eager(coroutine);
    };
    let drive = DRIVE.get_or_try_init(py, || {
        Ok::<_, PyErr>(wrap_pyfunction!(drive_eager, py)?.into_any().unbind())
    })?;
    run.call1((drive, coroutine))
}

/// [`drive_eager`] as a Python function, for `Context.run`.
static DRIVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Drives a coroutine that cannot suspend with one send.
#[pyfunction]
fn drive_eager<'py>(coroutine: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = coroutine.py();
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
            Err(PyRuntimeError::new_err(
                "ferroflow ran a coroutine without an event loop because its code has no await, and it suspended anyway",
            ))
        }
    }
}

/// Ends a run that never executes (an upstream did not complete, or it was cancelled).
fn end_unrun(py: Python<'_>, batch: &mut Batch<'_, PyExecutor>, job: Job<Call>, state: Final, upstream: Option<RunId>) {
    let value = report_unrun(py, batch.engine(), &job.payload, state, upstream);
    batch.finish(job.run, state, value);
}
