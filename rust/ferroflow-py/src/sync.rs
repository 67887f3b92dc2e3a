//! The bindings lock with `std::sync`, not parking_lot: parking_lot keeps parked threads
//! in one global table, and after `os.fork()` the child inherits entries of threads that
//! no longer exist (whose stacks new threads then reuse), so any later park in the same
//! bucket can corrupt memory. A std lock or condvar is a futex word of its own.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`. A panic while it was held (which ends the run that held it `Crashed`)
/// leaves data that is still consistent here: every critical section is a plain update.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
