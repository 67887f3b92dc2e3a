//! A claimed run executed outside the engine's batches: a coroutine run as an asyncio
//! task on a flow run's event loop (a submitted async task, driven by
//! `ferroflow._async`), or inline on the caller's loop (`await task(x)`). The engine
//! counts it Running until it ends here, through one of `complete`, `fail`, `cancel` or
//! `crash`. Its retries happen in place: the driver sleeps on its loop between attempts.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use ferroflow_core::{Disposition, Final, Job, RunId, RunState};
use std::sync::Mutex;

use crate::sync::lock;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::current::{self, Executing, RunIdentity};
use crate::executor::{CoreShared, RunValue};
use crate::future::PyFuture;
use crate::hooks::hooks;
use crate::plan::Call;
use crate::remote;
use crate::report::{
    after_failure, report_completed, report_failed_end, report_unrun, returned, start_attempt, AfterFailure, Returned,
};
use crate::spec::HookKind;

/// `(future, run_name, task, flow_run_context, run_count, arguments)`: a run as code
/// inside it asks for it (`_core.current_run()`, `AsyncRun.current`).
pub(crate) type CurrentRun = (Py<PyFuture>, String, Py<PyAny>, Py<PyAny>, u32, Py<PyAny>);

#[pyclass(frozen, name = "AsyncRun", module = "ferroflow._core")]
pub struct AsyncRun {
    engine: CoreShared,
    run: RunId,
    /// The claimed job, until the run ends. Only the run's driver touches it, and takes it
    /// out before calling into Python (no lock is held across a call).
    job: Mutex<Option<Job<Call>>>,
    /// The run's call, to say what the run is while its job is out (its hooks run then).
    call: Call,
    /// The job's attempt (0, then 1, 2, ... for retries), readable while the job is out.
    attempt: AtomicU32,
    /// The run's name once its `task_run_name` gave one (see [`AsyncRun::run_name`]).
    custom_name: OnceLock<String>,
    /// Its `task_run_name` is being computed: code it calls that asks for the run's name
    /// (`ferroflow.runtime.task_run.name`) gets the plain one instead of recursing.
    naming: AtomicBool,
    /// A direct call's run (`await task(x)`), claimed by its caller, which owns the
    /// registration's handle on the run (see `PyFuture::held`) through this object.
    direct_call: bool,
}

impl AsyncRun {
    pub(crate) fn new(engine: &CoreShared, job: Job<Call>) -> Self {
        AsyncRun {
            engine: Arc::clone(engine),
            run: job.run,
            call: job.payload.clone(),
            attempt: AtomicU32::new(job.attempt),
            custom_name: OnceLock::new(),
            naming: AtomicBool::new(false),
            job: Mutex::new(Some(job)),
            direct_call: false,
        }
    }

    pub(crate) fn engine(&self) -> &CoreShared {
        &self.engine
    }

    pub(crate) fn run(&self) -> RunId {
        self.run
    }

    pub(crate) fn call(&self) -> &Call {
        &self.call
    }

    /// Attempts so far, the next one included (Prefect's `run_count` once it starts).
    pub(crate) fn run_count(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed).saturating_add(1)
    }

    /// Claims a job for an inline call: a doomed one ends here, at once.
    pub(crate) fn claimed(py: Python<'_>, engine: &CoreShared, job: Job<Call>) -> Self {
        let (state, upstream) = match job.disposition {
            Disposition::Run => {
                let mut run = AsyncRun::new(engine, job);
                run.direct_call = true;
                return run;
            }
            Disposition::NotReady { upstream } => (Final::NotReady, Some(upstream)),
            Disposition::Cancel => (Final::Cancelled, None),
        };
        let value = report_unrun(py, engine, &job.payload, state, upstream);
        engine.finish_claimed(job.run, state, value);
        AsyncRun {
            engine: Arc::clone(engine),
            run: job.run,
            call: job.payload,
            attempt: AtomicU32::new(job.attempt),
            custom_name: OnceLock::new(),
            naming: AtomicBool::new(false),
            job: Mutex::new(None),
            direct_call: true,
        }
    }

    /// The run's name in log lines: its `task_run_name` (computed once; a failing one
    /// gives the error), else the plain one.
    fn run_name(&self, py: Python<'_>) -> PyResult<String> {
        if let Some(name) = self.custom_name.get() {
            return Ok(name.clone());
        }
        if self.call.plan().spec.get().custom_name.is_none() || self.naming.swap(true, Ordering::AcqRel) {
            return Ok(self.call.plan().run_name(self.call.index()));
        }
        let named = self.call.run_name(py);
        self.naming.store(false, Ordering::Release);
        let name = named?;
        Ok(self.custom_name.get_or_init(|| name).clone())
    }

    /// Makes the run the current one of this thread while the engine calls the user's
    /// code for it (state hooks, `retry_condition_fn`, `task_run_name`), whoever drives the
    /// run (a runner may not set `current_async_run`).
    /// Not while the run ends (`finish_claimed`): done-callbacks run then, outside it.
    fn entered(&self) -> Executing<'_> {
        let mut current = current::enter(&self.engine, &self.call, self.run, self.attempt.load(Ordering::Relaxed));
        if let Some(name) = self.custom_name.get() {
            current.rename(name.clone());
        }
        current
    }

    /// The run's name for its log lines: a failing `task_run_name` gives the plain one.
    pub(crate) fn line_name(&self, py: Python<'_>) -> String {
        self.run_name(py)
            .unwrap_or_else(|_| self.call.plan().run_name(self.call.index()))
    }

    fn take(&self) -> PyResult<Job<Call>> {
        lock(&self.job)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this run has already ended"))
    }

    /// Ends the run Crashed with `exception` (it could not be handed to its event loop).
    pub(crate) fn crash_with(&self, py: Python<'_>, exception: &Bound<'_, PyAny>) {
        let Some(job) = lock(&self.job).take() else {
            return; // already ended
        };
        let name = job.payload.plan().run_name(job.payload.index());
        report_failed_end(py, &self.engine, &job.payload, &name, Final::Crashed, exception, None);
        self.engine
            .finish_claimed(job.run, Final::Crashed, RunValue::new(Some(exception.clone().unbind())));
    }

    /// Ends a failed attempt for good, recording `recorded` (its exception, or the State
    /// the coroutine returned).
    fn end_failed(&self, py: Python<'_>, job: Job<Call>, name: &str, state: Final, recorded: &Bound<'_, PyAny>) {
        let current = self.entered(); // its failure hooks see it
        report_failed_end(py, &self.engine, &job.payload, name, state, recorded, None);
        drop(current);
        self.engine
            .finish_claimed(job.run, state, RunValue::new(Some(recorded.clone().unbind())));
    }

    /// A failed attempt, by the task's retry policy: the delay before the next attempt
    /// (the run is AwaitingRetry), or None when the run has ended.
    fn failed_attempt(
        &self,
        py: Python<'_>,
        exception: &Bound<'_, PyAny>,
        recorded: &Bound<'_, PyAny>,
    ) -> PyResult<Option<f64>> {
        let mut job = self.take()?;
        let name = self.line_name(py);
        let current = self.entered();
        let after = after_failure(
            py,
            &self.engine,
            &job.payload,
            job.attempt,
            exception,
            recorded,
            &name,
            None,
        );
        drop(current);
        match after {
            AfterFailure::Retry(delay) => {
                self.engine.retry_claimed(job.run, RunState::AwaitingRetry);
                job.attempt += 1;
                self.attempt.store(job.attempt, Ordering::Relaxed);
                *lock(&self.job) = Some(job);
                Ok(Some(delay))
            }
            AfterFailure::End(state) => {
                self.end_failed(py, job, &name, state, recorded);
                Ok(None)
            }
        }
    }

    /// Starts the next attempt for a runner that calls the function elsewhere: names the
    /// run (while it is current: its name callable may read `ferroflow.runtime.task_run`)
    /// and runs its `on_running` hooks. A failing `task_run_name` fails the attempt, as
    /// for a run in a batch.
    pub(crate) fn begin_attempt(&self, py: Python<'_>) -> PyResult<()> {
        if self.done() {
            return Err(PyRuntimeError::new_err("this run has already ended"));
        }
        let mut current = self.entered();
        // (A run without a `task_run_name` is named by its plan, which its entry knows.)
        if self.call.plan().spec.get().custom_name.is_some() {
            current.rename(self.run_name(py)?);
        }
        start_attempt(py, &self.call, self.attempt.load(Ordering::Relaxed), None);
        Ok(())
    }

    /// [`AsyncRun::prepare`] for a run that executes in `place` (a cluster): upstream
    /// values kept there come as their handles (see `remote`).
    #[allow(clippy::type_complexity)] // Python's (callable, tuple, dict | None)
    fn prepare_for<'py>(
        &self,
        py: Python<'py>,
        place: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        self.begin_attempt(py)?;
        let (args, kwargs) = self.call.arguments_for(py, None, place)?;
        let func = self.call.plan().spec.get().func.bind(py).clone();
        Ok((func, args, kwargs))
    }

    /// [`AsyncRun::complete`]; `log_lines`: whether INFO lines of task runs are emitted,
    /// when the caller asked already (once for many runs, see [`complete_runs`]); `ends`:
    /// where a completed run's end is recorded with others', when the caller ends many
    /// runs (a run whose task has `on_completion` hooks ends at once, before the next
    /// run's hooks: a hook may wait on an earlier run).
    fn complete_with(
        &self,
        py: Python<'_>,
        value: Bound<'_, PyAny>,
        log_lines: Option<bool>,
        ends: Option<&mut Ends>,
    ) -> PyResult<Option<f64>> {
        match returned(py, &self.engine, value) {
            Ok(Returned::Succeeded { state, value }) => {
                let job = self.take()?;
                let log_lines = match log_lines {
                    Some(enabled) => enabled,
                    None => hooks(py)?.finished_lines_enabled.call0(py)?.extract::<bool>(py)?,
                };
                let name = || self.line_name(py);
                let current = self.entered();
                // `on_completion` hooks read the state's result: a value kept on a cluster
                // is fetched for them (only when the task has such hooks).
                let has_hooks = self.call.plan().spec.get().hooks.of(py, HookKind::Completion).is_some();
                let reported = if has_hooks && remote::is_remote(&value) {
                    remote::local(value.clone())
                } else {
                    Ok(value.clone())
                };
                let reported = match reported {
                    Ok(reported) => reported,
                    Err(err) => {
                        drop(current);
                        *lock(&self.job) = Some(job);
                        return Err(err);
                    }
                };
                report_completed(py, &self.engine, &job.payload, name, state, &reported, log_lines, None);
                drop(current);
                let value = RunValue::new(Some(value.unbind()));
                match ends {
                    Some(ends) if !has_hooks => ends.add(&self.engine, job.run, state, value),
                    _ => self.engine.finish_claimed(job.run, state, value),
                }
                Ok(None)
            }
            Ok(Returned::FailedState { state, exception }) => self.failed_attempt(py, &exception, &state),
            Err(err) => {
                let exception = err.into_value(py).into_bound(py).into_any();
                self.failed_attempt(py, &exception, &exception)
            }
        }
    }
}

#[pymethods]
impl AsyncRun {
    /// Calls the task's function for the next attempt, its arguments resolved, after the
    /// run is named and the task's `on_running` hooks ran: a fresh coroutine for a
    /// coroutine task (a sync task's value, for a runner that executes every run).
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (func, args, kwargs) = self.prepare(py)?;
        func.call(args, kwargs.as_ref())
    }

    /// What [`Self::start`] would call, without calling it: `(function, args, kwargs)`
    /// for the next attempt, after the run is named and its `on_running` hooks ran, its
    /// arguments resolved. For a runner that calls the function elsewhere (another process).
    #[allow(clippy::type_complexity)] // Python's (callable, tuple, dict | None)
    fn prepare<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        self.prepare_for(py, None)
    }

    /// The run's name, as its log lines give it.
    #[getter]
    fn name(&self, py: Python<'_>) -> String {
        self.line_name(py)
    }

    /// `(name, run_count, task_run_id as 16 bytes)`: what an attempt executing in another
    /// process needs to know of its run (its logger, `ferroflow.runtime.task_run`),
    /// without a future or a `uuid.UUID` made per run here.
    #[getter]
    fn identity<'py>(&self, py: Python<'py>) -> (String, u32, Bound<'py, PyBytes>) {
        let id = crate::ids::run_uuid_bytes(&self.engine, self.run);
        (
            self.line_name(py),
            self.attempt.load(Ordering::Relaxed).saturating_add(1),
            PyBytes::new(py, &id),
        )
    }

    /// The task's name.
    #[getter]
    fn task_name(&self) -> String {
        self.call.plan().spec.get().name.clone()
    }

    /// Ends the run with what its coroutine returned (a returned State decides, as for
    /// sync tasks). Returns the retry delay if a returned failed State calls for one.
    fn complete(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        self.complete_with(py, value, None, None)
    }

    /// Reports a failed attempt, by the task's retry policy: returns the delay before the
    /// next attempt (the run is AwaitingRetry), or None when the run has ended.
    fn fail(&self, py: Python<'_>, exception: Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        self.failed_attempt(py, &exception, &exception)
    }

    /// The retry delay has passed: the next attempt starts.
    fn retrying(&self) {
        self.engine.retry_claimed(self.run, RunState::Retrying);
    }

    /// Ends the run Cancelled (its coroutine was cancelled, or never got to run).
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        let job = self.take()?;
        let value = report_unrun(py, &self.engine, &job.payload, Final::Cancelled, None);
        self.engine.finish_claimed(job.run, Final::Cancelled, value);
        Ok(())
    }

    /// Ends the run Crashed with `exception`: it could not be run where it was sent.
    fn crash(&self, py: Python<'_>, exception: Bound<'_, PyAny>) {
        self.crash_with(py, &exception);
    }

    /// Whether the run has ended.
    #[getter]
    fn done(&self) -> bool {
        lock(&self.job).is_none()
    }

    #[getter]
    fn future(&self) -> PyFuture {
        if self.direct_call {
            return PyFuture::new_direct_call(Arc::clone(&self.engine), self.run);
        }
        PyFuture::new(Arc::clone(&self.engine), self.run)
    }

    /// The run waits on other runs (it awaits a future): it stops counting against
    /// `max_workers` meanwhile, so the runs it waits for can start. Returns whether it
    /// stopped counting.
    fn suspend(&self) -> bool {
        self.engine.suspend_deferred(self.run)
    }

    /// The run goes on after a wait: it counts against `max_workers` again.
    fn resume(&self) -> bool {
        self.engine.resume_deferred(self.run)
    }

    /// The submitter's `contextvars` context the run executes in (a copy is made per
    /// run), or None for an inline call.
    #[getter]
    fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.call.plan().context.as_ref().map(|context| context.clone_ref(py))
    }

    /// `(future, run_name, task, flow_run_context, run_count, arguments)`, as
    /// `_core.current_run()` gives for a run in a batch: what code inside the coroutine
    /// (`get_run_logger()`, `TaskRunContext.get()`, its hooks) finds as its run.
    #[getter]
    fn current(&self, py: Python<'_>) -> PyResult<CurrentRun> {
        let name = self.line_name(py);
        Ok((
            Py::new(py, self.future())?,
            name,
            RunIdentity::task(&self.call, py),
            self.engine.executor().context(py),
            self.attempt.load(Ordering::Relaxed).saturating_add(1),
            RunIdentity::arguments(&self.call, py)?,
        ))
    }
}

impl Drop for AsyncRun {
    fn drop(&mut self) {
        if self.direct_call {
            self.engine.unhold(self.run); // the caller's handle (see `direct_call`)
        }
        // A run dropped unfinished (its driver was lost) must not stay Running forever.
        let Some(job) = self
            .job
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let engine = &self.engine;
        let ended = crate::gil::attach_worker(|py| {
            let exception = PyRuntimeError::new_err("the coroutine run was dropped before it ended")
                .into_value(py)
                .into_bound(py)
                .into_any();
            let name = job.payload.plan().run_name(job.payload.index());
            report_failed_end(py, engine, &job.payload, &name, Final::Crashed, &exception, None);
            engine.finish_claimed(job.run, Final::Crashed, RunValue::new(Some(exception.unbind())));
        });
        if ended.is_none() {
            // The interpreter is exiting: end it without Python.
            engine.finish_claimed(job.run, Final::Crashed, RunValue::new(None));
            std::mem::forget(job.payload);
        }
    }
}

/// Prepares the next attempt of each run ([`AsyncRun::prepare`] and its `identity`) in
/// one call, for a runner that ships many runs at once: for each run,
/// `(function, args, kwargs, identity)`, or the exception its preparation raised.
/// `place`: the cluster the runs execute in (see `remote`), whose kept values they receive
/// as handles.
#[pyfunction]
#[pyo3(signature = (runs, place=None))]
pub(crate) fn prepare_runs<'py>(
    py: Python<'py>,
    runs: &Bound<'py, PyList>,
    place: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let prepared = PyList::empty(py);
    for item in runs.iter() {
        let run = item.cast::<AsyncRun>()?.get();
        match run.prepare_for(py, place) {
            Ok((function, args, kwargs)) => prepared.append((function, args, kwargs, run.identity(py)))?,
            Err(err) => prepared.append(err.into_value(py))?,
        }
    }
    Ok(prepared)
}

/// Ends each run with its value ([`AsyncRun::complete`]) in one call, asking once whether
/// INFO lines are emitted. A run that cannot take its value ends Crashed with the error.
/// Returns `(index, delay)` for the runs whose returned failed State calls for a retry.
#[pyfunction]
pub(crate) fn complete_runs(
    py: Python<'_>,
    runs: &Bound<'_, PyList>,
    values: &Bound<'_, PyList>,
) -> PyResult<Vec<(usize, f64)>> {
    let log_lines = hooks(py)?.finished_lines_enabled.call0(py)?.extract::<bool>(py)?;
    let mut retries = Vec::new();
    let mut ends = Ends::default();
    for (index, (item, value)) in runs.iter().zip(values.iter()).enumerate() {
        let run = match item.cast::<AsyncRun>() {
            Ok(run) => run.get(),
            Err(err) => {
                ends.flush();
                return Err(err.into());
            }
        };
        match run.complete_with(py, value, Some(log_lines), Some(&mut ends)) {
            Ok(Some(delay)) => retries.push((index, delay)),
            Ok(None) => {}
            Err(err) => run.crash_with(py, err.into_value(py).bind(py).as_any()),
        }
    }
    ends.flush();
    Ok(retries)
}

/// Ends of completed runs recorded together, per engine (`finish_claimed_all`).
#[derive(Default)]
struct Ends {
    engine: Option<CoreShared>,
    ends: Vec<(RunId, Final, RunValue)>,
}

impl Ends {
    fn add(&mut self, engine: &CoreShared, run: RunId, state: Final, value: RunValue) {
        if !self.engine.as_ref().is_some_and(|known| Arc::ptr_eq(known, engine)) {
            self.flush();
            self.engine = Some(Arc::clone(engine));
        }
        self.ends.push((run, state, value));
    }

    fn flush(&mut self) {
        if let Some(engine) = &self.engine {
            engine.finish_claimed_all(self.ends.drain(..));
        }
    }
}
