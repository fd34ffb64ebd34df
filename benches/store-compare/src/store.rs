//! The one interface both stores implement, and the key layout they share.

use std::ops::Range;
use std::path::Path;

/// Every failure of the benchmark ends it: it is a measurement, not a server.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The cache each store is given: redb's default (1 GiB), so that both hold the full store
/// in memory and the reads compare the engines, not their caches (fjall's default is 32 MiB).
pub const CACHE_BYTES: usize = 1 << 30;

/// A message's key: the stream id then the offset, both big-endian, so that one stream's
/// messages sit next to each other in offset order in either store.
pub type Key = [u8; 12];

/// The key of `offset` in `stream`.
pub fn key(stream: u32, offset: u64) -> Key {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&stream.to_be_bytes());
    k[4..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The stream and offset of a key written by [`key`].
pub fn split(k: &[u8]) -> (u32, u64) {
    let mut s = [0u8; 4];
    let mut o = [0u8; 8];
    s.copy_from_slice(&k[..4]);
    o.copy_from_slice(&k[4..12]);
    (u32::from_be_bytes(s), u64::from_be_bytes(o))
}

/// What wsgate's streams need from a store. One writer thread calls `append` and `expire`;
/// readers on other threads call `last` and `after` (`&self` everywhere, so a store can be
/// shared).
pub trait Store: Sized + Send + Sync {
    /// The crate's name, for the tables.
    const NAME: &'static str;

    /// Opens the store in `dir`, creating it when empty (this is what a restart pays).
    fn open(dir: &Path) -> Result<Self>;

    /// Writes `batch` as one atomic commit. `durable`: on stable storage (fsync) when this
    /// returns; otherwise handed to the store without waiting for the disk.
    fn append(&self, batch: &[(Key, Vec<u8>)], durable: bool) -> Result<()>;

    /// The last `n` messages of `stream`, newest first, into `out`.
    fn last(&self, stream: u32, n: usize, out: &mut Vec<Vec<u8>>) -> Result<()>;

    /// Up to `n` messages of `stream` with offset `from` or later, oldest first, into `out`.
    fn after(&self, stream: u32, from: u64, n: usize, out: &mut Vec<Vec<u8>>) -> Result<()>;

    /// Deletes every message of the streams in `streams` whose offset is below `below`,
    /// in one durable commit; returns how many it deleted.
    fn expire(&self, streams: Range<u32>, below: u64) -> Result<u64>;

    /// Calls `f` with every message in key order (the crash check reads it all).
    fn scan(&self, f: &mut dyn FnMut(u32, u64, &[u8])) -> Result<()>;
}
