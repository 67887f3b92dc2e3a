//! The engine's refusals as the Python exceptions users see. What a message needs (the
//! name of the run that waits on itself) is looked up here, from the calling thread's
//! current run, so callers just map.

use ferroflow_core::EngineError;
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

use crate::current;

pub(crate) fn engine_error(err: EngineError, engine_id: usize) -> PyErr {
    match err {
        EngineError::WaitsOnItself(run) => match current::name_if_executing(engine_id, run) {
            Some(name) => PyRuntimeError::new_err(format!(
                "Task run '{name}' waits on its own future, whose result can never arrive"
            )),
            None => PyRuntimeError::new_err(err.to_string()),
        },
        EngineError::UnknownRun(_) => PyValueError::new_err(err.to_string()),
        EngineError::TooManyRuns { .. } => PyOverflowError::new_err(err.to_string()),
        EngineError::Closed => PyRuntimeError::new_err(err.to_string()),
    }
}
