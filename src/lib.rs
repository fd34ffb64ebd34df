//! wsgate: a per-core sharded real-time WebSocket gateway speaking the native JSON/MessagePack
//! protocol (see `protocol/PROTOCOL.md`), with JWT authentication, private messages and rooms.
//!
//! Start one with [`start`] and a [`Config`]; the `wsgate` binary does that from flags and
//! environment variables.

mod alloc;
mod auth;
#[doc(hidden)]
pub mod bench_support;
mod cmd;
pub mod config;
mod connection;
mod directory;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod http;
#[doc(hidden)]
pub mod panic;
mod rate;
mod reactor;
mod router;
mod server;
mod shard;
mod shutdown;
mod stats;
mod transport;
mod ws;

pub use auth::{mint, mint_with_exp, KeyError, MintOptions};
pub use config::Config;
pub use http::routes::ROUTES;
pub use server::{start, ServerHandle, StartError};
pub use stats::{ShardStats, StatsSnapshot};
