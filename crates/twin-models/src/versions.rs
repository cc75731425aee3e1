//! DTMI versions for models that are immutable once uploaded (Azure Digital Twins): which
//! version each generated interface gets, given the models the service already holds.
//!
//! The version comes from the service, not from a state file: for each generated interface
//! (they are generated as `;1`), the versions of the same DTMI the service holds are compared
//! by content. A held version whose content equals the generated one (its references to the
//! twin's other models rewritten to the versions they resolve to) is reused, the highest such
//! one; otherwise the interface gets one more than the highest held version. So an unchanged
//! config resolves to the DTMIs already uploaded and nothing is sent, a lost state file changes
//! nothing, and a changed device gets `;N+1`. Models are resolved in dependency order, so a
//! changed base gives its dependents new versions too (their `extends` changed).
//!
//! Held models under the twin's prefix that the resolution does not use are obsolete: the
//! caller deletes them once no twin uses them any more, dependents first.

use crate::dtdl::{Content, Interface};
use crate::order::{self, OrderError};
use std::collections::{BTreeMap, BTreeSet};

/// A DTMI without its version: `dtmi:a:b;3` → `dtmi:a:b` (a DTMI without `;` is returned as
/// it is).
pub fn unversioned(dtmi: &str) -> &str {
    dtmi.rsplit_once(';').map(|(base, _)| base).unwrap_or(dtmi)
}

/// The version of a DTMI (`dtmi:a:b;3` → 3), `None` when it has none or it is not a number.
pub fn version_of(dtmi: &str) -> Option<u32> {
    dtmi.rsplit_once(';').and_then(|(_, v)| v.parse().ok())
}

/// `base` with version `n`: `dtmi:a:b` and 2 → `dtmi:a:b;2`.
pub fn with_version(base: &str, n: u32) -> String {
    format!("{base};{n}")
}

/// The DTMI prefix every generated model of the twin starts with (`dtmi:deployer:<twin>:`):
/// models under it are the deployer's to upload and delete.
pub fn twin_prefix(twin: &str) -> String {
    format!(
        "dtmi:{}:{}:",
        crate::dtmi::NAMESPACE,
        crate::dtmi::segment(twin)
    )
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The generated interfaces with their resolved DTMIs (ids and references), in upload
    /// order.
    pub models: Vec<Interface>,
    /// The resolved DTMI of each generated interface, by its unversioned DTMI.
    pub versions: BTreeMap<String, String>,
    /// The DTMIs of `models` the service does not hold yet, in upload order.
    pub to_upload: Vec<String>,
    /// Held DTMIs under the prefix that no resolved model uses, dependents before what they
    /// depend on (the order to delete them in).
    pub obsolete: Vec<String>,
}

impl Resolution {
    /// The models to upload, in batches of at most `max` (dependencies in earlier batches or
    /// the same one).
    pub fn upload_batches(&self, max: usize) -> Result<Vec<Vec<Interface>>, OrderError> {
        let wanted: BTreeSet<&str> = self.to_upload.iter().map(String::as_str).collect();
        let models: Vec<Interface> = self
            .models
            .iter()
            .filter(|m| wanted.contains(m.id.as_str()))
            .cloned()
            .collect();
        Ok(order::upload_batches(&models, max)?
            .into_iter()
            .map(|b| b.into_iter().cloned().collect())
            .collect())
    }
}

/// Resolves the versions of `generated` (as [`crate::dtdl::interfaces`] makes them) against
/// the models the service holds, `held` (whatever their origin; those that do not parse as
/// interfaces count as different content). `prefix` bounds what may be called obsolete
/// ([`twin_prefix`]).
pub fn resolve(
    generated: &[Interface],
    held: &[Interface],
    prefix: &str,
) -> Result<Resolution, OrderError> {
    let mut held_by_base: BTreeMap<&str, Vec<&Interface>> = BTreeMap::new();
    for h in held {
        held_by_base.entry(unversioned(&h.id)).or_default().push(h);
    }
    let ordered = order::upload_order(generated)?;
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    let mut models = Vec::new();
    let mut to_upload = Vec::new();
    let held_ids: BTreeSet<&str> = held.iter().map(|h| h.id.as_str()).collect();
    for g in ordered {
        let base = unversioned(&g.id).to_string();
        let candidate = rewrite_refs(g, &versions);
        let same_base = held_by_base.get(base.as_str()).cloned().unwrap_or_default();
        let matching = same_base
            .iter()
            .filter(|h| same_content(h, &candidate))
            .filter_map(|h| version_of(&h.id))
            .max();
        let version = match matching {
            Some(v) => v,
            None => {
                same_base
                    .iter()
                    .filter_map(|h| version_of(&h.id))
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        };
        let id = with_version(&base, version);
        let mut model = candidate;
        model.id = id.clone();
        if !held_ids.contains(id.as_str()) {
            to_upload.push(id.clone());
        }
        versions.insert(base, id);
        models.push(model);
    }
    let used: BTreeSet<&str> = models.iter().map(|m| m.id.as_str()).collect();
    let stale: Vec<Interface> = held
        .iter()
        .filter(|h| h.id.starts_with(prefix) && !used.contains(h.id.as_str()))
        .cloned()
        .collect();
    // Dependents first: the reverse of the upload order among the stale models.
    let obsolete = order::upload_order(&stale)?
        .into_iter()
        .rev()
        .map(|m| m.id.clone())
        .collect();
    Ok(Resolution {
        models,
        versions,
        to_upload,
        obsolete,
    })
}

/// `model` with every reference to a resolved model (what it extends, components' schemas,
/// relationship targets) pointing at the resolved version.
fn rewrite_refs(model: &Interface, versions: &BTreeMap<String, String>) -> Interface {
    let map = |dtmi: &str| {
        versions
            .get(unversioned(dtmi))
            .cloned()
            .unwrap_or_else(|| dtmi.to_string())
    };
    let mut out = model.clone();
    out.extends = out.extends.iter().map(|e| map(e)).collect();
    for c in &mut out.contents {
        match c {
            Content::Component(c) => c.schema = map(&c.schema),
            Content::Relationship(r) => r.target = r.target.as_deref().map(map),
            Content::Property(_) => {}
        }
    }
    out
}

/// Whether two interfaces say the same, whatever their own versions.
fn same_content(held: &Interface, candidate: &Interface) -> bool {
    let mut a = held.clone();
    let mut b = candidate.clone();
    a.id = unversioned(&a.id).to_string();
    b.id = unversioned(&b.id).to_string();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtdl::{self, PropertyDef};
    use crate::testing::{config, device};

    fn generated(props: &[&str]) -> Vec<Interface> {
        dtdl::interfaces(&config("dt", vec![device("d-1", props, &[])], None)).unwrap_or_default()
    }

    fn ids(v: &[String]) -> Vec<String> {
        v.to_vec()
    }

    #[test]
    fn version_parts() {
        assert_eq!(unversioned("dtmi:a:b;3"), "dtmi:a:b");
        assert_eq!(version_of("dtmi:a:b;3"), Some(3));
        assert_eq!(version_of("dtmi:a:b"), None);
        assert_eq!(with_version("dtmi:a:b", 2), "dtmi:a:b;2");
        assert_eq!(
            twin_prefix("my-twin"),
            format!("dtmi:deployer:{}:", crate::dtmi::segment("my-twin"))
        );
    }

    #[test]
    fn nothing_held_uploads_everything_as_version_one() {
        let g = generated(&["t"]);
        let r = resolve(&g, &[], &twin_prefix("dt")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to_upload.len(), 2);
        assert!(r.models.iter().all(|m| version_of(&m.id) == Some(1)));
        assert!(r.obsolete.is_empty());
        // The base comes first: the device extends it.
        assert_eq!(r.to_upload[0], dtdl::device_base_id("dt"));
    }

    #[test]
    fn an_unchanged_config_resolves_to_what_is_held_and_uploads_nothing() {
        let g = generated(&["t"]);
        let first = resolve(&g, &[], &twin_prefix("dt")).unwrap_or_else(|e| panic!("{e}"));
        let again =
            resolve(&g, &first.models, &twin_prefix("dt")).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.to_upload.is_empty(), "{:?}", again.to_upload);
        assert!(again.obsolete.is_empty());
        assert_eq!(again.models, first.models);
    }

    #[test]
    fn a_changed_device_gets_the_next_version_and_the_old_one_is_obsolete() {
        let prefix = twin_prefix("dt");
        let v1 = resolve(&generated(&["t"]), &[], &prefix).unwrap_or_else(|e| panic!("{e}"));
        let v2 = resolve(&generated(&["t", "rh"]), &v1.models, &prefix)
            .unwrap_or_else(|e| panic!("{e}"));
        let device = dtdl::device_interface_id("dt", "d-1");
        let base = unversioned(&device);
        assert_eq!(v2.versions.get(base), Some(&with_version(base, 2)));
        assert_eq!(ids(&v2.to_upload), [with_version(base, 2)]);
        assert_eq!(v2.obsolete, vec![device.clone()]);
        // The unchanged base keeps its version.
        assert_eq!(
            v2.versions.get(unversioned(&dtdl::device_base_id("dt"))),
            Some(&dtdl::device_base_id("dt"))
        );
        // Going back to the first content reuses version 1 while it is still held.
        let mut held = v1.models.clone();
        held.extend(
            v2.models
                .iter()
                .filter(|m| version_of(&m.id) == Some(2))
                .cloned(),
        );
        let back = resolve(&generated(&["t"]), &held, &prefix).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.to_upload.is_empty());
        assert_eq!(ids(&back.obsolete), [with_version(base, 2)]);
    }

    #[test]
    fn a_changed_base_moves_its_dependents_to_new_versions_too() {
        let prefix = twin_prefix("dt");
        let v1 = resolve(&generated(&["t"]), &[], &prefix).unwrap_or_else(|e| panic!("{e}"));
        let mut changed = generated(&["t"]);
        if let Some(Content::Property(p)) = changed[0].contents.first_mut() {
            p.description = Some("changed".into());
        }
        let v2 = resolve(&changed, &v1.models, &prefix).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v2.to_upload.len(), 2, "{:?}", v2.to_upload);
        let device = v2
            .models
            .iter()
            .find(|m| m.id.contains(":device:"))
            .cloned()
            .unwrap_or_else(|| panic!("device model"));
        assert_eq!(version_of(&device.id), Some(2));
        assert_eq!(
            device.extends,
            [with_version(unversioned(&dtdl::device_base_id("dt")), 2)]
        );
        // Dependents are deleted before their base.
        assert_eq!(v2.obsolete.len(), 2);
        assert!(v2.obsolete[0].contains(":device:"), "{:?}", v2.obsolete);
    }

    #[test]
    fn foreign_models_are_never_obsolete_and_a_removed_device_is() {
        let prefix = twin_prefix("dt");
        let two = dtdl::interfaces(&config(
            "dt",
            vec![device("a", &["t"], &[]), device("b", &["t"], &[])],
            None,
        ))
        .unwrap_or_default();
        let mut held = resolve(&two, &[], &prefix)
            .unwrap_or_else(|e| panic!("{e}"))
            .models;
        let mut foreign = held[0].clone();
        foreign.id = "dtmi:someone:else;1".into();
        foreign.contents = vec![Content::Property(PropertyDef {
            name: "x".into(),
            schema: "double".into(),
            display_name: None,
            description: None,
            writable: false,
        })];
        held.push(foreign);
        let one = dtdl::interfaces(&config("dt", vec![device("a", &["t"], &[])], None))
            .unwrap_or_default();
        let r = resolve(&one, &held, &prefix).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.obsolete, [dtdl::device_interface_id("dt", "b")]);
        assert!(r.to_upload.is_empty());
    }

    #[test]
    fn batches_hold_only_what_is_missing() {
        let g = generated(&["t"]);
        let r = resolve(&g, &[], &twin_prefix("dt")).unwrap_or_else(|e| panic!("{e}"));
        let b = r.upload_batches(1).unwrap_or_default();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0][0].id, dtdl::device_base_id("dt"));
    }
}
