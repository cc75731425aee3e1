//! Data-plane services the deployer itself calls (IoT Hub's device registry, the Function App's
//! deployment endpoint): the same credential as ARM with the service's own token scope, hosts
//! taken from what ARM returned for the resource.

use super::{pipeline_for, send_on, ArmClient, Body, Reply};
use azure_core::http::{Method, Pipeline};
use twin_engine::CloudError;

/// A client of one data-plane service.
#[derive(Debug, Clone)]
pub struct DataPlaneClient {
    pipeline: Pipeline,
    local: bool,
}

impl ArmClient {
    /// A data-plane client whose tokens are for `scope` (e.g.
    /// `https://iothubs.azure.net/.default`).
    pub fn data_plane(&self, scope: &str) -> DataPlaneClient {
        DataPlaneClient {
            pipeline: pipeline_for(self.auth(), scope),
            local: self.is_local(),
        }
    }
}

impl DataPlaneClient {
    /// The base URL of a host ARM reported (`hostName`, `defaultHostName`): https, except
    /// behind a local fake ARM, whose services are plain http. A value that is already a URL
    /// (`documentEndpoint`, `primaryEndpoints.blob`) is kept as it is.
    pub fn base_url(&self, host: &str) -> String {
        if host.starts_with("https://") || host.starts_with("http://") {
            return host.trim_end_matches('/').to_string();
        }
        let scheme = if self.local { "http" } else { "https" };
        format!("{scheme}://{}", host.trim_end_matches('/'))
    }

    /// Sends one request; the answer's status is the caller's to classify.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Body>,
        headers: &[(&'static str, String)],
        what: &str,
    ) -> Result<Reply, CloudError> {
        send_on(&self.pipeline, method, url, body, headers, what).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::{ArmOptions, Auth};

    fn client(base: &str) -> DataPlaneClient {
        ArmClient::new(
            base,
            "sub",
            Auth::StaticToken("t".into()),
            ArmOptions::default(),
        )
        .expect("client")
        .data_plane("https://iothubs.azure.net/.default")
    }

    #[test]
    fn hosts_are_https_on_the_cloud_and_http_behind_a_local_fake() {
        assert_eq!(
            client("https://management.azure.com").base_url("hub.azure-devices.net"),
            "https://hub.azure-devices.net"
        );
        assert_eq!(
            client("http://127.0.0.1:9").base_url("127.0.0.1:7000"),
            "http://127.0.0.1:7000"
        );
        assert_eq!(
            client("http://127.0.0.1:9").base_url("https://acct.documents.azure.com:443/"),
            "https://acct.documents.azure.com:443"
        );
    }
}
