//! fjall: an LSM tree (journal, memtable, sorted files compacted in the background); one
//! write batch per commit.

use std::ops::Range;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::store::{key, split, Key, Result, Store, CACHE_BYTES};

/// The database and its one keyspace (the key's stream prefix keeps a stream together), with
/// fjall's defaults but the cache (see [`CACHE_BYTES`]).
pub struct Fjall {
    db: Database,
    events: Keyspace,
}

impl Fjall {
    /// One atomic batch; `durable` asks fjall to fsync its journal (`SyncAll`) before the
    /// commit returns, otherwise the journal is only flushed to the OS (fjall's default).
    fn commit(&self, batch: fjall::OwnedWriteBatch, durable: bool) -> Result<()> {
        let batch = if durable {
            batch.durability(Some(PersistMode::SyncAll))
        } else {
            batch
        };
        batch.commit()?;
        Ok(())
    }
}

impl Store for Fjall {
    const NAME: &'static str = "fjall";

    fn open(dir: &Path) -> Result<Self> {
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES as u64)
            .open()?;
        let events = db.keyspace("events", KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, events })
    }

    fn append(&self, batch: &[(Key, Vec<u8>)], durable: bool) -> Result<()> {
        let mut b = self.db.batch();
        for (k, v) in batch {
            b.insert(&self.events, k.as_slice(), v.as_slice());
        }
        self.commit(b, durable)
    }

    fn last(&self, stream: u32, n: usize, out: &mut Vec<Vec<u8>>) -> Result<()> {
        out.clear();
        let (lo, hi) = (key(stream, 0), key(stream, u64::MAX));
        for guard in self.events.range(lo..=hi).rev().take(n) {
            out.push(guard.value()?.to_vec());
        }
        Ok(())
    }

    fn after(&self, stream: u32, from: u64, n: usize, out: &mut Vec<Vec<u8>>) -> Result<()> {
        out.clear();
        let (lo, hi) = (key(stream, from), key(stream, u64::MAX));
        for guard in self.events.range(lo..=hi).take(n) {
            out.push(guard.value()?.to_vec());
        }
        Ok(())
    }

    fn expire(&self, streams: Range<u32>, below: u64) -> Result<u64> {
        // fjall has no range tombstone: scan the keys of the range, one tombstone each.
        let mut b = self.db.batch();
        let mut deleted = 0u64;
        for stream in streams {
            let (lo, hi) = (key(stream, 0), key(stream, below));
            for guard in self.events.range(lo..hi) {
                b.remove(&self.events, guard.key()?);
                deleted += 1;
            }
        }
        self.commit(b, true)?;
        Ok(deleted)
    }

    fn scan(&self, f: &mut dyn FnMut(u32, u64, &[u8])) -> Result<()> {
        for guard in self.events.iter() {
            let (k, v) = guard.into_inner()?;
            let (stream, offset) = split(&k);
            f(stream, offset, &v);
        }
        Ok(())
    }
}
