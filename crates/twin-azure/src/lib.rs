//! The Azure provider of the deployer: Azure Resource Manager over REST (`arm`), and one small
//! driver per resource type: the twin's resource group and managed identity, the L2 Flex
//! Consumption Function App with its storage, logs and package (`l2`), and the L3 cold/archive
//! storage account with its containers (`l3`), the L4 Azure Digital Twins instance with its
//! models, twins and relationships (`l4`), and the L5 Azure Managed Grafana with its data
//! source, folder and starter dashboard (`l5`). Most drivers are one generic
//! `arm_resource::ArmDriver` over a per-type `ArmResource`. The engine owns ordering, retries
//! and state.

pub mod arm;
pub mod arm_resource;
pub mod boundary_secret;
pub mod context;
pub mod discover;
pub mod function_ops;
pub mod identity;
pub mod l1;
pub mod l2;
pub mod l3;
pub mod l4;
pub mod l5;
pub mod provider;
pub mod resource_group;
pub mod roles;

pub use arm::{ArmClient, ArmOptions, Auth};
pub use provider::AzureProvider;
