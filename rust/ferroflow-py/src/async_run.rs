//! A coroutine run, executed outside the engine's batches: as an asyncio task on a flow
//! run's event loop (a submitted async task, driven by `ferroflow._async`), or inline on
//! the caller's loop (`await task(x)`). The engine counts it Running until it ends here.
//! Its retries happen in place: the driver sleeps on its loop between attempts.

use ferroflow_core::{Disposition, Final, Job, RunId, RunState};
use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::call::Call;
use crate::engine::CoreShared;
use crate::executor::{after_failure, report_completed, report_failed_end, report_unrun, returned_value, AfterFailure};
use crate::future::PyFuture;
use crate::hooks::hooks;

#[pyclass(frozen, name = "AsyncRun", module = "ferroflow._core")]
pub struct AsyncRun {
    engine: CoreShared,
    run: RunId,
    /// The claimed job, until the run ends. Only the run's driver touches it, and takes it
    /// out before calling into Python (no lock is held across a call).
    job: Mutex<Option<Job<Call>>>,
}

impl AsyncRun {
    pub(crate) fn new(engine: &CoreShared, job: Job<Call>) -> Self {
        AsyncRun {
            engine: std::sync::Arc::clone(engine),
            run: job.run,
            job: Mutex::new(Some(job)),
        }
    }

    /// A run that ended as soon as it was claimed (it was doomed NotReady or Cancelled).
    pub(crate) fn ended(engine: &CoreShared, run: RunId) -> Self {
        AsyncRun {
            engine: std::sync::Arc::clone(engine),
            run,
            job: Mutex::new(None),
        }
    }

    /// Claims a job for an inline call: a doomed one ends here, at once.
    pub(crate) fn claimed(py: Python<'_>, engine: &CoreShared, job: Job<Call>) -> Self {
        let state = match job.disposition {
            Disposition::Run => return AsyncRun::new(engine, job),
            Disposition::NotReady { .. } => Final::NotReady,
            Disposition::Cancel => Final::Cancelled,
        };
        let upstream = match job.disposition {
            Disposition::NotReady { upstream } => Some(upstream),
            _ => None,
        };
        let value = report_unrun(py, engine, &job.payload, state, upstream);
        engine.finish_claimed(job.run, state, value);
        AsyncRun::ended(engine, job.run)
    }

    fn take(&self) -> PyResult<Job<Call>> {
        self.job
            .lock()
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this run has already ended"))
    }
}

#[pymethods]
impl AsyncRun {
    /// A fresh coroutine for the next attempt, its arguments resolved.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let job = self.take()?;
        let started = job
            .payload
            .arguments(py)
            .and_then(|(args, kwargs)| job.payload.plan.spec.get().func.bind(py).call(args, kwargs.as_ref()));
        *self.job.lock() = Some(job);
        started
    }

    /// Ends the run with what its coroutine returned (a returned State decides, as for
    /// sync tasks). Returns the retry delay if a returned failed State calls for one.
    fn complete(&self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        match returned_value(py, value) {
            Ok(value) => {
                let job = self.take()?;
                let log_lines = hooks(py)?.finished_lines_enabled.call0(py)?.extract::<bool>(py)?;
                report_completed(
                    py,
                    &self.engine,
                    &job.payload,
                    job.payload.custom_name(py),
                    &value,
                    log_lines,
                );
                self.engine
                    .finish_claimed(job.run, Final::Completed, Some(value.unbind()));
                Ok(None)
            }
            Err(err) => self.fail(py, err.into_value(py).into_bound(py).into_any()),
        }
    }

    /// Reports a failed attempt, by the task's retry policy: returns the delay before the
    /// next attempt (the run is AwaitingRetry), or None when the run has ended.
    fn fail(&self, py: Python<'_>, exception: Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let mut job = self.take()?;
        let name = job.payload.run_name(py);
        match after_failure(py, &self.engine, &job.payload, job.attempt, &exception, &name) {
            AfterFailure::Retry(delay) => {
                self.engine.retry_claimed(job.run, RunState::AwaitingRetry);
                job.attempt += 1;
                *self.job.lock() = Some(job);
                Ok(Some(delay))
            }
            AfterFailure::End(state) => {
                report_failed_end(py, &self.engine, &job.payload, &name, state, &exception);
                self.engine.finish_claimed(job.run, state, Some(exception.unbind()));
                Ok(None)
            }
        }
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

    /// Whether the run has ended.
    #[getter]
    fn done(&self) -> bool {
        self.job.lock().is_none()
    }

    #[getter]
    fn future(&self) -> PyFuture {
        PyFuture::new(std::sync::Arc::clone(&self.engine), self.run)
    }

    /// `(run_name, task, flow_run_context)`, for `get_run_logger()` inside the coroutine.
    #[getter]
    fn identity(&self, py: Python<'_>) -> PyResult<(String, Py<PyAny>, Py<PyAny>)> {
        let job = self.take()?;
        let identity = (
            job.payload.run_name(py),
            job.payload.plan.spec.get().task.clone_ref(py),
            self.engine.executor().context(py),
        );
        *self.job.lock() = Some(job);
        Ok(identity)
    }
}
