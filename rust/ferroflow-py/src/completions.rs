//! Futures in the order they finish, for `wait` and `as_completed`.

use std::collections::VecDeque;
use std::sync::Arc;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::errors::engine_error;
use crate::future::PyFuture;
use crate::gil::{deadline_after, wait_detached};
use crate::sync::lock;

/// Futures in the order they finish (for `as_completed` and `wait`): each future's
/// completion pushes its position here from whichever thread finishes it.
#[pyclass(frozen, name = "Completions", module = "ferroflow._core")]
pub struct Completions {
    arrived: Arc<(Mutex<VecDeque<usize>>, Condvar)>,
    remaining: AtomicUsize,
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
                        lock(&sink.0).push_back(position);
                        sink.1.notify_all();
                    }),
                )
                .map_err(|err| engine_error(err, future.shared.id()))?;
        }
        Ok(Completions {
            arrived,
            remaining: AtomicUsize::new(futures.len()),
        })
    }

    /// Position of the next future to finish; `None` at the deadline. `StopIteration`
    /// once all have been returned.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<usize>> {
        if self.remaining.load(Ordering::Acquire) == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        let deadline = deadline_after(timeout)?;
        let arrived = &self.arrived;
        let got = wait_detached(py, 0, deadline, |slice| {
            let mut queue = lock(&arrived.0);
            if queue.is_empty() {
                if let Some(at) = slice {
                    let timeout = at.saturating_duration_since(std::time::Instant::now());
                    queue = arrived
                        .1
                        .wait_timeout(queue, timeout)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
            Ok(queue.pop_front())
        })?;
        if got.is_some() {
            self.remaining.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(got)
    }

    #[getter]
    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Acquire)
    }
}
