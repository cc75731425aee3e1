//! The bearer token on every ARM request: a chain of `azure_identity` credentials tried in the
//! order DefaultAzureCredential used (that type is gone from azure_identity 1.x), or a static
//! token for emulators and fakes.

use super::errors::SetupError;
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::headers::AUTHORIZATION;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    WorkloadIdentityCredential,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Scope of a token for Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// Environment variable with a static bearer token, used instead of the chain (fakes only).
pub const TOKEN_ENV: &str = "DEPLOYER_AZURE_TOKEN";

/// Tries each credential in turn and keeps using the first one that gave a token.
#[derive(Debug)]
pub struct CredentialChain {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: AtomicUsize,
}

impl CredentialChain {
    /// The chain from the environment: a client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`), managed
    /// identity, then the developer tools (Azure CLI, Azure Developer CLI).
    pub fn from_env() -> Result<Arc<Self>, SetupError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        if let (Some(tenant), Some(client), Some(secret)) = (
            env("AZURE_TENANT_ID"),
            env("AZURE_CLIENT_ID"),
            env("AZURE_CLIENT_SECRET"),
        ) {
            let c = ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)
                .map_err(|e| SetupError::Credential(format!("client secret: {e}")))?;
            sources.push(("client secret", c));
        }
        if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            let c = WorkloadIdentityCredential::new(None)
                .map_err(|e| SetupError::Credential(format!("workload identity: {e}")))?;
            sources.push(("workload identity", c));
        }
        // Managed identity and the CLI cannot be detected up front (IMDS answers only on Azure
        // hosts): they are tried, and one that fails hands over to the next.
        if let Ok(c) = ManagedIdentityCredential::new(None) {
            sources.push(("managed identity", c));
        }
        if let Ok(c) = DeveloperToolsCredential::new(None) {
            sources.push(("developer tools", c));
        }
        if sources.is_empty() {
            return Err(SetupError::Credential(
                "no credential type is available".into(),
            ));
        }
        Ok(Arc::new(CredentialChain {
            sources,
            chosen: AtomicUsize::new(usize::MAX),
        }))
    }
}

#[async_trait]
impl TokenCredential for CredentialChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.load(Ordering::Relaxed);
        if let Some((_, c)) = self.sources.get(chosen) {
            return c.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (i, (name, c)) in self.sources.iter().enumerate() {
            match c.get_token(scopes, options.clone()).await {
                Ok(t) => {
                    self.chosen.store(i, Ordering::Relaxed);
                    tracing::debug!(credential = name, "Azure token obtained");
                    return Ok(t);
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no credential gave a token ({}); sign in with `az login` or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
                failures.join("; ")
            ),
        ))
    }
}

/// Puts a fixed bearer token on each request. azure_core's bearer policy refuses plain-http
/// URLs, which a local fake has; this one is used only when `DEPLOYER_AZURE_TOKEN` is set.
#[derive(Debug)]
pub struct StaticTokenPolicy {
    header: String,
}

impl StaticTokenPolicy {
    /// A policy sending `token`.
    pub fn new(token: &str) -> Self {
        StaticTokenPolicy {
            header: format!("Bearer {token}"),
        }
    }
}

#[async_trait]
impl Policy for StaticTokenPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        request.insert_header(AUTHORIZATION, self.header.clone());
        match next.split_first() {
            Some((first, rest)) => first.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "the pipeline has no transport after the token policy",
            )),
        }
    }
}
