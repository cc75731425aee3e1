//! One device identity per configured device in the hub's registry: `selfSigned` X.509
//! authentication whose primary thumbprint is the SHA-256 of the certificate made for the
//! device on this machine (see [`certificate`]). The state records the thumbprint, never the
//! key. Drift (another thumbprint, a disabled device, a lost key file) is fixed by a PUT with
//! the identity's ETag; destroy deletes the identity and the device's key.

use crate::arm::ArmClient;
use crate::context::{input, resource_path, GROUP_KEY};
use crate::l1::registry::{Device, Registry};
use crate::l1::{certificate, hub};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of a device identity.
pub const KIND: &str = "azure_iot_device";

/// Inputs key: the id of the hub's spec (its outputs carry the host name).
pub const HUB_KEY: &str = "hub";

/// Inputs key: the hub's name (to find it in ARM when the outputs do not have it).
pub const HUB_NAME_KEY: &str = "hub_name";

/// Inputs key: the directory of the device's credentials.
pub const DIR_KEY: &str = "dir";

/// The desired settings of an identity (the keys `read` reports). The thumbprint itself is
/// not known before the certificate is made, so what is compared is that the registry holds
/// the thumbprint of the certificate on this machine.
pub fn desired() -> Value {
    json!({
        "status": "enabled",
        "authentication_type": "selfSigned",
        "thumbprint_matches_certificate": true,
    })
}

/// Creates, reads, updates and deletes device identities.
pub struct DeviceIdentityDriver {
    arm: Arc<ArmClient>,
}

impl DeviceIdentityDriver {
    /// A driver on this client (whose credential the registry client reuses).
    pub fn new(arm: Arc<ArmClient>) -> Self {
        DeviceIdentityDriver { arm }
    }

    /// The registry of the hub this spec's identity lives in, or `None` when there is no hub
    /// (so no identities either). The hub comes from the outputs, else from ARM: a destroy
    /// without a state file reads identities before their hub.
    async fn registry(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<(Registry, Hub)>, CloudError> {
        let hub_id = ResourceId(input(spec, HUB_KEY)?.to_string());
        let found = match deps.get(&hub_id) {
            Some(hub) => Some(hub.clone()),
            None => {
                let path = resource_path(
                    &self.arm,
                    input(spec, GROUP_KEY)?,
                    hub::TYPE,
                    input(spec, HUB_NAME_KEY)?,
                );
                let hub_spec = ResourceSpec::new(
                    hub_id,
                    spec.layer,
                    spec.provider,
                    hub::KIND,
                    input(spec, HUB_NAME_KEY)?,
                );
                match self.arm.get(&path, hub::API, &hub_spec.label()).await? {
                    Some(body) => Some(hub::observe(&body, &format!("IoT Hub {}", hub_spec.name))?),
                    None => None,
                }
            }
        };
        let Some(hub) = found else {
            return Ok(None);
        };
        let host = hub.attr(hub::HOST_NAME).ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "HubNotReady",
                format!("{}: the IoT Hub reports no host name yet", what(spec)),
            )
        })?;
        Ok(Some((
            Registry::new(&self.arm, host),
            Hub {
                id: hub.cloud_id.clone(),
                host: host.to_string(),
            },
        )))
    }

    async fn put(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
        if_match: Option<String>,
    ) -> Result<Observed, CloudError> {
        let what = what(spec);
        let (registry, hub) = self
            .registry(spec, deps)
            .await?
            .ok_or_else(|| no_hub(&what))?;
        let dir = Path::new(input(spec, DIR_KEY)?);
        let thumb = certificate::ensure_credentials(dir, &spec.name)?;
        let body = identity_body(&spec.name, &thumb, if_match.as_deref());
        let got = registry
            .put(&spec.name, &body, if_match.as_deref(), &what)
            .await?;
        observe(&got, &hub, dir, &what)
    }
}

/// The hub an identity lives in: its ARM id and its host as ARM reported it.
struct Hub {
    id: String,
    host: String,
}

fn what(spec: &ResourceSpec) -> String {
    format!("IoT Hub device identity {}", spec.name)
}

fn no_hub(what: &str) -> CloudError {
    CloudError::new(
        ErrorClass::NotFound,
        "DependencyMissing",
        format!("{what}: its IoT Hub is not deployed"),
    )
}

/// The registry body of an identity with this thumbprint.
pub fn identity_body(device: &str, thumbprint: &str, etag: Option<&str>) -> Value {
    let mut body = json!({
        "deviceId": device,
        "status": "enabled",
        "authentication": {
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": thumbprint, "secondaryThumbprint": null},
        },
        "capabilities": {"iotEdge": false},
    });
    if let Some(e) = etag {
        body["etag"] = json!(e.trim_matches('"'));
    }
    body
}

fn observe(device: &Device, hub: &Hub, dir: &Path, what: &str) -> Result<Observed, CloudError> {
    let b = &device.body;
    let id = b
        .get("deviceId")
        .and_then(Value::as_str)
        .ok_or_else(|| hub::missing(what, "deviceId"))?;
    let primary = b
        .pointer("/authentication/x509Thumbprint/primaryThumbprint")
        .and_then(Value::as_str);
    let local = certificate::local_thumbprint(dir);
    let matches = matches!((primary, &local), (Some(p), Some(l)) if p.eq_ignore_ascii_case(l));
    Ok(Observed::new(
        format!("{}/devices/{id}", hub.id),
        json!({
            "device_id": id,
            "status": b.get("status"),
            "authentication_type": b.pointer("/authentication/type"),
            "primary_thumbprint": primary,
            "thumbprint_matches_certificate": matches,
            "etag": device.etag,
            // Kept so that delete, which gets no outputs, reaches the same registry.
            HOST_KEY: hub.host,
        }),
    ))
}

#[async_trait]
impl ResourceDriver for DeviceIdentityDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        let Some((registry, hub)) = self.registry(spec, deps).await? else {
            return Ok(None);
        };
        let dir = Path::new(input(spec, DIR_KEY)?);
        match registry.get(&spec.name, &what).await? {
            Some(d) => observe(&d, &hub, dir, &what).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, deps, None).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // The ETag of the identity as it is now: a stale one would be refused with 412.
        let what = what(spec);
        let (registry, _) = self
            .registry(spec, deps)
            .await?
            .ok_or_else(|| no_hub(&what))?;
        let etag = registry
            .get(&spec.name, &what)
            .await?
            .and_then(|d| d.etag)
            .ok_or_else(|| {
                CloudError::new(
                    ErrorClass::EventualConsistency,
                    "DeviceNotFound",
                    format!("{what}: gone while it was being updated"),
                )
            })?;
        self.put(spec, deps, Some(etag)).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        // Delete gets no outputs: the observation carries the registry's host. One found
        // without it (discovered, never read) goes with its hub, which deletes its registry.
        let what = what(spec);
        if let Some(host) = current.attr(HOST_KEY) {
            Registry::new(&self.arm, host)
                .delete(&spec.name, &what)
                .await?;
        }
        certificate::remove_credentials(Path::new(input(spec, DIR_KEY)?))
    }
}

/// Observed attribute: the host of the registry the identity is in.
pub const HOST_KEY: &str = "hub_host_name";
