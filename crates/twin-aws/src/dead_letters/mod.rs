//! No silent drops: one SQS dead-letter queue per layer that runs asynchronous hops, fed by the
//! topic rule's error action (L1) and by the on-failure destination of every asynchronously
//! invoked function of the layer (dispatcher in L1; processors and persister in L2; each mover,
//! invoked by its EventBridge schedule, in L3 hot and L3 cold). `info` counts what waits there
//! ([`counts`]) and `redrive` invokes the right function again with the original payload
//! ([`redrive`]).
//!
//! One queue per layer rather than per hop: the record itself names the function that failed
//! (`requestContext.functionArn`), so a queue per function would add resources without adding
//! information, while a queue per layer keeps `redrive --layer` and a layer's destroy simple.

pub mod invoke_config;
pub mod queue;
pub mod records;

use crate::context::{resource_id, LayerContext};
use crate::errors::{classify, cloud};
use crate::iam::RoleSpec;
use crate::AwsClients;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::Serialize;
use std::collections::HashSet;
use twin_config::{names, Layer, ProviderName, TwinConfig};
use twin_engine::{CloudError, ResourceId, ResourceSpec};

/// The layers that have a dead-letter queue when they are on AWS.
pub const QUEUE_LAYERS: [Layer; 4] = [Layer::L1, Layer::L2, Layer::L3Hot, Layer::L3Cold];

/// Key of the queue's resource id.
const QUEUE_KEY: &str = "dead-letters";

/// The queue's name for `layer`.
pub fn queue_name(twin: &str, layer: Layer) -> String {
    names::dead_letter_queue_name(twin, layer.short())
}

/// The id of `layer`'s queue.
pub fn queue_id(layer: Layer) -> ResourceId {
    resource_id(layer, queue::KIND, QUEUE_KEY)
}

/// The ARN of `layer`'s queue (deterministic, so roles and destinations can name it first).
pub fn queue_arn(ctx: &LayerContext<'_>, layer: Layer) -> String {
    ctx.clients.arn("sqs", &queue_name(ctx.name(), layer))
}

/// The spec of `layer`'s queue.
pub fn queue_spec(ctx: &LayerContext<'_>, layer: Layer) -> ResourceSpec {
    ctx.spec(layer, queue::KIND, QUEUE_KEY, queue_name(ctx.name(), layer))
        .desired(queue::desired())
}

/// Lets a role send to `layer`'s queue, and nothing else of SQS.
pub fn allow_send(role: RoleSpec, ctx: &LayerContext<'_>, layer: Layer) -> RoleSpec {
    role.allow(&["sqs:SendMessage"], &[queue_arn(ctx, layer)])
}

/// The event invoke config of the function `function_name` (id `function_id`) in `layer`: its
/// failed events go to the layer's queue.
pub fn invoke_config_spec(
    ctx: &LayerContext<'_>,
    layer: Layer,
    local_name: &str,
    function_name: &str,
    function_id: ResourceId,
) -> ResourceSpec {
    ctx.spec(layer, invoke_config::KIND, local_name, function_name)
        .depends_on([function_id, queue_id(layer)])
        .desired(invoke_config::desired(
            function_name,
            &queue_arn(ctx, layer),
        ))
}

/// The layers of `twin` with a dead-letter queue (on AWS), in pipeline order.
pub fn queue_layers(twin: &TwinConfig) -> Vec<Layer> {
    QUEUE_LAYERS
        .into_iter()
        .filter(|l| twin.providers.get(*l) == ProviderName::Aws)
        .collect()
}

/// How many messages wait in one layer's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueCount {
    /// The layer (short name, e.g. `l2`).
    pub layer: String,
    /// The queue's name.
    pub queue: String,
    /// `ApproximateNumberOfMessages`; `None` when the queue is not deployed.
    pub messages: Option<u64>,
}

/// The message counts of the twin's dead-letter queues.
pub async fn counts(
    clients: &AwsClients,
    twin: &TwinConfig,
) -> Result<Vec<QueueCount>, CloudError> {
    let mut out = Vec::new();
    for layer in queue_layers(twin) {
        let name = queue_name(twin.name(), layer);
        let messages = match queue::queue_url(clients, &name).await? {
            None => None,
            Some(url) => Some(approximate_messages(clients, &name, &url).await?),
        };
        out.push(QueueCount {
            layer: layer.short().to_string(),
            queue: name,
            messages,
        });
    }
    Ok(out)
}

async fn approximate_messages(
    clients: &AwsClients,
    name: &str,
    url: &str,
) -> Result<u64, CloudError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(cloud)?;
    out.attributes()
        .and_then(|a| a.get(&A::ApproximateNumberOfMessages))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::Transient,
                "IncompleteResponse",
                format!("SQS GetQueueAttributes for queue {name} returned no ApproximateNumberOfMessages"),
            )
        })
}

/// A message `redrive` left in its queue, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// SQS's message id.
    pub message_id: String,
    /// Why it stays: it cannot be parsed, or the invoke failed (with the function's error).
    pub reason: String,
}

/// What `redrive` did with one layer's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    /// The layer (short name).
    pub layer: String,
    /// The queue's name.
    pub queue: String,
    /// Whether the queue exists.
    pub deployed: bool,
    /// Messages whose function ran successfully again, deleted from the queue.
    pub replayed: u64,
    /// Messages left in the queue.
    pub kept: Vec<Kept>,
}

/// How long a received message stays hidden from other consumers while it is replayed: longer
/// than the slowest function's synchronous invoke (the SDK's 120 s attempt timeout).
const VISIBILITY_SECONDS: i32 = 180;

/// Replays the messages of the twin's queues (only `layer`'s, if given): each is parsed, its
/// function invoked synchronously with the original payload, and the message deleted only after
/// the function succeeded. A message that cannot be parsed or whose function fails again stays,
/// reported with the reason, and is made visible again at the end of the run.
pub async fn redrive(
    clients: &AwsClients,
    twin: &TwinConfig,
    layer: Option<Layer>,
) -> Result<Vec<RedriveReport>, CloudError> {
    let mut reports = Vec::new();
    for l in queue_layers(twin)
        .into_iter()
        .filter(|l| layer.is_none_or(|want| want == *l))
    {
        let name = queue_name(twin.name(), l);
        let Some(url) = queue::queue_url(clients, &name).await? else {
            reports.push(RedriveReport {
                layer: l.short().into(),
                queue: name,
                deployed: false,
                replayed: 0,
                kept: Vec::new(),
            });
            continue;
        };
        reports.push(redrive_queue(clients, twin.name(), l, &name, &url).await?);
    }
    Ok(reports)
}

async fn redrive_queue(
    clients: &AwsClients,
    twin: &str,
    layer: Layer,
    name: &str,
    url: &str,
) -> Result<RedriveReport, CloudError> {
    let mut report = RedriveReport {
        layer: layer.short().into(),
        queue: name.into(),
        deployed: true,
        replayed: 0,
        kept: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut to_release = Vec::new();
    loop {
        // Long polling (1 s) asks every SQS server, so an empty answer means an empty queue.
        let batch = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(VISIBILITY_SECONDS)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(cloud)?;
        let messages = batch.messages();
        if messages.is_empty() {
            break;
        }
        let mut new = 0;
        for m in messages {
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            if !seen.insert(id.to_string()) {
                continue;
            }
            new += 1;
            let outcome = match records::parse(m.body().unwrap_or_default(), twin) {
                Err(reason) => Err(format!("cannot be parsed: {reason}")),
                Ok(replay) => invoke(clients, &replay).await,
            };
            match outcome {
                Ok(()) => {
                    match clients
                        .sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                    {
                        Ok(_) => report.replayed += 1,
                        Err(e) => report.kept.push(Kept {
                            message_id: id.into(),
                            reason: format!(
                                "replayed, but deleting it failed (it will be replayed again): {}",
                                classify(&e)
                            ),
                        }),
                    }
                }
                Err(reason) => {
                    report.kept.push(Kept {
                        message_id: id.into(),
                        reason,
                    });
                    to_release.push(receipt.to_string());
                }
            }
        }
        if new == 0 {
            break;
        }
    }
    // What stays is visible again at once, for the next `redrive` or a look in the console.
    for receipt in to_release {
        let r = clients
            .sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(e) = r {
            tracing::debug!(queue = name, error = %classify(&e), "a kept message stays hidden until its visibility timeout");
        }
    }
    Ok(report)
}

/// Invokes the replay's function synchronously; `Err` says why it did not succeed.
async fn invoke(clients: &AwsClients, replay: &records::Replay) -> Result<(), String> {
    let out = clients
        .lambda
        .invoke()
        .function_name(&replay.function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(replay.payload.to_string()))
        .send()
        .await
        .map_err(|e| format!("invoking {} failed: {}", replay.function, classify(&e)))?;
    if let Some(kind) = out.function_error() {
        let body = out
            .payload()
            .map(|p| {
                String::from_utf8_lossy(p.as_ref())
                    .chars()
                    .take(300)
                    .collect::<String>()
            })
            .unwrap_or_default();
        return Err(format!(
            "{} failed again ({kind}): {body}; fix the cause and run `deployer redrive` again",
            replay.function
        ));
    }
    Ok(())
}

/// The queue URL for an SQS queue ARN (`arn:<partition>:sqs:<region>:<account>:<name>`), as SQS
/// gives it; `None` when there is no such queue. For the local data plane, which delivers what
/// Lambda and IoT Core would.
pub async fn queue_url_of_arn(
    clients: &AwsClients,
    arn: &str,
) -> Result<Option<String>, CloudError> {
    let name = arn
        .strip_prefix("arn:")
        .filter(|rest| rest.split(':').nth(1) == Some("sqs"))
        .and_then(|rest| rest.rsplit(':').next())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            CloudError::fatal(
                "InvalidDestination",
                format!("`{arn}` is not an SQS queue ARN"),
            )
        })?;
    queue::queue_url(clients, name).await
}

/// Sends one dead letter (a JSON document) to the queue at `url`.
pub async fn send(clients: &AwsClients, url: &str, body: &str) -> Result<(), CloudError> {
    clients
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .map_err(cloud)?;
    Ok(())
}
