//! A device's IoT thing `<twin>-<device>`, carrying the attribute `twin=<name>` so discovery can
//! list the twin's things (IoT things take attributes, not tags).

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iot::types::AttributePayload;
use serde_json::json;
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a thing.
pub const KIND: &str = "iot_thing";

/// Creates, reads and deletes things.
pub struct ThingDriver {
    clients: Arc<AwsClients>,
}

impl ThingDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        ThingDriver { clients }
    }
}

#[async_trait]
impl ResourceDriver for ThingDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(t) = not_found_is_none(
            self.clients
                .iot
                .describe_thing()
                .thing_name(&spec.name)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let arn = t.thing_arn().unwrap_or_default().to_string();
        let twin = t
            .attributes()
            .and_then(|a| a.get(twin_config::names::TAG_KEY))
            .cloned();
        let owner = match &twin {
            Some(name) => twin_engine::Owner::Twin {
                name: name.clone(),
                id: None,
            },
            None => twin_engine::Owner::Unmarked,
        };
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({"arn": arn, "name": spec.name, "twin": twin}),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let attrs = AttributePayload::builder()
            .attributes(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .build();
        self.clients
            .iot
            .create_thing()
            .thing_name(&spec.name)
            .attribute_payload(attrs)
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("thing {} not visible yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let attrs = AttributePayload::builder()
            .attributes(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .merge(true)
            .build();
        self.clients
            .iot
            .update_thing()
            .thing_name(&spec.name)
            .attribute_payload(attrs)
            .send()
            .await
            .map_err(cloud)?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("thing {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        delete_thing(&self.clients, &spec.name).await
    }
}

/// Detaches every principal of a thing, then deletes it.
pub async fn delete_thing(clients: &AwsClients, name: &str) -> Result<(), CloudError> {
    let iot = &clients.iot;
    if let Some(p) = not_found_is_none(iot.list_thing_principals().thing_name(name).send().await)? {
        for principal in p.principals() {
            gone_is_ok(
                iot.detach_thing_principal()
                    .thing_name(name)
                    .principal(principal)
                    .send()
                    .await,
            )?;
        }
    }
    gone_is_ok(iot.delete_thing().thing_name(name).send().await)
}
