//! The nodes' HTTP addresses, for forwarding Engine.IO requests to the node that holds their
//! session: each node keeps `{n}:addr:<tag>` (its `CLUSTER_ADVERTISE_ADDR`) alive with its
//! beat (`presence.rs`), for `CLUSTER_NODE_TIMEOUT`; the others read it when a request names
//! the node's tag, and keep what they read a while, in a bounded cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::interfaces::KeysInterface;
use fred::types::Value;

use super::{bytes_of, lock, Redis};
use crate::config::Config;
use crate::transport::engineio::NodeTag;

/// Most nodes' addresses kept at once; past it, the cache starts over.
const CACHE: usize = 1024;

/// This node's address, the others' as read, and the requests being forwarded.
pub(crate) struct Addresses {
    /// `CLUSTER_ADVERTISE_ADDR` (or the listener's): `None`, no node can forward here.
    own: Option<String>,
    /// Addresses read from Redis, with when, kept `CLUSTER_NODE_TIMEOUT` (a std `Mutex`:
    /// held for a lookup, never across an await).
    cache: Mutex<HashMap<NodeTag, (Arc<str>, Instant)>>,
    keep: Duration,
    /// Requests being forwarded now, at most `max` (`CLUSTER_FORWARD_MAX`).
    in_flight: AtomicUsize,
    max: usize,
}

/// One of the `CLUSTER_FORWARD_MAX` forwarded requests, given back when dropped.
pub(crate) struct ForwardPermit(Arc<Redis>);

impl Drop for ForwardPermit {
    fn drop(&mut self) {
        self.0.addresses.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Addresses {
    pub(crate) fn new(config: &Config) -> Addresses {
        Addresses {
            own: config.cluster_advertise_addr.clone(),
            cache: Mutex::default(),
            keep: config.cluster_node_timeout,
            in_flight: AtomicUsize::new(0),
            max: config.cluster_forward_max,
        }
    }

    /// This node's address as the beat publishes it (`""`: none).
    pub(crate) fn own(&self) -> &str {
        self.own.as_deref().unwrap_or("")
    }

    /// Whether this node forwards at all (`CLUSTER_FORWARD_MAX` is not 0).
    pub(crate) fn forwards(&self) -> bool {
        self.max > 0
    }
}

impl Redis {
    /// The key of node `tag`'s address.
    pub(super) fn address_key(&self, tag: NodeTag) -> String {
        self.names.shared(&format!("addr:{}", tag.as_str()))
    }

    /// A slot to forward a request, unless `CLUSTER_FORWARD_MAX` are forwarded already.
    pub(crate) fn forward_permit(self: &Arc<Self>) -> Option<ForwardPermit> {
        let a = &self.addresses;
        if a.in_flight.fetch_add(1, Ordering::AcqRel) >= a.max {
            a.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ForwardPermit(self.clone()))
    }

    /// Node `tag`'s HTTP address: from the cache, else from Redis. `None` if no node of that
    /// tag beat within `CLUSTER_NODE_TIMEOUT` with an address, or Redis did not answer.
    pub(crate) async fn address_of(&self, tag: NodeTag) -> Option<Arc<str>> {
        let a = &self.addresses;
        if let Some((addr, at)) = lock(&a.cache).get(&tag) {
            if at.elapsed() < a.keep {
                return Some(addr.clone());
            }
        }
        let value: Value = self
            .bounded(self.client.get(self.address_key(tag)))
            .await
            .ok()?;
        let addr: Arc<str> = std::str::from_utf8(&bytes_of(&value)?).ok()?.into();
        let mut cache = lock(&a.cache);
        if cache.len() >= CACHE {
            cache.retain(|_, (_, at)| at.elapsed() < a.keep);
            if cache.len() >= CACHE {
                cache.clear();
            }
        }
        cache.insert(tag, (addr.clone(), Instant::now()));
        Some(addr)
    }

    /// Node `tag` could not be reached at the address read: read it again next time.
    pub(crate) fn forget_address(&self, tag: NodeTag) {
        lock(&self.addresses.cache).remove(&tag);
    }
}
