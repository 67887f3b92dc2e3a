//! Futures in the order they finish, for `wait` and `as_completed`.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

use crate::errors::engine_error;
use crate::future::PyFuture;
use crate::gil::{deadline_after, wait_detached};

/// Futures in the order they finish (for `as_completed` and `wait`): each future's
/// completion pushes its position here from whichever thread finishes it.
#[pyclass(frozen, name = "Completions", module = "ferroflow._core")]
pub struct Completions {
    arrived: Arc<(Mutex<VecDeque<usize>>, Condvar)>,
    remaining: Mutex<usize>,
}

#[pymethods]
impl Completions {
    #[new]
    fn new(futures: Vec<Bound<'_, PyFuture>>) -> PyResult<Self> {
        let arrived = Arc::new((Mutex::new(VecDeque::new()), Condvar::new()));
        for (position, future) in futures.iter().enumerate() {
            let sink = Arc::clone(&arrived);
            let future = future.get();
            future
                .shared
                .on_done(
                    future.run,
                    Box::new(move |_| {
                        sink.0.lock().push_back(position);
                        sink.1.notify_all();
                    }),
                )
                .map_err(|err| engine_error(err, future.shared.id()))?;
        }
        Ok(Completions {
            arrived,
            remaining: Mutex::new(futures.len()),
        })
    }

    /// Position of the next future to finish; `None` at the deadline. `StopIteration`
    /// once all have been returned.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<usize>> {
        if *self.remaining.lock() == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        let deadline = deadline_after(timeout)?;
        let arrived = &self.arrived;
        let got = wait_detached(py, 0, deadline, |slice| {
            let mut queue = arrived.0.lock();
            if queue.is_empty() {
                if let Some(at) = slice {
                    arrived.1.wait_until(&mut queue, at);
                }
            }
            Ok(queue.pop_front())
        })?;
        if got.is_some() {
            *self.remaining.lock() -= 1;
        }
        Ok(got)
    }

    #[getter]
    fn remaining(&self) -> usize {
        *self.remaining.lock()
    }
}
