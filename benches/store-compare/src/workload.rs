//! The messages: an encoded event of about 200 bytes, and a small seeded random source.

use crate::store::{key, Key};

/// The size the brief asks for: about what one encoded chat event takes.
pub const VALUE_LEN: usize = 200;

/// xorshift64*: enough to pick streams and offsets, seeded so runs repeat.
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed` (any value; 0 is mapped away from the fixed point).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.";

/// Writes the event for `offset` of `stream` into `out`: JSON as wsgate would store it, with
/// random text so that compression gains little (chat text would compress somewhat better).
pub fn encode(out: &mut Vec<u8>, stream: u32, offset: u64, rng: &mut Rng) {
    use std::io::Write;
    out.clear();
    let from = rng.below(1_000_000);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"type\":\"message\",\"room\":\"r{stream}\",\"off\":{offset},\"from\":\"u{from}\",\"text\":\""
    );
    while out.len() < VALUE_LEN - 2 {
        let r = rng.next();
        for i in 0..8 {
            if out.len() >= VALUE_LEN - 2 {
                break;
            }
            out.push(TEXT[((r >> (i * 8)) as usize) % TEXT.len()]);
        }
    }
    out.extend_from_slice(b"\"}");
}

/// True when `value` is the event [`encode`] wrote for `offset` of `stream`.
pub fn matches(value: &[u8], stream: u32, offset: u64) -> bool {
    let head = format!("{{\"type\":\"message\",\"room\":\"r{stream}\",\"off\":{offset},");
    value.len() == VALUE_LEN && value.starts_with(head.as_bytes())
}

/// A reusable batch: keys and values, refilled in place so that a run measures the store and
/// not the allocator.
pub struct Batch {
    items: Vec<(Key, Vec<u8>)>,
    len: usize,
}

impl Batch {
    /// An empty batch with room for `n` messages.
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            items: Vec::with_capacity(n),
            len: 0,
        }
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Adds the event for `offset` of `stream`.
    pub fn push(&mut self, stream: u32, offset: u64, rng: &mut Rng) {
        if self.len == self.items.len() {
            self.items
                .push(([0; 12], Vec::with_capacity(VALUE_LEN + 16)));
        }
        let (k, v) = &mut self.items[self.len];
        *k = key(stream, offset);
        encode(v, stream, offset, rng);
        self.len += 1;
    }

    /// The messages added since the last `clear`.
    pub fn items(&self) -> &[(Key, Vec<u8>)] {
        &self.items[..self.len]
    }
}
