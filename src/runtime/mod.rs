//! The runtime: starting and stopping the server (one `SO_REUSEPORT` listener and one thread
//! per shard, and the handle that stops them), the shard loops ([`shard`]), the connection
//! machine the reactor drives ([`connection`]), the applications of Engine.IO sessions
//! ([`engineio`]), the sweep ([`sweep`]) and the allocator's upkeep ([`alloc`]).

mod alloc;
mod connection;
mod engineio;
mod shard;
mod sweep;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, ConfigError};
use crate::node::shutdown::ShutdownTrigger;
use crate::node::Shared;
use crate::session::auth::{KeyError, Verifier};
use crate::stats::{ShardStats, StatsSnapshot};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A knob is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The JWT key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store could not be opened (`STORE=disk`).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Binding a listener or spawning a shard failed.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    trigger: ShutdownTrigger,
    threads: Vec<JoinHandle<()>>,
    dev_secret: Option<String>,
    dev_api_key: Option<String>,
}

/// Starts the server: binds one listener per shard and starts the shard threads.
pub fn start(mut config: Config) -> Result<ServerHandle, StartError> {
    config.validate()?;
    let dev_secret = (config.jwt_secret.is_none() && config.jwt_public_key_file.is_none())
        .then(crate::session::auth::dev_secret);
    let verifier = Verifier::from_config(&config, dev_secret.as_deref())?;
    let mut api_keys = config.api_key_list();
    let dev_api_key = api_keys
        .is_empty()
        .then(|| format!("wsgate_dev_{}", crate::session::auth::dev_secret()));
    api_keys.extend(dev_api_key.clone());
    let shards = config.shard_count();
    let requested = SocketAddr::new(config.host, config.port);
    let listeners = bind(requested, shards).map_err(|source| StartError::Io {
        addr: requested,
        source,
    })?;
    let addr = listeners[0].local_addr().map_err(|source| StartError::Io {
        addr: requested,
        source,
    })?;

    // Cluster mode: the other nodes forward Engine.IO requests to the listener's address,
    // unless another is given or it is unspecified (reachable at no one address).
    if config.cluster_advertise_addr.is_none() && !addr.ip().is_unspecified() {
        config.cluster_advertise_addr = Some(addr.to_string());
    }
    let (trigger, shutdown) = ShutdownTrigger::new();
    let (shared, handoffs) = Shared::new(config, verifier, api_keys, shutdown)?;
    let shared = Arc::new(shared);
    let mut threads = Vec::with_capacity(shards);
    for (id, (listener, handoffs)) in listeners.into_iter().zip(handoffs).enumerate() {
        let thread = shard::spawn(id, shared.clone(), listener, handoffs)
            .map_err(|source| StartError::Io { addr, source })?;
        threads.push(thread);
    }
    // The log target stays `wsgate::server`, as log filters and the bench scripts know it.
    tracing::info!(target: "wsgate::server", %addr, shards, "wsgate listening");
    Ok(ServerHandle {
        addr,
        shared,
        trigger,
        threads,
        dev_secret,
        dev_api_key,
    })
}

/// Binds `shards` listeners to one address with `SO_REUSEPORT`; port 0 is resolved by the
/// first and reused by the others.
fn bind(addr: SocketAddr, shards: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(shards);
    let mut addr = addr;
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        if addr.port() == 0 {
            addr = listener.local_addr()?;
        }
        out.push(listener);
    }
    Ok(out)
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The random HS256 secret of development mode (no `JWT_SECRET`, no public key).
    pub fn dev_secret(&self) -> Option<&str> {
        self.dev_secret.as_deref()
    }

    /// The generated REST API key of development mode (no `API_KEYS`).
    pub fn dev_api_key(&self) -> Option<&str> {
        self.dev_api_key.as_deref()
    }

    /// Each shard's counters.
    pub fn shard_stats(&self) -> Vec<StatsSnapshot> {
        self.shared
            .stats
            .iter()
            .map(|s| ShardStats::snapshot(s))
            .collect()
    }

    /// All shards' counters added up.
    pub fn stats(&self) -> StatsSnapshot {
        self.shard_stats()
            .into_iter()
            .fold(StatsSnapshot::default(), |a, b| a + b)
    }

    /// The state every shard shares.
    #[cfg(feature = "testing")]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Rooms on the server now.
    pub fn room_count(&self) -> usize {
        self.shared.directory().room_count()
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.trigger.fire();
    }

    /// Graceful shutdown: stop accepting, flush, close everyone with 1001, and wait for the
    /// shards to finish (each bounded by the shutdown deadline).
    pub fn shutdown_blocking(self) {
        self.trigger.fire();
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
        self.shared.close_store();
    }

    /// [`ServerHandle::shutdown_blocking`] for async callers.
    pub async fn shutdown(self) {
        let joined = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
        if joined.is_err() {
            tracing::error!("shutdown task failed");
        }
    }
}
