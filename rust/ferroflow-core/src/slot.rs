//! A run's storage in the arena: its state byte, flag bits, handle count, parked payload
//! and write-once outcome.
//!
//! A slot is read without any engine lock: the state byte says what else may be read.
//! The outcome is written once, by the thread that ends the run, before the state turns
//! final (a Release store), and read only by threads that have seen a final state
//! (Acquire): the state machine is the guard, so there is no `Once` per run.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU8, Ordering};

use crate::sync::{Mutex, MutexGuard};

use crate::run::Outcome;
use crate::state::RunState;

/// Flag bits of a slot. Each is set once and never cleared, except `BOUNDED` and
/// `SUSPENDED`, which a deferred run's end clears.
pub(crate) mod flag {
    /// Registered for the calling thread only (a direct call): never queued.
    pub(crate) const INLINE: u16 = 1;
    /// Its end is decided (`NotReady` upstream, or cancelled): its claimer must not run it.
    pub(crate) const DOOMED: u16 = 1 << 1;
    /// A thread sleeps until this run is final or ready: finishing or readying it wakes waiters.
    pub(crate) const WATCHED: u16 = 1 << 2;
    /// `settle` has processed the run's end (set under the graph lock).
    pub(crate) const SETTLED: u16 = 1 << 3;
    /// Deferred out of a worker's batch: counts against `max_workers` until it ends.
    pub(crate) const BOUNDED: u16 = 1 << 4;
    /// A bounded deferred run that waits on other runs: it does not count meanwhile.
    pub(crate) const SUSPENDED: u16 = 1 << 5;
    /// Its value was handed to `Executor::release` (handle-counting engines).
    pub(crate) const RELEASED: u16 = 1 << 6;
    /// Reserved, then given back unregistered (`release_reserved`): never registered.
    pub(crate) const GIVEN_BACK: u16 = 1 << 7;
}

/// A run's payload while no thread has taken it.
pub(crate) struct Parked<P> {
    pub(crate) payload: P,
    pub(crate) attempt: u32,
}

pub(crate) struct Slot<P, V> {
    state: AtomicU8,
    flags: AtomicU16,
    /// External handles on the run (futures, future lists) in a handle-counting engine:
    /// every run is born with one. Unused (and never touched) in other engines.
    handles: AtomicU32,
    parked: Mutex<Option<Parked<P>>>,
    /// See the module docs and the `Sync` impl.
    outcome: UnsafeCell<MaybeUninit<Outcome<V>>>,
}

// SAFETY: every field but `outcome` is Sync. `outcome` is written once, by the single
// thread that ends the run (`write_outcome`'s contract), strictly before the run's state
// becomes final with Release ordering, and is read only after an Acquire load sees that
// final state; it is never written again until the slot is dropped.
unsafe impl<P: Send, V: Send + Sync> Sync for Slot<P, V> {}

impl<P, V> Drop for Slot<P, V> {
    fn drop(&mut self) {
        if RunState::from_u8(*self.state.get_mut()).is_final() {
            // SAFETY: a final state means `write_outcome` initialised the outcome;
            // `&mut self` means no reader is left.
            unsafe { self.outcome.get_mut().assume_init_drop() };
        }
    }
}

impl<P, V> Slot<P, V> {
    /// An empty slot (the arena builds a chunk of them at once).
    pub(crate) fn vacant() -> Self {
        Slot {
            state: AtomicU8::new(RunState::Vacant as u8),
            flags: AtomicU16::new(0),
            // The handle the run's registration gives whoever registers it. Set here, when
            // the chunk is built, so registering a run costs no extra store.
            handles: AtomicU32::new(1),
            parked: Mutex::new(None),
            outcome: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    #[inline]
    pub(crate) fn state(&self) -> RunState {
        RunState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the state on, checking the machine in debug builds.
    pub(crate) fn become_(&self, next: RunState) {
        let previous = RunState::from_u8(self.state.swap(next as u8, Ordering::AcqRel));
        debug_assert!(previous.can_become(next), "illegal transition {previous:?} -> {next:?}");
    }

    /// Gives a run being registered its first state. Only registration writes the state
    /// of a vacant slot (under the graph lock), so a plain store does what `become_`'s
    /// read-modify-write would, without a locked instruction on every run of a big map.
    pub(crate) fn publish(&self, first: RunState) {
        debug_assert!(
            self.state() == RunState::Vacant && RunState::Vacant.can_become(first),
            "illegal first state {first:?} of a slot in {:?}",
            self.state()
        );
        self.state.store(first as u8, Ordering::Release);
    }

    /// Moves `from` → `to` only if the run is still in `from`.
    pub(crate) fn try_become(&self, from: RunState, to: RunState) -> bool {
        debug_assert!(from.can_become(to), "illegal transition {from:?} -> {to:?}");
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    #[inline]
    pub(crate) fn has(&self, bits: u16) -> bool {
        self.flags.load(Ordering::Acquire) & bits != 0
    }

    /// Sets `bits`; returns the flags as they were.
    pub(crate) fn set(&self, bits: u16) -> u16 {
        self.flags.fetch_or(bits, Ordering::AcqRel)
    }

    /// Sets `bits` as a watcher does: sequentially consistent with the fence in the
    /// engine's wake-up (see `Shared::watch`).
    pub(crate) fn set_seq_cst(&self, bits: u16) {
        self.flags.fetch_or(bits, Ordering::SeqCst);
    }

    /// Clears `bits`; returns the flags as they were.
    pub(crate) fn clear(&self, bits: u16) -> u16 {
        self.flags.fetch_and(!bits, Ordering::AcqRel)
    }

    /// The payload lock: held to take or doom a parked run.
    pub(crate) fn parked(&self) -> MutexGuard<'_, Option<Parked<P>>> {
        self.parked.lock()
    }

    /// Parks the payload of a run being registered (its state not yet published: no
    /// other thread looks at it, so the lock is never contended).
    pub(crate) fn park_unpublished(&self, parked: Parked<P>) {
        *self.parked.lock() = Some(parked);
    }

    /// The outcome, once the run is final.
    pub(crate) fn outcome(&self) -> Option<&Outcome<V>> {
        if !self.state().is_final() {
            return None;
        }
        // SAFETY: the Acquire load above saw a final state, which is stored only after
        // `write_outcome` initialised the outcome (see the `Sync` impl).
        Some(unsafe { (*self.outcome.get()).assume_init_ref() })
    }

    /// Writes the outcome of a run about to turn final.
    ///
    /// # Safety
    /// The run is not final, the caller is the only thread that ends it, and it makes the
    /// state final (which publishes the outcome) right after.
    pub(crate) unsafe fn write_outcome(&self, outcome: Outcome<V>) {
        // SAFETY: by the contract above nobody reads or writes the outcome now.
        unsafe { (*self.outcome.get()).write(outcome) };
    }

    /// Adds a handle if the run still has one (a handle is only ever copied from
    /// another). Returns false, changing nothing, if none was left.
    pub(crate) fn hold(&self) -> bool {
        self.handles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count > 0).then(|| count.saturating_add(1))
            })
            .is_ok()
    }

    /// Drops a handle. Returns `Some(true)` if it was the last, `Some(false)` if others
    /// are left, `None` (changing nothing) if there was none.
    pub(crate) fn unhold(&self) -> Option<bool> {
        // AcqRel: every read of the value by a holder (before its own `unhold`, Release)
        // happens before whatever the last one does next (Acquire): releasing the value.
        let previous = self
            .handles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| count.checked_sub(1))
            .ok()?;
        Some(previous == 1)
    }

    /// Whether no handle is left. Called right after the run turned final (by the thread
    /// that ended it) or right after the last handle went: the `SeqCst` fence pairs with
    /// the one on the other side, so of "turned final, then looked at the handles" and
    /// "dropped the last handle, then looked at the state" at least one sees the other.
    pub(crate) fn is_unheld_after_fence(&self) -> bool {
        fence(Ordering::SeqCst);
        self.handles.load(Ordering::Acquire) == 0
    }

    /// Whether the run is final, seen after the last handle went (see above).
    pub(crate) fn is_final_after_fence(&self) -> bool {
        fence(Ordering::SeqCst);
        self.state().is_final()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle count costs no space: it sits in the padding beside the state and
    /// flags, ahead of the 8-byte aligned payload lock and outcome.
    #[test]
    fn the_handle_count_fits_in_the_header_padding() {
        struct Without<P, V> {
            _state: AtomicU8,
            _flags: AtomicU8,
            _parked: Mutex<Option<Parked<P>>>,
            _outcome: UnsafeCell<MaybeUninit<Outcome<V>>>,
        }
        assert!(std::mem::size_of::<Slot<u64, u64>>() <= std::mem::size_of::<Without<u64, u64>>() + 4);
        assert!(
            std::mem::size_of::<Slot<(Box<u8>, u32), Option<Box<u8>>>>()
                <= std::mem::size_of::<Without<(Box<u8>, u32), Option<Box<u8>>>>() + 4
        );
        assert!(std::mem::size_of::<Slot<[u64; 3], u8>>() <= std::mem::size_of::<Without<[u64; 3], u8>>() + 4);
    }

    #[test]
    fn handles_never_go_below_zero_nor_come_back_from_it() {
        let slot: Slot<(), ()> = Slot::vacant();
        assert!(slot.hold());
        assert_eq!(slot.unhold(), Some(false));
        assert_eq!(slot.unhold(), Some(true));
        assert_eq!(slot.unhold(), None);
        assert!(!slot.hold(), "no handle left to copy");
        assert!(slot.is_unheld_after_fence());
    }
}
