//! The probe on AWS (and on the emulator: only endpoints differ). Where the data lives is read
//! from the deployed functions' environment (the persister's `HOT_TABLE`, the movers' buckets),
//! not from the config, so verify checks what is deployed. Stage marks come from CloudWatch Logs,
//! the hot-reader API is called with a SigV4 signature as any IAM-authorized caller would.

use crate::probe::{
    DataPlaneProbe, Mover, ProbeError, SeenRecord, Stage, StageMark, Tier, TierObject,
};
use crate::readings;
use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use twin_aws::errors::classify;
use twin_aws::AwsClients;
use twin_config::names;
use twin_engine::CloudError;
use twin_functions::hot_reader::NEXT_TOKEN_HEADER;
use twin_functions::record::FIELD_VERIFY_RUN;

/// The most records one BatchWriteItem takes.
const BATCH: usize = 25;

/// Where a device's readings appear in the twin (L4 on TwinMaker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinComponent {
    /// The TwinMaker workspace.
    pub workspace_id: String,
    /// The entity holding the device's component.
    pub entity_id: String,
    /// The component's name.
    pub component_name: String,
    /// The property read back (the device's first).
    pub property: String,
}

/// The TwinMaker components of a twin's devices from its config, when L4 is on AWS.
pub fn twin_components(config: &twin_config::TwinConfig) -> HashMap<String, TwinComponent> {
    let mut out = HashMap::new();
    if config.providers.get(twin_config::Layer::L4) != twin_config::ProviderName::Aws {
        return out;
    }
    let twin = &config.twin.digital_twin_name;
    let Some(hierarchy) = &config.hierarchy else {
        return out;
    };
    for entity in twin_aws::l4_twinmaker::model::entities(twin, hierarchy) {
        for (name, c) in &entity.components {
            let Some(device) = config.devices.iter().find(|d| d.id == c.iot_device_id) else {
                continue;
            };
            let Some(property) = device.properties.first() else {
                continue;
            };
            out.entry(device.id.clone())
                .or_insert_with(|| TwinComponent {
                    workspace_id: names::twinmaker_workspace_id(twin),
                    entity_id: entity.id.clone(),
                    component_name: name.clone(),
                    property: property.name.clone(),
                });
        }
    }
    out
}

/// Where the twin's data plane is, as deployed.
#[derive(Debug, Clone)]
struct Deployed {
    hot_table: String,
    cold_bucket: Option<String>,
    archive_bucket: Option<String>,
    processors: Vec<String>,
    persister: String,
    hot_to_cold: String,
    cold_to_archive: String,
}

/// verify's view of a twin deployed on AWS.
pub struct AwsProbe {
    clients: Arc<AwsClients>,
    deployed: Deployed,
    api_url: String,
    twin_components: HashMap<String, TwinComponent>,
    http: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Empty<Bytes>,
    >,
}

fn probe_error(what: impl Into<String>, e: CloudError) -> ProbeError {
    ProbeError {
        what: what.into(),
        transient: e.class.is_retryable(),
        message: e.to_string(),
    }
}

fn fatal(what: impl Into<String>, message: impl Into<String>) -> ProbeError {
    ProbeError {
        what: what.into(),
        message: message.into(),
        transient: false,
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl AwsProbe {
    /// Reads where the twin's data plane is from its deployed functions; `api_url` overrides the
    /// hot-reader API's URL (the local data plane serves it on 127.0.0.1), else it is read from
    /// API Gateway.
    pub async fn new(
        clients: Arc<AwsClients>,
        twin: &str,
        devices: &[twin_config::Device],
        api_url: Option<String>,
        twin_components: HashMap<String, TwinComponent>,
    ) -> Result<Self, ProbeError> {
        let persister = names::function_name(twin, "persister");
        let hot_to_cold = names::function_name(twin, "hot-to-cold-mover");
        let cold_to_archive = names::function_name(twin, "cold-to-archive-mover");
        let persister_env = function_env(&clients, &persister)
            .await?
            .ok_or_else(|| fatal(&persister, "not deployed: deploy L2 and L3 hot first"))?;
        let hot_table = persister_env.get("HOT_TABLE").cloned().ok_or_else(|| {
            fatal(
                &persister,
                "its environment has no HOT_TABLE: redeploy the twin",
            )
        })?;
        let cold_bucket = function_env(&clients, &hot_to_cold)
            .await?
            .and_then(|e| e.get("COLD_BUCKET").cloned());
        let archive_bucket = function_env(&clients, &cold_to_archive)
            .await?
            .and_then(|e| e.get("ARCHIVE_BUCKET").cloned());
        let mut processors = Vec::new();
        for d in devices {
            let own = names::processor_function_name(twin, &d.id);
            let name = if function_env(&clients, &own).await?.is_some() {
                own
            } else {
                names::shared_processor_function_name(twin)
            };
            if !processors.contains(&name) {
                processors.push(name);
            }
        }
        let api_url = match api_url {
            Some(u) => u,
            None => hot_reader_api_url(&clients, twin).await?,
        };
        // The ring provider explicitly: the process may hold more than one rustls provider.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| fatal("the HTTPS client", e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Self {
            clients,
            deployed: Deployed {
                hot_table,
                cold_bucket,
                archive_bucket,
                processors,
                persister,
                hot_to_cold,
                cold_to_archive,
            },
            api_url: api_url.trim_end_matches('/').to_string(),
            twin_components,
            http,
        })
    }

    fn bucket(&self, tier: Tier) -> Result<&str, ProbeError> {
        let (b, mover) = match tier {
            Tier::Cold => (&self.deployed.cold_bucket, &self.deployed.hot_to_cold),
            Tier::Archive => (
                &self.deployed.archive_bucket,
                &self.deployed.cold_to_archive,
            ),
        };
        b.as_deref().ok_or_else(|| {
            fatal(
                mover,
                "not deployed (or its environment names no bucket): deploy L3 cold and archive",
            )
        })
    }

    async fn signed_get(
        &self,
        url: &str,
    ) -> Result<(u16, HashMap<String, String>, Vec<u8>), ProbeError> {
        let what = format!("GET {url}");
        let provider = self
            .clients
            .credentials
            .as_ref()
            .ok_or_else(|| fatal(&what, "no AWS credentials configured"))?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|e| fatal(&what, format!("loading AWS credentials: {e}")))?;
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.clients.region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| fatal(&what, format!("signing: {e}")))?
            .into();
        let uri: http::Uri = url
            .parse()
            .map_err(|e| fatal(&what, format!("bad URL: {e}")))?;
        let host = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| fatal(&what, "the URL has no host"))?;
        let signable = SignableRequest::new(
            "GET",
            url,
            std::iter::once(("host", host.as_str())),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| fatal(&what, format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| fatal(&what, format!("signing: {e}")))?
            .into_parts();
        let mut request = http::Request::builder()
            .method("GET")
            .uri(uri)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fatal(&what, e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        let response = tokio::time::timeout(Duration::from_secs(30), self.http.request(request))
            .await
            .map_err(|_| ProbeError {
                what: what.clone(),
                message: "no answer within 30 s".into(),
                transient: true,
            })?
            .map_err(|e| ProbeError {
                what: what.clone(),
                message: e.to_string(),
                transient: true,
            })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ProbeError {
                what: what.clone(),
                message: e.to_string(),
                transient: true,
            })?
            .to_bytes()
            .to_vec();
        Ok((status, headers, body))
    }
}

/// A function's environment, or `None` when it is not deployed.
async fn function_env(
    clients: &AwsClients,
    function: &str,
) -> Result<Option<HashMap<String, String>>, ProbeError> {
    match clients
        .lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
    {
        Ok(out) => Ok(Some(
            out.environment()
                .and_then(|e| e.variables())
                .cloned()
                .unwrap_or_default(),
        )),
        Err(e) => {
            let e = classify(&e);
            if e.class == twin_engine::ErrorClass::NotFound {
                Ok(None)
            } else {
                Err(probe_error(format!("reading function {function}"), e))
            }
        }
    }
}

/// The hot-reader API's endpoint from API Gateway.
async fn hot_reader_api_url(clients: &AwsClients, twin: &str) -> Result<String, ProbeError> {
    let name = names::http_api_name(twin);
    let mut token = None;
    loop {
        let out = clients
            .apigw
            .get_apis()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| probe_error("listing HTTP APIs", classify(&e)))?;
        if let Some(api) = out.items().iter().find(|a| a.name() == Some(name.as_str())) {
            return api
                .api_endpoint()
                .map(str::to_string)
                .ok_or_else(|| fatal(&name, "API Gateway returned the API without its endpoint"));
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Err(fatal(
                &name,
                "the hot-reader API is not deployed: deploy L3 hot first",
            ));
        }
    }
}

fn seen(item: &HashMap<String, AttributeValue>) -> Option<SeenRecord> {
    let id = item.get("id")?.as_s().ok()?.clone();
    let verify_run = item
        .get(FIELD_VERIFY_RUN)
        .and_then(|v| v.as_s().ok())
        .cloned();
    Some(SeenRecord { id, verify_run })
}

fn seen_json(v: &Value) -> Option<SeenRecord> {
    Some(SeenRecord {
        id: v.get("id")?.as_str()?.to_string(),
        verify_run: v
            .get(FIELD_VERIFY_RUN)
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Minimal percent-encoding of a query value (device ids and canonical times).
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl DataPlaneProbe for AwsProbe {
    async fn stage_marks(
        &self,
        stage: Stage,
        run: &str,
        since: SystemTime,
    ) -> Result<Vec<StageMark>, ProbeError> {
        let (functions, text) = match stage {
            Stage::Processed => (self.deployed.processors.clone(), "record processed"),
            Stage::Stored => (vec![self.deployed.persister.clone()], "record stored"),
        };
        let mut marks = Vec::new();
        for function in functions {
            let group = twin_aws::logs::log_group_name(&function);
            let mut token = None;
            loop {
                let out = self
                    .clients
                    .logs
                    .filter_log_events()
                    .log_group_name(&group)
                    .start_time(millis(since))
                    .filter_pattern(format!("\"verify-{run}-\""))
                    .set_next_token(token)
                    .send()
                    .await;
                let out = match out {
                    Ok(o) => o,
                    Err(e) => {
                        let e = classify(&e);
                        // No log group yet: the function has not logged anything.
                        if e.class == twin_engine::ErrorClass::NotFound {
                            break;
                        }
                        return Err(probe_error(format!("reading the logs of {function}"), e));
                    }
                };
                for event in out.events() {
                    let Some(message) = event.message() else {
                        continue;
                    };
                    if !message.contains(text) {
                        continue;
                    }
                    let (Some(n), Some(ts)) =
                        (readings::reading_number(message, run), event.timestamp())
                    else {
                        continue;
                    };
                    marks.push(StageMark {
                        reading: n,
                        at: UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64),
                        event_id: event
                            .event_id()
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("{group}/{ts}/{n}")),
                    });
                }
                token = out.next_token().map(str::to_string);
                if token.is_none() || out.events().is_empty() {
                    break;
                }
            }
        }
        Ok(marks)
    }

    async fn hot_records(
        &self,
        device: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<SeenRecord>, ProbeError> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .clients
                .dynamodb
                .query()
                .table_name(&self.deployed.hot_table)
                .key_condition_expression("iotDeviceId = :d AND #id BETWEEN :a AND :b")
                .expression_attribute_names("#id", "id")
                .expression_attribute_values(":d", AttributeValue::S(device.into()))
                .expression_attribute_values(":a", AttributeValue::S(from.into()))
                .expression_attribute_values(":b", AttributeValue::S(to.into()))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| {
                    probe_error(
                        format!("querying {} for {device}", self.deployed.hot_table),
                        classify(&e),
                    )
                })?;
            records.extend(out.items().iter().filter_map(seen));
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(records);
            }
        }
    }

    async fn api_records(
        &self,
        device: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<SeenRecord>, ProbeError> {
        let mut records = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/?iotDeviceId={}&startDate={}&endDate={}",
                self.api_url,
                query_value(device),
                query_value(from),
                query_value(to)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&nextToken={}", query_value(t)));
            }
            let (status, headers, body) = self.signed_get(&url).await?;
            if status != 200 {
                return Err(ProbeError {
                    what: format!("the hot-reader API ({url})"),
                    message: format!("status {status}: {}", String::from_utf8_lossy(&body)),
                    transient: status == 429 || status >= 500,
                });
            }
            let page: Vec<Value> = serde_json::from_slice(&body).map_err(|e| {
                fatal(
                    format!("the hot-reader API ({url})"),
                    format!("its answer is not a JSON array of records: {e}"),
                )
            })?;
            records.extend(page.iter().filter_map(seen_json));
            token = headers.get(NEXT_TOKEN_HEADER).cloned();
            if token.is_none() {
                return Ok(records);
            }
        }
    }

    async fn twin_values(
        &self,
        device: &str,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<String>>, ProbeError> {
        let Some(c) = self.twin_components.get(device) else {
            return Ok(None);
        };
        let what = format!(
            "TwinMaker history of {}/{}/{}",
            c.entity_id, c.component_name, c.property
        );
        let mut times = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .clients
                .twinmaker
                .get_property_value_history()
                .workspace_id(&c.workspace_id)
                .entity_id(&c.entity_id)
                .component_name(&c.component_name)
                .selected_properties(&c.property)
                .start_time(from)
                .end_time(to)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| probe_error(&what, classify(&e)))?;
            for history in out.property_values() {
                times.extend(
                    history
                        .values()
                        .iter()
                        .filter_map(|v| v.time().map(str::to_string)),
                );
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(Some(times));
            }
        }
    }

    async fn run_mover(&self, mover: Mover, cutoff: &str) -> Result<Value, ProbeError> {
        let function = match mover {
            Mover::HotToCold => &self.deployed.hot_to_cold,
            Mover::ColdToArchive => &self.deployed.cold_to_archive,
        };
        let payload = serde_json::json!({ twin_functions::mover_event::CUTOFF_KEY: cutoff });
        let out = self
            .clients
            .lambda
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| probe_error(format!("invoking {function}"), classify(&e)))?;
        let body = out
            .payload()
            .map(|b| String::from_utf8_lossy(b.as_ref()).to_string())
            .unwrap_or_default();
        if let Some(kind) = out.function_error() {
            return Err(fatal(
                format!("the mover {function}"),
                format!("failed ({kind}): {body}"),
            ));
        }
        serde_json::from_str(&body).map_err(|e| {
            fatal(
                format!("the mover {function}"),
                format!("its answer is not the mover's report ({e}): {body}"),
            )
        })
    }

    async fn tier_objects(&self, tier: Tier, device: &str) -> Result<Vec<TierObject>, ProbeError> {
        let bucket = self.bucket(tier)?.to_string();
        let expected_class = match tier {
            Tier::Cold => "STANDARD_IA",
            Tier::Archive => "DEEP_ARCHIVE",
        };
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .clients
                .s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(format!("{device}/"))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| probe_error(format!("listing {bucket}"), classify(&e)))?;
            for o in out.contents() {
                let Some(key) = o.key() else { continue };
                let class = o
                    .storage_class()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_else(|| "STANDARD".into());
                let readable = !matches!(class.as_str(), "DEEP_ARCHIVE" | "GLACIER");
                let records = if readable {
                    let body = self
                        .clients
                        .s3
                        .get_object()
                        .bucket(&bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| probe_error(format!("reading {bucket}/{key}"), classify(&e)))?
                        .body
                        .collect()
                        .await
                        .map_err(|e| ProbeError {
                            what: format!("reading {bucket}/{key}"),
                            message: e.to_string(),
                            transient: true,
                        })?
                        .into_bytes();
                    let rows: Vec<Value> = serde_json::from_slice(&body).map_err(|e| {
                        fatal(
                            format!("{bucket}/{key}"),
                            format!("not a chunk of records: {e}"),
                        )
                    })?;
                    Some(rows.iter().filter_map(seen_json).collect())
                } else {
                    None
                };
                objects.push(TierObject {
                    key: key.to_string(),
                    class_expected: class == expected_class,
                    storage_class: class,
                    size: o.size().unwrap_or_default().max(0) as u64,
                    records,
                });
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    async fn delete_hot(&self, device: &str, ids: &[String]) -> Result<u64, ProbeError> {
        let table = &self.deployed.hot_table;
        let mut deleted = 0;
        for chunk in ids.chunks(BATCH) {
            let mut requests: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
            for id in chunk {
                let delete = DeleteRequest::builder()
                    .key("iotDeviceId", AttributeValue::S(device.into()))
                    .key("id", AttributeValue::S(id.clone()))
                    .build()
                    .map_err(|e| fatal(format!("deleting from {table}"), e.to_string()))?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
            let mut pending = requests;
            let mut pause = Duration::from_millis(50);
            for _ in 0..8 {
                let out = self
                    .clients
                    .dynamodb
                    .batch_write_item()
                    .request_items(table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| probe_error(format!("deleting from {table}"), classify(&e)))?;
                let left = out
                    .unprocessed_items()
                    .and_then(|m| m.get(table))
                    .cloned()
                    .unwrap_or_default();
                deleted += (pending.len() - left.len()) as u64;
                if left.is_empty() {
                    pending.clear();
                    break;
                }
                pending = left;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            if !pending.is_empty() {
                return Err(ProbeError {
                    what: format!("deleting verify records from {table}"),
                    message: format!("{} left unprocessed after retries", pending.len()),
                    transient: true,
                });
            }
        }
        Ok(deleted)
    }

    async fn delete_object(&self, tier: Tier, key: &str) -> Result<(), ProbeError> {
        let bucket = self.bucket(tier)?.to_string();
        self.clients
            .s3
            .delete_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| probe_error(format!("deleting {bucket}/{key}"), classify(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value("2026-12-01T10:00:00.000Z"),
            "2026-12-01T10%3A00%3A00.000Z"
        );
        assert_eq!(query_value("a b+c"), "a%20b%2Bc");
    }
}
