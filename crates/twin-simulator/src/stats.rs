//! Counters and publish→PUBACK latency of one device, and their sum over many.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest latency the histogram tells apart (longer ones are clamped): 10 minutes.
const MAX_LATENCY_MICROS: u64 = 600_000_000;

/// What happened to the messages of one device (or of many, after [`LinkStats::merge`]).
#[derive(Debug, Clone)]
pub struct LinkStats {
    /// Messages taken into the buffer.
    pub accepted: u64,
    /// Messages dropped because the buffer was full.
    pub overflow: u64,
    /// Messages refused because the connection had failed for good.
    pub rejected: u64,
    /// Messages written to the network at least once.
    pub sent: u64,
    /// Extra transmissions after reconnecting (same message again).
    pub retransmitted: u64,
    /// Messages the broker acknowledged (PUBACK).
    pub acknowledged: u64,
    /// Messages that could not be carried over a reconnect.
    pub lost: u64,
    /// Successful reconnections after the first connection.
    pub reconnects: u64,
    /// Feedback messages received on the device's feedback topic (not acknowledgements).
    pub feedback: u64,
    /// When the most recent PUBACK arrived.
    pub last_ack_at: Option<Instant>,
    /// Latency from taking a message into the buffer to its PUBACK, in microseconds.
    pub latency: Histogram<u64>,
}

impl LinkStats {
    /// Empty counters.
    pub fn new() -> Self {
        // Two significant digits: 1% resolution is plenty and keeps 100 devices' histograms small.
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 2)
            .expect("constant histogram bounds are valid");
        Self {
            accepted: 0,
            overflow: 0,
            rejected: 0,
            sent: 0,
            retransmitted: 0,
            acknowledged: 0,
            lost: 0,
            reconnects: 0,
            feedback: 0,
            last_ack_at: None,
            latency,
        }
    }

    /// Records one PUBACK.
    pub fn record_ack(&mut self, latency: Duration, at: Instant) {
        self.acknowledged += 1;
        self.last_ack_at = Some(at);
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_MICROS);
        self.latency.saturating_record(micros);
    }

    /// Adds another device's numbers to these.
    pub fn merge(&mut self, other: &LinkStats) {
        self.accepted += other.accepted;
        self.overflow += other.overflow;
        self.rejected += other.rejected;
        self.sent += other.sent;
        self.retransmitted += other.retransmitted;
        self.acknowledged += other.acknowledged;
        self.lost += other.lost;
        self.reconnects += other.reconnects;
        self.feedback += other.feedback;
        self.last_ack_at = match (self.last_ack_at, other.last_ack_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // Both histograms share bounds, so adding cannot fail; clamp-free add is fine.
        let _ = self.latency.add(&other.latency);
    }

    /// The latency at `quantile` (0..=1), or None without any acknowledged message.
    pub fn latency_at(&self, quantile: f64) -> Option<Duration> {
        (!self.latency.is_empty())
            .then(|| Duration::from_micros(self.latency.value_at_quantile(quantile)))
    }

    /// The longest latency seen.
    pub fn latency_max(&self) -> Option<Duration> {
        (!self.latency.is_empty()).then(|| Duration::from_micros(self.latency.max()))
    }
}

impl Default for LinkStats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let now = Instant::now();
        let mut a = LinkStats::new();
        let mut b = LinkStats::new();
        for ms in 1..=100u64 {
            let target = if ms % 2 == 0 { &mut a } else { &mut b };
            target.record_ack(Duration::from_millis(ms), now);
        }
        a.merge(&b);
        assert_eq!(a.acknowledged, 100);
        let p50 = a.latency_at(0.5).unwrap().as_millis();
        let p99 = a.latency_at(0.99).unwrap().as_millis();
        assert!((49..=51).contains(&p50), "{p50}");
        assert!((98..=100).contains(&p99), "{p99}");
        assert!(LinkStats::new().latency_at(0.5).is_none());
    }
}
