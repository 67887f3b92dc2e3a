//! Wall-clock timestamps for outcomes, read as rarely as possible.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Converts `Instant`s to wall-clock time with one `SystemTime` read per batch.
#[derive(Clone, Copy)]
pub(crate) struct WallClock {
    instant: Instant,
    micros: u64,
}

impl WallClock {
    pub(crate) fn new() -> Self {
        WallClock {
            instant: Instant::now(),
            micros: now_micros(),
        }
    }

    pub(crate) fn micros_at(self, at: Instant) -> u64 {
        self.micros
            .saturating_add(micros(at.saturating_duration_since(self.instant)))
    }
}

/// Now, in microseconds since the Unix epoch (0 if the clock is set before it).
pub(crate) fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, micros)
}

/// A duration in whole microseconds, saturating (584,000 years fit).
fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
