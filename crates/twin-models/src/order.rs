//! The order DTDL models must be uploaded in, and batches under Azure Digital Twins' limit on
//! models per call: every model's dependencies (what it extends, its components' schemas, its
//! relationships' targets) are uploaded in an earlier call or in the same one.
//!
//! `extends` and components cannot form cycles in DTDL, but relationship targets can (A
//! targets B, B targets A): such models are uploaded together, so each strongly connected
//! group of models goes into one batch. Dependencies outside the given models are taken to
//! be in the instance already (uploaded earlier or by someone else) and do not constrain order.

use crate::dtdl::Interface;
use std::collections::{BTreeMap, BTreeSet};

/// Most models Azure Digital Twins accepts in one "add models" call.
pub const ADT_MAX_MODELS_PER_CALL: usize = 250;

/// Why the models cannot be ordered or batched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Two models have the same DTMI.
    #[error("model {0} is given twice; each DTMI can be uploaded once")]
    Duplicate(String),
    /// Models that reference each other (relationship targets in a cycle) are more than one
    /// call can take.
    #[error("{count} models reference each other in a cycle ({first} among them) and must be uploaded in one call, but a call takes at most {max}; break the cycle of relationship targets")]
    CycleTooLarge {
        /// One DTMI of the cycle.
        first: String,
        /// How many models the cycle holds.
        count: usize,
        /// The batch limit.
        max: usize,
    },
    /// A batch size of zero.
    #[error("a batch must hold at least one model")]
    ZeroBatch,
}

/// The models in an order that uploads every model after the models it depends on; models
/// that depend on each other come next to each other. Deterministic: ties keep the input order.
pub fn upload_order(models: &[Interface]) -> Result<Vec<&Interface>, OrderError> {
    Ok(groups(models)?
        .into_iter()
        .flatten()
        .map(|i| &models[i])
        .collect())
}

/// The models in batches of at most `max` (use [`ADT_MAX_MODELS_PER_CALL`]), to upload one
/// call per batch in this order: each model's dependencies are in an earlier batch or its own.
pub fn upload_batches(
    models: &[Interface],
    max: usize,
) -> Result<Vec<Vec<&Interface>>, OrderError> {
    if max == 0 {
        return Err(OrderError::ZeroBatch);
    }
    let mut batches: Vec<Vec<&Interface>> = Vec::new();
    let mut current: Vec<&Interface> = Vec::new();
    for group in groups(models)? {
        if group.len() > max {
            return Err(OrderError::CycleTooLarge {
                first: models[group[0]].id.clone(),
                count: group.len(),
                max,
            });
        }
        if current.len() + group.len() > max {
            batches.push(std::mem::take(&mut current));
        }
        current.extend(group.iter().map(|&i| &models[i]));
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

/// The models as groups of indices (strongly connected components of the dependency graph),
/// dependencies' groups first.
fn groups(models: &[Interface]) -> Result<Vec<Vec<usize>>, OrderError> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in models.iter().enumerate() {
        if index.insert(m.id.as_str(), i).is_some() {
            return Err(OrderError::Duplicate(m.id.clone()));
        }
    }
    let deps: Vec<Vec<usize>> = models
        .iter()
        .map(|m| {
            m.dependencies()
                .into_iter()
                .filter_map(|d| index.get(d).copied())
                .collect()
        })
        .collect();
    // Tarjan's algorithm emits each component after every component it can reach, that is
    // after its dependencies: exactly the upload order.
    let mut t = Tarjan {
        deps: &deps,
        next: 0,
        num: vec![None; models.len()],
        low: vec![0; models.len()],
        on_stack: vec![false; models.len()],
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in 0..models.len() {
        if t.num[v].is_none() {
            t.visit(v);
        }
    }
    for g in &mut t.out {
        g.sort_unstable();
    }
    Ok(t.out)
}

struct Tarjan<'a> {
    deps: &'a [Vec<usize>],
    next: usize,
    num: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    out: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    /// Iterative depth-first visit (a deep chain of models must not overflow the stack).
    fn visit(&mut self, root: usize) {
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        self.enter(root);
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if let Some(&w) = self.deps[v].get(*edge) {
                *edge += 1;
                match self.num[w] {
                    None => {
                        self.enter(w);
                        work.push((w, 0));
                    }
                    Some(n) if self.on_stack[w] => self.low[v] = self.low[v].min(n),
                    Some(_) => {}
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                self.low[parent] = self.low[parent].min(self.low[v]);
            }
            if Some(self.low[v]) == self.num[v] {
                let mut group = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    group.insert(w);
                    if w == v {
                        break;
                    }
                }
                self.out.push(group.into_iter().collect());
            }
        }
    }

    fn enter(&mut self, v: usize) {
        self.num[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtdl::{Content, RelationshipDef};

    fn model(id: &str, extends: &[&str], targets: &[&str]) -> Interface {
        Interface {
            context: crate::dtmi::DTDL_CONTEXT.into(),
            id: format!("dtmi:t:{id};1"),
            kind: "Interface".into(),
            display_name: None,
            description: None,
            extends: extends.iter().map(|e| format!("dtmi:t:{e};1")).collect(),
            contents: targets
                .iter()
                .map(|t| {
                    Content::Relationship(RelationshipDef {
                        name: format!("r{t}"),
                        target: Some(format!("dtmi:t:{t};1")),
                        description: None,
                    })
                })
                .collect(),
        }
    }

    fn ids<'a>(ms: impl IntoIterator<Item = &'a Interface>) -> Vec<String> {
        ms.into_iter()
            .map(|m| {
                m.id.trim_start_matches("dtmi:t:")
                    .trim_end_matches(";1")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn dependencies_come_first() {
        // Given children before their bases; the order puts bases first.
        let ms = vec![
            model("c", &["b"], &[]),
            model("b", &["a"], &[]),
            model("x", &[], &["c"]),
            model("a", &[], &[]),
        ];
        let order = upload_order(&ms).unwrap_or_default();
        assert_eq!(ids(order), ["a", "b", "c", "x"]);
    }

    #[test]
    fn independent_models_keep_their_input_order() {
        let ms = vec![
            model("z", &[], &[]),
            model("y", &[], &[]),
            model("x", &[], &[]),
        ];
        assert_eq!(ids(upload_order(&ms).unwrap_or_default()), ["z", "y", "x"]);
    }

    #[test]
    fn outside_dependencies_do_not_constrain_and_self_targets_are_fine() {
        let ms = vec![model("a", &["elsewhere"], &["a"])];
        assert_eq!(ids(upload_order(&ms).unwrap_or_default()), ["a"]);
    }

    #[test]
    fn a_relationship_cycle_stays_in_one_batch() {
        let ms = vec![
            model("p", &[], &[]),
            model("q", &["p"], &["r"]),
            model("r", &[], &["q"]),
            model("s", &[], &[]),
        ];
        let batches = upload_batches(&ms, 2).unwrap_or_default();
        let got: Vec<Vec<String>> = batches.into_iter().map(ids).collect();
        assert_eq!(got, [vec!["p"], vec!["q", "r"], vec!["s"]]);
        let err = upload_batches(&ms, 1).err();
        assert!(matches!(
            err,
            Some(OrderError::CycleTooLarge {
                count: 2,
                max: 1,
                ..
            })
        ));
    }

    #[test]
    fn batches_hold_at_most_the_limit_and_respect_dependencies() {
        let mut ms = vec![model("base", &[], &[])];
        for i in 0..600 {
            ms.push(model(&format!("d{i}"), &["base"], &[]));
        }
        ms.reverse(); // the base last in the input
        let batches = upload_batches(&ms, ADT_MAX_MODELS_PER_CALL).unwrap_or_default();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [250, 250, 101]);
        let mut uploaded: BTreeSet<&str> = BTreeSet::new();
        for b in &batches {
            let this: BTreeSet<&str> = b.iter().map(|m| m.id.as_str()).collect();
            for m in b {
                for d in m.dependencies() {
                    assert!(
                        uploaded.contains(d) || this.contains(d),
                        "{} before {d}",
                        m.id
                    );
                }
            }
            uploaded.extend(this);
        }
        assert_eq!(uploaded.len(), 601);
    }

    #[test]
    fn a_deep_chain_does_not_overflow() {
        let ms: Vec<Interface> = (0..20_000)
            .map(|i| {
                let dep = format!("m{}", i + 1);
                model(&format!("m{i}"), &[], &[&dep])
            })
            .collect();
        let order = upload_order(&ms).unwrap_or_default();
        assert_eq!(order.len(), 20_000);
        assert_eq!(ids([order[0]]), ["m19999"]);
    }

    #[test]
    fn duplicates_and_zero_batches_are_refused() {
        let ms = vec![model("a", &[], &[]), model("a", &[], &[])];
        assert_eq!(
            upload_order(&ms).err(),
            Some(OrderError::Duplicate("dtmi:t:a;1".into()))
        );
        assert_eq!(
            upload_batches(&ms[..1], 0).err(),
            Some(OrderError::ZeroBatch)
        );
    }
}
