//! Turns rumqttc's connection errors into something a user can act on, and decides whether
//! retrying can help.

use std::error::Error as StdError;
use std::path::PathBuf;

use rumqttc::{ConnectReturnCode, ConnectionError};
use rustls::AlertDescription;

/// Whether reconnecting can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The broker is away or the network hiccupped: reconnect with backoff.
    Transient,
    /// Credentials, trust or configuration are wrong: retrying gives the same answer.
    Permanent,
}

/// A classified connection failure of one device.
#[derive(Debug, Clone, thiserror::Error)]
#[error("device {device}: {message}")]
pub struct LinkFailure {
    /// The device whose connection failed.
    pub device: String,
    /// What happened and what the user can do.
    pub message: String,
    /// Whether reconnecting can help.
    pub retry: Retry,
}

/// What the messages refer to.
#[derive(Debug, Clone)]
pub struct FailureContext {
    /// The device (MQTT client id).
    pub device: String,
    /// `host:port` of the broker.
    pub broker: String,
    /// The device's certificate file.
    pub certificate: PathBuf,
    /// The root CA file.
    pub root_ca: PathBuf,
}

impl FailureContext {
    /// The context of `device` connecting with `creds` to the broker `config` names.
    pub fn for_device(
        config: &crate::config::SimulatorConfig,
        device: &str,
        creds: &crate::tls::DeviceCredentials,
    ) -> Self {
        FailureContext {
            device: device.to_string(),
            broker: format!("{}:{}", config.endpoint, config.port),
            certificate: creds.certificate.clone(),
            root_ca: config.root_ca_cert.clone(),
        }
    }

    /// Classifies one error from `EventLoop::poll`.
    pub fn classify(&self, err: &ConnectionError) -> LinkFailure {
        let (retry, message) = self.describe(err);
        LinkFailure {
            device: self.device.clone(),
            message,
            retry,
        }
    }

    fn describe(&self, err: &ConnectionError) -> (Retry, String) {
        use Retry::*;
        if let Some(tls) = find_rustls_error(err) {
            return self.describe_tls(tls);
        }
        match err {
            ConnectionError::ConnectionRefused(code) => {
                let why = match code {
                    ConnectReturnCode::NotAuthorized => {
                        "not authorized (on AWS IoT: the device's policy must allow iot:Connect \
                         with this client id)"
                    }
                    ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                    ConnectReturnCode::BadClientId => "client id rejected",
                    ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not accepted",
                    ConnectReturnCode::ServiceUnavailable => {
                        return (
                            Transient,
                            format!("broker {} is unavailable (CONNACK 3)", self.broker),
                        )
                    }
                    ConnectReturnCode::Success => "refused",
                };
                (
                    Permanent,
                    format!("broker {} refused the connection: {why}", self.broker),
                )
            }
            ConnectionError::Io(io) => self.describe_io(io),
            ConnectionError::Tls(rumqttc::TlsError::Io(io)) => self.describe_io(io),
            ConnectionError::Tls(rumqttc::TlsError::DNSName(_)) => (
                Permanent,
                format!(
                    "`{}` is not a valid TLS server name: check `endpoint` in the simulator config",
                    self.broker
                ),
            ),
            ConnectionError::Tls(other) => (Permanent, format!("TLS setup failed: {other}")),
            ConnectionError::MqttState(rumqttc::StateError::Io(io)) => self.describe_io(io),
            ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted) => (
                Transient,
                format!(
                    "broker {} closed the connection (on AWS IoT this also happens when the \
                     device's policy does not allow its client id or topic)",
                    self.broker
                ),
            ),
            ConnectionError::NetworkTimeout => (
                Transient,
                format!(
                    "no answer from {} within the connection timeout",
                    self.broker
                ),
            ),
            other => (
                Transient,
                format!("connection to {} lost: {other}", self.broker),
            ),
        }
    }

    fn describe_io(&self, io: &std::io::Error) -> (Retry, String) {
        use std::io::ErrorKind::*;
        let text = io.to_string();
        match io.kind() {
            ConnectionRefused => (
                Retry::Transient,
                format!(
                    "broker {} refused the TCP connection (is it running?)",
                    self.broker
                ),
            ),
            _ if text.contains("failed to lookup address") => (
                Retry::Permanent,
                format!(
                    "cannot resolve `{}`: check `endpoint` in the simulator config ({text})",
                    self.broker
                ),
            ),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => (
                Retry::Transient,
                format!("connection to {} lost: {text}", self.broker),
            ),
            _ => (
                Retry::Transient,
                format!("network error talking to {}: {text}", self.broker),
            ),
        }
    }

    fn describe_tls(&self, err: &rustls::Error) -> (Retry, String) {
        use rustls::Error as E;
        match err {
            E::InvalidCertificate(why) => {
                (
                    Retry::Permanent,
                    format!(
                    "the broker's TLS certificate is not accepted ({why:?}): it must be signed by \
                     the CA in {} (root_ca_cert_path) and name the host `{}`",
                    self.root_ca.display(),
                    self.broker.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.broker)
                ),
                )
            }
            E::AlertReceived(alert) if is_client_cert_alert(*alert) => (
                Retry::Permanent,
                format!(
                    "the broker rejected the device's client certificate (TLS alert {alert:?}): \
                     {} must be the device's certificate, issued by a CA the broker trusts \
                     (on AWS IoT: registered and ACTIVE)",
                    self.certificate.display()
                ),
            ),
            other => (
                Retry::Permanent,
                format!("TLS handshake with {} failed: {other}", self.broker),
            ),
        }
    }
}

/// Alerts a server sends when it does not accept (or did not get) a client certificate.
fn is_client_cert_alert(alert: AlertDescription) -> bool {
    use AlertDescription::*;
    matches!(
        alert,
        BadCertificate
            | UnsupportedCertificate
            | CertificateRevoked
            | CertificateExpired
            | CertificateUnknown
            | UnknownCA
            | CertificateRequired
            | AccessDenied
            | HandshakeFailure
            | DecryptError
    )
}

/// The rustls error somewhere in the chain; io::Error hides its payload from `source()`, so each
/// io::Error is opened with `get_ref`.
fn find_rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                    return Some(r);
                }
                current = Some(inner);
                continue;
            }
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FailureContext {
        FailureContext {
            device: "d1".into(),
            broker: "127.0.0.1:8883".into(),
            certificate: "/certs/d1/certificate.pem.crt".into(),
            root_ca: "/certs/ca.pem".into(),
        }
    }

    #[test]
    fn refused_tcp_is_transient() {
        let err = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let f = ctx().classify(&err);
        assert_eq!(f.retry, Retry::Transient);
        assert!(f.to_string().contains("is it running"), "{f}");
    }

    #[test]
    fn certificate_alert_inside_io_is_permanent_and_names_the_file() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
        );
        let err = ConnectionError::MqttState(rumqttc::StateError::Io(io));
        let f = ctx().classify(&err);
        assert_eq!(f.retry, Retry::Permanent);
        assert!(f.message.contains("/certs/d1/certificate.pem.crt"), "{f}");
    }

    #[test]
    fn not_authorized_is_permanent() {
        let f = ctx().classify(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized,
        ));
        assert_eq!(f.retry, Retry::Permanent);
    }
}
