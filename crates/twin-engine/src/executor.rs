//! Walks a dependency graph with at most `concurrency` operations in flight: a node starts as
//! soon as everything it depends on has finished, so wall time approaches the longest chain.

use crate::error::ResourceFailure;
use crate::graph::Graph;
use crate::resource::ResourceId;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why a node's operation did not succeed.
#[derive(Debug)]
pub enum NodeError {
    /// It failed for good.
    Failed(Box<ResourceFailure>),
    /// The command was cancelled while it ran.
    Cancelled,
}

/// How a walk ended.
#[derive(Debug, Default)]
pub struct Walk {
    /// Nodes that failed.
    pub failures: Vec<ResourceFailure>,
    /// Whether cancellation stopped the walk.
    pub cancelled: bool,
    /// Nodes never started (after a failure or cancellation, or behind a failed node).
    pub not_started: usize,
}

/// Runs `op` on every node. After the first failure or on cancellation no new node starts
/// (fail fast), but operations in flight finish so their results reach the state file.
pub async fn walk<F, Fut>(
    graph: &Graph,
    concurrency: usize,
    cancel: &CancellationToken,
    op: F,
) -> Walk
where
    F: Fn(ResourceId) -> Fut,
    Fut: Future<Output = Result<(), NodeError>> + Send + 'static,
{
    let mut indegree: HashMap<&ResourceId, usize> =
        graph.deps.iter().map(|(k, v)| (k, v.len())).collect();
    let mut ready: VecDeque<ResourceId> = graph
        .deps
        .iter()
        .filter(|(_, d)| d.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    let mut running = JoinSet::new();
    let mut result = Walk::default();
    let mut finished = 0usize;
    let mut stop = false;
    let limit = concurrency.max(1);
    loop {
        while !stop && running.len() < limit {
            let Some(id) = ready.pop_front() else { break };
            let fut = op(id.clone());
            running.spawn(async move { (id, fut.await) });
        }
        let next = tokio::select! {
            n = running.join_next() => n,
            _ = cancel.cancelled(), if !stop => {
                stop = true;
                result.cancelled = true;
                continue;
            }
        };
        let Some(joined) = next else { break };
        finished += 1;
        match joined {
            Ok((id, Ok(()))) => {
                for d in graph.dependents.get(&id).into_iter().flatten() {
                    if let Some(n) = indegree.get_mut(d) {
                        *n -= 1;
                        if *n == 0 {
                            ready.push_back(d.clone());
                        }
                    }
                }
            }
            Ok((_, Err(NodeError::Failed(f)))) => {
                result.failures.push(*f);
                stop = true;
            }
            Ok((_, Err(NodeError::Cancelled))) => {
                result.cancelled = true;
                stop = true;
            }
            Err(join) => {
                // A panicking driver is a bug; report it instead of taking the CLI down.
                result.failures.push(ResourceFailure {
                    id: ResourceId("<task>".into()),
                    label: "internal task".into(),
                    action: crate::Action::Read,
                    attempts: 1,
                    error: crate::CloudError::fatal("Panic", join.to_string()),
                });
                stop = true;
            }
        }
    }
    result.not_started = graph.len() - finished;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn id(s: &str) -> ResourceId {
        ResourceId(s.into())
    }

    #[tokio::test]
    async fn respects_dependencies_and_the_concurrency_bound() {
        let ids: Vec<ResourceId> = (0..20).map(|i| id(&format!("n{i}"))).collect();
        let root = id("root");
        let deps: Vec<Vec<ResourceId>> = ids.iter().map(|_| vec![root.clone()]).collect();
        let mut nodes: Vec<(&ResourceId, &[ResourceId])> = vec![(&root, &[])];
        nodes.extend(ids.iter().zip(deps.iter()).map(|(i, d)| (i, d.as_slice())));
        let g = Graph::new(nodes).unwrap();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let w = walk(&g, 4, &CancellationToken::new(), |n| {
            let (f, m, o) = (in_flight.clone(), max_seen.clone(), order.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                o.lock().unwrap().push(n);
                f.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await;
        assert!(w.failures.is_empty() && !w.cancelled && w.not_started == 0);
        assert_eq!(order.lock().unwrap()[0], root);
        assert_eq!(max_seen.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failure_stops_new_work_and_skips_dependents() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let nodes = [
            (&a, &[][..]),
            (&b, &[a.clone()][..]),
            (&c, &[b.clone()][..]),
        ];
        let g = Graph::new(nodes.iter().map(|(i, d)| (*i, *d))).unwrap();
        let w = walk(&g, 2, &CancellationToken::new(), |n| async move {
            if n.0 == "b" {
                Err(NodeError::Failed(Box::new(ResourceFailure {
                    id: n,
                    label: "x b".into(),
                    action: crate::Action::Create,
                    attempts: 1,
                    error: crate::CloudError::fatal("Bad", "bad"),
                })))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(w.failures.len(), 1);
        assert_eq!(w.not_started, 1);
    }
}
