//! The arena of task runs: contiguous indices, stable addresses, no object per run.
//!
//! Runs live in chunks whose sizes double (`FIRST`, `2*FIRST`, `4*FIRST`, ...), so a
//! run's index maps to (chunk, offset) with a little arithmetic and a slot never moves
//! once allocated: readers hold `&Slot` without any lock while writers keep appending.
//! Reserving `n` indices is one bump of a counter (done by the engine under its graph
//! lock), which is what lets a `.map` of a million items own one contiguous range.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::sync::Mutex;

/// Slots in the first chunk; chunk `k` holds `FIRST << k`. Small, because a flow run
/// that calls one task must not allocate for a thousand.
const FIRST: usize = 64;
/// Enough chunks for `FIRST * (2^CHUNKS - 1)` runs, past `u32::MAX`.
const CHUNKS: usize = 27;

pub(crate) struct Arena<T> {
    chunks: [AtomicPtr<T>; CHUNKS],
    /// Indices handed out so far; reserving is serialised by `grow`.
    reserved: AtomicU32,
    grow: Mutex<()>,
    make: fn() -> T,
}

/// (chunk, offset, chunk length) of an index.
const fn locate(index: u32) -> (usize, usize, usize) {
    let scaled = index as usize / FIRST + 1;
    let chunk = (usize::BITS - 1 - scaled.leading_zeros()) as usize;
    let start = FIRST * ((1 << chunk) - 1);
    (chunk, index as usize - start, FIRST << chunk)
}

impl<T> Arena<T> {
    /// `make` builds an empty slot; every slot of a chunk is built when the chunk is.
    pub(crate) fn new(make: fn() -> T) -> Self {
        Arena {
            chunks: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            reserved: AtomicU32::new(0),
            grow: Mutex::new(()),
            make,
        }
    }

    /// Reserves `count` consecutive indices and makes sure their slots exist.
    ///
    /// Returns `None`, reserving nothing, when the engine would pass `u32::MAX` runs or
    /// the allocator refuses memory for their slots.
    pub(crate) fn reserve(&self, count: u32) -> Option<std::ops::Range<u32>> {
        let _guard = self.grow.lock();
        let start = self.reserved.load(Ordering::Relaxed);
        let end = start.checked_add(count)?;
        if count > 0 {
            let (first_chunk, _, _) = locate(start);
            let (last_chunk, _, _) = locate(end - 1);
            for chunk in first_chunk..=last_chunk {
                if self.chunks[chunk].load(Ordering::Acquire).is_null() {
                    let len = FIRST << chunk;
                    let mut slots: Vec<T> = Vec::new();
                    // Chunks allocated so far stay (they are needed by later reservations).
                    slots.try_reserve_exact(len).ok()?;
                    slots.extend((0..len).map(|_| (self.make)()));
                    let slots = slots.into_boxed_slice();
                    self.chunks[chunk].store(Box::into_raw(slots).cast::<T>(), Ordering::Release);
                }
            }
        }
        self.reserved.store(end, Ordering::Release);
        Some(start..end)
    }

    /// Number of indices reserved so far.
    pub(crate) fn len(&self) -> u32 {
        self.reserved.load(Ordering::Acquire)
    }

    /// The slot at `index`, if it has been reserved.
    pub(crate) fn get(&self, index: u32) -> Option<&T> {
        if index >= self.len() {
            return None;
        }
        let (chunk, offset, _) = locate(index);
        let base = self.chunks[chunk].load(Ordering::Acquire);
        // SAFETY: `index < reserved`, and `reserve` stores the chunk pointer (Release)
        // before publishing `reserved` (Release), which we loaded with Acquire, so `base`
        // points at a live chunk of `FIRST << chunk` initialised slots; `offset` is below
        // that length by construction of `locate`. Chunks are freed only in `Drop`.
        Some(unsafe { &*base.add(offset) })
    }
}

impl<T> Drop for Arena<T> {
    fn drop(&mut self) {
        for (chunk, slot) in self.chunks.iter_mut().enumerate() {
            let base = *slot.get_mut();
            if !base.is_null() {
                let len = FIRST << chunk;
                // SAFETY: `base` came from `Box::into_raw` of a boxed slice of exactly
                // `len` elements in `reserve`, and is freed once, here.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(base, len)) });
            }
        }
    }
}

// SAFETY: the arena hands out `&T` across threads and drops `T`s on the dropping thread;
// both are sound exactly when `T` is `Sync` and `Send`.
unsafe impl<T: Send + Sync> Sync for Arena<T> {}
// SAFETY: as above; ownership of every `T` moves with the arena.
unsafe impl<T: Send> Send for Arena<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn locate_covers_every_index_once() {
        let mut expected = (0usize, 0usize);
        for index in 0..u32::try_from(FIRST * 15).unwrap() {
            let (chunk, offset, len) = locate(index);
            assert_eq!((chunk, offset), expected, "index {index}");
            expected = if offset + 1 == len {
                (chunk + 1, 0)
            } else {
                (chunk, offset + 1)
            };
        }
    }

    #[test]
    fn reserved_ranges_are_contiguous_and_addresses_stable() {
        let arena: Arena<AtomicUsize> = Arena::new(|| AtomicUsize::new(0));
        let first = arena.reserve(10).unwrap();
        let before = std::ptr::from_ref(arena.get(3).unwrap());
        let second = arena.reserve(100_000).unwrap();
        assert_eq!(first, 0..10);
        assert_eq!(second, 10..100_010);
        assert_eq!(before, std::ptr::from_ref(arena.get(3).unwrap()));
        for index in [0, 9, 10, 1023, 1024, 100_009] {
            arena.get(index).unwrap().store(index as usize, Ordering::Relaxed);
        }
        assert_eq!(arena.get(100_009).unwrap().load(Ordering::Relaxed), 100_009);
        assert!(arena.get(100_010).is_none());
    }

    #[test]
    fn empty_reserve_is_a_no_op() {
        let arena: Arena<u8> = Arena::new(|| 0);
        assert_eq!(arena.reserve(0), Some(0..0));
        assert_eq!(arena.len(), 0);
    }

    #[test]
    fn reserving_past_u32_max_is_refused_and_reserves_nothing() {
        let arena: Arena<u8> = Arena::new(|| 0);
        assert_eq!(arena.reserve(3), Some(0..3));
        assert_eq!(arena.reserve(u32::MAX), None);
        assert_eq!(arena.reserve(u32::MAX - 2), None);
        assert_eq!(arena.len(), 3);
        assert_eq!(arena.reserve(2), Some(3..5));
    }

    #[test]
    fn the_chunks_cover_every_u32_index() {
        let (chunk, offset, len) = locate(u32::MAX - 1);
        assert!(chunk < CHUNKS && offset < len);
    }
}
