//! The dependency graph over resource ids: validation and the edges the executor walks.

use crate::error::EngineError;
use crate::resource::ResourceId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Dependencies between the nodes of one command; edges to ids outside the graph are dropped.
#[derive(Debug, Default)]
pub struct Graph {
    /// node → the nodes it depends on (inside the graph).
    pub deps: BTreeMap<ResourceId, BTreeSet<ResourceId>>,
    /// node → the nodes that depend on it.
    pub dependents: HashMap<ResourceId, BTreeSet<ResourceId>>,
}

impl Graph {
    /// Builds the graph; fails on a cycle, naming the resources in it.
    pub fn new<'a>(
        nodes: impl IntoIterator<Item = (&'a ResourceId, &'a [ResourceId])>,
    ) -> Result<Graph, EngineError> {
        let mut g = Graph::default();
        let nodes: Vec<_> = nodes.into_iter().collect();
        for (id, _) in &nodes {
            g.deps.entry((*id).clone()).or_default();
        }
        for (id, deps) in &nodes {
            for d in deps.iter() {
                if g.deps.contains_key(d) && d != *id {
                    g.deps.entry((*id).clone()).or_default().insert(d.clone());
                    g.dependents
                        .entry(d.clone())
                        .or_default()
                        .insert((*id).clone());
                }
            }
        }
        g.check_acyclic()?;
        Ok(g)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// The same graph with every edge reversed (destroy walks dependents first).
    pub fn reversed(&self) -> Graph {
        let mut r = Graph::default();
        for id in self.deps.keys() {
            r.deps.entry(id.clone()).or_default();
        }
        for (id, deps) in &self.deps {
            for d in deps {
                r.deps.entry(d.clone()).or_default().insert(id.clone());
                r.dependents
                    .entry(id.clone())
                    .or_default()
                    .insert(d.clone());
            }
        }
        r
    }

    /// Kahn's algorithm; whatever is left over lies on or behind a cycle.
    fn check_acyclic(&self) -> Result<(), EngineError> {
        let mut indegree: HashMap<&ResourceId, usize> =
            self.deps.iter().map(|(k, v)| (k, v.len())).collect();
        let mut ready: Vec<&ResourceId> = indegree
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut seen = 0;
        while let Some(id) = ready.pop() {
            seen += 1;
            for d in self.dependents.get(id).into_iter().flatten() {
                if let Some(n) = indegree.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(d);
                    }
                }
            }
        }
        if seen == self.deps.len() {
            return Ok(());
        }
        let mut stuck: Vec<String> = indegree
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k.to_string())
            .collect();
        stuck.sort();
        Err(EngineError::Graph(format!(
            "dependency cycle among: {}",
            stuck.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ResourceId {
        ResourceId(s.into())
    }

    #[test]
    fn builds_edges_and_reverses() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let nodes = [
            (&a, &[][..]),
            (&b, &[a.clone()][..]),
            (&c, &[b.clone(), id("outside")][..]),
        ];
        let g = Graph::new(nodes.iter().map(|(i, d)| (*i, *d))).unwrap();
        assert_eq!(g.deps[&c], BTreeSet::from([b.clone()]));
        let r = g.reversed();
        assert_eq!(r.deps[&a], BTreeSet::from([b.clone()]));
        assert!(r.deps[&c].is_empty());
    }

    #[test]
    fn rejects_cycles_naming_them() {
        let (a, b) = (id("a"), id("b"));
        let nodes = [(&a, &[b.clone()][..]), (&b, &[a.clone()][..])];
        let e = Graph::new(nodes.iter().map(|(i, d)| (*i, *d))).unwrap_err();
        assert!(e.to_string().contains("cycle among: a, b"), "{e}");
    }
}
