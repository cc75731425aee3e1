//! The final report of a load run, for people or (`--json`) for scripts.

use std::time::Duration;

use serde::Serialize;

use crate::stats::LinkStats;

/// What a load run achieved.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Devices (connections) used.
    pub devices: usize,
    /// Requested total rate in messages/s; None for `max`.
    pub target_rate: Option<f64>,
    /// How long messages were generated, in seconds.
    pub duration_s: f64,
    /// Messages the devices produced (overflow included).
    pub generated: u64,
    /// Messages written to the broker at least once.
    pub sent: u64,
    /// Messages the broker acknowledged.
    pub acknowledged: u64,
    /// Messages not acknowledged in the end: overflow + rejected + unacknowledged.
    pub failed: u64,
    /// Messages dropped because a device's buffer was full.
    pub overflow: u64,
    /// Messages refused because their device's connection had failed for good.
    pub rejected: u64,
    /// Messages taken into a buffer but never acknowledged.
    pub unacknowledged: u64,
    /// Extra transmissions after reconnects.
    pub retransmitted: u64,
    /// Reconnections during the run.
    pub reconnects: u64,
    /// Event-rule feedback messages the devices received.
    pub feedback: u64,
    /// Acknowledged messages per second, from the start to the last PUBACK.
    pub throughput_msgs_per_s: f64,
    /// Publish→PUBACK latency percentiles in milliseconds (None without any PUBACK).
    pub latency_ms: Option<LatencyMs>,
    /// Devices whose connection failed for good, with the reason.
    pub errors: Vec<String>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Longest.
    pub max: f64,
}

impl LoadReport {
    /// Builds the report from the merged statistics of every device.
    pub fn new(
        devices: usize,
        target_rate: Option<f64>,
        duration: Duration,
        stats: &LinkStats,
        measured_for: Duration,
    ) -> Self {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
        let latency_ms = (stats.acknowledged > 0).then(|| LatencyMs {
            p50: ms(stats.latency_at(0.50)),
            p95: ms(stats.latency_at(0.95)),
            p99: ms(stats.latency_at(0.99)),
            max: ms(stats.latency_max()),
        });
        let unacknowledged = stats.accepted.saturating_sub(stats.acknowledged);
        let seconds = measured_for.as_secs_f64();
        Self {
            devices,
            target_rate,
            duration_s: duration.as_secs_f64(),
            generated: stats.accepted + stats.overflow + stats.rejected,
            sent: stats.sent,
            acknowledged: stats.acknowledged,
            failed: stats.overflow + stats.rejected + unacknowledged,
            overflow: stats.overflow,
            rejected: stats.rejected,
            unacknowledged,
            retransmitted: stats.retransmitted,
            reconnects: stats.reconnects,
            feedback: stats.feedback,
            throughput_msgs_per_s: if seconds > 0.0 {
                stats.acknowledged as f64 / seconds
            } else {
                0.0
            },
            latency_ms,
            errors: Vec::new(),
        }
    }

    /// The report as aligned text lines.
    pub fn human(&self) -> String {
        let rate = match self.target_rate {
            Some(r) => format!("{r:.0} msg/s target"),
            None => "max rate".to_string(),
        };
        let latency = match self.latency_ms {
            Some(l) => format!(
                "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.p50, l.p95, l.p99, l.max
            ),
            None => "no message acknowledged".to_string(),
        };
        let mut text = format!(
            "load run: {} devices, {rate}, {:.1} s\n\
             sent          {}\n\
             acknowledged  {}\n\
             failed        {} (overflow {}, unacknowledged {}, refused {})\n\
             retransmitted {} after {} reconnect(s)\n\
             throughput    {:.0} msg/s acknowledged\n\
             latency       {latency} (publish → PUBACK)\n",
            self.devices,
            self.duration_s,
            self.sent,
            self.acknowledged,
            self.failed,
            self.overflow,
            self.unacknowledged,
            self.rejected,
            self.retransmitted,
            self.reconnects,
            self.throughput_msgs_per_s,
        );
        if self.feedback > 0 {
            text.push_str(&format!(
                "feedback      {} message(s) received\n",
                self.feedback
            ));
        }
        for e in &self.errors {
            text.push_str(&format!("error         {e}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn failed_counts_overflow_and_unacknowledged() {
        let mut s = LinkStats::new();
        s.accepted = 10;
        s.overflow = 2;
        s.sent = 10;
        for _ in 0..7 {
            s.record_ack(Duration::from_millis(3), Instant::now());
        }
        let r = LoadReport::new(
            1,
            Some(5.0),
            Duration::from_secs(2),
            &s,
            Duration::from_secs(2),
        );
        assert_eq!((r.generated, r.failed, r.unacknowledged), (12, 5, 3));
        assert!((r.throughput_msgs_per_s - 3.5).abs() < 1e-9);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["acknowledged"], 7);
        assert!(json["latency_ms"]["p99"].as_f64().unwrap() >= 2.9);
        assert!(r
            .human()
            .contains("failed        5 (overflow 2, unacknowledged 3, refused 0)"));
    }
}
