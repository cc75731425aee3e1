//! The real Function App package: the `azure-handler` binary (built once per source change by
//! `twin_artifacts`, like every function), the twin's device catalogue, one `function.json`
//! per function of the layers the twin keeps on Azure and the binary of each processor crate a
//! device names (the same x86_64 build as its Lambda function; the handler runs it), the binary
//! of each event rule's function crate (`events/<crate>`), zipped by
//! `twin_functions_azure::app::package` so the handler and the deployer agree on its layout.

use super::{AppPackage, AppPackageSource};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use twin_artifacts::Artifacts;
use twin_config::{names, TwinConfig};
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

/// The functions the app runs for the layers the twin keeps on Azure (`ingress-cold` when L3
/// cold receives the hot → cold hop from another cloud), in [`super::APP_LAYERS`] order.
pub fn app_functions(twin: &TwinConfig) -> Vec<AppFunction> {
    super::APP_LAYERS
        .into_iter()
        .flat_map(|l| super::layer_functions(twin, l))
        .collect()
}

/// The device catalogue the handler loads: every device's property types, and for a device
/// naming a processor crate of its own, that crate (the handler runs its binary); the others
/// use the in-process default processor.
pub fn catalogue(twin: &TwinConfig) -> Result<DeviceCatalogue, CloudError> {
    let mut devices = BTreeMap::new();
    for d in &twin.devices {
        let properties = twin_artifacts::property_specs(d)?;
        // `aws.processor_per_device` is an AWS setting (a Lambda function per device): in the
        // one handler every device without a crate of its own shares the default processor.
        devices.insert(
            d.id.clone(),
            CatalogueDevice {
                properties,
                processor: d.processor.clone(),
            },
        );
    }
    Ok(DeviceCatalogue {
        shared_processor: names::SHARED_PROCESSOR.to_string(),
        devices,
    })
}

/// The processor crates the twin's devices name, once each, in order.
pub fn own_processor_crates(twin: &TwinConfig) -> BTreeSet<String> {
    twin.devices
        .iter()
        .filter_map(|d| d.processor.clone())
        .collect()
}

/// The function crates the twin's event rules run, once each, in order. On Azure every
/// function a rule names ships in the package (a Function App runs one executable; there is
/// no function of another deployment to invoke by name).
pub fn event_function_crates(twin: &TwinConfig) -> BTreeSet<String> {
    twin.events
        .iter()
        .filter_map(|r| match &r.action {
            twin_events::Action::Function { function_name, .. } => Some(function_name.clone()),
            _ => None,
        })
        .collect()
}

/// The `bootstrap` binary inside a cargo-lambda zip.
fn binary_of(zip: &std::path::Path) -> Result<Vec<u8>, CloudError> {
    let fail = |e: String| {
        CloudError::fatal(
            "FunctionBuildUnreadable",
            format!("the built function {}: {e}", zip.display()),
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
        let mut catalogue = catalogue(twin)?;
        if !functions.contains(&AppFunction::Processor) {
            // No processor here, so no device's own processor either.
            for d in catalogue.devices.values_mut() {
                d.processor = None;
            }
        }
        let built = self.artifacts.zip(HANDLER_CRATE).await?;
        let handler = binary_of(&built)?;
        let mut processors = BTreeMap::new();
        if functions.contains(&AppFunction::Processor) {
            for crate_name in own_processor_crates(twin) {
                let built = self.artifacts.zip(&crate_name).await?;
                processors.insert(crate_name, binary_of(&built)?);
            }
        }
        let mut events = BTreeMap::new();
        if functions.contains(&AppFunction::Persister) {
            // The rules' function crates run beside the persister that fires them.
            for crate_name in event_function_crates(twin) {
                let built = self.artifacts.zip(&crate_name).await?;
                events.insert(crate_name, binary_of(&built)?);
            }
        }
        let bytes = package(&PackageInput {
            handler,
            catalogue,
            functions: functions.clone(),
            processors,
            events,
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
