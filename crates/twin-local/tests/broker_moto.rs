//! The local broker against moto + mosquitto: a 2-device twin deployed with the AWS provider,
//! `up` configures mosquitto from what is registered, and MQTT clients with the devices' own
//! keys find each device's policy enforced.

mod support;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use twin_aws::AwsClients;
use twin_local::{LocalPlane, UpAction};
use twin_simulator::tls::{DeviceCredentials, TlsContext};

/// A client's connection: whether the broker accepted it, and what it received.
struct Client {
    client: AsyncClient,
    connected: bool,
    received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

/// Connects with `cert`/`key` trusting `ca`; waits for CONNACK or the first error.
async fn connect(port: u16, ca: &Path, cert: PathBuf, key: PathBuf, id: &str) -> Client {
    let creds = DeviceCredentials {
        device_id: id.to_string(),
        certificate: cert,
        private_key: key,
    };
    let tls = TlsContext::load(ca, port)
        .expect("local CA")
        .client_config(&creds)
        .expect("client TLS config");
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options
        .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let connected = tokio::time::timeout(Duration::from_secs(10), first_outcome(&mut eventloop))
        .await
        .unwrap_or(false);
    let (tx, received) = mpsc::unbounded_channel();
    if connected {
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
            }
        });
    }
    Client {
        client,
        connected,
        received,
    }
}

async fn first_outcome(eventloop: &mut EventLoop) -> bool {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

fn device_files(dir: &Path, device: &str) -> (PathBuf, PathBuf) {
    let d = dir.join(".deployer/devices").join(device);
    (d.join("certificate.pem.crt"), d.join("private.pem.key"))
}

/// The rule engine's subscription to the twin's telemetry, acknowledged.
async fn rule_engine(plane: &LocalPlane, port: u16, twin: &str) -> Client {
    let pki = plane.pki();
    let sub = connect(
        port,
        &pki.ca_cert,
        pki.rule_engine_cert.clone(),
        pki.rule_engine_key.clone(),
        "rule-engine",
    )
    .await;
    assert!(sub.connected, "the rule engine identity is refused");
    sub.client
        .subscribe(format!("{twin}/iot-data/+"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    sub
}

/// Waits for the next message, with a deadline.
async fn next(c: &mut Client) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(10), c.received.recv())
        .await
        .expect("a message within 10 s")
        .expect("subscriber still connected")
}

async fn delete_certificate(clients: &AwsClients, thing: &str) {
    let iot = &clients.iot;
    let principals = iot
        .list_thing_principals()
        .thing_name(thing)
        .send()
        .await
        .expect("principals");
    for arn in principals.principals() {
        let id = arn.rsplit('/').next().unwrap_or_default();
        iot.detach_thing_principal()
            .thing_name(thing)
            .principal(arn)
            .send()
            .await
            .expect("detach thing");
        let policies = iot
            .list_attached_policies()
            .target(arn)
            .send()
            .await
            .expect("policies");
        for p in policies.policies() {
            iot.detach_policy()
                .policy_name(p.policy_name().unwrap_or_default())
                .target(arn)
                .send()
                .await
                .expect("detach policy");
        }
        iot.update_certificate()
            .certificate_id(id)
            .new_status(aws_sdk_iot::types::CertificateStatus::Inactive)
            .send()
            .await
            .expect("deactivate");
        iot.delete_certificate()
            .certificate_id(id)
            .send()
            .await
            .expect("delete certificate");
    }
}

fn simulator_config(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    serde_json::from_str(&text).expect("simulator config JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_trusts_exactly_the_registered_devices_and_enforces_their_policies() {
    let moto = twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let twin = "local-l1";
    support::write_twin(dir, twin, &["dev-a", "dev-b"]);
    let clients = support::clients(&moto.endpoint).await;
    support::deploy(dir, clients.clone(), support::Zips::StandIn).await;
    let aws_simulator = simulator_config(dir);

    let plane = LocalPlane::new(dir, twin);
    let up = plane.up(&clients).await.expect("local up");
    assert_eq!(up.action, UpAction::Started);
    let mut identities: Vec<&str> = up.trusted.iter().map(|t| t.identity.as_str()).collect();
    identities.sort();
    assert_eq!(identities, ["local-l1--dev-a", "local-l1--dev-b"]);
    assert!(up.refused.is_empty(), "{:?}", up.refused);
    let key = plane.pki().server_key;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("server key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "server key mode");
    let sim = simulator_config(dir);
    assert_eq!(sim["endpoint"], "127.0.0.1");
    assert_eq!(sim["port"], up.port);

    // Idempotent: nothing changed, nothing done.
    let again = plane.up(&clients).await.expect("local up again");
    assert_eq!(
        (again.action, again.pid, again.port),
        (UpAction::Unchanged, up.pid, up.port)
    );

    let ca = plane.pki().ca_cert;
    let mut sub = rule_engine(&plane, up.port, twin).await;
    let (cert_a, key_a) = device_files(dir, "dev-a");
    // Whatever client id it asks for, the broker names it by its certificate.
    let a = connect(
        up.port,
        &ca,
        cert_a.clone(),
        key_a.clone(),
        "local-l1--dev-b",
    )
    .await;
    assert!(
        a.connected,
        "device A is refused: {}",
        std::fs::read_to_string(plane.files().log).unwrap_or_default()
    );
    let own = format!("{twin}/iot-data/dev-a");
    let other = format!("{twin}/iot-data/dev-b");
    a.client
        .publish(&own, QoS::AtLeastOnce, false, b"one".to_vec())
        .await
        .expect("publish");
    assert_eq!(next(&mut sub).await, (own.clone(), b"one".to_vec()));
    // To B's topic: not delivered. The marker after it (same connection, in order) proves the
    // broker handled it.
    a.client
        .publish(&other, QoS::AtLeastOnce, false, b"forged".to_vec())
        .await
        .expect("publish");
    a.client
        .publish(&own, QoS::AtLeastOnce, false, b"marker".to_vec())
        .await
        .expect("publish");
    assert_eq!(next(&mut sub).await, (own.clone(), b"marker".to_vec()));

    // A certificate that was never registered fails the TLS handshake.
    let intruder = dir.join("intruder");
    let (pem, key) = twin_aws::l1::certificate::make_certificate("local-l1--dev-a").expect("cert");
    twin_aws::l1::certificate::write_private(&intruder.join("key.pem"), &key, 0o600).expect("key");
    std::fs::write(intruder.join("cert.pem"), pem).expect("cert");
    let x = connect(
        up.port,
        &ca,
        intruder.join("cert.pem"),
        intruder.join("key.pem"),
        "x",
    )
    .await;
    assert!(!x.connected, "an unregistered certificate was let in");

    // B's certificate deleted after `up`: refused once `up` runs again.
    let (cert_b, key_b) = device_files(dir, "dev-b");
    let b = connect(up.port, &ca, cert_b.clone(), key_b.clone(), "b").await;
    assert!(
        b.connected,
        "device B is refused before its certificate is deleted"
    );
    drop(b);
    delete_certificate(&clients, "local-l1--dev-b").await;
    let after = plane
        .up(&clients)
        .await
        .expect("local up after the deletion");
    assert_eq!(after.action, UpAction::Restarted);
    assert_eq!(after.port, up.port, "the broker keeps its port");
    let identities: Vec<&str> = after.trusted.iter().map(|t| t.identity.as_str()).collect();
    assert_eq!(identities, ["local-l1--dev-a"]);
    let b = connect(after.port, &ca, cert_b, key_b, "b").await;
    assert!(!b.connected, "a deleted certificate is still trusted");
    let a = connect(after.port, &ca, cert_a, key_a, "a").await;
    assert!(a.connected, "device A is refused after the restart");
    let status = plane.status();
    assert!(status.running);
    assert_eq!(status.trusted, ["local-l1--dev-a"]);

    // down: the process is gone and the simulator config is deploy's again.
    assert!(plane.down().expect("local down"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut delay = Duration::from_millis(5);
    while twin_local::broker::is_running(after.pid, &plane.files().config) {
        assert!(Instant::now() < deadline, "pid {} still runs", after.pid);
        tokio::time::sleep(delay).await; // poll backoff
        delay *= 2;
    }
    assert!(!plane.status().running);
    assert_eq!(simulator_config(dir), aws_simulator);
    assert!(
        !plane.down().expect("down again"),
        "down twice stops nothing"
    );
}

#[tokio::test]
async fn up_against_real_aws_is_refused_before_any_call() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // No endpoint override (and no environment read): these clients would talk to AWS.
    let config = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let real = AwsClients::from_sdk_config(&config, "1".into(), "us-east-1".into(), "aws".into());
    let err = LocalPlane::new(tmp.path(), "t")
        .up(&real)
        .await
        .expect_err("refused");
    assert!(matches!(err, twin_local::LocalError::NotEmulator), "{err}");
    assert!(err.to_string().contains("AWS_ENDPOINT_URL"), "{err}");
}
