//! IAM roles: one per function (or service), trusted by exactly one service principal, with one
//! inline policy that names the twin's own ARNs. No managed `*FullAccess` policies.

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of a role.
pub const KIND: &str = "iam_role";

/// Name of the one inline policy every role carries.
pub const INLINE_POLICY: &str = "least-privilege";

/// A role to describe: `<twin>-<role>`, assumable by one service (or one other role), allowed a
/// list of statements.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    role: String,
    principal: Value,
    statements: Vec<Value>,
    depends_on: Vec<ResourceId>,
}

impl RoleSpec {
    /// A role named `<twin>-<role>` that `service` (e.g. `lambda.amazonaws.com`) may assume.
    pub fn new(role: &str, service: &str) -> Self {
        RoleSpec {
            role: role.to_string(),
            principal: json!({"Service": service}),
            statements: Vec::new(),
            depends_on: Vec::new(),
        }
    }

    /// A role named `<twin>-<role>` that only the role `role_arn` may assume (e.g. the
    /// Grafana data source's dashboard role, assumed by the workspace's role). IAM checks that
    /// a principal exists, so the spec should depend on the trusted role's spec.
    pub fn assumable_by_role(role: &str, role_arn: &str) -> Self {
        RoleSpec {
            role: role.to_string(),
            principal: json!({"AWS": role_arn}),
            statements: Vec::new(),
            depends_on: Vec::new(),
        }
    }

    /// Allows `actions` on exactly the resource whose ARN is `arn`, an output of another
    /// resource (e.g. a secret's, whose ARN ends in a suffix Secrets Manager picks).
    pub fn allow_ref(mut self, actions: &[&str], arn: &twin_engine::OutputRef) -> Self {
        self.statements.push(json!({
            "Effect": "Allow",
            "Action": actions,
            "Resource": [arn.to_value()],
        }));
        self
    }

    /// Allows `actions` on exactly `resources`.
    pub fn allow<S: AsRef<str>>(mut self, actions: &[&str], resources: &[S]) -> Self {
        let resources: Vec<&str> = resources.iter().map(AsRef::as_ref).collect();
        self.statements.push(json!({
            "Effect": "Allow",
            "Action": actions,
            "Resource": resources,
        }));
        self
    }

    /// Allows writing logs to the log groups of these functions (cloud names) only.
    pub fn allow_logs(self, ctx: &LayerContext<'_>, functions: &[String]) -> Self {
        let groups: Vec<String> = functions
            .iter()
            .flat_map(|f| {
                let g = crate::logs::log_group_name(f);
                [
                    ctx.clients.arn("logs", &format!("log-group:{g}")),
                    ctx.clients.arn("logs", &format!("log-group:{g}:*")),
                ]
            })
            .collect();
        self.allow(&["logs:CreateLogStream", "logs:PutLogEvents"], &groups)
    }

    /// Adds dependencies (rarely needed: ARNs are deterministic).
    pub fn depends_on<I: IntoIterator<Item = ResourceId>>(mut self, deps: I) -> Self {
        self.depends_on.extend(deps);
        self
    }

    /// The resource id this role gets in `layer`.
    pub fn id(&self, layer: Layer) -> ResourceId {
        role_id(layer, &self.role)
    }

    /// The role's spec in `layer`; desired keys `trust` and `policy` are compared on read.
    pub fn build(self, ctx: &LayerContext<'_>, layer: Layer) -> ResourceSpec {
        let name = names::role_name(ctx.name(), &self.role);
        ctx.spec(layer, KIND, &self.role, name)
            .depends_on(self.depends_on)
            .desired(json!({
                "trust": trust_policy_for(self.principal),
                "policy": {"Version": "2012-10-17", "Statement": self.statements},
            }))
    }
}

/// The id of the role `<twin>-<role>` in `layer`.
pub fn role_id(layer: Layer, role: &str) -> ResourceId {
    crate::context::resource_id(layer, KIND, role)
}

/// The ARN of the role `<twin>-<role>` (deterministic, so specs can name it before it exists).
pub fn role_arn(ctx: &LayerContext<'_>, role: &str) -> String {
    ctx.clients.global_arn(
        "iam",
        &format!("role/{}", names::role_name(ctx.name(), role)),
    )
}

/// A trust policy letting one service principal assume the role.
pub fn trust_policy(service: &str) -> Value {
    trust_policy_for(json!({"Service": service}))
}

/// A trust policy letting one principal (`{"Service": …}` or `{"AWS": <role ARN>}`) assume
/// the role.
pub fn trust_policy_for(principal: Value) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": principal,
            "Action": "sts:AssumeRole",
        }],
    })
}

/// IAM returns policy documents URL-encoded; this decodes and parses one.
pub fn parse_policy_document(text: &str) -> Value {
    if let Ok(v) = serde_json::from_str(text) {
        return v;
    }
    serde_json::from_str(&percent_decode(text)).unwrap_or(Value::Null)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates, reads, updates and deletes roles with their inline policy.
pub struct RoleDriver {
    clients: Arc<crate::AwsClients>,
}

impl RoleDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<crate::AwsClients>) -> Self {
        RoleDriver { clients }
    }

    async fn put_policy(&self, spec: &ResourceSpec) -> Result<(), CloudError> {
        let doc = spec.desired.get("policy").cloned().unwrap_or(Value::Null);
        self.clients
            .iam
            .put_role_policy()
            .role_name(&spec.name)
            .policy_name(INLINE_POLICY)
            .policy_document(doc.to_string())
            .send()
            .await
            .map_err(cloud)?;
        Ok(())
    }
}

#[async_trait]
impl ResourceDriver for RoleDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        _deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let Some(role) = not_found_is_none(
            self.clients
                .iam
                .get_role()
                .role_name(&spec.name)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let Some(role) = role.role else {
            return Ok(None);
        };
        let policy = not_found_is_none(
            self.clients
                .iam
                .get_role_policy()
                .role_name(&spec.name)
                .policy_name(INLINE_POLICY)
                .send()
                .await,
        )?
        .map(|p| parse_policy_document(p.policy_document()))
        .unwrap_or(Value::Null);
        let trust = role
            .assume_role_policy_document()
            .map(parse_policy_document)
            .unwrap_or(Value::Null);
        let owner =
            crate::context::owner_from_tags(role.tags().iter().map(|t| (t.key(), t.value())));
        Ok(Some(
            Observed::new(
                role.arn(),
                json!({"arn": role.arn(), "name": role.role_name(), "trust": trust, "policy": policy}),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let trust = spec.desired.get("trust").cloned().unwrap_or(Value::Null);
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        self.clients
            .iam
            .create_role()
            .role_name(&spec.name)
            .assume_role_policy_document(trust.to_string())
            .description("Created by deployer for a digital twin")
            .tags(tag)
            .send()
            .await
            .map_err(cloud)?;
        self.put_policy(spec).await?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("role {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let trust = spec.desired.get("trust").cloned().unwrap_or(Value::Null);
        if current.attributes.get("trust") != Some(&trust) {
            self.clients
                .iam
                .update_assume_role_policy()
                .role_name(&spec.name)
                .policy_document(trust.to_string())
                .send()
                .await
                .map_err(cloud)?;
        }
        self.put_policy(spec).await?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "NoSuchEntity",
            &format!("role {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        delete_role(&self.clients, &spec.name).await
    }
}

/// Deletes a role with everything attached to it; a role already gone is fine.
pub async fn delete_role(clients: &crate::AwsClients, name: &str) -> Result<(), CloudError> {
    let iam = &clients.iam;
    let inline = not_found_is_none(iam.list_role_policies().role_name(name).send().await)?;
    let Some(inline) = inline else {
        return Ok(());
    };
    for p in inline.policy_names() {
        gone_is_ok(
            iam.delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await,
        )?;
    }
    if let Some(attached) = not_found_is_none(
        iam.list_attached_role_policies()
            .role_name(name)
            .send()
            .await,
    )? {
        for p in attached.attached_policies() {
            if let Some(arn) = p.policy_arn() {
                gone_is_ok(
                    iam.detach_role_policy()
                        .role_name(name)
                        .policy_arn(arn)
                        .send()
                        .await,
                )?;
            }
        }
    }
    gone_is_ok(iam.delete_role().role_name(name).send().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_documents() {
        let v = parse_policy_document("%7B%22a%22%3A%201%7D");
        assert_eq!(v, json!({"a": 1}));
        assert_eq!(parse_policy_document("{\"a\":2}"), json!({"a": 2}));
    }
}
