//! What `info` prints first about a twin's Grafana: where it is, whether its data source
//! answers, and the dashboard's URL.

use crate::data_plane::{DASHBOARD_KIND, DATASOURCE_KIND};
use twin_config::ProviderName;
use twin_engine::{InfoRow, InfoStatus};

/// The lines about the Grafana of `provider`, called `title` (e.g. `Grafana workspace`): its
/// URL (the origin of the data source's or dashboard's URL), the data source's health, and the
/// dashboard's URL; none when nothing of it is deployed.
pub fn info_lines(rows: &[InfoRow], provider: ProviderName, title: &str) -> Vec<String> {
    let find = |kind: &str| {
        rows.iter()
            .find(|r| r.kind == kind && r.provider == provider)
    };
    let mut out = Vec::new();
    let ds = find(DATASOURCE_KIND).filter(|r| !r.id.is_empty());
    let dash = find(DASHBOARD_KIND).filter(|r| !r.id.is_empty());
    let origin = ds.or(dash).and_then(|r| {
        let rest = r.id.split_once("://")?;
        let host = rest.1.split('/').next()?;
        Some(format!("{}://{host}", rest.0))
    });
    if let Some(o) = origin {
        out.push(format!("{title}: {o}"));
    }
    if let Some(ds) = ds {
        let health = match &ds.status {
            InfoStatus::Ok => "healthy".to_string(),
            InfoStatus::Drifted(keys) if keys.iter().any(|k| k == "health") => {
                "UNHEALTHY: its health check fails; run `deployer deploy --layer l5` (it waits for the check), or open the data source page and press Test for the plugin's message".to_string()
            }
            other => other.to_string(),
        };
        out.push(format!(
            "Grafana data source {}: {health} ({})",
            ds.name, ds.id
        ));
    }
    if let Some(d) = dash {
        out.push(format!("Grafana dashboard: {}", d.id));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use twin_config::Layer;

    fn row(kind: &str, id: &str, status: InfoStatus) -> InfoRow {
        InfoRow {
            layer: Layer::L5,
            provider: ProviderName::Aws,
            kind: kind.into(),
            name: "dt-twinmaker".into(),
            id: id.into(),
            status,
        }
    }

    #[test]
    fn info_names_the_workspace_health_and_dashboard() {
        let rows = [
            row(
                DATASOURCE_KIND,
                "https://g-1.grafana-workspace.us-east-1.amazonaws.com/connections/datasources/edit/dt-twinmaker",
                InfoStatus::Drifted(vec!["health".into()]),
            ),
            row(
                DASHBOARD_KIND,
                "https://g-1.grafana-workspace.us-east-1.amazonaws.com/d/dt-overview/dt-twin",
                InfoStatus::Ok,
            ),
        ];
        let lines = info_lines(&rows, ProviderName::Aws, "Grafana workspace");
        assert_eq!(
            lines[0],
            "Grafana workspace: https://g-1.grafana-workspace.us-east-1.amazonaws.com"
        );
        assert!(lines[1].starts_with("Grafana data source dt-twinmaker: UNHEALTHY"));
        assert_eq!(
            lines[2],
            "Grafana dashboard: https://g-1.grafana-workspace.us-east-1.amazonaws.com/d/dt-overview/dt-twin"
        );
        assert!(info_lines(
            &[row(DATASOURCE_KIND, "", InfoStatus::NotDeployed)],
            ProviderName::Aws,
            "Grafana workspace"
        )
        .is_empty());
        // Another cloud's rows are not this one's.
        assert!(info_lines(&rows, ProviderName::Azure, "Azure Managed Grafana").is_empty());
    }
}
