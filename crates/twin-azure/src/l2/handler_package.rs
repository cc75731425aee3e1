//! The real Function App package: the `azure-handler` binary (built once per source change by
//! `twin_artifacts`, like every function), the twin's device catalogue and one `function.json`
//! per function of the layers the twin keeps on Azure, zipped by
//! `twin_functions_azure::app::package` so the handler and the deployer agree on its layout.

use super::{AppPackage, AppPackageSource};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use twin_artifacts::Artifacts;
use twin_config::{names, Layer, ProviderName, TwinConfig};
use twin_engine::CloudError;
use twin_functions::catalogue::{CatalogueDevice, DeviceCatalogue};
use twin_functions_azure::app::{package, package_hash, AppFunction, PackageInput};

/// The function crate of the handler (`lambdas/azure-handler`).
pub const HANDLER_CRATE: &str = "azure-handler";

/// The binary's name inside the crate's built zip (cargo-lambda's layout).
const BUILT_BINARY: &str = "bootstrap";

/// Builds the package from the handler crate's zip.
pub struct HandlerPackage {
    artifacts: Arc<Artifacts>,
}

impl HandlerPackage {
    /// A source taking the handler's build from `artifacts`.
    pub fn new(artifacts: Arc<Artifacts>) -> Self {
        HandlerPackage { artifacts }
    }
}

/// The functions the app runs for the layers the twin keeps on Azure.
pub fn app_functions(twin: &TwinConfig) -> Vec<AppFunction> {
    let on = |l: Layer| twin.providers.get(l) == ProviderName::Azure;
    let mut functions = Vec::new();
    if on(Layer::L1) {
        functions.push(AppFunction::Dispatcher);
    }
    if on(Layer::L2) {
        functions.extend([AppFunction::Processor, AppFunction::Persister]);
    }
    if on(Layer::L3Hot) {
        functions.extend([AppFunction::HotReader, AppFunction::HotToColdMover]);
    }
    if on(Layer::L3Cold) {
        functions.push(AppFunction::ColdToArchiveMover);
    }
    functions
}

/// The device catalogue the handler loads: every device's property types; every device uses
/// the in-process processor (a device's own processor crate is a Lambda binary, which the one
/// handler cannot run: refused by `package`).
pub fn catalogue(twin: &TwinConfig) -> Result<DeviceCatalogue, CloudError> {
    let mut devices = BTreeMap::new();
    for d in &twin.devices {
        let properties = twin_artifacts::property_specs(d)?;
        // `aws.processor_per_device` is an AWS setting: on Azure only a crate of its own counts.
        if d.processor.is_some() {
            return Err(CloudError::fatal(
                "OwnProcessorOnAzure",
                format!(
                    "device {} has a processor of its own; on Azure every function runs in one custom handler, which runs only the default processor",
                    d.id
                ),
            )
            .with_hint("remove the device's `processor`, or keep layer 2 on aws"));
        }
        devices.insert(
            d.id.clone(),
            CatalogueDevice {
                properties,
                processor: None,
            },
        );
    }
    Ok(DeviceCatalogue {
        shared_processor: names::SHARED_PROCESSOR.to_string(),
        devices,
    })
}

/// The `bootstrap` binary inside a cargo-lambda zip.
fn binary_of(zip: &std::path::Path) -> Result<Vec<u8>, CloudError> {
    let fail = |e: String| {
        CloudError::fatal(
            "HandlerBuildUnreadable",
            format!("the built handler {}: {e}", zip.display()),
        )
        .with_hint("rebuild it (scripts/build-functions.sh) or unset DEPLOYER_PREBUILT_FUNCTIONS")
    };
    let file = std::fs::File::open(zip).map_err(|e| fail(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| fail(e.to_string()))?;
    let mut entry = archive
        .by_name(BUILT_BINARY)
        .map_err(|e| fail(format!("no `{BUILT_BINARY}` in it ({e})")))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

#[async_trait]
impl AppPackageSource for HandlerPackage {
    async fn package(&self, twin: &TwinConfig) -> Result<AppPackage, CloudError> {
        let functions = app_functions(twin);
        let catalogue = catalogue(twin)?;
        let built = self.artifacts.zip(HANDLER_CRATE).await?;
        let handler = binary_of(&built)?;
        let bytes = package(&PackageInput {
            handler,
            catalogue,
            functions: functions.clone(),
        })
        .map_err(|e| {
            CloudError::fatal("PackageRefused", format!("the Function App package: {e}"))
        })?;
        Ok(AppPackage {
            hash: package_hash(&bytes),
            bytes,
            functions: functions.iter().map(|f| f.name().to_string()).collect(),
        })
    }
}
