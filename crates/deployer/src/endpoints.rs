//! The endpoints a person needs first, at the top of `info`: where devices connect (the IoT data
//! endpoint) and where the hot data is read (the hot-reader URL). Each comes from what the cloud
//! returned for its resource, as recorded in the state (AWS DescribeEndpoint `iot:Data-ATS`, the
//! HTTP API's `ApiEndpoint`; the IoT hub's `hostName`, the function's `invoke_url_template`),
//! never rebuilt from names, and only while `info` finds that resource in the cloud.

use twin_engine::{InfoRow, InfoStatus, StateFile};

/// An endpoint line of `info`: what it is and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// What it is, e.g. `IoT endpoint (aws)`.
    pub label: String,
    /// The host or URL.
    pub value: String,
}

/// (label, resource kind, output key), in the order `info` shows them.
const SOURCES: [(&str, &str, &str); 4] = [
    ("IoT endpoint", "simulator_config", "endpoint"),
    ("IoT endpoint", "azure_iot_hub", "host_name"),
    ("Hot-reader URL", "http_api", "endpoint"),
    ("Hot-reader URL", "azure_function_package", "hot_reader_url"),
];

/// The endpoints of the twin whose recorded state is `state`, for the resources `rows` (what
/// `info` found) shows as present.
pub fn endpoints(state: &StateFile, rows: &[InfoRow]) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for (label, kind, key) in SOURCES {
        for record in state.resources.values() {
            if record.spec.kind != kind {
                continue;
            }
            let present = rows.iter().any(|r| {
                r.kind == kind
                    && r.name == record.spec.name
                    && r.provider == record.spec.provider
                    && matches!(r.status, InfoStatus::Ok | InfoStatus::Drifted(_))
            });
            let value = record
                .observed
                .as_ref()
                .and_then(|o| o.attr(key))
                .filter(|v| !v.is_empty());
            if let (true, Some(value)) = (present, value) {
                out.push(Endpoint {
                    label: format!("{label} ({})", record.spec.provider.as_str()),
                    value: value.to_string(),
                });
            }
        }
    }
    out
}

/// The lines for people: labels aligned, then the Grafana lines (`grafana`, already written by
/// their provider).
pub fn lines(endpoints: &[Endpoint], grafana: Vec<String>) -> Vec<String> {
    let width = endpoints
        .iter()
        .map(|e| e.label.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{:<width$} {}", format!("{}:", e.label), e.value))
        .collect();
    out.extend(grafana);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use twin_config::{Layer, ProviderName};
    use twin_engine::{Observed, RecordStatus, ResourceId, ResourceRecord, ResourceSpec};

    fn record(kind: &str, name: &str, attributes: serde_json::Value) -> ResourceRecord {
        let spec = ResourceSpec::new(
            ResourceId::new(&["l1", kind, name]),
            Layer::L1,
            ProviderName::Aws,
            kind,
            name,
        );
        ResourceRecord {
            spec,
            status: RecordStatus::Created,
            observed: Some(Observed::new(format!("id-{name}"), attributes)),
        }
    }

    fn row(kind: &str, name: &str, status: InfoStatus) -> InfoRow {
        InfoRow {
            layer: Layer::L1,
            provider: ProviderName::Aws,
            kind: kind.into(),
            name: name.into(),
            id: format!("id-{name}"),
            status,
        }
    }

    fn state(records: Vec<ResourceRecord>) -> StateFile {
        let mut s = StateFile::default();
        for r in records {
            s.resources.insert(r.spec.id.clone(), r);
        }
        s
    }

    #[test]
    fn endpoints_come_from_the_recorded_outputs_of_resources_that_are_there() {
        let s = state(vec![
            record(
                "simulator_config",
                "sim",
                json!({"endpoint": "abc-ats.iot.us-east-1.amazonaws.com"}),
            ),
            record(
                "http_api",
                "api",
                json!({"endpoint": "https://x1.execute-api.us-east-1.amazonaws.com"}),
            ),
        ]);
        let rows = vec![
            row("simulator_config", "sim", InfoStatus::Ok),
            row("http_api", "api", InfoStatus::Drifted(vec!["route".into()])),
        ];
        let found = endpoints(&s, &rows);
        assert_eq!(
            found,
            vec![
                Endpoint {
                    label: "IoT endpoint (aws)".into(),
                    value: "abc-ats.iot.us-east-1.amazonaws.com".into()
                },
                Endpoint {
                    label: "Hot-reader URL (aws)".into(),
                    value: "https://x1.execute-api.us-east-1.amazonaws.com".into()
                },
            ]
        );
        let text = lines(&found, vec!["Grafana dashboard: https://g/d/x".into()]);
        assert_eq!(
            text,
            vec![
                "IoT endpoint (aws):   abc-ats.iot.us-east-1.amazonaws.com",
                "Hot-reader URL (aws): https://x1.execute-api.us-east-1.amazonaws.com",
                "Grafana dashboard: https://g/d/x",
            ]
        );
    }

    #[test]
    fn a_missing_resource_or_an_empty_output_shows_no_endpoint() {
        let s = state(vec![
            record("simulator_config", "sim", json!({"endpoint": ""})),
            record("http_api", "api", json!({"endpoint": "https://x"})),
        ]);
        let rows = vec![
            row("simulator_config", "sim", InfoStatus::Ok),
            row("http_api", "api", InfoStatus::Missing),
        ];
        assert!(endpoints(&s, &rows).is_empty());
    }
}
