//! The ready queue: runs whose upstreams have all finished, oldest first, plus the
//! timers of runs waiting out a retry delay.
//!
//! Entries are ranges of run indices, so a `.map` whose N runs are ready at once costs
//! one entry, not N. A run may appear in the queue and still be taken by another
//! thread first (a waiter helping, see `Engine::wait`): taking a run is decided by its
//! slot, not by the queue, so a stale entry is skipped cheaply.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::Range;
use std::time::Instant;

use crate::run::RunId;

#[derive(Default)]
pub(crate) struct ReadyQueue {
    ranges: VecDeque<Range<RunId>>,
    len: usize,
    timers: BinaryHeap<Reverse<(Instant, RunId)>>,
}

impl ReadyQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends runs, merging consecutive indices into one range.
    pub(crate) fn push_runs(&mut self, runs: impl IntoIterator<Item = RunId>) {
        for run in runs {
            match self.ranges.back_mut() {
                Some(last) if last.end == run => last.end += 1,
                _ => self.ranges.push_back(run..run + 1),
            }
            self.len += 1;
        }
    }

    /// Puts runs back at the head, keeping their order (a batch handing back what it did not start).
    pub(crate) fn push_front_runs(&mut self, runs: &[RunId]) {
        for &run in runs.iter().rev() {
            match self.ranges.front_mut() {
                Some(first) if first.start == run + 1 => first.start = run,
                _ => self.ranges.push_front(run..run + 1),
            }
            self.len += 1;
        }
    }

    /// Moves up to `max` runs from the head into `out`.
    pub(crate) fn pop_into(&mut self, max: usize, out: &mut Vec<RunId>) {
        let mut wanted = max;
        while wanted > 0 {
            let Some(front) = self.ranges.front_mut() else { break };
            let take = (front.end - front.start).min(RunId::try_from(wanted).unwrap_or(RunId::MAX));
            out.extend(front.start..front.start + take);
            front.start += take;
            if front.start == front.end {
                self.ranges.pop_front();
            }
            wanted -= take as usize;
            self.len -= take as usize;
        }
    }

    pub(crate) fn add_timer(&mut self, due: Instant, run: RunId) {
        self.timers.push(Reverse((due, run)));
    }

    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// Removes and returns the timers due at `now`.
    pub(crate) fn take_due_timers(&mut self, now: Instant) -> Vec<RunId> {
        let mut due = Vec::new();
        while let Some(Reverse((when, run))) = self.timers.peek() {
            if *when > now {
                break;
            }
            due.push(*run);
            self.timers.pop();
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn consecutive_runs_share_one_range() {
        let mut queue = ReadyQueue::default();
        queue.push_runs(0..1000);
        queue.push_runs([5000, 5001, 7]);
        assert_eq!(queue.ranges.len(), 3);
        assert_eq!(queue.len(), 1003);
        let mut out = Vec::new();
        queue.pop_into(999, &mut out);
        assert_eq!(out, (0..999).collect::<Vec<_>>());
        out.clear();
        queue.pop_into(10, &mut out);
        assert_eq!(out, vec![999, 5000, 5001, 7]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn handing_back_restores_order() {
        let mut queue = ReadyQueue::default();
        queue.push_runs(0..10);
        let mut out = Vec::new();
        queue.pop_into(4, &mut out);
        queue.push_front_runs(&out[1..]);
        let mut again = Vec::new();
        queue.pop_into(100, &mut again);
        assert_eq!(again, (1..10).collect::<Vec<_>>());
    }

    #[test]
    fn timers_fire_in_due_order() {
        let mut queue = ReadyQueue::default();
        let now = Instant::now();
        queue.add_timer(now + Duration::from_millis(20), 2);
        queue.add_timer(now, 1);
        assert_eq!(queue.next_timer(), Some(now));
        assert_eq!(queue.take_due_timers(now), vec![1]);
        assert_eq!(queue.take_due_timers(now + Duration::from_secs(1)), vec![2]);
        assert_eq!(queue.next_timer(), None);
    }
}
