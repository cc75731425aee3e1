//! One device's MQTT connection: QoS 1 publishing with a bounded buffer, reconnection with
//! backoff, and publish→PUBACK bookkeeping.
//!
//! rumqttc alone is not enough for "lose nothing across a broker restart": with a clean session
//! it drops every unacknowledged publish and everything still queued when it reconnects. So the
//! link takes those requests out of the event loop after a connection error and hands them back,
//! in their original order and ahead of newer messages, once the next CONNACK arrives. Messages
//! are matched to PUBACKs through the `Outgoing::Publish(pkid)` events, which rumqttc emits in
//! exactly the order it takes requests.
//!
//! A device some event rule sends feedback to also subscribes to its feedback topic on every
//! CONNACK (a clean session keeps no subscription). That SUBSCRIBE goes into rumqttc's pending
//! list but is never counted as one of the requests the link fed (nor carried over a reconnect:
//! the next CONNACK subscribes again), and the SUBACK and the incoming PUBLISHes it brings are
//! not acknowledgements: the publish bookkeeping only ever looks at `Outgoing::Publish` and
//! `PubAck`.
//!
//! On IoT Hub feedback arrives as direct method calls instead ([`FeedbackChannel::DirectMethods`],
//! [`crate::direct_method`]): the device subscribes to `$iothub/methods/POST/#` and answers each
//! call with a QoS 0 PUBLISH on its response topic. The link puts that answer into rumqttc's
//! pending list itself, like the SUBSCRIBE, so it is not one of the fed requests either; being
//! QoS 0 it is written with packet id 0, which no telemetry publish (QoS 1) ever has, so its
//! `Outgoing::Publish(0)` is not matched to a tracked message, and it is never carried over a
//! reconnect (the call belonged to the connection it came on).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, Request, Subscribe,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::failure::{FailureContext, LinkFailure, Retry};
use crate::stats::LinkStats;

/// AWS IoT Core's largest MQTT message; rumqttc's own default (10 KiB) is smaller.
const MAX_PACKET_SIZE: usize = 128 * 1024;

/// Feedback messages kept for [`DeviceLink::take_feedback`] at most; older ones are dropped
/// (still counted in [`LinkStats::feedback`]).
const FEEDBACK_KEPT: usize = 1000;

/// How a device receives its event-rule feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackChannel {
    /// Messages on one MQTT topic (AWS IoT Core: `<twin>/feedback/<device>`).
    Topic(String),
    /// IoT Hub direct method calls, each answered (see [`crate::direct_method`]).
    DirectMethods,
}

impl FeedbackChannel {
    /// The filter the device subscribes to on every connection.
    pub fn filter(&self) -> &str {
        match self {
            FeedbackChannel::Topic(t) => t,
            FeedbackChannel::DirectMethods => crate::direct_method::REQUEST_FILTER,
        }
    }

    /// The QoS of that subscription: feedback topics QoS 1; IoT Hub sends method calls at QoS 0.
    fn qos(&self) -> QoS {
        match self {
            FeedbackChannel::Topic(_) => QoS::AtLeastOnce,
            FeedbackChannel::DirectMethods => QoS::AtMostOnce,
        }
    }
}

/// What [`LinkState::feedback_event`] made of an event.
#[derive(Debug, PartialEq, Eq)]
enum FeedbackSeen {
    /// Not about feedback.
    Other,
    /// A feedback message or the subscription's answer, recorded.
    Recorded,
    /// A direct method call, recorded as feedback; the device answers it on this topic.
    Answer(String),
}

/// Whether `request` is one the link adds itself (the feedback SUBSCRIBE, a QoS 0 method
/// answer), never one of the telemetry requests it fed or carries.
fn is_links_own(request: &Request) -> bool {
    match request {
        Request::Subscribe(_) => true,
        Request::Publish(p) => p.qos == QoS::AtMostOnce,
        _ => false,
    }
}

/// How a device connects and how much it buffers.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Broker host (also the TLS server name).
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Most publishes on the wire without a PUBACK.
    pub inflight: u16,
    /// Most messages waiting for the connection; more are dropped and counted as overflow.
    pub buffer: usize,
    /// MQTT keep-alive interval.
    pub keep_alive: Duration,
    /// Time allowed for one TCP + TLS + CONNECT attempt.
    pub attempt_timeout: Duration,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
    /// Put before the device id to make the MQTT client id.
    pub client_id_prefix: String,
    /// The MQTT username pattern, `{iotDeviceId}` replaced by the device id (IoT Hub); no
    /// password is sent: the client certificate authenticates.
    pub username: Option<String>,
}

impl LinkOptions {
    /// Defaults for `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            inflight: 100,
            buffer: 10_000,
            keep_alive: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            client_id_prefix: String::new(),
            username: None,
        }
    }
}

/// Where a device's connection stands.
#[derive(Debug, Clone)]
pub enum LinkStatus {
    /// First connection attempt under way.
    Connecting,
    /// Connected; messages flow.
    Connected,
    /// Connection lost or refused for a reason that may pass; retrying with backoff.
    Reconnecting(LinkFailure),
    /// Given up: retrying cannot help.
    Failed(LinkFailure),
    /// Disconnected on request.
    Closed,
}

/// Why a message was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendRejected {
    /// The buffer is full (counted as overflow).
    #[error("buffer full: message dropped")]
    BufferFull,
    /// The connection has failed for good.
    #[error(transparent)]
    Failed(LinkFailure),
    /// The link was closed.
    #[error("connection closed")]
    Closed,
}

/// Counters cheap enough to read several times a second (no histogram).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkCounters {
    /// Messages taken into the buffer.
    pub accepted: u64,
    /// Messages dropped because the buffer was full.
    pub overflow: u64,
    /// Messages written at least once.
    pub sent: u64,
    /// Messages acknowledged.
    pub acknowledged: u64,
    /// Messages taken but not yet acknowledged.
    pub outstanding: u64,
    /// Whether the device is connected right now.
    pub connected: bool,
    /// Feedback messages received on the device's feedback topic.
    pub feedback: u64,
}

/// A message the link has taken and not yet seen acknowledged.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// Order of acceptance, to restore send order after a reconnect.
    seq: u64,
    enqueued: Instant,
    sent: bool,
}

#[derive(Debug)]
struct LinkState {
    status: LinkStatus,
    /// Handed to rumqttc, not yet written (in the order rumqttc will take them).
    waiting: VecDeque<Tracked>,
    /// Written, awaiting PUBACK, by packet id.
    inflight: HashMap<u16, Tracked>,
    stats: LinkStats,
    last_latency: Option<Duration>,
    /// Feedback received and not yet taken, oldest first.
    feedback: VecDeque<Vec<u8>>,
    /// Whether the broker granted the feedback subscription (None: not answered yet or none).
    feedback_granted: Option<bool>,
}

impl LinkState {
    fn outstanding(&self) -> usize {
        self.waiting.len() + self.inflight.len()
    }

    /// Applies one event; returns true when it left nothing outstanding.
    fn apply(&mut self, event: &Event) -> bool {
        match event {
            // Packet id 0 is a QoS 0 publish: a method answer, never a tracked message.
            Event::Outgoing(Outgoing::Publish(pkid)) if *pkid != 0 => {
                if let Some(mut t) = self.waiting.pop_front() {
                    if t.sent {
                        self.stats.retransmitted += 1;
                    } else {
                        self.stats.sent += 1;
                        t.sent = true;
                    }
                    if self.inflight.insert(*pkid, t).is_some() {
                        // rumqttc reused a packet id that was never acknowledged: the older
                        // message cannot be matched to an acknowledgement any more.
                        self.stats.lost += 1;
                    }
                }
                false
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(t) = self.inflight.remove(&ack.pkid) {
                    let now = Instant::now();
                    let latency = now.saturating_duration_since(t.enqueued);
                    self.stats.record_ack(latency, now);
                    self.last_latency = Some(latency);
                }
                self.outstanding() == 0
            }
            _ => false,
        }
    }

    /// Records a feedback PUBLISH (a message on the feedback topic, or a direct method call) or
    /// the SUBACK of the feedback subscription (never an acknowledgement of a telemetry
    /// message: see [`Self::apply`]).
    fn feedback_event(&mut self, event: &Event, channel: Option<&FeedbackChannel>) -> FeedbackSeen {
        let Some(channel) = channel else {
            return FeedbackSeen::Other;
        };
        match event {
            Event::Incoming(Packet::Publish(p)) => {
                let seen = match channel {
                    FeedbackChannel::Topic(topic) if p.topic == *topic => FeedbackSeen::Recorded,
                    FeedbackChannel::DirectMethods => {
                        match crate::direct_method::parse_call(&p.topic) {
                            Some(call) => FeedbackSeen::Answer(crate::direct_method::answer_topic(
                                crate::direct_method::ANSWER_STATUS,
                                call.rid,
                            )),
                            None => return FeedbackSeen::Other,
                        }
                    }
                    FeedbackChannel::Topic(_) => return FeedbackSeen::Other,
                };
                self.stats.feedback += 1;
                if self.feedback.len() >= FEEDBACK_KEPT {
                    self.feedback.pop_front();
                }
                self.feedback.push_back(p.payload.to_vec());
                seen
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                let granted = !ack.return_codes.contains(&SubscribeReasonCode::Failure);
                if !granted {
                    tracing::warn!(filter = %channel.filter(), "the broker refused the feedback subscription (the device's policy does not allow it)");
                }
                self.feedback_granted = Some(granted);
                FeedbackSeen::Recorded
            }
            _ => FeedbackSeen::Other,
        }
    }

    /// After a connection error: takes rumqttc's leftovers (requests we fed it, unacknowledged
    /// publishes, the drained request channel) and rebuilds `carry` in send order.
    ///
    /// rumqttc's `clean()` leaves `pending` as [what remained of our feed] ++ [unacknowledged,
    /// with their packet ids] ++ [the request channel]. The first `fed - taken` packet-id-less
    /// requests are ours; `taken` is how many the failed poll took from `pending` before failing.
    fn carry_over(&mut self, eventloop: &mut EventLoop, carry: &mut Carry, taken: usize) {
        let leftovers = std::mem::take(&mut eventloop.pending);
        let collided = eventloop.state.collision.take();
        let inflight = std::mem::take(&mut self.inflight);
        let mut ours_left = carry.fed.saturating_sub(taken);
        carry.fed = 0;

        let mut resend: Vec<(Tracked, Request)> = Vec::new();
        let mut fed_back: Vec<Request> = Vec::new();
        let mut channel: Vec<Request> = Vec::new();
        for request in leftovers {
            match request {
                // Never one of ours (see `Carry::top_up`): the next CONNACK subscribes again,
                // and a method answer belongs to the connection its call came on.
                r if is_links_own(&r) => {}
                Request::Publish(mut p) if p.pkid != 0 => match inflight.get(&p.pkid) {
                    Some(t) => {
                        p.pkid = 0;
                        p.dup = true;
                        resend.push((*t, Request::Publish(p)));
                    }
                    None => {
                        tracing::warn!(pkid = p.pkid, "untracked publish dropped on reconnect");
                    }
                },
                other if ours_left > 0 => {
                    ours_left -= 1;
                    fed_back.push(other);
                }
                other => channel.push(other),
            }
        }
        self.stats.lost += inflight.len().saturating_sub(resend.len()) as u64;
        resend.sort_by_key(|(t, _)| t.seq);
        let (resent_tracked, resent): (Vec<Tracked>, Vec<Request>) = resend.into_iter().unzip();

        let mut queue: VecDeque<Request> = resent.into();
        if let Some(mut p) = collided {
            // Taken after every written one and before anything still queued; its Tracked is
            // still at the front of `waiting`.
            p.pkid = 0;
            queue.push_back(Request::Publish(p));
        }
        queue.extend(fed_back);
        queue.extend(std::mem::take(&mut carry.queue));
        queue.extend(channel);
        carry.queue = queue;
        for t in resent_tracked.into_iter().rev() {
            self.waiting.push_front(t);
        }
    }
}

/// Requests to hand back to rumqttc after a reconnect, ahead of the request channel.
#[derive(Debug, Default)]
struct Carry {
    queue: VecDeque<Request>,
    /// How many of `eventloop.pending` we put there (rumqttc only ever removes from it).
    fed: usize,
}

impl Carry {
    /// Moves carried requests into rumqttc's `pending` list, never more than the in-flight
    /// window allows: rumqttc sends `pending` regardless of its in-flight limit, and past it
    /// packet ids collide and it silently replaces one held-back publish with the next.
    fn top_up(&mut self, eventloop: &mut EventLoop, window: u16) {
        let window = usize::from(window);
        while !self.queue.is_empty()
            && eventloop.pending.len() + usize::from(eventloop.state.inflight()) < window
        {
            if let Some(r) = self.queue.pop_front() {
                eventloop.pending.push_back(r);
            }
        }
        // The feedback SUBSCRIBE and method answers the link adds itself are not fed requests.
        self.fed = eventloop
            .pending
            .iter()
            .filter(|r| !is_links_own(r))
            .count();
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<LinkState>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panic while holding the lock leaves counters, not invariants, half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One device's connection to the broker, driven by its own task.
#[derive(Debug)]
pub struct DeviceLink {
    device_id: String,
    topic: String,
    feedback: Option<FeedbackChannel>,
    buffer: usize,
    client: AsyncClient,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl DeviceLink {
    /// Starts connecting `device_id` (also its MQTT client id); must run inside a tokio runtime.
    pub fn start(
        device_id: &str,
        topic: String,
        tls: Arc<rustls::ClientConfig>,
        options: &LinkOptions,
        context: FailureContext,
    ) -> Self {
        Self::start_with_feedback(device_id, topic, None, tls, options, context)
    }

    /// As [`DeviceLink::start`], also subscribing (QoS 1) to `feedback_topic` on every
    /// connection when given: what arrives there is the device's event-rule feedback.
    pub fn start_with_feedback(
        device_id: &str,
        topic: String,
        feedback_topic: Option<String>,
        tls: Arc<rustls::ClientConfig>,
        options: &LinkOptions,
        context: FailureContext,
    ) -> Self {
        let feedback = feedback_topic.map(FeedbackChannel::Topic);
        Self::start_with_channel(device_id, topic, feedback, tls, options, context)
    }

    /// As [`DeviceLink::start`], also receiving event-rule feedback on `feedback` when given:
    /// its subscription is made on every connection, and on IoT Hub each direct method call is
    /// answered.
    pub fn start_with_channel(
        device_id: &str,
        topic: String,
        feedback: Option<FeedbackChannel>,
        tls: Arc<rustls::ClientConfig>,
        options: &LinkOptions,
        context: FailureContext,
    ) -> Self {
        let client_id = format!("{}{device_id}", options.client_id_prefix);
        let mut mqtt = MqttOptions::new(client_id, options.host.clone(), options.port);
        mqtt.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
            .set_keep_alive(options.keep_alive.max(Duration::from_secs(1)))
            // A clean session: the link itself carries unacknowledged messages across reconnects.
            .set_clean_session(true)
            .set_inflight(options.inflight.max(1))
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
        if let Some(u) = &options.username {
            // An empty password is not sent at all (rumqttc sets no password flag for it).
            mqtt.set_credentials(u.replace(crate::config::DEVICE_PLACEHOLDER, device_id), "");
        }
        let capacity = options.buffer.max(1);
        let (client, mut eventloop) = AsyncClient::new(mqtt, capacity);
        let mut network = eventloop.network_options();
        network.set_connection_timeout(options.attempt_timeout.as_secs().max(1));
        // Small publishes answered by small PUBACKs: Nagle's algorithm would hold each one back
        // until the previous is acknowledged at the TCP level.
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);

        let shared = Arc::new(Shared {
            state: Mutex::new(LinkState {
                status: LinkStatus::Connecting,
                waiting: VecDeque::new(),
                inflight: HashMap::new(),
                stats: LinkStats::new(),
                last_latency: None,
                feedback: VecDeque::new(),
                feedback_granted: None,
            }),
            changed: Notify::new(),
        });
        let task = tokio::spawn(drive(
            eventloop,
            shared.clone(),
            context,
            options.backoff.clone(),
            feedback.clone(),
        ));
        Self {
            device_id: device_id.to_string(),
            topic,
            feedback,
            buffer: capacity,
            client,
            shared,
            task,
        }
    }

    /// The device this link belongs to.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The topic this device publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic this device receives its feedback on, if it subscribes to one (the direct
    /// method filter on IoT Hub).
    pub fn feedback_topic(&self) -> Option<&str> {
        self.feedback.as_ref().map(FeedbackChannel::filter)
    }

    /// How this device receives its feedback, if it does.
    pub fn feedback_channel(&self) -> Option<&FeedbackChannel> {
        self.feedback.as_ref()
    }

    /// The feedback payloads received since the last call, oldest first.
    pub fn take_feedback(&self) -> Vec<Vec<u8>> {
        self.shared.lock().feedback.drain(..).collect()
    }

    /// Whether the broker granted the feedback subscription: None until it answered (or when
    /// the device has no feedback topic), Some(false) when it refused it (the device's policy).
    pub fn feedback_granted(&self) -> Option<bool> {
        self.shared.lock().feedback_granted
    }

    /// Waits until the broker answered the feedback subscription, the link fails, or
    /// `deadline` passes; the answer is whether it was granted.
    pub async fn wait_feedback_subscribed(&self, deadline: Instant) -> Result<bool, LinkFailure> {
        let outcome = self
            .wait_for(deadline, |st| match (&st.status, st.feedback_granted) {
                (_, Some(granted)) => Some(Ok(granted)),
                (LinkStatus::Failed(f), None) => Some(Err(f.clone())),
                _ => None,
            })
            .await;
        outcome.unwrap_or_else(|| Err(self.timeout_failure("feedback subscription not answered")))
    }

    /// Waits until `n` feedback messages in all were received, the link fails, or `deadline`
    /// passes.
    pub async fn wait_feedback(&self, n: u64, deadline: Instant) -> Result<(), LinkFailure> {
        let outcome = self
            .wait_for(deadline, |st| {
                if st.stats.feedback >= n {
                    Some(Ok(()))
                } else if let LinkStatus::Failed(f) = &st.status {
                    Some(Err(f.clone()))
                } else {
                    None
                }
            })
            .await;
        outcome.unwrap_or_else(|| {
            let got = self.shared.lock().stats.feedback;
            Err(self.timeout_failure(&format!("{got} of {n} feedback message(s) received")))
        })
    }

    /// Queues one QoS 1 message; never waits.
    pub fn try_send(&self, payload: Vec<u8>) -> Result<(), SendRejected> {
        let mut st = self.shared.lock();
        match &st.status {
            LinkStatus::Failed(f) => {
                let f = f.clone();
                st.stats.rejected += 1;
                return Err(SendRejected::Failed(f));
            }
            LinkStatus::Closed => {
                st.stats.rejected += 1;
                return Err(SendRejected::Closed);
            }
            _ => {}
        }
        if st.waiting.len() >= self.buffer {
            st.stats.overflow += 1;
            return Err(SendRejected::BufferFull);
        }
        // Tracked before the request exists, under the lock, so the event for it always finds it.
        let seq = st.stats.accepted + st.stats.overflow + st.stats.rejected;
        st.waiting.push_back(Tracked {
            seq,
            enqueued: Instant::now(),
            sent: false,
        });
        match self
            .client
            .try_publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => {
                st.stats.accepted += 1;
                Ok(())
            }
            Err(_) => {
                st.waiting.pop_back();
                st.stats.overflow += 1;
                Err(SendRejected::BufferFull)
            }
        }
    }

    /// Waits until the device is connected, has failed for good, or `deadline` passes.
    pub async fn wait_connected(&self, deadline: Instant) -> Result<(), LinkFailure> {
        let outcome = self
            .wait_for(deadline, |st| match &st.status {
                LinkStatus::Connected => Some(Ok(())),
                LinkStatus::Failed(f) => Some(Err(f.clone())),
                LinkStatus::Closed => Some(Err(self.failure("connection closed".into()))),
                _ => None,
            })
            .await;
        outcome.unwrap_or_else(|| Err(self.timeout_failure("not connected")))
    }

    /// Waits until every queued message is acknowledged, the link fails, or `deadline` passes.
    pub async fn wait_idle(&self, deadline: Instant) -> Result<(), LinkFailure> {
        let outcome = self
            .wait_for(deadline, |st| {
                if st.outstanding() == 0 {
                    Some(Ok(()))
                } else if let LinkStatus::Failed(f) = &st.status {
                    Some(Err(f.clone()))
                } else {
                    None
                }
            })
            .await;
        outcome.unwrap_or_else(|| {
            let n = self.shared.lock().outstanding();
            Err(self.timeout_failure(&format!("{n} message(s) still unacknowledged")))
        })
    }

    /// Latency of the most recent acknowledged message.
    pub fn last_latency(&self) -> Option<Duration> {
        self.shared.lock().last_latency
    }

    /// Where the connection stands.
    pub fn status(&self) -> LinkStatus {
        self.shared.lock().status.clone()
    }

    /// Current counters.
    pub fn counters(&self) -> LinkCounters {
        let st = self.shared.lock();
        LinkCounters {
            accepted: st.stats.accepted,
            overflow: st.stats.overflow,
            sent: st.stats.sent,
            acknowledged: st.stats.acknowledged,
            outstanding: st.outstanding() as u64,
            connected: matches!(st.status, LinkStatus::Connected),
            feedback: st.stats.feedback,
        }
    }

    /// Messages taken and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.shared.lock().outstanding()
    }

    /// Full statistics, latency histogram included.
    pub fn stats(&self) -> LinkStats {
        self.shared.lock().stats.clone()
    }

    /// Disconnects cleanly when connected (after what is queued), else just stops; gives up at
    /// `deadline`.
    pub async fn close(&mut self, deadline: Instant) {
        let connected = matches!(self.status(), LinkStatus::Connected);
        if connected && self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout_at(deadline.into(), &mut self.task).await;
        }
        self.task.abort();
        let mut st = self.shared.lock();
        if !matches!(st.status, LinkStatus::Failed(_)) {
            st.status = LinkStatus::Closed;
        }
    }

    async fn wait_for<T>(
        &self,
        deadline: Instant,
        check: impl Fn(&LinkState) -> Option<T>,
    ) -> Option<T> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Registered before checking, so a change between check and await is not missed.
            notified.as_mut().enable();
            if let Some(v) = check(&self.shared.lock()) {
                return Some(v);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return check(&self.shared.lock());
                }
            }
        }
    }

    fn failure(&self, message: String) -> LinkFailure {
        LinkFailure {
            device: self.device_id.clone(),
            message,
            retry: Retry::Transient,
        }
    }

    fn timeout_failure(&self, what: &str) -> LinkFailure {
        let last = match self.status() {
            LinkStatus::Reconnecting(f) | LinkStatus::Failed(f) => {
                format!("; last error: {}", f.message)
            }
            _ => String::new(),
        };
        self.failure(format!("{what} before the deadline{last}"))
    }
}

impl Drop for DeviceLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the event loop for the life of the link: bookkeeping, reconnects, carry-over.
async fn drive(
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    context: FailureContext,
    mut backoff: Backoff,
    feedback: Option<FeedbackChannel>,
) {
    let window = eventloop.mqtt_options.inflight();
    let mut carry = Carry::default();
    let mut connected_once = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                // rumqttc cleared its own pending list for the new clean session; ours goes
                // first, in order, before anything newer waiting in the request channel.
                eventloop.pending.clear();
                carry.top_up(&mut eventloop, window);
                if let Some(channel) = &feedback {
                    // First, so feedback to the first messages is not missed; not counted as fed.
                    eventloop
                        .pending
                        .push_front(Request::Subscribe(Subscribe::new(
                            channel.filter(),
                            channel.qos(),
                        )));
                }
                {
                    let mut st = shared.lock();
                    st.feedback_granted = None;
                    if connected_once {
                        st.stats.reconnects += 1;
                    }
                    st.status = LinkStatus::Connected;
                }
                connected_once = true;
                shared.changed.notify_waiters();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                // Written and flushed: a clean end.
                shared.lock().status = LinkStatus::Closed;
                shared.changed.notify_waiters();
                return;
            }
            Ok(event) => {
                let (idle, seen) = {
                    let mut st = shared.lock();
                    let idle = st.apply(&event);
                    (idle, st.feedback_event(&event, feedback.as_ref()))
                };
                if let FeedbackSeen::Answer(topic) = &seen {
                    // Straight into rumqttc's pending list (not one of the fed requests, see
                    // `is_links_own`), so the hub gets its answer without waiting behind the
                    // telemetry in the request channel.
                    eventloop.pending.push_back(Request::Publish(Publish::new(
                        topic.as_str(),
                        QoS::AtMostOnce,
                        crate::direct_method::ANSWER_BODY.to_vec(),
                    )));
                }
                carry.top_up(&mut eventloop, window);
                if idle || seen != FeedbackSeen::Other {
                    shared.changed.notify_waiters();
                }
            }
            Err(err) => {
                let failure = context.classify(&err);
                tracing::debug!(device = %failure.device, error = %err, "connection error");
                let permanent = failure.retry == Retry::Permanent;
                {
                    let mut st = shared.lock();
                    // Events the failed poll left behind belong to the old connection.
                    let stale: Vec<Event> = eventloop.state.events.drain(..).collect();
                    let taken = stale
                        .iter()
                        .filter(|e| match e {
                            // Packet id 0: a method answer the link added itself, not fed.
                            Event::Outgoing(Outgoing::Publish(pkid)) => *pkid != 0,
                            Event::Outgoing(Outgoing::AwaitAck(_)) => true,
                            _ => false,
                        })
                        .count();
                    for event in &stale {
                        st.apply(event);
                    }
                    st.carry_over(&mut eventloop, &mut carry, taken);
                    st.status = if permanent {
                        LinkStatus::Failed(failure)
                    } else {
                        LinkStatus::Reconnecting(failure)
                    };
                }
                shared.changed.notify_waiters();
                if permanent {
                    return;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(name: &str, pkid: u16) -> Request {
        let mut p = Publish::new("t/d", QoS::AtLeastOnce, name.as_bytes().to_vec());
        p.pkid = pkid;
        Request::Publish(p)
    }

    fn names(queue: &VecDeque<Request>) -> Vec<String> {
        queue
            .iter()
            .map(|r| match r {
                Request::Publish(p) => {
                    assert_eq!(p.pkid, 0, "carried publishes get fresh packet ids");
                    String::from_utf8_lossy(&p.payload).into_owned()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn tracked(seq: u64, sent: bool) -> Tracked {
        Tracked {
            seq,
            enqueued: Instant::now(),
            sent,
        }
    }

    fn state() -> LinkState {
        LinkState {
            status: LinkStatus::Connected,
            waiting: VecDeque::new(),
            inflight: HashMap::new(),
            stats: LinkStats::new(),
            last_latency: None,
            feedback: VecDeque::new(),
            feedback_granted: None,
        }
    }

    fn eventloop() -> EventLoop {
        AsyncClient::new(MqttOptions::new("d", "localhost", 8883), 10).1
    }

    #[test]
    fn unacknowledged_go_first_in_send_order_then_the_channel() {
        let mut el = eventloop();
        let mut st = state();
        // m1 (pkid 2) and m2 (pkid 3) were written; m3, m4 were still in the channel.
        // rumqttc's clean() lists the unacknowledged in packet-id wrap order, which after a
        // wrap-around is not send order.
        st.inflight.insert(3, tracked(2, true));
        st.inflight.insert(2, tracked(1, true));
        st.waiting.extend([tracked(3, false), tracked(4, false)]);
        el.pending.extend([
            publish("m2", 3),
            publish("m1", 2),
            publish("m3", 0),
            publish("m4", 0),
        ]);
        let mut carry = Carry::default();
        st.carry_over(&mut el, &mut carry, 0);
        assert_eq!(names(&carry.queue), ["m1", "m2", "m3", "m4"]);
        let seqs: Vec<u64> = st.waiting.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4], "bookkeeping follows the same order");
        assert!(st.inflight.is_empty() && el.pending.is_empty());
        assert_eq!(st.stats.lost, 0);
    }

    #[test]
    fn a_second_failure_keeps_older_carried_messages_ahead_of_newer_ones() {
        let mut el = eventloop();
        let mut st = state();
        // After reconnect 1: m3, m4 were fed back to rumqttc; m5, m6 still wait in our carry.
        // m2 (pkid 1) went out again and is unacknowledged; m7 arrived in the channel since.
        let mut carry = Carry {
            queue: [publish("m5", 0), publish("m6", 0)].into(),
            fed: 2,
        };
        st.inflight.insert(1, tracked(2, true));
        st.waiting.extend((3..=7).map(|s| tracked(s, false)));
        el.pending.extend([
            publish("m3", 0),
            publish("m4", 0),
            publish("m2", 1),
            publish("m7", 0),
        ]);
        st.carry_over(&mut el, &mut carry, 0);
        assert_eq!(names(&carry.queue), ["m2", "m3", "m4", "m5", "m6", "m7"]);
        assert_eq!(carry.fed, 0);
    }

    #[test]
    fn top_up_never_exceeds_the_in_flight_window() {
        let mut el = eventloop();
        let mut carry = Carry {
            queue: (0..10).map(|i| publish(&format!("m{i}"), 0)).collect(),
            fed: 0,
        };
        carry.top_up(&mut el, 4);
        assert_eq!(el.pending.len(), 4);
        assert_eq!(carry.fed, 4);
        assert_eq!(carry.queue.len(), 6);
        el.pending.pop_front(); // rumqttc took one; it is on the wire now (not counted here)
        carry.top_up(&mut el, 4);
        assert_eq!(el.pending.len(), 4);
    }

    #[test]
    fn a_feedback_subscribe_is_neither_fed_nor_carried_and_keeps_the_order() {
        let mut el = eventloop();
        let mut st = state();
        let mut carry = Carry {
            queue: [publish("m1", 0), publish("m2", 0)].into(),
            fed: 0,
        };
        carry.top_up(&mut el, 10);
        el.pending.push_front(Request::Subscribe(Subscribe::new(
            "t/feedback/d",
            QoS::AtLeastOnce,
        )));
        carry.top_up(&mut el, 10);
        assert_eq!(carry.fed, 2, "the SUBSCRIBE is not one of the fed requests");
        st.waiting
            .extend([tracked(1, false), tracked(2, false), tracked(3, false)]);
        // The connection fails before anything is taken; m3 was in the request channel.
        el.pending.push_back(publish("m3", 0));
        st.carry_over(&mut el, &mut carry, 0);
        assert_eq!(names(&carry.queue), ["m1", "m2", "m3"]);
    }

    #[test]
    fn feedback_and_its_suback_are_not_acknowledgements() {
        let mut st = state();
        st.waiting.push_back(tracked(0, false));
        assert!(!st.apply(&Event::Outgoing(Outgoing::Publish(1))));
        let suback = Event::Incoming(Packet::SubAck(rumqttc::SubAck::new(
            1,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        )));
        let mut incoming = rumqttc::Publish::new("t/feedback/d", QoS::AtLeastOnce, "hot");
        incoming.pkid = 1;
        let incoming = Event::Incoming(Packet::Publish(incoming));
        let channel = FeedbackChannel::Topic("t/feedback/d".into());
        for e in [&suback, &incoming] {
            assert!(!st.apply(e));
            assert_eq!(st.feedback_event(e, Some(&channel)), FeedbackSeen::Recorded);
        }
        assert_eq!(st.stats.acknowledged, 0);
        assert_eq!(
            st.inflight.len(),
            1,
            "the telemetry message still awaits its PUBACK"
        );
        assert_eq!(st.stats.feedback, 1);
        assert_eq!(st.feedback_granted, Some(true));
        assert_eq!(st.feedback.pop_front().as_deref(), Some(&b"hot"[..]));
        // Another topic (or a device without feedback) is not feedback.
        let other = FeedbackChannel::Topic("t/feedback/other".into());
        assert_eq!(
            st.feedback_event(&incoming, Some(&other)),
            FeedbackSeen::Other
        );
        assert_eq!(st.feedback_event(&incoming, None), FeedbackSeen::Other);
    }

    #[test]
    fn a_direct_method_call_is_feedback_to_answer_and_its_answer_is_no_telemetry() {
        let mut st = state();
        st.waiting.push_back(tracked(0, false));
        assert!(!st.apply(&Event::Outgoing(Outgoing::Publish(1))));
        let call = Event::Incoming(Packet::Publish(Publish::new(
            "$iothub/methods/POST/feedback/?$rid=dev-0/3",
            QoS::AtMostOnce,
            "\"too hot\"",
        )));
        let channel = FeedbackChannel::DirectMethods;
        assert_eq!(
            st.feedback_event(&call, Some(&channel)),
            FeedbackSeen::Answer("$iothub/methods/res/200/?$rid=dev-0/3".into())
        );
        assert_eq!(
            st.feedback.pop_front().as_deref(),
            Some(&b"\"too hot\""[..])
        );
        assert_eq!(st.stats.feedback, 1);
        // Neither a topic-feedback device nor a non-method topic answers anything.
        let topic = FeedbackChannel::Topic("t/feedback/d".into());
        assert_eq!(st.feedback_event(&call, Some(&topic)), FeedbackSeen::Other);
        let twin = Event::Incoming(Packet::Publish(Publish::new(
            "$iothub/twin/res/200/?$rid=1",
            QoS::AtMostOnce,
            "{}",
        )));
        assert_eq!(
            st.feedback_event(&twin, Some(&channel)),
            FeedbackSeen::Other
        );
        assert_eq!(st.stats.feedback, 1);
        // The answer goes out with packet id 0: the telemetry message keeps waiting for its
        // PUBACK under its own packet id.
        assert!(!st.apply(&Event::Outgoing(Outgoing::Publish(0))));
        assert_eq!(st.inflight.len(), 1);
        assert_eq!(st.stats.sent, 1);
        assert!(st.apply(&Event::Incoming(Packet::PubAck(rumqttc::PubAck::new(1)))));
        assert_eq!(st.stats.acknowledged, 1);
    }

    #[test]
    fn a_method_answer_is_neither_fed_nor_carried_over_a_reconnect() {
        let mut el = eventloop();
        let mut st = state();
        let mut carry = Carry {
            queue: [publish("m1", 0)].into(),
            fed: 0,
        };
        carry.top_up(&mut el, 10);
        el.pending.push_back(Request::Publish(Publish::new(
            "$iothub/methods/res/200/?$rid=1",
            QoS::AtMostOnce,
            "{}",
        )));
        carry.top_up(&mut el, 10);
        assert_eq!(carry.fed, 1, "the answer is not one of the fed requests");
        st.waiting.extend([tracked(1, false), tracked(2, false)]);
        el.pending.push_back(publish("m2", 0));
        st.carry_over(&mut el, &mut carry, 0);
        assert_eq!(names(&carry.queue), ["m1", "m2"]);
    }

    #[test]
    fn acks_are_matched_by_packet_id_and_measured() {
        let mut st = state();
        st.waiting.extend([tracked(0, false), tracked(1, false)]);
        assert!(!st.apply(&Event::Outgoing(Outgoing::Publish(7))));
        assert!(!st.apply(&Event::Outgoing(Outgoing::Publish(8))));
        assert_eq!(st.stats.sent, 2);
        assert!(!st.apply(&Event::Incoming(Packet::PubAck(rumqttc::PubAck::new(7)))));
        assert!(st.apply(&Event::Incoming(Packet::PubAck(rumqttc::PubAck::new(8)))));
        assert_eq!(st.stats.acknowledged, 2);
        assert!(st.last_latency.is_some());
    }
}
