//! AWS implementations of the twin-functions traits (DynamoDB hot store, S3 object store, Lambda
//! invoker, TwinMaker component directory) and the start-up glue every Lambda adapter shares (settings from the environment,
//! JSON logs, SDK configuration).

pub mod attribute_value;
pub mod aws_action_sink;
pub mod boundary_secret;
pub mod boundary_sender;
pub mod dynamo_hot_store;
pub mod dynamo_nonce_ledger;
pub mod error_map;
pub mod event_function_main;
pub mod lambda_invoker;
pub mod persister_main;
pub mod processor_main;
pub mod s3_object_store;
pub mod sdk_config;
pub mod startup;
pub mod twinmaker_directory;

pub use aws_action_sink::AwsActionSink;
pub use dynamo_hot_store::DynamoHotStore;
pub use dynamo_nonce_ledger::DynamoNonceLedger;
pub use event_function_main::run_event_function;
pub use lambda_invoker::LambdaInvoker;
pub use persister_main::{run_persister, AwsEventEvaluator, PersisterFunction};
pub use processor_main::{run_default_processor, run_processor};
pub use s3_object_store::S3ObjectStore;
pub use startup::{
    aws_sdk_config, dynamodb_client, iot_data_client, lambda_client, load_catalogue, s3_client,
    secrets_client, sns_client, start, twinmaker_client,
};
pub use twinmaker_directory::TwinMakerDirectory;
