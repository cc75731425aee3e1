//! The load a twin is expected to carry: `plan`'s flags, else `config.json` `"expected_load"`,
//! else defaults taken from the twin itself.

use serde::{Deserialize, Serialize};

/// How many devices send how often how much.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Devices sending (default: the configured devices).
    pub devices: u64,
    /// Messages each device sends a minute.
    pub messages_per_device_per_minute: f64,
    /// Bytes of one message (its JSON payload), also the size of its stored record.
    pub message_bytes: u64,
    /// People who open the dashboards (L5 bills per active user).
    pub dashboard_users: u64,
}

/// A load that cannot be priced.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// A rate that is negative, not a number or infinite.
    #[error("messages_per_device_per_minute must be a finite number ≥ 0, found {0}")]
    Rate(f64),
    /// A message of no bytes, or larger than any provider takes.
    #[error("message_bytes must be from 1 to 262144 (IoT Hub's and IoT Core's largest message is 256 KB), found {0}")]
    MessageBytes(u64),
}

/// What `plan`'s flags set (each `None` = not given).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadOverrides {
    /// `--devices`.
    pub devices: Option<u64>,
    /// `--messages-per-minute`.
    pub messages_per_device_per_minute: Option<f64>,
    /// `--message-bytes`.
    pub message_bytes: Option<u64>,
    /// `--dashboard-users`.
    pub dashboard_users: Option<u64>,
}

/// The rate assumed when neither a flag nor `expected_load` gives one.
pub const DEFAULT_MESSAGES_PER_MINUTE: f64 = 1.0;

impl Load {
    /// The load to price for `twin`: each value from `overrides`, else `expected_load`, else
    /// the configured devices, one message a minute, the largest example payload and one
    /// dashboard user. The second value says which were defaulted, for the output.
    pub fn resolve(
        twin: &twin_config::TwinConfig,
        overrides: &LoadOverrides,
    ) -> Result<(Self, Vec<&'static str>), LoadError> {
        let file = twin.twin.expected_load;
        let mut defaulted = Vec::new();
        let devices = match overrides.devices.or(file.and_then(|f| f.devices)) {
            Some(d) => d,
            None => twin.devices.len() as u64,
        };
        let rate = match overrides
            .messages_per_device_per_minute
            .or(file.map(|f| f.messages_per_device_per_minute))
        {
            Some(r) => r,
            None => {
                defaulted.push("messages_per_device_per_minute");
                DEFAULT_MESSAGES_PER_MINUTE
            }
        };
        let message_bytes = match overrides
            .message_bytes
            .or(file.and_then(|f| f.message_bytes))
        {
            Some(b) => b,
            None => {
                defaulted.push("message_bytes");
                largest_example_payload(twin)
            }
        };
        let dashboard_users = overrides
            .dashboard_users
            .or(file.and_then(|f| f.dashboard_users))
            .unwrap_or(1);
        let load = Load {
            devices,
            messages_per_device_per_minute: rate,
            message_bytes,
            dashboard_users,
        };
        load.check()?;
        Ok((load, defaulted))
    }

    /// Checks that the load can be priced.
    pub fn check(&self) -> Result<(), LoadError> {
        if !self.messages_per_device_per_minute.is_finite()
            || self.messages_per_device_per_minute < 0.0
        {
            return Err(LoadError::Rate(self.messages_per_device_per_minute));
        }
        if self.message_bytes == 0 || self.message_bytes > 262_144 {
            return Err(LoadError::MessageBytes(self.message_bytes));
        }
        Ok(())
    }

    /// Messages a month, all devices together.
    pub fn messages_per_month(&self) -> f64 {
        self.devices as f64 * self.messages_per_device_per_minute * crate::MINUTES_PER_MONTH
    }

    /// Bytes one device sends a day.
    pub fn bytes_per_device_per_day(&self) -> f64 {
        self.messages_per_device_per_minute * 1440.0 * self.message_bytes as f64
    }
}

/// Bytes of the largest example payload (a sample value per property, with a full timestamp).
fn largest_example_payload(twin: &twin_config::TwinConfig) -> u64 {
    let payloads = twin.example_payloads();
    payloads
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut p = p.clone();
            p["time"] = serde_json::json!("2025-11-04T13:23:11.203Z");
            p.to_string().len() as u64
        })
        .max()
        .unwrap_or(1)
        .max(1)
}
