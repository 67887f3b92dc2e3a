//! What happens around a run's attempts and its end, the same for runs in batches and
//! coroutine runs: the task's state hooks, the retry policy (retry condition and jitter
//! included), what a returned State means, the map tally, and Prefect's log lines
//! (written by the hooks of `ferroflow._runtime`).
//!
//! Whatever calls into the user's code here (state hooks, `retry_condition_fn`) runs while
//! the run is the current one of its thread, and in the run's own `contextvars` context:
//! `enter` is that context's `run` for a run in a batch that has one (a submitted run), and
//! None where the caller already is in it (a direct call, a coroutine run's driver).

use ferroflow_core::{Final, RunId};
use pyo3::exceptions::{PyException, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::args::is_leaf;
use crate::executor::{CoreShared, RunValue};
use crate::hooks::{hooks, report_hook_error};
use crate::ids::run_uuid;
use crate::plan::Call;
use crate::spec::{HookKind, TaskSpec};

/// Calls `func(*args)` in the run's own context (`enter`, see the module docs) or here.
fn call_in_run<'py>(
    func: &Bound<'py, PyAny>,
    args: &[Bound<'py, PyAny>],
    enter: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    match enter {
        None => func.call1(PyTuple::new(py, args)?),
        Some(run) => {
            let with_func: Vec<&Bound<'py, PyAny>> = std::iter::once(func).chain(args).collect();
            run.call1(PyTuple::new(py, with_func)?)
        }
    }
}

/// Calls the task's hooks for the state the run enters, if it has any (a task without
/// hooks pays a length check). A hook that raises is logged by `task_state_hooks` and
/// changes nothing; an error of the hook machinery itself is reported as unraisable.
fn call_state_hooks(
    py: Python<'_>,
    spec: &TaskSpec,
    kind: HookKind,
    state_name: &str,
    value: Option<&Bound<'_, PyAny>>,
    enter: Option<&Bound<'_, PyAny>>,
) {
    let Some(hook_list) = spec.hooks.of(py, kind) else {
        return;
    };
    let called = hooks(py).and_then(|h| {
        let args = [
            PyList::new(py, hook_list.iter())?.into_any(), // a copy: a hook may add hooks
            PyString::new(py, state_name).into_any(),
            value.map_or_else(|| py.None().into_bound(py), Bound::clone),
        ];
        call_in_run(h.on_state.bind(py), &args, enter)
    });
    if let Err(err) = called {
        report_hook_error(py, err);
    }
}

/// An attempt of the run starts: its `on_running` hooks, in state Running (Retrying for
/// the attempts after a failed one), as in Prefect.
pub(crate) fn start_attempt(py: Python<'_>, call: &Call, attempt: u32, enter: Option<&Bound<'_, PyAny>>) {
    let state_name = if attempt == 0 { "Running" } else { "Retrying" };
    call_state_hooks(py, call.plan().spec.get(), HookKind::Running, state_name, None, enter);
}

/// What a run's function gave back.
pub(crate) enum Returned<'py> {
    /// The run succeeds in `state` with `value`: Completed with a plain result, or with a
    /// completed State it returned, kept whole so the run's state shows its name and
    /// message; or Cached, with the value a cache hit's State holds (see `is_cache_hit`).
    Succeeded { state: Final, value: Bound<'py, PyAny> },
    /// It returned a State that did not complete: a failure with this exception, recorded
    /// as that State.
    FailedState {
        state: Bound<'py, PyAny>,
        exception: Bound<'py, PyAny>,
    },
}

/// Reads what a task returned: a `State` decides the run's end (Prefect).
pub(crate) fn returned<'py>(py: Python<'py>, engine: &CoreShared, value: Bound<'py, PyAny>) -> PyResult<Returned<'py>> {
    let completed = |value| {
        Ok(Returned::Succeeded {
            state: Final::Completed,
            value,
        })
    };
    if is_leaf(&value) {
        return completed(value); // an int, str, float, bool, bytes or None is never a State
    }
    let hooks = hooks(py)?;
    if !value.is_instance(hooks.state_type.bind(py))? {
        return completed(value);
    }
    let (succeeded, data): (bool, Bound<'py, PyAny>) = hooks.returned_state.call1(py, (&value,))?.extract(py)?;
    if !succeeded {
        engine.executor().note_returned_state();
        return Ok(Returned::FailedState {
            state: value,
            exception: data,
        });
    }
    if hooks.is_cache_hit.call1(py, (&value,))?.is_truthy(py)? {
        // The run's value is the cached value itself: `.result()`, a direct call and
        // dependents get it, and the run's state is Cached (a map counts it so).
        return Ok(Returned::Succeeded {
            state: Final::Cached,
            value: data,
        });
    }
    engine.executor().note_returned_state();
    completed(value)
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

/// Calls the run's `on_completion` hooks, then counts it and writes its `Finished in
/// state Completed()` (or `Cached(type=COMPLETED)`) line, not for the runs of a map,
/// which get one summary line.
#[allow(clippy::too_many_arguments)] // the end's every part: one call site per executor
pub(crate) fn report_completed(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    name: impl FnOnce() -> String,
    state: Final,
    value: &Bound<'_, PyAny>,
    log_lines: bool,
    enter: Option<&Bound<'_, PyAny>>,
) {
    let spec = call.plan().spec.get();
    call_state_hooks(py, spec, HookKind::Completion, state.state().name(), Some(value), enter);
    let own_line = tally(py, engine, call, state) && !call.plan().is_map();
    if own_line && log_lines {
        report_finished(py, engine, call, &name(), state, Some(value), None);
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
/// `exception` is what failed it, `recorded` what its state is made from (the exception,
/// or a failed State the task returned), which `retry_condition_fn` receives.
/// BaseExceptions that are not Exceptions (`KeyboardInterrupt`, `SystemExit`) crash the run
/// and are never retried, as in Prefect.
#[allow(clippy::too_many_arguments)] // the attempt's every part: one call site per executor
pub(crate) fn after_failure(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    attempt: u32,
    exception: &Bound<'_, PyAny>,
    recorded: &Bound<'_, PyAny>,
    name: &str,
    enter: Option<&Bound<'_, PyAny>>,
) -> AfterFailure {
    let spec = call.plan().spec.get();
    let is_error = exception.is_instance_of::<PyException>();
    let verdict = retry_verdict(is_error, attempt, spec.retries, || {
        retry_allowed(py, spec, recorded, enter)
    });
    let delay = (verdict == RetryVerdict::Retry).then(|| retry_delay(py, spec, attempt));
    // Prefect: an attempt that raised a `TimeoutError` (its time limit's, or the code's
    // own) and is not retried ends `TimedOut`; a failed State it returned ends as that State.
    let timed_out = delay.is_none() && exception.is_instance_of::<PyTimeoutError>() && recorded.is(exception);
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
                verdict == RetryVerdict::Exhausted,
                timed_out,
            ),
        )
    });
    if let Err(hook_err) = reported {
        report_hook_error(py, hook_err);
    }
    match delay {
        Some(delay) => AfterFailure::Retry(delay),
        None if timed_out => AfterFailure::End(Final::TimedOut),
        None if is_error => AfterFailure::End(Final::Failed),
        None => AfterFailure::End(Final::Crashed),
    }
}

/// What the retry policy says of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryVerdict {
    /// Another attempt comes.
    Retry,
    /// No retry is left: Prefect's "Retries are exhausted".
    Exhausted,
    /// The run ends here without having used retries up: the task has none, its
    /// `retry_condition_fn` declined one, or the run crashed (never retried).
    NotRetried,
}

/// Prefect's rule: an `Exception` (not a crash) is retried while retries remain and the
/// retry condition, asked only then, allows it.
fn retry_verdict(is_error: bool, attempt: u32, retries: u32, condition_allows: impl FnOnce() -> bool) -> RetryVerdict {
    if !is_error || retries == 0 {
        RetryVerdict::NotRetried
    } else if attempt >= retries {
        RetryVerdict::Exhausted
    } else if condition_allows() {
        RetryVerdict::Retry
    } else {
        RetryVerdict::NotRetried
    }
}

/// Whether the task's `retry_condition_fn` (if any) lets a failed attempt be retried.
fn retry_allowed(
    py: Python<'_>,
    spec: &TaskSpec,
    recorded: &Bound<'_, PyAny>,
    enter: Option<&Bound<'_, PyAny>>,
) -> bool {
    let Some(condition) = &spec.retry_condition else {
        return true;
    };
    let asked = hooks(py).and_then(|h| {
        call_in_run(
            h.retry_allowed.bind(py),
            &[condition.bind(py).clone(), recorded.clone()],
            enter,
        )?
        .is_truthy()
    });
    asked.unwrap_or_else(|err| {
        report_hook_error(py, err);
        false
    })
}

/// The delay before the next attempt: the task's, with `retry_jitter_factor` applied
/// (Prefect's clamped Poisson interval, drawn by Python's `random`) when both are above 0.
fn retry_delay(py: Python<'_>, spec: &TaskSpec, attempt: u32) -> f64 {
    let delay = spec.retry_delay(attempt);
    if spec.jitter <= 0.0 || delay <= 0.0 {
        return delay;
    }
    let jittered = hooks(py).and_then(|h| h.jittered_delay.call1(py, (delay, spec.jitter))?.extract::<f64>(py));
    match jittered {
        Ok(jittered) if jittered.is_finite() && jittered >= 0.0 => jittered,
        Ok(_) => delay,
        Err(err) => {
            report_hook_error(py, err);
            delay
        }
    }
}

/// A run that failed for good: its `on_failure` hooks (not for a crash, as in Prefect),
/// then its count and its `Finished in state Failed(...)` line; `recorded` is what the
/// run's state is made from (its exception, or a State it returned).
pub(crate) fn report_failed_end(
    py: Python<'_>,
    engine: &CoreShared,
    call: &Call,
    name: &str,
    state: Final,
    recorded: &Bound<'_, PyAny>,
    enter: Option<&Bound<'_, PyAny>>,
) {
    if matches!(state, Final::Failed | Final::TimedOut) {
        let spec = call.plan().spec.get();
        call_state_hooks(py, spec, HookKind::Failure, state.state().name(), Some(recorded), enter);
    }
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

#[cfg(test)]
mod tests {
    use super::{retry_verdict, RetryVerdict};

    #[test]
    fn a_failed_attempt_is_retried_while_retries_remain() {
        assert_eq!(retry_verdict(true, 0, 2, || true), RetryVerdict::Retry);
        assert_eq!(retry_verdict(true, 1, 2, || true), RetryVerdict::Retry);
        assert_eq!(retry_verdict(true, 2, 2, || true), RetryVerdict::Exhausted);
    }

    #[test]
    fn the_condition_is_asked_only_while_retries_remain() {
        let ask = |attempt, retries| {
            let mut asked = false;
            let verdict = retry_verdict(true, attempt, retries, || {
                asked = true;
                false
            });
            (verdict, asked)
        };
        assert_eq!(ask(0, 1), (RetryVerdict::NotRetried, true)); // declined: not "exhausted"
        assert_eq!(ask(1, 1), (RetryVerdict::Exhausted, false));
        assert_eq!(ask(0, 0), (RetryVerdict::NotRetried, false));
    }

    #[test]
    fn a_crash_is_never_retried() {
        assert_eq!(
            retry_verdict(false, 0, 3, || panic!("not asked for a crash")),
            RetryVerdict::NotRetried
        );
    }
}
