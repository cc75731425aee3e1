//! What `deploy` registered in IoT Core, read back from the emulator: the twin's things, their
//! certificates (PEM and status), the policies attached to each certificate, and the telemetry
//! topic rule (its SQL, whether it is enabled, its Lambda action).

use crate::policy::Grants;
use crate::x509;
use crate::LocalError;
use aws_sdk_iot::error::{DisplayErrorContext, ProvideErrorMetadata};
use serde_json::Value;
use twin_aws::AwsClients;
use twin_config::names;

/// One certificate attached to one of the twin's things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredCertificate {
    /// The thing it is attached to (`<twin>--<device>`).
    pub thing: String,
    /// IoT's certificate id.
    pub certificate_id: String,
    /// The certificate as registered (PEM).
    pub pem: String,
    /// `ACTIVE`, `INACTIVE`, `REVOKED`, ...
    pub status: String,
    /// The subject CN: the identity the broker gives the device.
    pub common_name: Option<String>,
    /// What its attached policies allow.
    pub grants: Grants,
}

/// The twin's telemetry topic rule as deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedRule {
    /// The rule's name.
    pub name: String,
    /// Its SQL statement, as stored.
    pub sql: String,
    /// Whether it is enabled (a disabled rule does nothing).
    pub enabled: bool,
    /// The function ARN of its first Lambda action, if it has one.
    pub lambda_function_arn: Option<String>,
    /// How many actions it has that are not Lambda actions (the local plane cannot run them).
    pub other_actions: usize,
    /// The queue URL of its SQS error action, if it has one.
    pub error_queue_url: Option<String>,
}

/// Everything of L1 the broker is configured from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registered {
    /// Every certificate of every thing of the twin, in thing then id order.
    pub certificates: Vec<RegisteredCertificate>,
    /// The topic filter of the twin's enabled telemetry rule (its `FROM '...'`), if deployed.
    pub rule_topic_filter: Option<String>,
    /// The twin's telemetry rule, enabled or not, if deployed.
    pub rule: Option<DeployedRule>,
}

fn emulator<E>(call: &'static str) -> impl Fn(aws_sdk_iot::error::SdkError<E>) -> LocalError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| LocalError::Emulator {
        call,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn not_found<E: ProvideErrorMetadata>(e: &aws_sdk_iot::error::SdkError<E>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ResourceNotFoundException")
}

/// The topic filter of a rule's SQL: the quoted text after `FROM`.
pub fn rule_topic_filter(sql: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    let at = upper.find(" FROM ")? + " FROM ".len();
    let rest = sql[at..].trim_start();
    let quoted = rest.strip_prefix('\'')?;
    let end = quoted.find('\'')?;
    Some(quoted[..end].to_string()).filter(|f| !f.is_empty())
}

/// Reads the twin's L1 back from IoT Core (the emulator).
pub async fn read(clients: &AwsClients, twin: &str) -> Result<Registered, LocalError> {
    let iot = &clients.iot;
    let prefix = names::per_device_prefix(twin);
    let mut things = Vec::new();
    let mut token = None;
    loop {
        let page = iot
            .list_things()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(emulator("ListThings"))?;
        things.extend(
            page.things()
                .iter()
                .filter_map(|t| t.thing_name())
                .filter(|n| n.starts_with(&prefix))
                .map(String::from),
        );
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    things.sort();
    let mut certificates = Vec::new();
    for thing in &things {
        let principals = match iot.list_thing_principals().thing_name(thing).send().await {
            Ok(p) => p.principals().to_vec(),
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(emulator("ListThingPrincipals")(e)),
        };
        let mut ids: Vec<(String, String)> = principals
            .iter()
            .filter_map(|arn| {
                arn.split_once(":cert/")
                    .map(|(_, id)| (arn.clone(), id.to_string()))
            })
            .collect();
        ids.sort();
        for (arn, id) in ids {
            let desc = match iot.describe_certificate().certificate_id(&id).send().await {
                Ok(d) => d,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(emulator("DescribeCertificate")(e)),
            };
            let Some(d) = desc.certificate_description() else {
                continue;
            };
            let pem = d.certificate_pem().unwrap_or_default().to_string();
            let status = d
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let attached = iot
                .list_attached_policies()
                .target(&arn)
                .send()
                .await
                .map_err(emulator("ListAttachedPolicies"))?;
            let mut documents = Vec::new();
            for p in attached.policies() {
                let Some(name) = p.policy_name() else {
                    continue;
                };
                let policy = match iot.get_policy().policy_name(name).send().await {
                    Ok(p) => p,
                    Err(e) if not_found(&e) => continue,
                    Err(e) => return Err(emulator("GetPolicy")(e)),
                };
                let text = policy.policy_document().unwrap_or_default();
                documents.push(serde_json::from_str(text).unwrap_or(Value::Null));
            }
            certificates.push(RegisteredCertificate {
                thing: thing.clone(),
                certificate_id: id,
                common_name: x509::common_name(&pem),
                pem,
                status,
                grants: Grants::from_documents(&documents),
            });
        }
    }
    let rule = read_rule(clients, twin).await?;
    let rule_topic_filter = rule
        .as_ref()
        .filter(|r| r.enabled)
        .and_then(|r| rule_topic_filter(&r.sql));
    Ok(Registered {
        certificates,
        rule_topic_filter,
        rule,
    })
}

/// Reads the twin's telemetry topic rule back from IoT Core (GetTopicRule); `None` if it is not
/// deployed.
pub async fn read_rule(
    clients: &AwsClients,
    twin: &str,
) -> Result<Option<DeployedRule>, LocalError> {
    let name = names::topic_rule_name(twin);
    let out = match clients.iot.get_topic_rule().rule_name(&name).send().await {
        Ok(out) => out,
        Err(e) if not_found(&e) => return Ok(None),
        // IoT (and moto) answer an unknown rule with UnauthorizedException.
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("UnauthorizedException") => {
            return Ok(None)
        }
        Err(e) => return Err(emulator("GetTopicRule")(e)),
    };
    let Some(rule) = out.rule() else {
        return Ok(None);
    };
    let actions = rule.actions();
    let lambda_function_arn = actions
        .iter()
        .find_map(|a| a.lambda().map(|l| l.function_arn().to_string()));
    Ok(Some(DeployedRule {
        name: rule.rule_name().unwrap_or(&name).to_string(),
        sql: rule.sql().unwrap_or_default().to_string(),
        enabled: rule.rule_disabled() != Some(true),
        other_actions: actions.iter().filter(|a| a.lambda().is_none()).count(),
        lambda_function_arn,
        error_queue_url: rule
            .error_action()
            .and_then(|a| a.sqs())
            .map(|q| q.queue_url().to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_rule_sql_yields_its_topic_filter() {
        let sql = "SELECT *, topic(3) AS topicDeviceId FROM 'my-twin/iot-data/+'";
        assert_eq!(
            rule_topic_filter(sql).as_deref(),
            Some("my-twin/iot-data/+")
        );
        assert_eq!(
            rule_topic_filter("select * from 'a/#' where x > 1").as_deref(),
            Some("a/#")
        );
        assert_eq!(rule_topic_filter("SELECT * FROM a"), None);
    }
}
