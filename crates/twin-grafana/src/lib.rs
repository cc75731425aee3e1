//! What Amazon Managed Grafana and Azure Managed Grafana share (SPEC §2, L5): the Grafana HTTP
//! API client ([`api`]), whose token comes from a cloud's own [`api::GrafanaAuth`] (AWS: a
//! short-lived service account token; Azure: an Entra token), the drivers of the data source,
//! the twin's folder and the starter dashboard ([`data_plane`]), and the dashboard itself, made
//! from the config alone ([`dashboard_model`]).

pub mod api;
pub mod dashboard_model;
pub mod data_plane;
pub mod info;
