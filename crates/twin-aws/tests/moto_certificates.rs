//! Device certificates on moto: one ACTIVE certificate per device after any deploy (a lost key's
//! certificate is deleted, a stray one attached by hand is drift that deploy removes), and
//! `rotate-certificates` without a gap, resumable after a failure at any step, leaving nothing
//! after destroy.

mod aws_support;

use aws_support::{clients, engine, fast_retry, leftovers, setup, write_twin};
use std::path::Path;
use tokio_util::sync::CancellationToken;
use twin_aws::fault_proxy::{Fault, FaultProxy};
use twin_aws::l1::certificate::{candidate_ids, make_certificate};
use twin_aws::l1::rotation::{AwsDeviceOps, DeviceFiles};
use twin_aws::AwsClients;
use twin_config::{names, TwinConfig};
use twin_engine::{CertificateRotation, CloudError, DeviceOps, InfoStatus};

async fn principals(c: &AwsClients, thing: &str) -> Vec<String> {
    c.iot
        .list_thing_principals()
        .thing_name(thing)
        .send()
        .await
        .expect("list thing principals")
        .principals()
        .to_vec()
}

fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or_default().to_string()
}

/// The certificate's status, or `None` when IoT no longer has it.
async fn status(c: &AwsClients, id: &str) -> Option<String> {
    let d = c
        .iot
        .describe_certificate()
        .certificate_id(id)
        .send()
        .await
        .ok()?;
    d.certificate_description()
        .and_then(|d| d.status())
        .map(|s| s.as_str().to_string())
}

async fn listed(c: &AwsClients, id: &str) -> bool {
    let mut marker = None;
    loop {
        let page = c
            .iot
            .list_certificates()
            .set_marker(marker)
            .send()
            .await
            .expect("list certificates");
        if page
            .certificates()
            .iter()
            .any(|x| x.certificate_id() == Some(id))
        {
            return true;
        }
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            return false;
        }
    }
}

async fn assert_gone(c: &AwsClients, id: &str) {
    assert_eq!(status(c, id).await, None, "certificate {id} still exists");
    assert!(!listed(c, id).await, "certificate {id} still listed");
}

async fn policies(c: &AwsClients, arn: &str) -> Vec<String> {
    c.iot
        .list_attached_policies()
        .target(arn)
        .send()
        .await
        .expect("attached policies")
        .policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_string))
        .collect()
}

/// The id IoT gave the certificate in this file.
async fn file_cert_id(c: &AwsClients, path: &Path) -> String {
    let pem = std::fs::read_to_string(path).expect("certificate file");
    for id in candidate_ids(&pem, true) {
        if status(c, &id).await.is_some() {
            return id;
        }
    }
    panic!("{} is not registered", path.display())
}

/// Asserts the device's thing has exactly one principal, the ACTIVE certificate of its files,
/// attached to the device policy; returns its id.
async fn assert_single_certificate(c: &AwsClients, config: &TwinConfig, device: &str) -> String {
    let twin = config.name();
    let thing = names::thing_name(twin, device);
    let files = DeviceFiles::new(config, device);
    let p = principals(c, &thing).await;
    assert_eq!(p.len(), 1, "{thing}: {p:?}");
    let id = file_cert_id(c, &files.cert()).await;
    assert_eq!(
        id_of(&p[0]),
        id,
        "{thing}'s principal is the certificate on disk"
    );
    assert_eq!(status(c, &id).await.as_deref(), Some("ACTIVE"));
    assert_eq!(
        policies(c, &p[0]).await,
        vec![names::iot_policy_name(twin, device)]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(files.key())
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", files.key().display());
    for leftover in [
        files.staged_key(),
        files.staged_cert(),
        files.previous_key(),
        files.previous_cert(),
    ] {
        assert!(!leftover.exists(), "{} left behind", leftover.display());
    }
    id
}

async fn rotate(
    endpoint: &str,
    config: &TwinConfig,
    device: &str,
) -> Result<CertificateRotation, CloudError> {
    AwsDeviceOps::new(clients(endpoint).await)
        .rotate_certificate(config, device, &fast_retry(), &CancellationToken::new())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_key_gets_a_new_certificate_and_the_old_one_is_deleted() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "lost-key";
    write_twin(dir.path(), twin, 2);
    let (engine, config) = engine(dir.path(), &moto.endpoint).await;
    let c = clients(&moto.endpoint).await;
    engine.deploy(None).await.expect("first deploy");
    let old = assert_single_certificate(&c, &config, "sensor-0").await;
    let other = assert_single_certificate(&c, &config, "sensor-1").await;

    let files = DeviceFiles::new(&config, "sensor-0");
    std::fs::remove_file(files.key()).expect("remove key");
    std::fs::remove_file(files.cert()).expect("remove cert");
    engine
        .deploy(None)
        .await
        .expect("deploy after the key was lost");
    let new = assert_single_certificate(&c, &config, "sensor-0").await;
    assert_ne!(new, old);
    assert_gone(&c, &old).await;
    assert_eq!(
        assert_single_certificate(&c, &config, "sensor-1").await,
        other
    );

    let again = engine.deploy(None).await.expect("third deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");

    // A certificate attached to the thing by hand is drift, and deploy removes it.
    let (pem, _key) = make_certificate("stray").expect("certificate");
    let stray = c
        .iot
        .register_certificate_without_ca()
        .certificate_pem(&pem)
        .status(aws_sdk_iot::types::CertificateStatus::Active)
        .send()
        .await
        .expect("register stray");
    let stray_arn = stray.certificate_arn().unwrap_or_default().to_string();
    c.iot
        .attach_thing_principal()
        .thing_name(names::thing_name(twin, "sensor-1"))
        .principal(&stray_arn)
        .send()
        .await
        .expect("attach stray");
    let rows = engine.info().await.expect("info");
    let drifted: Vec<_> = rows
        .iter()
        .filter(|r| r.status != InfoStatus::Ok)
        .map(|r| (r.kind.as_str(), r.status.clone()))
        .collect();
    assert_eq!(
        drifted,
        vec![(
            "iot_attachments",
            InfoStatus::Drifted(vec!["other_principals".into()])
        )]
    );
    let healed = engine.deploy(None).await.expect("deploy removes the stray");
    assert_eq!(healed.updated, 1, "{healed:?}");
    assert_gone(&c, &id_of(&stray_arn)).await;
    assert_eq!(
        assert_single_certificate(&c, &config, "sensor-1").await,
        other
    );

    engine.destroy(None).await.expect("destroy");
    assert!(leftovers(&c, twin).await.is_empty());
    for id in [&new, &other] {
        assert_gone(&c, id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_replaces_one_devices_certificate_and_destroy_leaves_nothing() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "rotate-ok";
    write_twin(dir.path(), twin, 2);
    let (engine, config) = engine(dir.path(), &moto.endpoint).await;
    let c = clients(&moto.endpoint).await;
    engine.deploy(None).await.expect("deploy");
    let first = assert_single_certificate(&c, &config, "sensor-0").await;
    let other = assert_single_certificate(&c, &config, "sensor-1").await;
    let key_before = std::fs::read(DeviceFiles::new(&config, "sensor-0").key()).expect("key");

    let r = rotate(&moto.endpoint, &config, "sensor-0")
        .await
        .expect("rotate");
    assert_eq!(r.device, "sensor-0");
    assert_eq!(r.old_certificate_id.as_deref(), Some(first.as_str()));
    let second = assert_single_certificate(&c, &config, "sensor-0").await;
    assert_eq!(r.new_certificate_id, second);
    assert_ne!(second, first);
    assert_gone(&c, &first).await;
    let key_after = std::fs::read(DeviceFiles::new(&config, "sensor-0").key()).expect("key");
    assert_ne!(key_before, key_after, "a new key");
    assert_eq!(
        assert_single_certificate(&c, &config, "sensor-1").await,
        other
    );

    let r = rotate(&moto.endpoint, &config, "sensor-0")
        .await
        .expect("rotate again");
    assert_eq!(r.old_certificate_id.as_deref(), Some(second.as_str()));
    let third = assert_single_certificate(&c, &config, "sensor-0").await;
    assert_eq!(r.new_certificate_id, third);
    assert_gone(&c, &second).await;

    let after = engine.deploy(None).await.expect("deploy after rotation");
    assert_eq!((after.created, after.updated), (0, 0), "{after:?}");

    engine.destroy(None).await.expect("destroy");
    assert!(leftovers(&c, twin).await.is_empty());
    for id in [&third, &other] {
        assert_gone(&c, id).await;
    }
    assert!(!DeviceFiles::new(&config, "sensor-0").key().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_rotation_is_finished_by_a_rerun() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "rotate-crash";
    write_twin(dir.path(), twin, 1);
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", moto.port).parse().expect("addr"))
        .await
        .expect("proxy");
    let (engine, config) = engine(dir.path(), &moto.endpoint).await;
    let c = clients(&moto.endpoint).await;
    engine.deploy(None).await.expect("deploy");
    let first = assert_single_certificate(&c, &config, "sensor-0").await;
    let files = DeviceFiles::new(&config, "sensor-0");
    let thing = names::thing_name(twin, "sensor-0");

    // Fails after the new certificate is registered and attached to the thing, before the
    // policy is attached and before the files are swapped: the device still uses the old one.
    proxy.inject(Fault::on_path(
        "PUT",
        "/target-policies/",
        1,
        400,
        "InvalidRequestException",
        "injected",
    ));
    let e = rotate(&proxy.endpoint, &config, "sensor-0")
        .await
        .expect_err("attach policy fails");
    assert_eq!(e.code, "InvalidRequestException");
    assert!(e.message.contains("sensor-0"), "{e}");
    assert!(files.staged_cert().exists() && files.staged_key().exists());
    assert_eq!(file_cert_id(&c, &files.cert()).await, first);
    assert_eq!(status(&c, &first).await.as_deref(), Some("ACTIVE"));

    // A deploy in between keeps the device's one certificate (the one its files name) and
    // removes the half-attached new one; the rerun registers the staged pair again.
    engine.deploy(None).await.expect("deploy between the runs");
    assert_eq!(principals(&c, &thing).await.len(), 1);
    assert_eq!(file_cert_id(&c, &files.cert()).await, first);
    assert!(files.staged_cert().exists());

    // Fails deleting the old certificate: the new one is active, attached and on disk, the old
    // one deactivated and detached, its files kept as `.previous`.
    proxy.inject(Fault::on_path(
        "DELETE",
        "/certificates/",
        1,
        400,
        "InvalidRequestException",
        "injected",
    ));
    let e = rotate(&proxy.endpoint, &config, "sensor-0")
        .await
        .expect_err("delete fails");
    assert_eq!(e.code, "InvalidRequestException");
    assert!(!files.staged_cert().exists() && files.previous_cert().exists());
    let second = file_cert_id(&c, &files.cert()).await;
    assert_ne!(second, first);
    assert_eq!(status(&c, &second).await.as_deref(), Some("ACTIVE"));
    let p = principals(&c, &thing).await;
    assert_eq!(
        p.iter().map(|a| id_of(a)).collect::<Vec<_>>(),
        vec![second.clone()]
    );
    assert_eq!(status(&c, &first).await.as_deref(), Some("INACTIVE"));

    // The rerun finishes that rotation rather than starting another.
    let r = rotate(&proxy.endpoint, &config, "sensor-0")
        .await
        .expect("rerun");
    assert_eq!(r.old_certificate_id.as_deref(), Some(first.as_str()));
    assert_eq!(r.new_certificate_id, second);
    assert_eq!(
        assert_single_certificate(&c, &config, "sensor-0").await,
        second
    );
    assert_gone(&c, &first).await;

    engine.destroy(None).await.expect("destroy");
    assert!(leftovers(&c, twin).await.is_empty());
    assert_gone(&c, &second).await;
}
