//! Lambda resource-based permissions: which service may invoke a function, scoped to the one
//! resource (topic rule, schedule, API) that needs to.

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::Layer;
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of a permission.
pub const KIND: &str = "lambda_permission";

/// A permission for `principal` (e.g. `iot.amazonaws.com`) to invoke the function
/// `<twin>-<function>` (id `function_id`) from `source_arn` only; statement id `sid`.
pub fn permission_spec(
    ctx: &LayerContext<'_>,
    layer: Layer,
    key: &str,
    function_local: &str,
    function_id: ResourceId,
    principal: &str,
    source_arn: &str,
) -> ResourceSpec {
    let function = twin_config::names::cloud_function_name(ctx.name(), function_local);
    let sid = format!("deployer-{key}");
    ctx.spec(layer, KIND, key, format!("{function}/{sid}"))
        .depends_on([function_id])
        .desired(json!({
            "function": function,
            "sid": sid,
            "principal": principal,
            "source_arn": source_arn,
        }))
}

/// Adds, reads and removes permission statements.
pub struct PermissionDriver {
    clients: Arc<AwsClients>,
}

impl PermissionDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        PermissionDriver { clients }
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[async_trait]
impl ResourceDriver for PermissionDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(out) = not_found_is_none(
            self.clients
                .lambda
                .get_policy()
                .function_name(field(spec, "function"))
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let policy: Value =
            serde_json::from_str(out.policy().unwrap_or("{}")).unwrap_or(Value::Null);
        let sid = field(spec, "sid");
        let statements = policy
            .get("Statement")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(st) = statements
            .iter()
            .find(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
        else {
            return Ok(None);
        };
        let principal = st
            .pointer("/Principal/Service")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let source_arn = st
            .pointer("/Condition/ArnLike/AWS:SourceArn")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(Some(Observed::new(
            format!("{}#{sid}", field(spec, "function")),
            json!({
                "function": field(spec, "function"),
                "sid": sid,
                "principal": principal,
                "source_arn": source_arn,
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.clients
            .lambda
            .add_permission()
            .function_name(field(spec, "function"))
            .statement_id(field(spec, "sid"))
            .action("lambda:InvokeFunction")
            .principal(field(spec, "principal"))
            .source_arn(field(spec, "source_arn"))
            .source_account(&self.clients.account_id)
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("permission {} not visible yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.delete(spec, current).await?;
        self.create(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .lambda
                .remove_permission()
                .function_name(field(spec, "function"))
                .statement_id(field(spec, "sid"))
                .send()
                .await,
        )
    }
}
