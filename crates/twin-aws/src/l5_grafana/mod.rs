//! owned by the L4/L5 engineer
// owned by the L4/L5 engineer

use crate::{AwsClients, LayerContext};
use std::sync::Arc;
use twin_engine::{CloudError, ResourceDriver, ResourceSpec};

/// The resources of this layer (filled in by the L4/L5 engineer).
pub fn specs(_ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    Ok(Vec::new())
}

/// The twin's resources of this layer found in the cloud by name or tag.
pub async fn discover(_ctx: &LayerContext<'_>) -> Result<Vec<ResourceSpec>, CloudError> {
    Ok(Vec::new())
}

/// The driver of a resource kind of this layer, if it is one.
pub fn driver(_kind: &str, _clients: &Arc<AwsClients>) -> Option<Arc<dyn ResourceDriver>> {
    None
}
