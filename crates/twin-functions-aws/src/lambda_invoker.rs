//! Invoking another function of the twin through the Lambda API.

use crate::error_map::cloud_error;
use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;
use twin_functions::{CloudError, CloudErrorKind, FunctionInvoker};

/// Asynchronous (`Event`) Lambda invocations.
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: Client,
}

impl LambdaInvoker {
    /// An invoker using `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl FunctionInvoker for LambdaInvoker {
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), CloudError> {
        let resource = format!("function {function}");
        let out = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| cloud_error("Invoke", resource.clone(), e))?;
        if let Some(error) = out.function_error() {
            return Err(CloudError::new(
                "Invoke",
                resource,
                error,
                "the function reported an error",
                CloudErrorKind::Rejected,
            ));
        }
        Ok(())
    }
}
