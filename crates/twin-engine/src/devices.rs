//! The device commands (`rotate-certificates`), implemented by each provider that hosts the
//! twin's devices (layer 1).

use crate::error::CloudError;
use crate::retry::RetryPolicy;
use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use twin_config::TwinConfig;

/// What rotating one device's certificate did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateRotation {
    /// The device id (as in `config_iot_devices.json`).
    pub device: String,
    /// The certificate the device had before (now deleted), if it had one.
    pub old_certificate_id: Option<String>,
    /// The certificate the device has now (the only active one attached to its thing).
    pub new_certificate_id: String,
}

/// Device commands of one provider. Every cloud call runs under `retry`, and stops when
/// `cancel` fires.
#[async_trait]
pub trait DeviceOps: Send + Sync {
    /// Gives `device` a new key and certificate without a gap: the new certificate is active
    /// and attached, and its files are in the device directory, before the old one is
    /// deactivated, detached and deleted. A rerun after a crash finishes the interrupted
    /// rotation instead of starting another.
    async fn rotate_certificate(
        &self,
        twin: &TwinConfig,
        device: &str,
        retry: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Result<CertificateRotation, CloudError>;
}
