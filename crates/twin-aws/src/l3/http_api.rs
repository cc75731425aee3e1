//! The hot reader's HTTP API: API Gateway v2, one `GET /` route that requires IAM (SigV4)
//! authorization, a Lambda proxy integration and an auto-deployed `$default` stage. The API owns
//! its integration, route, stage and the Lambda permission scoped to its own ARN, because their
//! ids only exist once the API does.

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_apigatewayv2::types::{AuthorizationType, IntegrationType, ProtocolType};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of the API.
pub const KIND: &str = "http_api";

/// The route every read goes through.
pub const ROUTE: &str = "GET /";

/// Statement id of the API's permission on the hot reader.
const SID: &str = "deployer-http-api";

/// The hot reader API's spec; `reader` is the hot reader function's id.
pub fn http_api_spec(ctx: &LayerContext<'_>, reader: ResourceId) -> ResourceSpec {
    let function = names::function_name(ctx.name(), "hot-reader");
    ctx.spec(
        Layer::L3Hot,
        KIND,
        "hot-reader",
        names::http_api_name(ctx.name()),
    )
    .depends_on([reader])
    .desired(json!({
        "route": ROUTE,
        "authorization": "AWS_IAM",
        "function": function,
        "target": crate::lambda_fn::function_arn(ctx, "hot-reader"),
        "invoke_permission": true,
    }))
}

/// Creates, reads and deletes the API with everything it owns.
pub struct HttpApiDriver {
    clients: Arc<AwsClients>,
}

impl HttpApiDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        HttpApiDriver { clients }
    }

    async fn find(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_apigatewayv2::types::Api>, CloudError> {
        let mut token: Option<String> = None;
        loop {
            let out = self
                .clients
                .apigw
                .get_apis()
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(cloud)?;
            if let Some(api) = out.items().iter().find(|a| a.name() == Some(name)) {
                return Ok(Some(api.clone()));
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(None);
            }
        }
    }

    fn source_arn(&self, api_id: &str) -> String {
        self.clients.arn("execute-api", &format!("{api_id}/*/GET/"))
    }

    async fn ensure_parts(&self, spec: &ResourceSpec, api_id: &str) -> Result<(), CloudError> {
        let apigw = &self.clients.apigw;
        let target = field(spec, "target");
        let integrations = apigw
            .get_integrations()
            .api_id(api_id)
            .send()
            .await
            .map_err(cloud)?;
        let integration_id = match integrations
            .items()
            .iter()
            .find(|i| i.integration_uri() == Some(target))
            .and_then(|i| i.integration_id())
        {
            Some(id) => id.to_string(),
            None => apigw
                .create_integration()
                .api_id(api_id)
                .integration_type(IntegrationType::AwsProxy)
                .integration_uri(target)
                .payload_format_version("2.0")
                .send()
                .await
                .map_err(cloud)?
                .integration_id()
                .unwrap_or_default()
                .to_string(),
        };
        let routes = apigw
            .get_routes()
            .api_id(api_id)
            .send()
            .await
            .map_err(cloud)?;
        let want_target = format!("integrations/{integration_id}");
        match routes.items().iter().find(|r| r.route_key() == Some(ROUTE)) {
            Some(r)
                if r.authorization_type() == Some(&AuthorizationType::AwsIam)
                    && r.target() == Some(want_target.as_str()) => {}
            Some(r) => {
                apigw
                    .update_route()
                    .api_id(api_id)
                    .route_id(r.route_id().unwrap_or_default())
                    .authorization_type(AuthorizationType::AwsIam)
                    .target(&want_target)
                    .send()
                    .await
                    .map_err(cloud)?;
            }
            None => {
                apigw
                    .create_route()
                    .api_id(api_id)
                    .route_key(ROUTE)
                    .authorization_type(AuthorizationType::AwsIam)
                    .target(&want_target)
                    .send()
                    .await
                    .map_err(cloud)?;
            }
        }
        if not_found_is_none(
            apigw
                .get_stage()
                .api_id(api_id)
                .stage_name("$default")
                .send()
                .await,
        )?
        .is_none()
        {
            apigw
                .create_stage()
                .api_id(api_id)
                .stage_name("$default")
                .auto_deploy(true)
                .send()
                .await
                .map_err(cloud)?;
        }
        if !self.has_permission(spec, api_id).await? {
            // A statement left from an API that was deleted and recreated names the old API's
            // ARN under the same id; it must go first, or adding fails with a conflict forever.
            crate::errors::gone_is_ok(
                self.clients
                    .lambda
                    .remove_permission()
                    .function_name(field(spec, "function"))
                    .statement_id(SID)
                    .send()
                    .await,
            )?;
            self.clients
                .lambda
                .add_permission()
                .function_name(field(spec, "function"))
                .statement_id(SID)
                .action("lambda:InvokeFunction")
                .principal("apigateway.amazonaws.com")
                .source_arn(self.source_arn(api_id))
                .send()
                .await
                .map_err(cloud)?;
        }
        Ok(())
    }

    async fn has_permission(&self, spec: &ResourceSpec, api_id: &str) -> Result<bool, CloudError> {
        let policy = not_found_is_none(
            self.clients
                .lambda
                .get_policy()
                .function_name(field(spec, "function"))
                .send()
                .await,
        )?;
        let Some(policy) = policy else {
            return Ok(false);
        };
        let doc: Value =
            serde_json::from_str(policy.policy().unwrap_or("{}")).unwrap_or(Value::Null);
        let want = self.source_arn(api_id);
        Ok(doc
            .get("Statement")
            .and_then(Value::as_array)
            .is_some_and(|sts| {
                sts.iter().any(|s| {
                    s.get("Sid").and_then(Value::as_str) == Some(SID)
                        && s.pointer("/Condition/ArnLike/AWS:SourceArn")
                            .and_then(Value::as_str)
                            == Some(want.as_str())
                })
            }))
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[async_trait]
impl ResourceDriver for HttpApiDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(api) = self.find(&spec.name).await? else {
            return Ok(None);
        };
        let api_id = api.api_id().unwrap_or_default().to_string();
        let apigw = &self.clients.apigw;
        let routes = apigw
            .get_routes()
            .api_id(&api_id)
            .send()
            .await
            .map_err(cloud)?;
        let route = routes.items().iter().find(|r| r.route_key() == Some(ROUTE));
        let integrations = apigw
            .get_integrations()
            .api_id(&api_id)
            .send()
            .await
            .map_err(cloud)?;
        let target = route
            .and_then(|r| r.target())
            .and_then(|t| t.strip_prefix("integrations/"))
            .and_then(|id| {
                integrations
                    .items()
                    .iter()
                    .find(|i| i.integration_id() == Some(id))
                    .and_then(|i| i.integration_uri())
            });
        let permission = self.has_permission(spec, &api_id).await?;
        let owner = crate::context::owner_from_tags(
            api.tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Ok(Some(
            Observed::new(
                api_id.clone(),
                json!({
                    "api_id": api_id,
                    "endpoint": api.api_endpoint(),
                    "route": route.and_then(|r| r.route_key()),
                    "authorization": route.and_then(|r| r.authorization_type()).map(|a| a.as_str()),
                    "function": field(spec, "function"),
                    "target": target,
                    "invoke_permission": permission,
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let api = self
            .clients
            .apigw
            .create_api()
            .name(&spec.name)
            .protocol_type(ProtocolType::Http)
            .tags(names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(cloud)?;
        self.ensure_parts(spec, api.api_id().unwrap_or_default())
            .await?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("API {} not listed yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.ensure_parts(spec, &current.cloud_id).await?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "NotFoundException",
            &format!("API {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .lambda
                .remove_permission()
                .function_name(field(spec, "function"))
                .statement_id(SID)
                .send()
                .await,
        )?;
        gone_is_ok(
            self.clients
                .apigw
                .delete_api()
                .api_id(&current.cloud_id)
                .send()
                .await,
        )
    }
}
