//! The logic of the twin's cloud functions (SPEC §6), shared by every cloud's adapters.
//!
//! Nothing here knows a cloud SDK: the hot store, the object store and function invocation are
//! small traits ([`HotStore`], [`ObjectStore`], [`FunctionInvoker`]) that the AWS adapters (and,
//! later, the Azure ones) implement. Each function is a struct holding its settings and those
//! traits, with a `handle` method the thin runtime adapter calls.

pub mod boundary;
pub mod catalogue;
pub mod chunk;
pub mod clock;
pub mod cold_key;
pub mod cold_to_archive;
pub mod data_type;
pub mod device_logic;
pub mod dispatcher;
pub mod drops;
pub mod env_vars;
pub mod error;
pub mod event_evaluator;
pub mod event_function;
pub mod hot_reader;
pub mod hot_store;
pub mod hot_to_cold;
pub mod in_memory;
pub mod invoker;
pub mod lease;
pub mod logging;
pub mod mover_error;
pub mod mover_event;
pub mod object_store;
pub mod persister;
pub mod processor;
pub mod record;
pub mod settings;
pub mod testing;
pub mod timestamp;
pub mod twin_connector;

pub use catalogue::{CatalogueLocation, DeviceCatalogue};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{CloudError, CloudErrorKind};
pub use hot_store::HotStore;
pub use invoker::FunctionInvoker;
pub use lease::{LeaseOutcome, LeaseStore};
pub use object_store::ObjectStore;
pub use timestamp::Timestamp;
