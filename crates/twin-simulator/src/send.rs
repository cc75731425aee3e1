//! `send [N]`: the next payloads of the file, one after another, each waited for until the
//! broker acknowledges it. Connections are opened per device on first use and kept for the
//! session, so the REPL does not reconnect for every message.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::config::SimulatorConfig;
use crate::failure::FailureContext;
use crate::payloads::{DeviceClock, Payloads};
use crate::publisher::{DeviceLink, LinkOptions, SendRejected};
use crate::tls::{DeviceCredentials, TlsContext};
use crate::SimError;

/// How a feedback message is printed.
pub fn feedback_line(device: &str, payload: &[u8]) -> String {
    format!(
        "feedback for {device}: {}",
        String::from_utf8_lossy(payload)
    )
}

/// A sequence of `send` commands over the same payloads and connections.
pub struct SendSession {
    config: SimulatorConfig,
    payloads: Payloads,
    tls: TlsContext,
    options: LinkOptions,
    links: HashMap<String, DeviceLink>,
    clocks: HashMap<String, DeviceClock>,
    next: usize,
}

impl SendSession {
    /// A session that starts at the first payload; loads the root CA now so a bad one fails early.
    pub fn new(config: SimulatorConfig, payloads: Payloads) -> Result<Self, SimError> {
        let tls = TlsContext::load(&config.root_ca_cert, config.port)?;
        let options = config.link_options();
        Ok(Self {
            config,
            payloads,
            tls,
            options,
            links: HashMap::new(),
            clocks: HashMap::new(),
            next: 0,
        })
    }

    /// Sends `count` payloads, printing each once acknowledged; stops at the first failure.
    pub async fn send(
        &mut self,
        count: u64,
        timeout: Duration,
        out: &mut dyn Write,
    ) -> Result<(), SimError> {
        for _ in 0..count {
            self.print_feedback(out)?;
            if let Err(e) = self.send_one(timeout, out).await {
                // A failed connection is started afresh next time (the user may have fixed it).
                if matches!(e, SimError::Link(_)) {
                    let index = self.next % self.payloads.messages.len();
                    let device = &self.payloads.messages[index].device_id;
                    self.links.remove(device);
                }
                return Err(e);
            }
        }
        self.print_feedback(out)?;
        Ok(())
    }

    /// Prints the feedback every device received since the last call
    /// (`feedback for <device>: <payload>`), devices in name order.
    pub fn print_feedback(&self, out: &mut dyn Write) -> Result<u64, SimError> {
        let mut devices: Vec<&DeviceLink> = self.links.values().collect();
        devices.sort_by(|a, b| a.device_id().cmp(b.device_id()));
        let mut printed = 0;
        for link in devices {
            for payload in link.take_feedback() {
                writeln!(out, "{}", feedback_line(link.device_id(), &payload))?;
                printed += 1;
            }
        }
        Ok(printed)
    }

    async fn send_one(&mut self, timeout: Duration, out: &mut dyn Write) -> Result<(), SimError> {
        let index = self.next % self.payloads.messages.len();
        let template = self.payloads.messages[index].clone();
        let device = template.device_id.clone();
        let deadline = Instant::now() + timeout;
        let link = self.link(&device)?;
        link.wait_connected(deadline).await?;
        let clock = self.clocks.entry(device.clone()).or_default();
        let payload = template.render(clock);
        let link = self.link(&device)?;
        match link.try_send(payload.clone()) {
            Ok(()) => {}
            Err(SendRejected::Failed(f)) => return Err(f.into()),
            Err(other) => {
                return Err(SimError::Link(crate::failure::LinkFailure {
                    device: device.clone(),
                    message: other.to_string(),
                    retry: crate::failure::Retry::Transient,
                }))
            }
        }
        link.wait_idle(deadline).await?;
        let latency = link
            .last_latency()
            .map(|d| format!(" (acknowledged in {:.1} ms)", d.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        writeln!(
            out,
            "Message sent! Topic: {}, Payload: {}{latency}",
            link.topic(),
            String::from_utf8_lossy(&payload)
        )?;
        self.next += 1;
        Ok(())
    }

    /// The device's link, started on first use.
    fn link(&mut self, device: &str) -> Result<&DeviceLink, SimError> {
        if !self.links.contains_key(device) {
            let creds = DeviceCredentials::locate(&self.config.auth_files_dir, device);
            let tls = self.tls.client_config(&creds)?;
            let context = FailureContext::for_device(&self.config, device, &creds);
            let link = DeviceLink::start_with_channel(
                device,
                self.config.device_topic(device),
                self.config.feedback(device),
                tls,
                &self.options,
                context,
            );
            self.links.insert(device.to_string(), link);
        }
        self.links
            .get(device)
            .ok_or_else(|| SimError::Usage(format!("no connection for device {device}")))
    }

    /// Disconnects every device cleanly (bounded by a short deadline); the next `send`
    /// reconnects. Needed before a load run in the same process: a broker lets only one
    /// connection use a client id and would make the two take it from each other.
    pub async fn disconnect_all(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        for link in self.links.values_mut() {
            link.close(deadline).await;
        }
        self.links.clear();
    }

    /// Ends the session, disconnecting every device.
    pub async fn close(mut self) {
        self.disconnect_all().await;
    }
}
