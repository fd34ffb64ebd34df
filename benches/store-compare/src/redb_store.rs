//! redb: a copy-on-write B-tree in one file; one write transaction per commit.

use std::ops::Range;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::store::{key, split, Key, Result, Store, CACHE_BYTES};

/// All streams in one table: the key's stream prefix keeps a stream's messages together.
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");

/// The database file, opened with redb's defaults but the cache size spelled out (its
/// default durability is `Immediate`).
pub struct Redb {
    db: Database,
}

impl Store for Redb {
    const NAME: &'static str = "redb";

    fn open(dir: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("streams.redb"))?;
        // Create the table once, so that readers of an empty store find it.
        let tx = db.begin_write()?;
        tx.open_table(EVENTS)?;
        tx.commit()?;
        Ok(Redb { db })
    }

    fn append(&self, batch: &[(Key, Vec<u8>)], durable: bool) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)?;
        }
        {
            let mut table = tx.open_table(EVENTS)?;
            for (k, v) in batch {
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn last(&self, stream: u32, n: usize, out: &mut Vec<Vec<u8>>) -> Result<()> {
        out.clear();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        let (lo, hi) = (key(stream, 0), key(stream, u64::MAX));
        for item in table.range(lo.as_slice()..=hi.as_slice())?.rev().take(n) {
            let (_, v) = item?;
            out.push(v.value().to_vec());
        }
        Ok(())
    }

    fn after(&self, stream: u32, from: u64, n: usize, out: &mut Vec<Vec<u8>>) -> Result<()> {
        out.clear();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        let (lo, hi) = (key(stream, from), key(stream, u64::MAX));
        for item in table.range(lo.as_slice()..=hi.as_slice())?.take(n) {
            let (_, v) = item?;
            out.push(v.value().to_vec());
        }
        Ok(())
    }

    fn expire(&self, streams: Range<u32>, below: u64) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let mut deleted = 0u64;
        {
            let mut table = tx.open_table(EVENTS)?;
            for stream in streams {
                let (lo, hi) = (key(stream, 0), key(stream, below));
                // A range delete: redb walks the range and drops every entry in it.
                table.retain_in(lo.as_slice()..hi.as_slice(), |_, _| {
                    deleted += 1;
                    false
                })?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    fn scan(&self, f: &mut dyn FnMut(u32, u64, &[u8])) -> Result<()> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        for item in table.iter()? {
            let (k, v) = item?;
            let (stream, offset) = split(k.value());
            f(stream, offset, v.value());
        }
        Ok(())
    }
}
