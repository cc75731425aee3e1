//! `load`: many devices at once, each on its own MQTT connection with its own certificate,
//! publishing at a steady total rate for a fixed time; then a report.
//!
//! Devices are the distinct `iotDeviceId`s of payloads.json in order of first appearance (the
//! first N with `--devices N`); each cycles through its own messages. A deployed twin's payloads
//! file names its real devices, whose certificates `deploy` wrote; a local test writes payloads
//! for as many devices as it made certificates for.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{LoadArgs, Rate};
use crate::config::SimulatorConfig;
use crate::failure::{FailureContext, LinkFailure};
use crate::payloads::{DeviceClock, PayloadTemplate, Payloads};
use crate::publisher::{DeviceLink, LinkStatus};
use crate::report::LoadReport;
use crate::stats::LinkStats;
use crate::tls::{DeviceCredentials, TlsContext};
use crate::SimError;

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One simulated device during a run.
struct SimulatedDevice {
    link: DeviceLink,
    messages: Vec<PayloadTemplate>,
    next: usize,
    clock: DeviceClock,
    generated: u64,
}

impl SimulatedDevice {
    fn send_next(&mut self) {
        let template = &self.messages[self.next % self.messages.len()];
        self.next += 1;
        self.generated += 1;
        let payload = template.render(&mut self.clock);
        // A refusal is already counted by the link (overflow or rejected).
        let _ = self.link.try_send(payload);
    }
}

/// Runs a load test and returns its report; `Err` only when the run could not start.
pub async fn run_load(
    config: &SimulatorConfig,
    payloads: &Payloads,
    args: &LoadArgs,
) -> Result<LoadReport, SimError> {
    let device_ids = choose_devices(payloads, args.devices)?;
    let tls = TlsContext::load(&config.root_ca_cert, config.port)?;
    let mut options = config.link_options();
    options.buffer = usize::try_from(args.buffer).unwrap_or(usize::MAX);
    options.inflight = args.inflight;

    // Every certificate and key is read before the first connection: a broken file is a
    // config error (exit 2), not a half-started run.
    let mut prepared = Vec::with_capacity(device_ids.len());
    for id in &device_ids {
        let creds = DeviceCredentials::locate(&config.auth_files_dir, id);
        let client_config = tls.client_config(&creds)?;
        prepared.push((id.clone(), creds, client_config));
    }

    let progress = progress_bar();
    progress.set_message(format!("connecting {} devices", prepared.len()));
    let mut devices: Vec<SimulatedDevice> = prepared
        .into_iter()
        .map(|(id, creds, client_config)| {
            let context = FailureContext::for_device(config, &id, &creds);
            let link = DeviceLink::start_with_channel(
                &id,
                config.device_topic(&id),
                config.feedback(&id),
                client_config,
                &options,
                context,
            );
            SimulatedDevice {
                link,
                messages: payloads.for_device(&id),
                next: 0,
                clock: DeviceClock::default(),
                generated: 0,
            }
        })
        .collect();

    let connect_deadline = Instant::now() + args.connect_timeout;
    let mut failures = Vec::new();
    for d in &devices {
        if let Err(f) = d.link.wait_connected(connect_deadline).await {
            failures.push(f);
        }
    }
    if let Some(first) = failures.first() {
        progress.finish_and_clear();
        let more = match failures.len() {
            1 => String::new(),
            n => format!(" ({} of {} devices failed to connect)", n, devices.len()),
        };
        return Err(SimError::Link(LinkFailure {
            device: first.device.clone(),
            message: format!("{}{more}", first.message),
            retry: first.retry,
        }));
    }

    // Ctrl-C ends the run early (first generating, then draining) and still reports.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let start = Instant::now();
    let mut stopped_early = false;
    tokio::select! {
        _ = generate(&mut devices, args, start, &progress) => {}
        _ = &mut interrupted => stopped_early = true,
    }
    let generation_ended = Instant::now();

    if !stopped_early {
        progress.set_message("waiting for the last acknowledgements");
        let drain_deadline = Instant::now() + args.drain_timeout;
        let drain = async {
            for d in &devices {
                // Whatever is still unacknowledged at the deadline is reported as such.
                let _ = d.link.wait_idle(drain_deadline).await;
            }
        };
        tokio::select! {
            _ = drain => {}
            _ = &mut interrupted => {}
        }
    }
    print_feedback(&devices, &progress);
    let close_deadline = Instant::now() + Duration::from_secs(5);
    let mut total = LinkStats::new();
    let mut broken: Vec<LinkFailure> = Vec::new();
    for d in &mut devices {
        if let LinkStatus::Failed(f) = d.link.status() {
            broken.push(f);
        }
        d.link.close(close_deadline).await;
        total.merge(&d.link.stats());
    }
    progress.finish_and_clear();

    let measured_for = total
        .last_ack_at
        .map(|t| t.saturating_duration_since(start))
        .unwrap_or(args.duration);
    let target = match args.rate {
        Rate::PerSecond(r) => Some(r),
        Rate::Max => None,
    };
    let generated_for = if stopped_early {
        generation_ended.saturating_duration_since(start)
    } else {
        args.duration
    };
    let mut report = LoadReport::new(devices.len(), target, generated_for, &total, measured_for);
    report.errors = broken.iter().map(ToString::to_string).collect();
    Ok(report)
}

/// The devices of the run: the first `wanted` distinct ids of the payloads file.
fn choose_devices(payloads: &Payloads, wanted: Option<u64>) -> Result<Vec<String>, SimError> {
    let all = payloads.device_ids();
    let Some(wanted) = wanted else {
        return Ok(all);
    };
    let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
    if wanted > all.len() {
        return Err(SimError::Usage(format!(
            "--devices {wanted}: {} names only {} device(s). Load mode opens one connection per \
             device with that device's own certificate, so each simulated device needs messages \
             in the payloads file and credentials under auth_files_path/<device-id>/",
            payloads.path.display(),
            all.len()
        )));
    }
    Ok(all.into_iter().take(wanted).collect())
}

/// Generates messages at the requested rate until the duration is over.
///
/// The schedule is computed from elapsed time, not from counted ticks, so a late tick sends the
/// messages that were due in one go and the offered load stays exact.
async fn generate(
    devices: &mut [SimulatedDevice],
    args: &LoadArgs,
    start: Instant,
    progress: &ProgressBar,
) {
    let end = start + args.duration;
    let per_device = match args.rate {
        Rate::PerSecond(r) => Some(r / devices.len() as f64),
        Rate::Max => None,
    };
    // In `max` mode each device keeps its in-flight window full (closed loop): throughput is
    // what the broker sustains, and latency is window / per-device throughput (Little's law).
    let keep_queued = usize::from(args.inflight);
    let tick = match per_device {
        Some(r) => Duration::from_secs_f64((1.0 / r).clamp(0.001, 0.05)),
        None => Duration::from_millis(1),
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_draw = (start, 0u64);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let elapsed = now.min(end).saturating_duration_since(start);
        for d in devices.iter_mut() {
            match per_device {
                Some(rate) => {
                    let due = (elapsed.as_secs_f64() * rate).floor() as u64;
                    while d.generated < due {
                        d.send_next();
                    }
                }
                None => {
                    let mut missing = keep_queued.saturating_sub(d.link.outstanding());
                    while missing > 0 && !matches!(d.link.status(), LinkStatus::Failed(_)) {
                        d.send_next();
                        missing -= 1;
                    }
                }
            }
        }
        if now.saturating_duration_since(last_draw.0) >= PROGRESS_EVERY {
            print_feedback(devices, progress);
            last_draw = draw_progress(devices, progress, start, args.duration, last_draw);
        }
        if now >= end {
            return;
        }
    }
}

/// Prints the feedback the devices received since the last call, above the progress line, to
/// stderr so that `--json` keeps stdout one document (`suspend`, not the bar's `println`, which
/// prints nothing when the bar is hidden).
fn print_feedback(devices: &[SimulatedDevice], progress: &ProgressBar) {
    for d in devices {
        for payload in d.link.take_feedback() {
            let line = crate::send::feedback_line(d.link.device_id(), &payload);
            progress.suspend(|| eprintln!("{line}"));
        }
    }
}

/// Redraws the progress line; returns the time and acknowledged count it drew.
fn draw_progress(
    devices: &[SimulatedDevice],
    progress: &ProgressBar,
    start: Instant,
    duration: Duration,
    (then, acked_then): (Instant, u64),
) -> (Instant, u64) {
    let now = Instant::now();
    let (mut sent, mut acked, mut overflow, mut outstanding, mut connected) = (0, 0, 0, 0, 0);
    for d in devices {
        let c = d.link.counters();
        sent += c.sent;
        acked += c.acknowledged;
        overflow += c.overflow;
        outstanding += c.outstanding;
        connected += usize::from(c.connected);
    }
    let window = now.saturating_duration_since(then).as_secs_f64();
    let rate = if window > 0.0 {
        acked.saturating_sub(acked_then) as f64 / window
    } else {
        0.0
    };
    progress.set_message(format!(
        "{:>5.1}/{:.0} s  sent {sent}  acked {acked}  outstanding {outstanding}  \
         overflow {overflow}  {rate:.0} msg/s  connected {connected}/{}",
        now.saturating_duration_since(start).as_secs_f64(),
        duration.as_secs_f64(),
        devices.len()
    ));
    (now, acked)
}

/// A spinner on stderr; invisible when stderr is not a terminal (scripts, tests).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar
}
