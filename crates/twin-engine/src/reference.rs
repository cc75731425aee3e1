//! Output references: a setting of one spec that is an output of another resource, possibly on
//! another provider (the AWS mover's ingress URL is the Azure Function App's host name).
//!
//! A provider puts [`OutputRef::to_value`] where the value goes, anywhere in a spec's `desired`
//! or `inputs`. The engine then owns the rest: [`link`] turns a reference by provider and kind
//! into one by id (so one provider need not know how another names its ids) and adds the
//! dependency, and [`resolve`] substitutes the dependency's output before the spec is read,
//! compared or applied, so drivers only ever see plain values.

use crate::error::{CloudError, EngineError, ErrorClass};
use crate::provider::Outputs;
use crate::resource::{ResourceId, ResourceSpec};
use crate::state::ResourceRecord;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use twin_config::ProviderName;

/// The key that marks a JSON object as a reference: `{"$output": {...}}`.
pub const REF_KEY: &str = "$output";

/// Which resource a reference points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RefTarget {
    /// A resource by its spec id.
    Id {
        /// The spec id.
        id: ResourceId,
    },
    /// The one resource of `kind` on `provider` in the twin (another provider's resource,
    /// whose id and layer that provider decides).
    Kind {
        /// Provider that owns it.
        provider: ProviderName,
        /// Its driver kind.
        kind: String,
    },
}

/// A value that is a string attribute of another resource's observation, optionally inside a
/// template where `{}` stands for it (`https://{}/api/ingress-cold`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    /// The resource.
    #[serde(flatten)]
    pub target: RefTarget,
    /// The attribute of its observation.
    pub attr: String,
    /// The text the value goes into, `{}` standing for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl OutputRef {
    /// The attribute `attr` of the spec `id`.
    pub fn of(id: ResourceId, attr: &str) -> Self {
        OutputRef {
            target: RefTarget::Id { id },
            attr: attr.to_string(),
            template: None,
        }
    }

    /// The attribute `attr` of the twin's one resource of `kind` on `provider`.
    pub fn of_kind(provider: ProviderName, kind: &str, attr: &str) -> Self {
        OutputRef {
            target: RefTarget::Kind {
                provider,
                kind: kind.to_string(),
            },
            attr: attr.to_string(),
            template: None,
        }
    }

    /// The same reference, its value placed into `template` at `{}`.
    pub fn within(mut self, template: &str) -> Self {
        self.template = Some(template.to_string());
        self
    }

    /// The JSON that stands for the value in a spec.
    pub fn to_value(&self) -> Value {
        // A struct of strings: serializing cannot fail.
        json!({ REF_KEY: serde_json::to_value(self).unwrap_or(Value::Null) })
    }

    /// The reference `v` stands for, if it is one.
    pub fn from_value(v: &Value) -> Option<OutputRef> {
        let o = v.as_object()?;
        if o.len() != 1 {
            return None;
        }
        serde_json::from_value(o.get(REF_KEY)?.clone()).ok()
    }

    fn id(&self) -> Option<&ResourceId> {
        match &self.target {
            RefTarget::Id { id } => Some(id),
            RefTarget::Kind { .. } => None,
        }
    }

    fn apply(&self, value: &str) -> String {
        match &self.template {
            Some(t) => t.replace("{}", value),
            None => value.to_string(),
        }
    }
}

/// Calls `f` on every reference in `v`, replacing it with what `f` returns (`None` keeps it).
fn rewrite<E>(
    v: &mut Value,
    f: &mut dyn FnMut(&OutputRef) -> Result<Option<Value>, E>,
) -> Result<(), E> {
    if let Some(r) = OutputRef::from_value(v) {
        if let Some(new) = f(&r)? {
            *v = new;
        }
        return Ok(());
    }
    match v {
        Value::Object(m) => m.values_mut().try_for_each(|x| rewrite(x, f)),
        Value::Array(a) => a.iter_mut().try_for_each(|x| rewrite(x, f)),
        _ => Ok(()),
    }
}

/// Whether a spec holds any reference (most do not, and are used as they are).
fn has_refs(spec: &ResourceSpec) -> bool {
    fn any(v: &Value) -> bool {
        OutputRef::from_value(v).is_some()
            || match v {
                Value::Object(m) => m.values().any(any),
                Value::Array(a) => a.iter().any(any),
                _ => false,
            }
    }
    any(&spec.desired) || any(&spec.inputs)
}

/// Turns every reference by kind into one by id, looking among `specs` first and then among
/// the `recorded` ones (a resource outside this command's layers), and makes every referenced
/// resource a dependency of the spec that refers to it. With `strict`, fails naming the spec
/// when no such resource, or more than one, exists; without (destroy, where a reference only
/// orders deletes), such a reference is left as it is.
pub(crate) fn link(
    specs: &mut [ResourceSpec],
    recorded: &BTreeMap<ResourceId, ResourceRecord>,
    strict: bool,
) -> Result<(), EngineError> {
    let candidates = |provider: ProviderName, kind: &str, specs: &[ResourceSpec]| {
        let mut found: Vec<ResourceId> = specs
            .iter()
            .filter(|s| s.provider == provider && s.kind == kind)
            .map(|s| s.id.clone())
            .collect();
        if found.is_empty() {
            found = recorded
                .values()
                .map(|r| &r.spec)
                .filter(|s| s.provider == provider && s.kind == kind)
                .map(|s| s.id.clone())
                .collect();
        }
        found
    };
    if !specs.iter().any(has_refs) {
        return Ok(());
    }
    let all: Vec<ResourceSpec> = specs.to_vec();
    for spec in specs.iter_mut().filter(|s| has_refs(s)) {
        let label = spec.label();
        let mut deps = Vec::new();
        let mut f = |r: &OutputRef| -> Result<Option<Value>, EngineError> {
            let id = match &r.target {
                RefTarget::Id { id } => id.clone(),
                RefTarget::Kind { provider, kind } => {
                    let found = candidates(*provider, kind, &all);
                    match found.as_slice() {
                        [one] => one.clone(),
                        _ if !strict => return Ok(None),
                        [] => {
                            return Err(EngineError::MissingDependency(format!(
                                "{label} needs the `{attr}` of the {kind} on {provider}, which is neither among the resources of this command nor recorded as deployed; deploy the layer that holds it on {provider} first",
                                attr = r.attr
                            )))
                        }
                        many => {
                            return Err(EngineError::Graph(format!(
                                "{label} refers to the {kind} on {provider}, but there are {}: {}",
                                many.len(),
                                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                            )))
                        }
                    }
                }
            };
            deps.push(id.clone());
            let mut linked = r.clone();
            linked.target = RefTarget::Id { id };
            Ok(Some(linked.to_value()))
        };
        rewrite(&mut spec.desired, &mut f)?;
        rewrite(&mut spec.inputs, &mut f)?;
        for d in deps {
            if !spec.depends_on.contains(&d) {
                spec.depends_on.push(d);
            }
        }
    }
    Ok(())
}

/// What a reference reads as while its resource does not exist yet (a plan before the first
/// deploy): a text that differs from any cloud value, so the setting shows as a change.
pub fn pending_text(r: &OutputRef) -> String {
    let what = match &r.target {
        RefTarget::Id { id } => id.to_string(),
        RefTarget::Kind { provider, kind } => format!("{kind} on {provider}"),
    };
    format!("(known after deploy: {} of {what})", r.attr)
}

/// The spec with every reference replaced by its dependency's output in `deps`. With `strict`
/// (applying), a missing output is a `DependencyMissing` error naming the spec and the
/// dependency; without (planning, reading for info), it reads as [`pending_text`].
pub(crate) fn resolve<'a>(
    spec: &'a ResourceSpec,
    deps: &Outputs,
    strict: bool,
) -> Result<Cow<'a, ResourceSpec>, CloudError> {
    if !has_refs(spec) {
        return Ok(Cow::Borrowed(spec));
    }
    let mut out = spec.clone();
    let label = spec.label();
    let mut f = |r: &OutputRef| -> Result<Option<Value>, CloudError> {
        let got = r
            .id()
            .and_then(|id| deps.get(id))
            .and_then(|o| o.attr(&r.attr));
        match got {
            Some(v) => Ok(Some(Value::String(r.apply(v)))),
            None if !strict => Ok(Some(Value::String(pending_text(r)))),
            None => Err(CloudError::new(
                ErrorClass::NotFound,
                "DependencyMissing",
                format!(
                    "{label} needs {}: it is not deployed or reports no such output",
                    pending_text(r)
                        .trim_start_matches("(known after deploy: ")
                        .trim_end_matches(')')
                ),
            )
            .with_hint("deploy the layer that holds it, then deploy again")),
        }
    };
    rewrite(&mut out.desired, &mut f)?;
    rewrite(&mut out.inputs, &mut f)?;
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Observed;
    use twin_config::Layer;

    fn spec(id: &str, provider: ProviderName, kind: &str) -> ResourceSpec {
        ResourceSpec::new(ResourceId(id.into()), Layer::L3Hot, provider, kind, id)
    }

    fn host_ref() -> OutputRef {
        OutputRef::of_kind(ProviderName::Azure, "app", "host").within("https://{}/api/x")
    }

    #[test]
    fn a_reference_round_trips_through_json() {
        let r = host_ref();
        assert_eq!(OutputRef::from_value(&r.to_value()), Some(r));
        let by_id = OutputRef::of(ResourceId("a/b/c".into()), "arn");
        assert_eq!(OutputRef::from_value(&by_id.to_value()), Some(by_id));
        assert_eq!(OutputRef::from_value(&json!({"$output": 1, "x": 2})), None);
        assert_eq!(OutputRef::from_value(&json!("text")), None);
    }

    #[test]
    fn link_finds_the_other_providers_resource_by_kind_and_adds_the_dependency() {
        let sender = spec("l3-hot/fn/mover", ProviderName::Aws, "fn")
            .desired(json!({"env": {"URL": host_ref().to_value(), "A": "1"}}));
        let app = spec("l3-cold/app/twin", ProviderName::Azure, "app");
        let mut specs = vec![sender, app];
        link(&mut specs, &BTreeMap::new(), true).unwrap();
        assert_eq!(
            specs[0].depends_on,
            vec![ResourceId("l3-cold/app/twin".into())]
        );
        let linked = OutputRef::from_value(&specs[0].desired["env"]["URL"]).unwrap();
        assert_eq!(
            linked.target,
            RefTarget::Id {
                id: ResourceId("l3-cold/app/twin".into())
            }
        );
        assert_eq!(specs[0].desired["env"]["A"], "1");
        // Linking again changes nothing (the spec is recorded linked).
        let before = specs.clone();
        link(&mut specs, &BTreeMap::new(), true).unwrap();
        assert_eq!(specs, before);
    }

    #[test]
    fn link_looks_in_the_recorded_resources_when_the_command_does_not_describe_it() {
        let mut specs = vec![spec("l3-hot/fn/mover", ProviderName::Aws, "fn")
            .inputs(json!({"url": host_ref().to_value()}))];
        let app = spec("l2/app/twin", ProviderName::Azure, "app");
        let record = ResourceRecord {
            spec: app.clone(),
            status: crate::state::RecordStatus::Created,
            observed: None,
        };
        let recorded = BTreeMap::from([(app.id.clone(), record)]);
        link(&mut specs, &recorded, true).unwrap();
        assert_eq!(specs[0].depends_on, vec![ResourceId("l2/app/twin".into())]);
    }

    #[test]
    fn link_names_a_missing_or_ambiguous_target() {
        let sender = || {
            spec("l3-hot/fn/mover", ProviderName::Aws, "fn")
                .desired(json!({"url": host_ref().to_value()}))
        };
        let e = link(&mut [sender()], &BTreeMap::new(), true).unwrap_err();
        // Lenient (destroy): left unlinked, no dependency.
        let mut lenient = [sender()];
        link(&mut lenient, &BTreeMap::new(), false).unwrap();
        assert!(lenient[0].depends_on.is_empty());
        assert!(
            e.to_string()
                .contains("fn l3-hot/fn/mover needs the `host` of the app on azure"),
            "{e}"
        );
        let mut two = vec![
            sender(),
            spec("a/app/1", ProviderName::Azure, "app"),
            spec("b/app/2", ProviderName::Azure, "app"),
        ];
        let e = link(&mut two, &BTreeMap::new(), true).unwrap_err();
        assert!(
            e.to_string().contains("there are 2: a/app/1, b/app/2"),
            "{e}"
        );
        // The same kind on another provider is not it.
        let mut other = vec![sender(), spec("a/app/1", ProviderName::Aws, "app")];
        assert!(link(&mut other, &BTreeMap::new(), true).is_err());
    }

    #[test]
    fn resolve_substitutes_outputs_and_keeps_specs_without_references() {
        let app = ResourceId("l2/app/twin".into());
        let secret = ResourceId("l3-hot/secret/b".into());
        let s = spec("l3-hot/fn/mover", ProviderName::Aws, "fn").desired(json!({
            "env": {"URL": OutputRef::of(app.clone(), "host").within("https://{}/api/x").to_value()},
            "policy": {"Resource": [OutputRef::of(secret.clone(), "arn").to_value(), "arn:other"]},
        }));
        let deps = Outputs(
            [
                (
                    app.clone(),
                    Observed::new("app", json!({"host": "h.example.net"})),
                ),
                (
                    secret.clone(),
                    Observed::new("s", json!({"arn": "arn:secret:b-Ab12Cd"})),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let r = resolve(&s, &deps, true).unwrap();
        assert_eq!(r.desired["env"]["URL"], "https://h.example.net/api/x");
        assert_eq!(
            r.desired["policy"]["Resource"],
            json!(["arn:secret:b-Ab12Cd", "arn:other"])
        );
        let plain = spec("x", ProviderName::Aws, "fn").desired(json!({"a": 1}));
        assert!(matches!(
            resolve(&plain, &deps, true).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_missing_output_is_pending_in_a_plan_and_an_error_when_applying() {
        let app = ResourceId("l2/app/twin".into());
        let s = spec("l3-hot/fn/mover", ProviderName::Aws, "fn")
            .desired(json!({"url": OutputRef::of(app, "host").to_value()}));
        let planned = resolve(&s, &Outputs::default(), false).unwrap();
        assert_eq!(
            planned.desired["url"],
            "(known after deploy: host of l2/app/twin)"
        );
        let e = resolve(&s, &Outputs::default(), true).unwrap_err();
        assert_eq!(e.code, "DependencyMissing");
        assert!(
            e.message
                .contains("fn l3-hot/fn/mover needs host of l2/app/twin"),
            "{e}"
        );
    }
}
