//! The AWS provider of the deployer: each layer of SPEC §2 as small resource descriptions
//! (`l1`, `l2`, `l3`, `l4_twinmaker`, `l5_grafana`) and one driver per resource kind, on top of
//! shared pieces: the SDK clients, error classification, IAM roles, Lambda functions and their
//! artifacts. The engine (`twin-engine`) owns ordering, retries and state.

pub mod artifacts;
pub mod boundary_nonce_table;
pub mod boundary_secret;
pub mod catalogue;
pub mod clients;
pub mod context;
pub mod dead_letters;
pub mod discover;
pub mod errors;
pub mod fault_proxy;
pub mod function_ops;
pub mod iam;
pub mod l1;
pub mod l2;
pub mod l3;
pub mod l4_twinmaker;
pub mod l5_grafana;
pub mod lambda_fn;
pub mod limits;
pub mod logs;
pub mod permissions;
pub mod provider;
pub mod testing;

pub use clients::AwsClients;
pub use context::LayerContext;
pub use provider::AwsProvider;
