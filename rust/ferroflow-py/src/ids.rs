//! Task run ids: the engine's random seed with the run index in the last four bytes, so
//! ids cost no memory per run and stay unique across engines.

use ferroflow_core::RunId;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::executor::CoreShared;
use crate::hooks::hooks;

/// The 16 bytes of the `task_run_id` of `run`.
pub(crate) fn run_uuid_bytes(engine: &CoreShared, run: RunId) -> [u8; 16] {
    let mut bytes = engine.executor().uuid_seed;
    bytes[12..].copy_from_slice(&run.to_be_bytes());
    bytes
}

/// The `task_run_id` of `run`, a `uuid.UUID`.
pub(crate) fn run_uuid(py: Python<'_>, engine: &CoreShared, run: RunId) -> PyResult<Py<PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("bytes", PyBytes::new(py, &run_uuid_bytes(engine, run)))?;
    Ok(hooks(py)?.uuid_type.bind(py).call((), Some(&kwargs))?.unbind())
}
