//! Dropped messages: malformed or unexpected input is logged, counted and acknowledged, never
//! retried (a retry cannot fix it) and never a panic.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a message was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The event is not a JSON object.
    NotAnObject,
    /// `iotDeviceId` is missing or not a non-empty string.
    MissingDeviceId,
    /// The device is not one of the twin's configured devices.
    UnknownDevice(String),
    /// The payload's device differs from the topic it was published on.
    TopicMismatch {
        /// `iotDeviceId` in the payload.
        payload: String,
        /// The device segment of the topic.
        topic: String,
    },
    /// `time` is present but not a timestamp.
    BadTime(String),
    /// A property value does not fit its dataType.
    BadProperty(String),
    /// Keys that are neither configured properties nor reserved fields.
    UnknownProperties(Vec<String>),
    /// None of the device's configured properties is present.
    NoProperties,
    /// The device's own processing logic refused the message.
    RejectedByDeviceLogic(String),
}

impl DropReason {
    /// A stable short code for log queries and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DropReason::NotAnObject => "not_an_object",
            DropReason::MissingDeviceId => "missing_device_id",
            DropReason::UnknownDevice(_) => "unknown_device",
            DropReason::TopicMismatch { .. } => "topic_mismatch",
            DropReason::BadTime(_) => "bad_time",
            DropReason::BadProperty(_) => "bad_property",
            DropReason::UnknownProperties(_) => "unknown_properties",
            DropReason::NoProperties => "no_properties",
            DropReason::RejectedByDeviceLogic(_) => "rejected_by_device_logic",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::NotAnObject => f.write_str("the event is not a JSON object"),
            DropReason::MissingDeviceId => {
                f.write_str("iotDeviceId is missing or not a non-empty string")
            }
            DropReason::UnknownDevice(d) => {
                write!(f, "device `{d}` is not configured in this twin")
            }
            DropReason::TopicMismatch { payload, topic } => {
                write!(
                    f,
                    "payload says device `{payload}` but was published on the topic of `{topic}`"
                )
            }
            DropReason::BadTime(e) => write!(f, "time: {e}"),
            DropReason::BadProperty(e) => write!(f, "property {e}"),
            DropReason::UnknownProperties(names) => {
                write!(
                    f,
                    "properties not configured for this device: {}",
                    names.join(", ")
                )
            }
            DropReason::NoProperties => {
                f.write_str("none of the device's configured properties is present")
            }
            DropReason::RejectedByDeviceLogic(why) => {
                write!(f, "the device's own processor refused it: {why}")
            }
        }
    }
}

/// Counts drops for the life of a warm function instance and logs each one.
#[derive(Debug, Default)]
pub struct DropCounter(AtomicU64);

impl DropCounter {
    /// Records a drop: one warning log line with the reason code and the running total.
    pub fn record(&self, function: &'static str, reason: &DropReason) -> u64 {
        let total = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            function,
            reason = reason.code(),
            dropped_total = total,
            "message dropped: {reason}"
        );
        total
    }

    /// Drops recorded so far by this instance.
    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
