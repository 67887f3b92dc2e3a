//! What happens around a run's end, the same for runs in batches and coroutine runs: the
//! retry policy, what a returned State means, the map tally, and Prefect's log lines
//! (written by the hooks of `ferroflow._runtime`).

use ferroflow_core::{Final, RunId};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::args::is_leaf;
use crate::executor::{CoreShared, RunValue};
use crate::hooks::{hooks, report_hook_error};
use crate::ids::run_uuid;
use crate::plan::Call;

/// What a run's function gave back.
pub(crate) enum Returned<'py> {
    /// The run completes with this value (a plain result, or a completed State it
    /// returned, kept whole so the run's state shows its name and message).
    Completed(Bound<'py, PyAny>),
    /// It returned a State that did not complete: a failure with this exception, recorded
    /// as that State.
    FailedState {
        state: Bound<'py, PyAny>,
        exception: Bound<'py, PyAny>,
    },
}

/// Reads what a task returned: a `State` decides the run's end (Prefect).
pub(crate) fn returned<'py>(py: Python<'py>, engine: &CoreShared, value: Bound<'py, PyAny>) -> PyResult<Returned<'py>> {
    if is_leaf(&value) {
        return Ok(Returned::Completed(value)); // an int, str, float, bool, bytes or None is never a State
    }
    let hooks = hooks(py)?;
    if !value.is_instance(hooks.state_type.bind(py))? {
        return Ok(Returned::Completed(value));
    }
    engine.executor().note_returned_state();
    let (completed, data): (bool, Bound<'py, PyAny>) = hooks.returned_state.call1(py, (&value,))?.extract(py)?;
    Ok(if completed {
        Returned::Completed(value)
    } else {
        Returned::FailedState {
            state: value,
            exception: data,
        }
    })
}

/// Counts the run in its map's summary (writing the summary line when it is the last);
/// returns whether this run gets a line of its own.
pub(crate) fn tally(py: Python<'_>, engine: &CoreShared, call: &Call, state: Final) -> bool {
    let Some(tally) = &call.plan().tally else {
        return true;
    };
    let own_line = state != Final::Completed && state != Final::Cached && tally.may_log_one();
    if let Some(counts) = tally.count(state) {
        let elapsed = tally.started().elapsed().as_secs_f64();
        let spec = call.plan().spec.get();
        if let Err(err) = hooks(py).and_then(|h| {
            h.map_finished
                .call1(py, (engine.executor().context(py), &spec.task, counts, elapsed))
        }) {
            report_hook_error(py, err);
        }
    }
    own_line
}

/// Counts a completed run and writes its `Finished in state Completed()` line (not for
/// the runs of a map, which get one summary line).
pub(crate) fn report_completed(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    name: impl FnOnce() -> String,
    value: &Bound<'_, PyAny>,
    log_lines: bool,
) {
    let own_line = tally(py, engine, call, Final::Completed) && !call.plan().is_map();
    if own_line && log_lines {
        report_finished(py, engine, call, &name(), Final::Completed, Some(value), None);
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
/// BaseExceptions that are not Exceptions (`KeyboardInterrupt`, `SystemExit`) crash the run
/// and are never retried, as in Prefect.
pub(crate) fn after_failure(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    attempt: u32,
    exception: &Bound<'_, PyAny>,
    name: &str,
) -> AfterFailure {
    let spec = call.plan().spec.get();
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

/// Counts a run that failed for good and writes its `Finished in state Failed(...)` line;
/// `recorded` is what the run's state is made from (its exception, or a State it returned).
pub(crate) fn report_failed_end(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    name: &str,
    state: Final,
    recorded: &Bound<'_, PyAny>,
) {
    if tally(py, engine, call, state) {
        report_finished(py, engine, call, name, state, Some(recorded), None);
    }
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
    let upstream_id = upstream.and_then(|run| run_uuid(py, engine, run).map_err(|err| report_hook_error(py, err)).ok());
    if tally(py, engine, call, state) {
        // A run that never executes is named without its custom name's hook failing it.
        let name = call.run_name(py).unwrap_or_else(|_| call.plan().run_name(call.index()));
        report_finished(py, engine, call, &name, state, None, upstream_id.as_ref());
    }
    RunValue::new(upstream_id)
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
                &call.plan().spec.get().task,
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
