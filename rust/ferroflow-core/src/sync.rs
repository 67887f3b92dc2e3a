//! Locks and condvars: `std::sync`'s, with poisoning ignored.
//!
//! Not `parking_lot`'s: `parking_lot` keeps every parked thread in one process-wide table.
//! After `fork()` the child inherits the entries of threads that no longer exist, new
//! threads reuse their stacks, and the next park in the same bucket walks corrupted
//! entries (children forked between flow runs died with SIGSEGV). A std lock or condvar
//! is a futex word of its own: a child that never touches the parent's engines is safe.
//!
//! Poisoning is ignored because no critical section here leaves its data half-updated
//! on a panic (each is a plain push, pop or counter update), and a panic in a task is
//! contained long before it could reach a lock.

use std::sync::PoisonError;
use std::time::Instant;

pub(crate) use std::sync::MutexGuard;

#[derive(Default)]
pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if nobody holds it now.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Condvar(std::sync::Condvar);

impl Condvar {
    pub(crate) const fn new() -> Self {
        Condvar(std::sync::Condvar::new())
    }

    /// Sleeps until notified (or a spurious wake-up: callers re-check).
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps until notified or `deadline` (callers re-check what they wait for).
    pub(crate) fn wait_until<'a, T>(&self, guard: MutexGuard<'a, T>, deadline: Instant) -> MutexGuard<'a, T> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.0
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
