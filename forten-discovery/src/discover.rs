//! The `tower::discover::Discover` adapter: registry snapshots turned into changes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tower::discover::Change;

use crate::error::DiscoveryError;
use crate::instance::ServiceInstance;
use crate::registry::InstanceStream;

/// A stream of `tower::discover::Change`s keyed by instance id, diffed from snapshots: an
/// instance that appears (or changes) is inserted, one that disappears is removed, an
/// unchanged one is never inserted twice. It implements `tower::discover::Discover`, so it
/// feeds `tower::balance::p2c::Balance` directly.
///
/// Make one with [`DiscoveryClient::discover_service`](crate::DiscoveryClient::discover_service)
/// or [`DiscoverChanges::new`] over any [`Registry::watch`](crate::Registry::watch).
///
/// ```
/// use forten_discovery::{DiscoverChanges, MemoryRegistry, Registry, ServiceInstance};
/// use futures_util::StreamExt;
/// use tower::discover::Change;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), forten_discovery::DiscoveryError> {
/// let registry = MemoryRegistry::new();
/// let _r = registry.register(ServiceInstance::builder("events", "127.0.0.1", 3002).id("a").build()?).await?;
/// // `make` builds the service for an instance: a hyper client bound to its base URL, say.
/// let mut changes = DiscoverChanges::new(registry.watch("events"), |i: &ServiceInstance| i.base_url());
/// match changes.next().await {
///     Some(Ok(Change::Insert(id, url))) => assert_eq!((id.as_str(), url.as_str()), ("a", "http://127.0.0.1:3002")),
///     _ => unreachable!(),
/// }
/// # Ok(())
/// # }
/// ```
pub struct DiscoverChanges<S, F> {
    snapshots: InstanceStream,
    make: F,
    known: BTreeMap<String, ServiceInstance>,
    pending: VecDeque<Change<String, S>>,
}

impl<S, F> fmt::Debug for DiscoverChanges<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoverChanges")
            .field("known", &self.known.keys().collect::<Vec<_>>())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<S, F> DiscoverChanges<S, F>
where
    F: FnMut(&ServiceInstance) -> S,
{
    /// Diffs the snapshots of `snapshots`, building each inserted service with `make`.
    pub fn new(snapshots: InstanceStream, make: F) -> Self {
        DiscoverChanges {
            snapshots,
            make,
            known: BTreeMap::new(),
            pending: VecDeque::new(),
        }
    }

    fn diff(&mut self, snapshot: Vec<ServiceInstance>) {
        let next: BTreeMap<String, ServiceInstance> =
            snapshot.into_iter().map(|i| (i.id.clone(), i)).collect();
        for id in self.known.keys() {
            if !next.contains_key(id) {
                self.pending.push_back(Change::Remove(id.clone()));
            }
        }
        for (id, instance) in &next {
            if self.known.get(id) != Some(instance) {
                // A changed instance is re-inserted: tower replaces the service under that key.
                self.pending
                    .push_back(Change::Insert(id.clone(), (self.make)(instance)));
            }
        }
        self.known = next;
    }
}

// Nothing is ever pinned in place: the snapshot stream is boxed and `S`, `F` are only moved.
impl<S, F> Unpin for DiscoverChanges<S, F> {}

impl<S, F> Stream for DiscoverChanges<S, F>
where
    F: FnMut(&ServiceInstance) -> S,
{
    type Item = Result<Change<String, S>, DiscoveryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            match this.snapshots.as_mut().poll_next(cx) {
                Poll::Ready(Some(snapshot)) => this.diff(snapshot),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn inst(id: &str, port: u16) -> ServiceInstance {
        ServiceInstance::builder("s", "127.0.0.1", port)
            .id(id)
            .build()
            .unwrap()
    }

    fn describe(c: &Change<String, u16>) -> String {
        match c {
            Change::Insert(id, port) => format!("+{id}:{port}"),
            Change::Remove(id) => format!("-{id}"),
        }
    }

    proptest::proptest! {
        /// Applying the changes to a map gives the last snapshot; nothing unchanged is re-inserted.
        #[test]
        fn changes_replay_to_the_last_snapshot(
            snapshots in proptest::collection::vec(
                proptest::collection::btree_map(0u8..6, 1u16..4, 0..6), 1..8),
        ) {
            let as_instances = |m: &std::collections::BTreeMap<u8, u16>| -> Vec<ServiceInstance> {
                m.iter().map(|(id, port)| inst(&id.to_string(), *port)).collect()
            };
            let stream: InstanceStream = Box::pin(futures_util::stream::iter(
                snapshots.iter().map(as_instances).collect::<Vec<_>>()));
            let mut changes = DiscoverChanges::new(stream, |i: &ServiceInstance| i.port);
            let mut applied: std::collections::BTreeMap<String, u16> = std::collections::BTreeMap::new();
            let waker = futures_util::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            while let std::task::Poll::Ready(Some(change)) = Pin::new(&mut changes).poll_next(&mut cx) {
                match change.unwrap() {
                    Change::Insert(id, port) => {
                        proptest::prop_assert_ne!(applied.insert(id, port), Some(port), "duplicate insert");
                    }
                    Change::Remove(id) => {
                        proptest::prop_assert!(applied.remove(&id).is_some(), "remove of an unknown id");
                    }
                }
            }
            let last: std::collections::BTreeMap<String, u16> = snapshots
                .last()
                .unwrap()
                .iter()
                .map(|(id, port)| (id.to_string(), *port))
                .collect();
            proptest::prop_assert_eq!(applied, last);
        }
    }

    #[tokio::test]
    async fn diffs_snapshots_without_duplicate_inserts() {
        let snapshots = vec![
            vec![inst("a", 1), inst("b", 2)],
            vec![inst("a", 1), inst("b", 2)],
            vec![inst("b", 3), inst("c", 4)],
            vec![],
        ];
        let stream: InstanceStream = Box::pin(futures_util::stream::iter(snapshots));
        let changes: Vec<String> = DiscoverChanges::new(stream, |i: &ServiceInstance| i.port)
            .map(|c| describe(&c.unwrap()))
            .collect()
            .await;
        assert_eq!(changes, ["+a:1", "+b:2", "-a", "+b:3", "+c:4", "-b", "-c"]);
    }
}
