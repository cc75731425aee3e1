//! Invoking another function of the twin (dispatcher → processor → persister).

use crate::error::CloudError;
use async_trait::async_trait;

/// Hands a JSON payload to another function without waiting for its result.
#[async_trait]
pub trait FunctionInvoker: Send + Sync {
    /// Queues an asynchronous invocation of `function` (AWS: InvocationType `Event`); the
    /// platform retries it on failure, so receivers must be idempotent.
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), CloudError>;
}

#[async_trait]
impl<T: FunctionInvoker + ?Sized> FunctionInvoker for std::sync::Arc<T> {
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), CloudError> {
        (**self).invoke_async(function, payload).await
    }
}
