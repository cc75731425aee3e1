//! `rotate-certificates` on AWS: a device gets a new key and certificate without a gap.
//!
//! The steps, each of which a rerun after a crash recognises from the files in the device
//! directory (`<config-dir>/.deployer/devices/<device>/`):
//!
//! 1. stage: the new key (0600), then the new certificate, as `private.pem.key.next` and
//!    `certificate.pem.crt.next`;
//! 2. register the new certificate ACTIVE (its id is known from the file) and attach it to the
//!    thing and the device policy;
//! 3. swap: the current pair is copied to `*.previous`, then the new key and then the new
//!    certificate are renamed over the current ones;
//! 4. every other principal of the thing (the old certificate among them) is deactivated,
//!    detached and deleted, and so is the certificate in `certificate.pem.crt.previous`;
//! 5. the `*.previous` files are removed.
//!
//! A `.next` certificate means steps 1-3 were under way: they resume with it. `.previous` files
//! without `.next` mean the swap was done: steps 4-5 resume. Either way a rerun finishes that
//! rotation rather than starting another one.

use crate::errors::{cloud, not_found_is_none};
use crate::l1::attachments::{remove_stray_principal, thing_principals};
use crate::l1::certificate::{
    candidate_ids, delete_certificate, device_dir, make_certificate, write_private,
    CERTIFICATE_FILE, PRIVATE_KEY_FILE,
};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iot::types::CertificateStatus;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_config::{names, TwinConfig};
use twin_engine::{CertificateRotation, CloudError, DeviceOps, ErrorClass, RetryPolicy};

/// Suffix of the staged new key and certificate.
pub const STAGED_SUFFIX: &str = "next";

/// Suffix of the replaced key and certificate, kept until the old certificate is deleted.
pub const PREVIOUS_SUFFIX: &str = "previous";

/// Device commands against AWS IoT Core.
pub struct AwsDeviceOps {
    clients: Arc<AwsClients>,
}

impl AwsDeviceOps {
    /// Commands using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        AwsDeviceOps { clients }
    }
}

/// The credential files of one device.
#[derive(Debug, Clone)]
pub struct DeviceFiles {
    dir: PathBuf,
}

impl DeviceFiles {
    /// The files of `device` of `twin`.
    pub fn new(twin: &TwinConfig, device: &str) -> Self {
        DeviceFiles {
            dir: device_dir(&twin.dir, device),
        }
    }

    /// The key the device uses (0600).
    pub fn key(&self) -> PathBuf {
        self.dir.join(PRIVATE_KEY_FILE)
    }

    /// The certificate the device uses.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(CERTIFICATE_FILE)
    }

    /// A key or certificate path with a suffix: `private.pem.key.next`.
    fn with(path: PathBuf, suffix: &str) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".");
        name.push(suffix);
        path.with_file_name(name)
    }

    /// The staged new key.
    pub fn staged_key(&self) -> PathBuf {
        Self::with(self.key(), STAGED_SUFFIX)
    }

    /// The staged new certificate.
    pub fn staged_cert(&self) -> PathBuf {
        Self::with(self.cert(), STAGED_SUFFIX)
    }

    /// The replaced key.
    pub fn previous_key(&self) -> PathBuf {
        Self::with(self.key(), PREVIOUS_SUFFIX)
    }

    /// The replaced certificate.
    pub fn previous_cert(&self) -> PathBuf {
        Self::with(self.cert(), PREVIOUS_SUFFIX)
    }
}

fn local_error(path: &Path, what: &str, e: std::io::Error) -> CloudError {
    CloudError::fatal(
        "LocalFile",
        format!("cannot {what} {}: {e}", path.display()),
    )
    .with_hint("check the permissions of the config directory's .deployer folder")
}

/// A certificate PEM from a file; `None` when the file does not exist.
fn read_pem(path: &Path) -> Result<Option<String>, CloudError> {
    match std::fs::read_to_string(path) {
        Ok(pem) if crate::l1::certificate::certificate_id(&pem).is_some() => Ok(Some(pem)),
        Ok(_) => Err(CloudError::fatal(
            "CorruptCertificate",
            format!("{} holds no PEM certificate", path.display()),
        )
        .with_hint("delete it (and its key beside it) and run the command again")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(local_error(path, "read", e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), CloudError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(local_error(path, "remove", e)),
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), CloudError> {
    std::fs::rename(from, to).map_err(|e| local_error(to, "write", e))
}

/// Step 1: a new key pair and certificate for `thing`, key first; returns the certificate.
fn stage(files: &DeviceFiles, thing: &str) -> Result<String, CloudError> {
    let (cert, key) = make_certificate(thing)?;
    write_private(&files.staged_key(), &key, 0o600)?;
    write_private(&files.staged_cert(), &cert, 0o644)?;
    Ok(cert)
}

/// Step 3: the current pair to `*.previous`, then the staged key and certificate over the
/// current ones. Resumable: once the key is renamed, `.previous` is not rewritten.
fn swap(files: &DeviceFiles) -> Result<(), CloudError> {
    if files.staged_key().exists() {
        for (from, to, mode) in [
            (files.key(), files.previous_key(), 0o600),
            (files.cert(), files.previous_cert(), 0o644),
        ] {
            match std::fs::read_to_string(&from) {
                Ok(text) => write_private(&to, &text, mode)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(local_error(&from, "read", e)),
            }
        }
        rename(&files.staged_key(), &files.key())?;
    }
    if files.staged_cert().exists() {
        rename(&files.staged_cert(), &files.cert())?;
    }
    Ok(())
}

/// A certificate as IoT Core knows it.
#[derive(Debug, Clone)]
struct Registered {
    id: String,
    arn: String,
    active: bool,
}

/// The registered certificate with this PEM, if any.
async fn find(clients: &AwsClients, pem: &str) -> Result<Option<Registered>, CloudError> {
    for id in candidate_ids(pem, clients.endpoint_override) {
        let found = not_found_is_none(
            clients
                .iot
                .describe_certificate()
                .certificate_id(&id)
                .send()
                .await,
        )?;
        if let Some(d) = found.and_then(|o| o.certificate_description().cloned()) {
            return Ok(Some(Registered {
                id,
                arn: d.certificate_arn().unwrap_or_default().to_string(),
                active: d.status() == Some(&CertificateStatus::Active),
            }));
        }
    }
    Ok(None)
}

/// Registers the certificate ACTIVE (already registered is fine) and returns it once visible.
async fn register(clients: &AwsClients, pem: &str) -> Result<Registered, CloudError> {
    if let Err(e) = clients
        .iot
        .register_certificate_without_ca()
        .certificate_pem(pem)
        .status(CertificateStatus::Active)
        .send()
        .await
    {
        let e = cloud(e);
        if e.code != "ResourceAlreadyExistsException" {
            return Err(e);
        }
    }
    let found = find(clients, pem).await?.ok_or_else(|| {
        CloudError::new(
            ErrorClass::EventualConsistency,
            "NotYetVisible",
            "the new certificate is not visible yet",
        )
    })?;
    if !found.active {
        clients
            .iot
            .update_certificate()
            .certificate_id(&found.id)
            .new_status(CertificateStatus::Active)
            .send()
            .await
            .map_err(cloud)?;
    }
    Ok(Registered {
        active: true,
        ..found
    })
}

async fn attach(
    clients: &AwsClients,
    thing: &str,
    policy: &str,
    arn: &str,
) -> Result<(), CloudError> {
    clients
        .iot
        .attach_thing_principal()
        .thing_name(thing)
        .principal(arn)
        .send()
        .await
        .map_err(cloud)?;
    clients
        .iot
        .attach_policy()
        .policy_name(policy)
        .target(arn)
        .send()
        .await
        .map_err(cloud)?;
    Ok(())
}

async fn thing_exists(clients: &AwsClients, thing: &str) -> Result<bool, CloudError> {
    Ok(not_found_is_none(clients.iot.describe_thing().thing_name(thing).send().await)?.is_some())
}

/// One device's rotation: its names, files, and the retry policy every call runs under.
struct Rotation<'a> {
    clients: &'a AwsClients,
    retry: &'a RetryPolicy,
    cancel: &'a CancellationToken,
    device: &'a str,
    thing: String,
    policy: String,
    files: DeviceFiles,
}

impl Rotation<'_> {
    /// Runs one cloud step under the retry policy; its error names the device and the step.
    async fn call<T, F, Fut>(&self, step: &str, call: F) -> Result<T, CloudError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let resume = format!(
            "fix the cause and run `rotate-certificates {}` again; it resumes where this one stopped",
            self.device
        );
        self.retry
            .run_quiet(self.cancel, call)
            .await
            .map_err(|e| match e {
                Some(mut e) => {
                    e.message = format!(
                        "rotating the certificate of device {} (thing {}): {step}: {}",
                        self.device, self.thing, e.message
                    );
                    if e.hint.is_none() {
                        e = e.with_hint(resume);
                    }
                    e
                }
                None => CloudError::fatal(
                    "Cancelled",
                    format!(
                        "rotating the certificate of device {} was cancelled during {step}",
                        self.device
                    ),
                )
                .with_hint(resume),
            })
    }

    /// Waits until the thing's principals satisfy `ok`.
    async fn wait_principals(
        &self,
        what: &str,
        ok: impl Fn(&[String]) -> bool,
    ) -> Result<(), CloudError> {
        let ok = &ok;
        twin_engine::wait::poll_until(
            &format!("thing {} {what}", self.thing),
            Duration::from_millis(100),
            Duration::from_secs(2),
            self.retry.deadline,
            || async move {
                let now = thing_principals(self.clients, &self.thing).await?;
                Ok(ok(&now).then_some(()))
            },
        )
        .await
    }

    async fn run(&self) -> Result<CertificateRotation, CloudError> {
        let (clients, thing, policy, files) =
            (self.clients, &self.thing, &self.policy, &self.files);
        if !self
            .call("DescribeThing", |_| thing_exists(clients, thing))
            .await?
        {
            return Err(CloudError::fatal(
                "DeviceNotDeployed",
                format!("thing {thing} of device {} does not exist", self.device),
            )
            .with_hint("run `deployer deploy` first; it gives the device its certificate"));
        }

        // Which rotation: one staged (steps 1-3 under way), one swapped (4-5), or a new one.
        let staged = read_pem(&files.staged_cert())?;
        let current = read_pem(&files.cert())?;
        let previous = read_pem(&files.previous_cert())?;
        let (old_pem, new_pem) = match (staged, current, previous) {
            (Some(new), current, previous) => {
                // Once the staged key was renamed, the current certificate is still the old
                // one, and `.previous` holds it too.
                (current.or(previous), new)
            }
            (None, Some(current), Some(previous)) => (Some(previous), current),
            (None, current, previous) => (current.or(previous), stage(files, thing)?),
        };

        // 2. The new certificate, active and attached, before anything of the old one changes.
        let new = self
            .call("RegisterCertificateWithoutCA", |_| {
                register(clients, &new_pem)
            })
            .await?;
        self.call("AttachThingPrincipal and AttachPolicy", |_| {
            attach(clients, thing, policy, &new.arn)
        })
        .await?;
        self.wait_principals(&format!("lists certificate {}", new.id), |p| {
            p.contains(&new.arn)
        })
        .await?;

        // 3. The device's files now hold the new pair.
        swap(files)?;

        // 4. Every other certificate goes: the thing's strays, and the one replaced.
        let old = match &old_pem {
            Some(pem) => {
                self.call("DescribeCertificate", |_| find(clients, pem))
                    .await?
            }
            None => None,
        }
        .filter(|o| o.id != new.id);
        let strays: Vec<String> = self
            .call("ListThingPrincipals", |_| thing_principals(clients, thing))
            .await?
            .into_iter()
            .filter(|p| *p != new.arn)
            .collect();
        for stray in &strays {
            self.call("removing a previous certificate", |_| {
                remove_stray_principal(clients, thing, policy, stray)
            })
            .await?;
        }
        if let Some(o) = old.as_ref().filter(|o| !strays.contains(&o.arn)) {
            self.call("deleting the previous certificate", |_| {
                delete_certificate(clients, &o.id, &o.arn)
            })
            .await?;
        }
        self.wait_principals(&format!("lists only certificate {}", new.id), |p| {
            p.iter().all(|x| *x == new.arn)
        })
        .await?;

        // 5. The replaced pair is useless now.
        remove_if_present(&files.previous_key())?;
        remove_if_present(&files.previous_cert())?;
        Ok(CertificateRotation {
            device: self.device.to_string(),
            old_certificate_id: old.map(|o| o.id),
            new_certificate_id: new.id,
        })
    }
}

#[async_trait]
impl DeviceOps for AwsDeviceOps {
    async fn rotate_certificate(
        &self,
        twin: &TwinConfig,
        device: &str,
        retry: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Result<CertificateRotation, CloudError> {
        if twin.device(device).is_none() {
            let known: Vec<&str> = twin.devices.iter().map(|d| d.id.as_str()).collect();
            return Err(CloudError::fatal(
                "UnknownDevice",
                format!("`{device}` is not a device of twin {}", twin.name()),
            )
            .with_hint(format!("use one of: {}", known.join(", "))));
        }
        Rotation {
            clients: &self.clients,
            retry,
            cancel,
            device,
            thing: names::thing_name(twin.name(), device),
            policy: names::iot_policy_name(twin.name(), device),
            files: DeviceFiles::new(twin, device),
        }
        .run()
        .await
    }
}
