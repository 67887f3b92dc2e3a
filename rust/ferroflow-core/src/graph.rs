//! The dependency graph: edges to dependents, counts of unfinished upstreams, dooms,
//! done-callbacks and range watches. All of it lives under the engine's one graph lock,
//! taken once per registered piece and once per settled batch, never per run.
//!
//! The graph holds only runs that need it: a run with no unfinished upstream, no
//! dependent and no callback (a flat `.map`) has no entry here at all.

use std::collections::HashMap;
use std::ops::Range;

use smallvec::SmallVec;

use crate::run::{Dep, Disposition, DoneCallback, RunId};
use crate::state::RunState;

/// Where a newly registered run stands.
pub(crate) enum Linked {
    Ready,
    /// Waits on unfinished upstreams.
    Blocked,
    /// An upstream already ended without completing.
    Doomed(Disposition),
}

/// What an upstream's end does to one of its dependents.
#[derive(Clone, Copy)]
pub(crate) enum Freed {
    /// Its last upstream ended: it is ready to run.
    Ready(RunId),
    /// An upstream it needed did not complete: it is doomed `NotReady` (the doom is recorded).
    Doomed(RunId),
}

struct Edge {
    dependent: RunId,
    allow_failure: bool,
}

/// A callback for when every run of a range has settled (`await` of a map's futures):
/// one count per range instead of one callback per run.
struct RangeWatch {
    runs: Range<RunId>,
    unsettled: usize,
    callback: DoneCallback,
}

#[derive(Default)]
pub(crate) struct Graph {
    /// Blocked runs: how many upstreams each still waits for.
    blocked: HashMap<RunId, u32>,
    dependents: HashMap<RunId, SmallVec<[Edge; 2]>>,
    dooms: HashMap<RunId, Disposition>,
    callbacks: HashMap<RunId, Vec<DoneCallback>>,
    ranges: Vec<RangeWatch>,
}

impl Graph {
    /// Adds `run`'s edges and says where it stands. `state_of` reads an upstream's state
    /// (`None` for one that will never end: it counts as not completed).
    pub(crate) fn link(&mut self, run: RunId, deps: &[Dep], state_of: impl Fn(RunId) -> Option<RunState>) -> Linked {
        // Read each upstream's state once: an upstream read as unfinished gets an edge,
        // and since it settles under the graph lock (which the caller holds), it will find
        // the edge; one read as final is judged on that same read. (Reading twice lets an
        // upstream that fails between the reads slip through as if it had completed.)
        let mut unfinished: SmallVec<[Dep; 4]> = SmallVec::new();
        for dep in deps {
            match state_of(dep.run) {
                Some(state) if !state.is_final() => unfinished.push(*dep),
                Some(state) if state.is_success() => {}
                _ if dep.allow_failure => {}
                _ => return Linked::Doomed(Disposition::NotReady { upstream: dep.run }),
            }
        }
        if unfinished.is_empty() {
            return Linked::Ready;
        }
        // At most as many as the run has deps, which its registration bounds by memory.
        let waiting = u32::try_from(unfinished.len()).unwrap_or(u32::MAX);
        for dep in unfinished {
            self.dependents.entry(dep.run).or_default().push(Edge {
                dependent: run,
                allow_failure: dep.allow_failure,
            });
        }
        self.blocked.insert(run, waiting);
        Linked::Blocked
    }

    pub(crate) fn doom(&mut self, run: RunId, disposition: Disposition) {
        self.dooms.insert(run, disposition);
    }

    /// The doom of a run being claimed (a run flagged doomed has one, until claimed).
    pub(crate) fn take_doom(&mut self, run: RunId) -> Disposition {
        self.dooms.remove(&run).unwrap_or(Disposition::Run)
    }

    /// A blocked run cancelled before its upstreams ended: they no longer release it.
    pub(crate) fn unblock(&mut self, run: RunId) {
        self.blocked.remove(&run);
    }

    /// Whether any run has dependents (a flat map has none: settling skips the lookups).
    pub(crate) fn has_dependents(&self) -> bool {
        !self.dependents.is_empty()
    }

    /// `run` ended (successfully or not): counts its dependents down, and reports each one
    /// its end frees (ready, or doomed `NotReady` naming `run`).
    pub(crate) fn release_dependents(&mut self, run: RunId, succeeded: bool, mut freed: impl FnMut(Freed)) {
        let Some(edges) = self.dependents.remove(&run) else {
            return;
        };
        for edge in edges {
            let Some(waiting) = self.blocked.get_mut(&edge.dependent) else {
                continue; // already doomed by another upstream, or cancelled
            };
            if succeeded || edge.allow_failure {
                *waiting -= 1;
                if *waiting > 0 {
                    continue;
                }
                self.blocked.remove(&edge.dependent);
                freed(Freed::Ready(edge.dependent));
            } else {
                self.blocked.remove(&edge.dependent);
                self.dooms
                    .insert(edge.dependent, Disposition::NotReady { upstream: run });
                freed(Freed::Doomed(edge.dependent));
            }
        }
    }

    pub(crate) fn add_callback(&mut self, run: RunId, callback: DoneCallback) {
        self.callbacks.entry(run).or_default().push(callback);
    }

    pub(crate) fn has_callbacks(&self) -> bool {
        !self.callbacks.is_empty()
    }

    pub(crate) fn take_callbacks(&mut self, run: RunId) -> Option<Vec<DoneCallback>> {
        self.callbacks.remove(&run)
    }

    pub(crate) fn watch_range(&mut self, runs: Range<RunId>, unsettled: usize, callback: DoneCallback) {
        self.ranges.push(RangeWatch {
            runs,
            unsettled,
            callback,
        });
    }

    /// Counts `finished` off every range watch and moves the callbacks of the watches
    /// this completes into `out` (with the range's first run).
    pub(crate) fn settle_ranges(&mut self, finished: &[RunId], out: &mut Vec<(RunId, DoneCallback)>) {
        if self.ranges.is_empty() {
            return;
        }
        for watch in &mut self.ranges {
            watch.unsettled -= finished.iter().filter(|run| watch.runs.contains(run)).count();
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ranges)
            .into_iter()
            .partition(|watch| watch.unsettled == 0);
        self.ranges = waiting;
        out.extend(done.into_iter().map(|watch| (watch.runs.start, watch.callback)));
    }
}
