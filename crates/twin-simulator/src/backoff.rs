//! Exponential backoff with jitter for reconnecting to the broker.

use std::time::Duration;

use rand::Rng;

/// Delays between reconnection attempts: doubling from `initial` up to `max`, each with ±25%
/// jitter so that a hundred devices do not hammer a restarting broker in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max` (before jitter).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let factor = rand::rng().random_range(0.75..1.25);
        base.mul_f64(factor)
    }

    /// Starts over after a successful connection.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        let bounds = [(75, 125), (150, 250), (300, 500), (300, 500), (300, 500)];
        for (d, (lo, hi)) in delays.iter().zip(bounds) {
            assert!((lo..=hi).contains(d), "{delays:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
