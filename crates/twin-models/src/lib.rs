//! A twin's models from its config alone, in two formats, without any cloud SDK:
//!
//! - [`dtdl`]: DTDL v3 interfaces for Azure Digital Twins (one per device, a device base, one
//!   per hierarchy entity), with DTMIs made valid from any id ([`dtmi`]) and the order and
//!   batches they must be uploaded in ([`order`]), and the twins and relationships of the
//!   hierarchy ([`graph`]);
//! - [`twinmaker`]: the IoT TwinMaker component types and entities the AWS L4 deploys (twin-aws
//!   builds its specs from these).
//!
//! [`versions`] gives generated DTDL interfaces the versions the service already holds, or the
//! next ones when their content changed (models are immutable once uploaded).
//!
//! [`render`] turns either into the files `deployer model` writes.

pub mod dtdl;
pub mod dtmi;
pub mod graph;
pub mod order;
pub mod render;
pub mod twinmaker;
pub mod versions;

#[cfg(test)]
mod testing;

pub use render::{document, render, Format, ModelError, ModelFile};

/// The twin's DTDL interfaces in the batches to upload them in, one Azure Digital Twins call per
/// batch (at most [`order::ADT_MAX_MODELS_PER_CALL`]), dependencies in earlier batches.
pub fn dtdl_upload_batches(
    config: &twin_config::TwinConfig,
) -> Result<Vec<Vec<dtdl::Interface>>, ModelError> {
    let interfaces = dtdl::interfaces(config)?;
    Ok(
        order::upload_batches(&interfaces, order::ADT_MAX_MODELS_PER_CALL)?
            .into_iter()
            .map(|b| b.into_iter().cloned().collect())
            .collect(),
    )
}
