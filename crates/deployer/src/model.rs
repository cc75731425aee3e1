//! `model`: the twin's DTDL or TwinMaker models, from the config alone (twin_models builds them;
//! this only loads the config, writes the files or the document, and reports).

use crate::cli::{Cli, ModelFormat};
use crate::commands::config_dir;
use crate::error::CliError;
use crate::output;
use std::collections::BTreeSet;
use std::path::Path;
use twin_config::{Diagnostic, Diagnostics};
use twin_models::{Format, ModelError};

/// Writes the models of the config in `-C` into `out`, or prints them as one JSON document.
pub fn run(cli: &Cli, format: ModelFormat, out: Option<&Path>) -> Result<(), CliError> {
    // Not `load_config`: models need no provider, so a layer not implemented yet is no reason
    // to refuse them.
    let config = twin_config::load_dir(&config_dir(cli)).map_err(CliError::Config)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let format = match format {
        ModelFormat::Dtdl => Format::Dtdl,
        ModelFormat::Twinmaker => Format::TwinMaker,
    };
    let Some(dir) = out else {
        output::json(&twin_models::document(&config, format).map_err(config_problem)?);
        return Ok(());
    };
    let files = twin_models::render(&config, format).map_err(config_problem)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let ours: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    // A directory import (`az dt model create --from-directory`) takes every JSON file, so an
    // old model left from a device no longer configured would be uploaded again.
    for stale in stale_json_files(dir, &ours) {
        eprintln!(
            "warning: {} is not a model of this twin (left from an earlier run?); remove it before importing the directory",
            dir.join(stale).display()
        );
    }
    for f in &files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.text)
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
    }
    if cli.json {
        output::json(&serde_json::json!({
            "dir": dir.display().to_string(),
            "files": files.iter().map(|f| &f.name).collect::<Vec<_>>(),
        }));
    } else {
        let what = match format {
            Format::Dtdl => format!(
                "DTDL files (upload order in {})",
                twin_models::render::UPLOAD_ORDER_FILE
            ),
            Format::TwinMaker => "TwinMaker files".to_string(),
        };
        println!("Wrote {} {what} to {}", files.len(), dir.display());
    }
    Ok(())
}

fn stale_json_files(dir: &Path, ours: &BTreeSet<&str>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stale: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && !ours.contains(n.as_str()))
        .collect();
    stale.sort();
    stale
}

/// A config the models cannot be made from, reported like any config problem (exit code 2).
fn config_problem(e: ModelError) -> CliError {
    let (file, item) = match &e {
        ModelError::Collision(c) => (c.file.clone(), Some(c.what.clone())),
        ModelError::Order(_) => (twin_config::DEVICES_FILE.to_string(), None),
        ModelError::SharedTwinId(id) => (
            twin_config::HIERARCHY_FILE.to_string(),
            Some(format!("entity `{id}`")),
        ),
    };
    CliError::Config(Diagnostics(vec![Diagnostic {
        file,
        path: "$".to_string(),
        line: 0,
        column: 0,
        message: e.to_string(),
        item,
    }]))
}
