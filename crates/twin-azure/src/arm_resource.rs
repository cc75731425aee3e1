//! One driver for the plain ARM resources: those whose whole lifecycle is GET (read), PUT
//! (create and update alike: ARM's PUT is create-or-update) and DELETE on one path. A type
//! says only what is its own ([`ArmResource`]: its path, its name in errors, the body it PUTs
//! and what it reads back, compared with its desired settings for drift); [`ArmDriver`] turns
//! that into a [`ResourceDriver`]. Types with more to do (the site's config, the IoT Hub's etag,
//! role assignments, app settings, the package) keep their own drivers.

use crate::arm::ArmClient;
use crate::context::{input, merged_tags, resource_path, GROUP_KEY};
use async_trait::async_trait;
use serde_json::Value;
use std::marker::PhantomData;
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// How a resource goes away on destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// `DELETE` on its path (a resource already gone counts as deleted).
    Delete,
    /// It cannot be deleted on its own and goes with its parent, so deleting it does nothing.
    WithParent,
}

/// What is specific to one plain ARM resource type. Implemented by a unit struct per type;
/// the functions take the spec (name, inputs, desired settings) and the dependencies' outputs.
pub trait ArmResource: Send + Sync + 'static {
    /// The API version of the resource's provider.
    const API: &'static str;

    /// Whether the resource carries ARM `tags`: an update then re-reads them first, so tags
    /// someone else added are kept (the observation keeps only ours).
    const TAGGED: bool = true;

    /// How the resource is deleted.
    const DELETION: Deletion = Deletion::Delete;

    /// The resource as errors name it, e.g. `managed identity <name>`.
    fn what(spec: &ResourceSpec) -> String;

    /// Its ARM path (`/subscriptions/.../<name>`), without the API version.
    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError>;

    /// The body to PUT. `tags` are the tags to write: the spec's merged over the resource's
    /// current ones (for [`Self::TAGGED`] types; otherwise the spec's own).
    fn body(
        arm: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Value, CloudError>;

    /// The observation of `body` as ARM returned it (from a GET or a PUT); `what` names it.
    /// Reads tolerate missing dependency outputs (a plan before deploy, a destroy after a lost
    /// state): a link that cannot be checked reads as drift.
    fn observe(
        body: &Value,
        what: &str,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Observed, CloudError>;

    /// Whether an update must replace the resource (DELETE, then PUT as new) because a
    /// property that differs cannot change in place, e.g. a system topic's source.
    fn must_replace(_spec: &ResourceSpec, _current: &Observed) -> bool {
        false
    }

    /// Refuses an update the cloud cannot make in place (e.g. an immutable property), before
    /// anything is sent.
    fn check_update(_spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        Ok(())
    }
}

/// The path of a top-level resource of ARM type `ns_type` named like the spec, in the spec's
/// resource group (its `resource_group` input).
pub fn group_resource_path(
    arm: &ArmClient,
    spec: &ResourceSpec,
    ns_type: &str,
) -> Result<String, CloudError> {
    Ok(resource_path(
        arm,
        input(spec, GROUP_KEY)?,
        ns_type,
        &spec.name,
    ))
}

/// The [`ResourceDriver`] of any [`ArmResource`] type `R`.
pub struct ArmDriver<R> {
    arm: Arc<ArmClient>,
    // `fn() -> R`: the driver holds no `R`, so it is Send + Sync whatever `R` is.
    resource: PhantomData<fn() -> R>,
}

impl<R: ArmResource> ArmDriver<R> {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        ArmDriver {
            arm,
            resource: PhantomData,
        }
    }

    async fn put(
        &self,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = R::what(spec);
        let body = R::body(&self.arm, spec, tags, deps)?;
        let got = self
            .arm
            .put(&R::path(&self.arm, spec)?, R::API, &body, &what)
            .await?;
        R::observe(&got, &what, spec, deps)
    }
}

#[async_trait]
impl<R: ArmResource> ResourceDriver for ArmDriver<R> {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = R::what(spec);
        // A 404 (also one for a parent that is gone, taking the resource along) is `None`.
        match self
            .arm
            .get(&R::path(&self.arm, spec)?, R::API, &what)
            .await?
        {
            Some(body) => R::observe(&body, &what, spec, deps).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, merged_tags(None, spec), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        R::check_update(spec, current)?;
        let path = R::path(&self.arm, spec)?;
        let tags = if R::TAGGED {
            let now = self.arm.get(&path, R::API, &R::what(spec)).await?;
            merged_tags(now.as_ref().and_then(|c| c.get("tags")), spec)
        } else {
            merged_tags(None, spec)
        };
        if R::must_replace(spec, current) {
            // The replacement is a new resource: it carries the spec's tags only.
            self.arm.delete(&path, R::API, &R::what(spec)).await?;
            return self.put(spec, merged_tags(None, spec), deps).await;
        }
        self.put(spec, tags, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        match R::DELETION {
            Deletion::Delete => {
                self.arm
                    .delete(&R::path(&self.arm, spec)?, R::API, &R::what(spec))
                    .await
            }
            Deletion::WithParent => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The generic driver's own behaviour against the test kit's fake ARM (a stand-in for
    //! Azure Resource Manager), on real resource types.

    use super::*;
    use crate::arm::ArmOptions;
    use crate::context::{GROUP_KEY, LOCATION_KEY, TAGS_KEY};
    use crate::l3::hot::container::SqlContainerDriver;
    use crate::{identity, l2::publishing, resource_group, Auth};
    use serde_json::json;
    use std::time::Duration;
    use twin_config::{Layer, ProviderName};
    use twin_engine::ResourceId;
    use twin_testkit::fake_arm::{fake_token, FakeArm, FakeArmConfig};

    async fn fake() -> (FakeArm, Arc<ArmClient>) {
        let fake = FakeArm::start(FakeArmConfig::default())
            .await
            .expect("fake ARM starts");
        let arm = ArmClient::new(
            &fake.url,
            fake.subscription_id(),
            Auth::StaticToken(fake_token()),
            ArmOptions {
                poll_min: Duration::from_millis(5),
                poll_max: Duration::from_millis(50),
                operation_deadline: Duration::from_secs(10),
            },
        )
        .expect("client");
        (fake, Arc::new(arm))
    }

    fn spec(kind: &str, name: &str, desired: Value, inputs: Value) -> ResourceSpec {
        let mut all = json!({
            TAGS_KEY: {"twin": "t"},
            GROUP_KEY: "t-rg",
            LOCATION_KEY: "westeurope",
        });
        if let (Some(all), Some(more)) = (all.as_object_mut(), inputs.as_object()) {
            all.extend(more.clone());
        }
        ResourceSpec::new(
            ResourceId::new(&["l3", kind, name]),
            Layer::L3Cold,
            ProviderName::Azure,
            kind,
            name,
        )
        .desired(desired)
        .inputs(all)
    }

    fn group() -> ResourceSpec {
        spec(
            resource_group::KIND,
            "t-rg",
            resource_group::desired("westeurope"),
            json!({}),
        )
    }

    #[tokio::test]
    async fn fake_arm_read_create_update_delete_of_a_tagged_resource() {
        let (fake, arm) = fake().await;
        let none = Outputs::default();
        resource_group::ResourceGroupDriver::new(arm.clone())
            .create(&group(), &none)
            .await
            .expect("group");
        let driver = identity::IdentityDriver::new(arm);
        let id = spec(
            identity::KIND,
            "t-id",
            identity::desired("westeurope"),
            json!({}),
        );

        assert!(driver.read(&id, &none).await.expect("read").is_none());
        let made = driver.create(&id, &none).await.expect("create");
        assert!(made.drift(&id.desired).is_empty(), "{made:?}");
        let stored = fake.resource(&made.cloud_id).expect("stored");
        assert_eq!(stored["tags"], json!({"twin": "t"}));

        // Someone adds a tag of their own: an update re-reads the tags and keeps it.
        assert!(fake.set(&made.cloud_id, "/tags", json!({"twin": "t", "team": "ops"})));
        let read = driver
            .read(&id, &none)
            .await
            .expect("read")
            .expect("exists");
        driver.update(&id, &read, &none).await.expect("update");
        let stored = fake.resource(&made.cloud_id).expect("stored");
        assert_eq!(stored["tags"], json!({"twin": "t", "team": "ops"}));

        driver.delete(&id, &read).await.expect("delete");
        assert!(fake.resource(&made.cloud_id).is_none());
        assert!(driver.read(&id, &none).await.expect("read").is_none());
        // Deleting what is already gone succeeds.
        driver.delete(&id, &read).await.expect("delete again");
    }

    #[tokio::test]
    async fn fake_arm_a_refused_update_and_a_resource_deleted_with_its_parent_send_nothing() {
        let (fake, arm) = fake().await;
        let none = Outputs::default();
        fake.clear_log();

        let policy = spec(
            publishing::KIND,
            "scm",
            publishing::desired(),
            json!({publishing::SITE_KEY: "t-func"}),
        );
        let observed = Observed::new("/x/scm", json!({"allow": false}));
        publishing::PublishingPolicyDriver::new(arm.clone())
            .delete(&policy, &observed)
            .await
            .expect("a policy goes with its site");

        // The hot container's partition key cannot change: refused before any call.
        let container = spec(
            crate::l3::hot::container::KIND,
            "hot",
            crate::l3::hot::container::desired("hot"),
            json!({"account": "t-cosmos", "database": "t"}),
        );
        let other_key = Observed::new(
            "/x/hot",
            json!({"resource_id": "hot", "partition_key": {"paths": ["/other"], "kind": "Hash"}}),
        );
        let e = SqlContainerDriver::new(arm)
            .update(&container, &other_key, &none)
            .await
            .expect_err("refused");
        assert_eq!(e.code, "PartitionKeyImmutable");
        assert!(
            e.message.contains("Cosmos DB container t-cosmos/t/hot"),
            "{}",
            e.message
        );
        assert!(fake.log().is_empty(), "{:?}", fake.log());
    }

    #[tokio::test]
    async fn fake_arm_a_resource_that_must_be_replaced_is_deleted_and_made_anew() {
        use crate::l1::event_grid::{self, SystemTopicDriver};
        let (fake, arm) = fake().await;
        let none = Outputs::default();
        resource_group::ResourceGroupDriver::new(arm.clone())
            .create(&group(), &none)
            .await
            .expect("group");
        let hub_spec = "l1/azure_iot_hub/hub";
        let hub = |id: &str| {
            let mut deps = Outputs::default();
            deps.0.insert(
                ResourceId(hub_spec.to_string()),
                Observed::new(id, json!({"id": id})),
            );
            deps
        };
        let sub = fake.subscription_id().to_string();
        let hub_a = format!(
            "/subscriptions/{sub}/resourceGroups/t-rg/providers/Microsoft.Devices/IotHubs/a"
        );
        let hub_b = format!(
            "/subscriptions/{sub}/resourceGroups/t-rg/providers/Microsoft.Devices/IotHubs/b"
        );
        for h in [&hub_a, &hub_b] {
            // Hubs someone made: the fake checks that a topic's source exists.
            fake.insert(h, json!({"location": "westeurope", "properties": {}}));
        }
        let topic = spec(
            event_grid::TOPIC_KIND,
            "t-topic",
            event_grid::topic_desired("westeurope"),
            json!({event_grid::HUB_KEY: hub_spec}),
        );
        let driver = SystemTopicDriver::new(arm);
        let made = driver.create(&topic, &hub(&hub_a)).await.expect("create");
        assert!(made.drift(&topic.desired).is_empty(), "{made:?}");

        // The hub is now another one: the topic's source cannot change, so it is replaced.
        let read = driver
            .read(&topic, &hub(&hub_b))
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(read.drift(&topic.desired), vec!["source_is_hub"]);
        fake.clear_log();
        let new = driver
            .update(&topic, &read, &hub(&hub_b))
            .await
            .expect("replaced");
        assert!(new.drift(&topic.desired).is_empty(), "{new:?}");
        let calls = fake.mutating_calls();
        assert!(
            calls.first().is_some_and(|c| c.starts_with("DELETE "))
                && calls.iter().any(|c| c.starts_with("PUT ")),
            "{calls:?}"
        );
        let stored = fake.resource(&new.cloud_id).expect("stored");
        assert_eq!(stored["properties"]["source"], json!(hub_b));
    }
}
