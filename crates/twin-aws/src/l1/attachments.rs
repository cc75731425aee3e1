//! A device's attachments: its certificate to its thing (AttachThingPrincipal) and its policy to
//! its certificate (AttachPolicy), as one resource so a half-attached device is drift.
//!
//! The thing has exactly one principal: the certificate whose key is on disk. Any other
//! principal (a certificate whose local key was lost, or one left by an interrupted rotation)
//! is drift (`other_principals`), and `update` removes it: a stray certificate is deactivated,
//! detached and deleted, so a lost key stops working.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::l1::certificate::delete_certificate;
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of a device's attachments.
pub const KIND: &str = "iot_attachments";

/// Attaches, reads and detaches.
pub struct AttachmentsDriver {
    clients: Arc<AwsClients>,
}

impl AttachmentsDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        AttachmentsDriver { clients }
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The certificate ARN from the certificate this spec depends on.
fn cert_arn(spec: &ResourceSpec, deps: &Outputs) -> Option<String> {
    let id = ResourceId::from(field(spec, "certificate"));
    deps.get(&id)
        .and_then(|o| o.attr("arn"))
        .map(str::to_string)
}

#[async_trait]
impl ResourceDriver for AttachmentsDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        // Without a certificate there is nothing to be attached (a certificate's delete
        // detaches everything anyway).
        let Some(arn) = cert_arn(spec, deps) else {
            return Ok(None);
        };
        let iot = &self.clients.iot;
        let thing = field(spec, "thing");
        let principals = thing_principals(&self.clients, thing).await?;
        let thing_attached = principals.iter().any(|x| x == &arn);
        let other_principals: Vec<&String> = principals.iter().filter(|x| **x != arn).collect();
        let policy = field(spec, "policy");
        let policy_attached =
            not_found_is_none(iot.list_attached_policies().target(&arn).send().await)?
                .is_some_and(|p| p.policies().iter().any(|x| x.policy_name() == Some(policy)));
        if !thing_attached && !policy_attached {
            return Ok(None);
        }
        Ok(Some(Observed::new(
            format!("{arn}|{thing}|{policy}"),
            json!({
                "certificate": field(spec, "certificate"),
                "thing": thing,
                "policy": policy,
                "certificate_arn": arn,
                "thing_attached": thing_attached,
                "policy_attached": policy_attached,
                "other_principals": other_principals,
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.update(spec, &Observed::default(), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let arn = cert_arn(spec, deps).ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::NotFound,
                "DependencyMissing",
                format!("the certificate of {} is not deployed", spec.name),
            )
        })?;
        let iot = &self.clients.iot;
        if current.attributes.get("thing_attached") != Some(&Value::Bool(true)) {
            iot.attach_thing_principal()
                .thing_name(field(spec, "thing"))
                .principal(&arn)
                .send()
                .await
                .map_err(cloud)?;
        }
        if current.attributes.get("policy_attached") != Some(&Value::Bool(true)) {
            iot.attach_policy()
                .policy_name(field(spec, "policy"))
                .target(&arn)
                .send()
                .await
                .map_err(cloud)?;
        }
        // Only then the strays go, so the device is never without a certificate.
        let thing = field(spec, "thing");
        let strays: Vec<String> = thing_principals(&self.clients, thing)
            .await?
            .into_iter()
            .filter(|p| *p != arn)
            .collect();
        for stray in &strays {
            remove_stray_principal(&self.clients, thing, field(spec, "policy"), stray).await?;
        }
        if !strays.is_empty() {
            // Detaching is asynchronous: wait until the thing lists only its certificate.
            twin_engine::wait::poll_until(
                &format!("thing {thing} with only certificate {arn}"),
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60),
                || async {
                    let now = thing_principals(&self.clients, thing).await?;
                    Ok((now.iter().all(|p| *p == arn)).then_some(()))
                },
            )
            .await?;
        }
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("attachments of {} not visible yet", spec.name),
            )
        })
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        let Some(arn) = current.attr("certificate_arn") else {
            return Ok(());
        };
        let iot = &self.clients.iot;
        gone_is_ok(
            iot.detach_policy()
                .policy_name(field(spec, "policy"))
                .target(arn)
                .send()
                .await,
        )?;
        gone_is_ok(
            iot.detach_thing_principal()
                .thing_name(field(spec, "thing"))
                .principal(arn)
                .send()
                .await,
        )
    }
}

/// Every principal (certificate ARN) attached to `thing`; none when the thing does not exist.
pub async fn thing_principals(
    clients: &AwsClients,
    thing: &str,
) -> Result<Vec<String>, CloudError> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let Some(page) = not_found_is_none(
            clients
                .iot
                .list_thing_principals()
                .thing_name(thing)
                .set_next_token(token.clone())
                .send()
                .await,
        )?
        else {
            return Ok(all);
        };
        all.extend(page.principals().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            all.sort();
            return Ok(all);
        }
    }
}

/// The certificate id in a certificate ARN (`arn:...:cert/<id>`); `None` for other principals.
pub fn certificate_id_of(arn: &str) -> Option<&str> {
    arn.split_once(":cert/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
}

/// Takes a principal that is not the device's certificate off the device's thing. A
/// certificate attached to nothing else is deactivated, detached and deleted (its key, wherever
/// it is, stops working); one that other things still use is only detached from this thing and
/// its device policy; a principal that is no certificate is detached.
pub async fn remove_stray_principal(
    clients: &AwsClients,
    thing: &str,
    policy: &str,
    principal: &str,
) -> Result<(), CloudError> {
    let iot = &clients.iot;
    if let Some(id) = certificate_id_of(principal) {
        let things = not_found_is_none(
            iot.list_principal_things()
                .principal(principal)
                .send()
                .await,
        )?;
        let shared = things.is_some_and(|t| t.things().iter().any(|t| t != thing));
        if !shared {
            return delete_certificate(clients, id, principal).await;
        }
        gone_is_ok(
            iot.detach_policy()
                .policy_name(policy)
                .target(principal)
                .send()
                .await,
        )?;
    }
    gone_is_ok(
        iot.detach_thing_principal()
            .thing_name(thing)
            .principal(principal)
            .send()
            .await,
    )
}

#[cfg(test)]
mod tests {
    use super::certificate_id_of;

    #[test]
    fn certificate_ids_come_from_certificate_arns_only() {
        assert_eq!(
            certificate_id_of("arn:aws:iot:us-east-1:123456789012:cert/abc123"),
            Some("abc123")
        );
        assert_eq!(certificate_id_of("us-east-1:cognito-identity-id"), None);
        assert_eq!(certificate_id_of("arn:aws:iot:us-east-1:1:cert/"), None);
    }
}
