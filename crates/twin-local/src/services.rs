//! The runner's extra services: the topic rule bridge (L1 → the dispatcher) and the hot reader's
//! HTTP API stand-in (L3), each started with the router's URL. The bridge's counters are written
//! to `.deployer/local/rule.json` while it runs, so `local status` can show them.

use crate::http_api::{self, HttpApiConfig};
use crate::rule::{Bridge, BridgeConfig, BridgeStatus};
use crate::runner::{LocalService, ServiceContext, StartedService};
use crate::LocalError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service name of the rule bridge in `runner.json`.
pub const RULE_BRIDGE: &str = "rule-bridge";
/// The service name of the HTTP API stand-in in `runner.json`.
pub const HTTP_API: &str = "http-api";

/// How often the bridge's counters are written out.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// The file holding the bridge's latest counters.
pub fn rule_status_path(local_dir: &Path) -> PathBuf {
    local_dir.join("rule.json")
}

/// The bridge's latest counters, if it has run.
pub fn rule_status(local_dir: &Path) -> Option<BridgeStatus> {
    let text = std::fs::read_to_string(rule_status_path(local_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_status(path: &Path, status: &BridgeStatus) {
    let Ok(text) = serde_json::to_string_pretty(status) else {
        return;
    };
    let tmp = path.with_extension("json.tmp");
    // Written aside and renamed, so a reader never sees half a file.
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The deployed topic rule applied to the local broker's messages.
pub struct RuleBridgeService {
    /// What the bridge needs (broker, PKI, rule, trusted publishers).
    pub config: BridgeConfig,
}

#[async_trait::async_trait]
impl LocalService for RuleBridgeService {
    fn name(&self) -> String {
        RULE_BRIDGE.into()
    }

    async fn start(self: Box<Self>, ctx: ServiceContext) -> Result<StartedService, LocalError> {
        let rule_name = self.config.rule.name.clone();
        let bridge =
            Bridge::new(self.config, &ctx.router_url).map_err(|e| LocalError::Service {
                name: RULE_BRIDGE.into(),
                message: e.to_string(),
            })?;
        let filter = bridge.rule().sql.from.clone();
        let counters = bridge.counters();
        let path = rule_status_path(&ctx.local_dir);
        let cancel = ctx.cancel.clone();
        let task = tokio::spawn(async move {
            let writer = {
                let counters = counters.clone();
                let cancel = cancel.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    loop {
                        write_status(&path, &counters.snapshot());
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(STATUS_EVERY) => {}
                        }
                    }
                })
            };
            let outcome = bridge.run(cancel).await;
            let _ = writer.await;
            write_status(&path, &counters.snapshot());
            outcome.map_err(|e| LocalError::Service {
                name: RULE_BRIDGE.into(),
                message: e.to_string(),
            })
        });
        Ok(StartedService {
            name: RULE_BRIDGE.into(),
            port: None,
            status: format!("rule {rule_name}: {filter} → Lambda action"),
            task,
        })
    }
}

/// The hot reader's HTTP API served on 127.0.0.1.
pub struct HttpApiService {
    /// The API as deployed.
    pub api: HttpApiConfig,
}

#[async_trait::async_trait]
impl LocalService for HttpApiService {
    fn name(&self) -> String {
        HTTP_API.into()
    }

    async fn start(self: Box<Self>, ctx: ServiceContext) -> Result<StartedService, LocalError> {
        let name = self.api.name.clone();
        let running = http_api::serve(self.api, &ctx.router_url, ctx.cancel.clone())
            .await
            .map_err(|e| LocalError::Service {
                name: HTTP_API.into(),
                message: e.to_string(),
            })?;
        let port = running
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok());
        let url = running.url.clone();
        let served = running.task;
        let task = tokio::spawn(async move {
            served.await.map_err(|e| LocalError::Service {
                name: HTTP_API.into(),
                message: format!("the HTTP API task failed: {e}"),
            })
        });
        Ok(StartedService {
            name: HTTP_API.into(),
            port,
            status: format!("{name} at {url}"),
            task,
        })
    }
}
