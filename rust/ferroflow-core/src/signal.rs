//! The done-signal: how threads that wait on runs sleep, and how changes wake them.
//!
//! One generation counter under a small lock (the last in the engine's lock order), one
//! condvar, and a count of sleepers so that changes skip the lock when nobody waits.
//! A waiter counts itself a sleeper for the whole of its wait and reads the generation
//! before it checks what it waits for; a change after that check bumps the generation
//! (the waiter was already counted), so it is never missed. No polling: a sleeper wakes
//! on a change, at its deadline, or when a retry timer may be due.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct Signal {
    generation: Mutex<u64>,
    changed: Condvar,
    /// Threads inside a wait; wake-ups skip the lock when there are none.
    sleepers: AtomicUsize,
}

/// Counts the holder as a sleeper until dropped.
pub(crate) struct Sleeping<'a>(&'a AtomicUsize);

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Signal {
    /// Announces a change (a run finished or became ready, a timer was added, the pool
    /// got stuck) to every sleeper.
    pub(crate) fn wake(&self) {
        // Orders the state changes this wake-up announces before the read of `sleepers`
        // (which pairs with the SeqCst increment in `sleeping`).
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            *self.generation.lock() += 1;
            self.changed.notify_all();
        }
    }

    /// Counts the caller as a sleeper for the whole of a wait, so that every change made
    /// while it waits bumps the generation.
    pub(crate) fn sleeping(&self) -> Sleeping<'_> {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        Sleeping(&self.sleepers)
    }

    /// The wake-up generation; read it before checking what a wait waits for.
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock()
    }

    /// Sleeps until a wake-up after generation `seen`, or until `wake_at`.
    pub(crate) fn sleep_until_change(&self, seen: u64, wake_at: Option<Instant>) {
        let generation = self.generation.lock();
        if *generation == seen {
            drop(match wake_at {
                Some(at) => self.changed.wait_until(generation, at),
                None => self.changed.wait(generation),
            });
        }
    }
}
