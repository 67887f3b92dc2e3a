//! The run state machine.
//!
//! A run's state is one byte in its arena slot, changed only through
//! [`RunState::can_become`]-checked transitions, so that an illegal move (a bug) is
//! caught by a debug assertion instead of silently corrupting the graph.
//!
//! The names follow Prefect's states; several engine states share one Prefect state
//! *type* (`Blocked` and `Ready` are both `PENDING`, `Retrying` is `RUNNING`, `Cached`
//! is `COMPLETED`, `TimedOut` is `FAILED`), which [`RunState::state_type`] reports.

use std::fmt;

/// Where a run is in its life. `#[repr(u8)]` because it lives in an `AtomicU8`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// A slot reserved for a run that is still being registered; reads as Pending.
    Vacant = 0,
    /// Pending: waiting for upstream runs to finish.
    Blocked = 1,
    /// Pending: every upstream has finished; waiting for a thread to take it.
    Ready = 2,
    /// The first attempt is executing.
    Running = 3,
    /// A later attempt is executing (Prefect's `Retrying`, a RUNNING state).
    Retrying = 4,
    /// Failed an attempt; waits for its retry delay (Prefect's `AwaitingRetry`, SCHEDULED).
    AwaitingRetry = 5,
    Completed = 6,
    /// Completed with a value taken from a cache (Prefect's `Cached`).
    Cached = 7,
    Failed = 8,
    /// Failed because an attempt exceeded its time limit (Prefect's `TimedOut`).
    TimedOut = 9,
    Crashed = 10,
    Cancelled = 11,
    /// An upstream run did not complete, so this one never ran (Prefect's `NotReady`, a PENDING state).
    NotReady = 12,
}

/// Prefect's state *types*: what `State.type` reports and what `is_*()` compare on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Crashed,
    Cancelled,
}

/// How a run ended. Every run ends exactly once, with one of these.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Final {
    Completed = RunState::Completed as u8,
    Cached = RunState::Cached as u8,
    Failed = RunState::Failed as u8,
    TimedOut = RunState::TimedOut as u8,
    Crashed = RunState::Crashed as u8,
    Cancelled = RunState::Cancelled as u8,
    NotReady = RunState::NotReady as u8,
}

impl RunState {
    #[inline]
    pub(crate) const fn from_u8(byte: u8) -> RunState {
        match byte {
            0 => RunState::Vacant,
            1 => RunState::Blocked,
            2 => RunState::Ready,
            3 => RunState::Running,
            4 => RunState::Retrying,
            5 => RunState::AwaitingRetry,
            6 => RunState::Completed,
            7 => RunState::Cached,
            8 => RunState::Failed,
            9 => RunState::TimedOut,
            10 => RunState::Crashed,
            11 => RunState::Cancelled,
            12 => RunState::NotReady,
            _ => panic!("corrupt run state byte"),
        }
    }

    /// A final state never changes again, and its outcome is readable.
    pub const fn is_final(self) -> bool {
        (self as u8) >= (RunState::Completed as u8)
    }

    /// Whether dependents may consume this run's value (Prefect: "reached COMPLETED").
    pub const fn is_success(self) -> bool {
        matches!(self, RunState::Completed | RunState::Cached)
    }

    pub const fn is_running(self) -> bool {
        matches!(self, RunState::Running | RunState::Retrying)
    }

    pub const fn state_type(self) -> StateType {
        match self {
            RunState::Vacant | RunState::Blocked | RunState::Ready | RunState::NotReady => StateType::Pending,
            RunState::Running | RunState::Retrying => StateType::Running,
            RunState::AwaitingRetry => StateType::Scheduled,
            RunState::Completed | RunState::Cached => StateType::Completed,
            RunState::Failed | RunState::TimedOut => StateType::Failed,
            RunState::Crashed => StateType::Crashed,
            RunState::Cancelled => StateType::Cancelled,
        }
    }

    /// Prefect's state name (`Completed`, `NotReady`, `AwaitingRetry`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            RunState::Vacant | RunState::Blocked | RunState::Ready => "Pending",
            RunState::Running => "Running",
            RunState::Retrying => "Retrying",
            RunState::AwaitingRetry => "AwaitingRetry",
            RunState::Completed => "Completed",
            RunState::Cached => "Cached",
            RunState::Failed => "Failed",
            RunState::TimedOut => "TimedOut",
            RunState::Crashed => "Crashed",
            RunState::Cancelled => "Cancelled",
            RunState::NotReady => "NotReady",
        }
    }

    /// The legal moves of the machine. Anything else is an engine bug.
    pub const fn can_become(self, next: RunState) -> bool {
        use RunState::{
            AwaitingRetry, Blocked, Cached, Cancelled, Completed, Crashed, Failed, NotReady, Ready, Retrying, Running,
            TimedOut, Vacant,
        };
        match self {
            Vacant => matches!(next, Blocked | Ready),
            Blocked => matches!(next, Ready),
            // A ready run is claimed by the thread that executes it, or taken off the
            // queue by a doom (NotReady upstream or cancellation) carried out by its claimer.
            Ready => matches!(next, Running | Retrying | NotReady | Cancelled),
            Running | Retrying => {
                matches!(
                    next,
                    AwaitingRetry | Completed | Cached | Failed | TimedOut | Crashed | Cancelled
                )
            }
            // Ready when its retry timer fires; Retrying at once when the thread that holds
            // a deferred run (a coroutine on an event loop) waited out the delay itself.
            // That holder may also end it during the delay: Cancelled when its coroutine is
            // cancelled (Ctrl-C), Crashed when the holder goes away (interpreter exit).
            AwaitingRetry => matches!(next, Ready | Retrying | Cancelled | Crashed),
            Completed | Cached | Failed | TimedOut | Crashed | Cancelled | NotReady => false,
        }
    }
}

impl Final {
    pub const fn state(self) -> RunState {
        RunState::from_u8(self as u8)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Crashed => "CRASHED",
            StateType::Cancelled => "CANCELLED",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RunState; 13] = [
        RunState::Vacant,
        RunState::Blocked,
        RunState::Ready,
        RunState::Running,
        RunState::Retrying,
        RunState::AwaitingRetry,
        RunState::Completed,
        RunState::Cached,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Crashed,
        RunState::Cancelled,
        RunState::NotReady,
    ];

    #[test]
    fn byte_round_trip() {
        for state in ALL {
            assert_eq!(RunState::from_u8(state as u8), state);
        }
    }

    #[test]
    fn final_states_are_absorbing() {
        for from in ALL.into_iter().filter(|s| s.is_final()) {
            for to in ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?} must be illegal");
            }
        }
    }

    #[test]
    fn every_non_final_state_can_reach_a_final_one() {
        for from in ALL.into_iter().filter(|s| !s.is_final()) {
            let mut frontier = vec![from];
            let mut seen = vec![from];
            let mut reached_final = false;
            while let Some(state) = frontier.pop() {
                for next in ALL.into_iter().filter(|n| state.can_become(*n)) {
                    reached_final |= next.is_final();
                    if !seen.contains(&next) {
                        seen.push(next);
                        frontier.push(next);
                    }
                }
            }
            assert!(reached_final, "{from:?} can never finish");
        }
    }

    /// The holder of a deferred run may end it while it waits out a retry delay (its
    /// coroutine cancelled, or the holder gone); nothing else leaves that state but a retry.
    #[test]
    fn a_deferred_run_may_end_during_its_retry_delay() {
        let next: Vec<RunState> = ALL
            .into_iter()
            .filter(|s| RunState::AwaitingRetry.can_become(*s))
            .collect();
        assert_eq!(
            next,
            vec![
                RunState::Ready,
                RunState::Retrying,
                RunState::Crashed,
                RunState::Cancelled
            ]
        );
        assert!(
            !RunState::Running.can_become(RunState::Ready),
            "a claimed run is never un-claimed"
        );
    }

    #[test]
    fn prefect_types_and_names() {
        assert_eq!(RunState::NotReady.state_type(), StateType::Pending);
        assert_eq!(RunState::Cached.state_type(), StateType::Completed);
        assert_eq!(RunState::TimedOut.state_type(), StateType::Failed);
        assert_eq!(RunState::Retrying.state_type(), StateType::Running);
        assert_eq!(RunState::AwaitingRetry.state_type(), StateType::Scheduled);
        assert_eq!(RunState::Ready.name(), "Pending");
        assert!(RunState::Cached.is_success() && !RunState::NotReady.is_success());
    }

    #[test]
    fn final_maps_onto_its_state() {
        assert_eq!(Final::NotReady.state(), RunState::NotReady);
        assert_eq!(Final::Completed.state(), RunState::Completed);
        assert!(Final::Crashed.state().is_final());
    }
}
