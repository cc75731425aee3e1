//! A boundary ingress's nonce ledger on Blob Storage: one blob `<hop>/<nonce>` per accepted
//! request, created with `If-None-Match: *`, so every instance of the Function App sees the
//! same ledger and a replay through another instance still finds its nonce. The blob holds the
//! Unix second its window ends; [`BlobNonceLedger::prune_expired`] deletes those past it (the
//! daily cold-to-archive run of the same app calls it), since Blob Storage has no per-blob TTL.
//!
//! Why blobs and not a Cosmos container with `ttl`: the cold tier's storage account is what an
//! app receiving cold data always has; Cosmos is there only when L3 hot is on Azure.

use crate::BlobObjectStore;
use async_trait::async_trait;
use twin_functions::boundary::NonceLedger;
use twin_functions::object_store::{ConditionalWrite, ObjectStore, PutCondition, StorageTier};
use twin_functions::{CloudError, CloudErrorKind};

/// The ledger in `container` of the account `store` reaches.
#[derive(Debug, Clone)]
pub struct BlobNonceLedger {
    store: BlobObjectStore,
    container: String,
}

/// What [`BlobNonceLedger::prune_expired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Nonces whose window had passed, deleted.
    pub deleted: usize,
    /// Nonces still inside their window, kept.
    pub kept: usize,
}

impl BlobNonceLedger {
    /// A ledger in `container` (which the deployer creates next to the cold container).
    pub fn new(store: BlobObjectStore, container: impl Into<String>) -> Self {
        Self {
            store,
            container: container.into(),
        }
    }

    /// The ledger's container.
    pub fn container(&self) -> &str {
        &self.container
    }

    fn key(hop: &str, nonce: &str) -> String {
        format!("{hop}/{nonce}")
    }

    /// Deletes every nonce whose window ended before `now_secs`. A blob whose content is not a
    /// number (not written by this ledger) is left alone and counted as kept.
    pub async fn prune_expired(&self, now_secs: i64) -> Result<Pruned, CloudError> {
        let mut pruned = Pruned::default();
        let mut next = None;
        loop {
            let page = self.store.list_objects(&self.container, "", next).await?;
            for o in page.objects {
                let body = self.store.get_object(&self.container, &o.key).await?;
                let expires = std::str::from_utf8(&body)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok());
                match expires {
                    Some(e) if e < now_secs => {
                        self.store.delete_object(&self.container, &o.key).await?;
                        pruned.deleted += 1;
                    }
                    _ => pruned.kept += 1,
                }
            }
            match page.next {
                Some(n) => next = Some(n),
                None => return Ok(pruned),
            }
        }
    }
}

#[async_trait]
impl NonceLedger for BlobNonceLedger {
    async fn claim(
        &self,
        hop: &str,
        nonce: &str,
        expires_at_secs: i64,
    ) -> Result<bool, CloudError> {
        // The nonce is checked by `verify` (hex of a fixed length) before it gets here, so it is
        // a safe blob name; refuse anything else rather than write an odd path.
        if nonce.is_empty() || !nonce.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(CloudError::new(
                "ClaimNonce",
                format!("nonce ledger {} of boundary {hop}", self.container),
                "InvalidNonce",
                "the nonce is not a plain token",
                CloudErrorKind::Rejected,
            ));
        }
        let written = self
            .store
            .put_object_if(
                &self.container,
                &Self::key(hop, nonce),
                expires_at_secs.to_string().into_bytes(),
                // Read back by the pruning only: the cheapest tier to write and delete.
                StorageTier::Other("Hot".into()),
                PutCondition::IfAbsent,
            )
            .await?;
        Ok(written == ConditionalWrite::Applied)
    }
}
