//! Where a walk over one value goes ([`Sink`]): written as JSON ([`JsonWriter`], binary as
//! `{"$binary":"<base64>"}` or as Socket.IO placeholders), as MessagePack ([`MsgPackWriter`],
//! smallest forms), or only counted ([`Count`], for validation).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use rmp::encode;

use crate::json::{write_str, write_u64};

/// The one key of a JSON object that stands for a binary value.
pub(crate) const BINARY_KEY: &str = "$binary";

/// What a walk reports, value by value, in order. Containers are opened, then each element
/// (each key and its value) follows, then they are closed with their length.
pub(crate) trait Sink {
    fn null(&mut self);
    fn bool(&mut self, b: bool);
    fn uint(&mut self, n: u64);
    /// A negative integer.
    fn int(&mut self, n: i64);
    fn f32(&mut self, f: f32);
    fn f64(&mut self, f: f64);
    fn str(&mut self, s: &str);
    fn binary(&mut self, bytes: &[u8]);
    /// Opens an array; the mark is given back to [`Sink::end_array`].
    fn begin_array(&mut self) -> usize;
    /// Element `i` of the innermost array follows.
    fn element(&mut self, i: usize);
    fn end_array(&mut self, mark: usize, len: usize);
    /// Opens a map; the mark is given back to [`Sink::end_map`].
    fn begin_map(&mut self) -> usize;
    /// The key of entry `i` of the innermost map; its value follows.
    fn key(&mut self, i: usize, key: &str);
    fn end_map(&mut self, mark: usize, len: usize);
}

/// How a [`JsonWriter`] writes a binary value.
pub(crate) enum BinaryAs<'a> {
    /// wsgate's JSON: `{"$binary":"<standard base64 with padding>"}`.
    Base64,
    /// Socket.IO's default parser: `{"_placeholder":true,"num":k}`, its bytes pushed to the
    /// packet's attachments (`k` is their number before the push).
    Placeholders(&'a mut Vec<Bytes>),
}

/// Writes JSON as serde_json writes it (compact, its escapes, its float formatting).
pub(crate) struct JsonWriter<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) binary: BinaryAs<'a>,
}

impl Sink for JsonWriter<'_> {
    fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }
    fn bool(&mut self, b: bool) {
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }
    fn uint(&mut self, n: u64) {
        write_u64(n, self.out);
    }
    fn int(&mut self, n: i64) {
        if n < 0 {
            self.out.push(b'-');
        }
        write_u64(n.unsigned_abs(), self.out);
    }
    // serde_json's float formatting (a non-finite float is `null`); writing to a Vec cannot
    // fail.
    fn f32(&mut self, f: f32) {
        let _ = serde_json::to_writer(&mut *self.out, &f);
    }
    fn f64(&mut self, f: f64) {
        let _ = serde_json::to_writer(&mut *self.out, &f);
    }
    fn str(&mut self, s: &str) {
        write_str(s, self.out);
    }
    fn binary(&mut self, bytes: &[u8]) {
        match &mut self.binary {
            BinaryAs::Base64 => {
                self.out.extend_from_slice(br#"{"$binary":""#);
                let start = self.out.len();
                let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
                self.out.resize(start + len, 0);
                let written = STANDARD
                    .encode_slice(bytes, &mut self.out[start..])
                    .unwrap_or(0);
                self.out.truncate(start + written);
                self.out.extend_from_slice(br#""}"#);
            }
            BinaryAs::Placeholders(attachments) => {
                self.out
                    .extend_from_slice(br#"{"_placeholder":true,"num":"#);
                write_u64(attachments.len() as u64, self.out);
                self.out.push(b'}');
                attachments.push(Bytes::copy_from_slice(bytes));
            }
        }
    }
    fn begin_array(&mut self) -> usize {
        self.out.push(b'[');
        0
    }
    fn element(&mut self, i: usize) {
        if i > 0 {
            self.out.push(b',');
        }
    }
    fn end_array(&mut self, _: usize, _: usize) {
        self.out.push(b']');
    }
    fn begin_map(&mut self) -> usize {
        self.out.push(b'{');
        0
    }
    fn key(&mut self, i: usize, key: &str) {
        self.element(i);
        write_str(key, self.out);
        self.out.push(b':');
    }
    fn end_map(&mut self, _: usize, _: usize) {
        self.out.push(b'}');
    }
}

/// Writes MessagePack in its smallest forms (as rmp_serde does), floats as f64. A container's
/// length is known only at its end: one byte is kept for its header, widened then if needed.
pub(crate) struct MsgPackWriter<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl MsgPackWriter<'_> {
    /// Writes the header of a container of `len` at `mark` (`fix`: the fix form's marker;
    /// `wide`: the 16-bit form's, the 32-bit one's is next).
    fn close(&mut self, mark: usize, len: usize, fix: u8, wide: u8) {
        let Some(first) = self.out.get_mut(mark) else {
            return;
        };
        if len < 16 {
            // `len` is below 16: the cast keeps it.
            *first = fix | len as u8;
            return;
        }
        let mut head = [0u8; 5];
        let used = match u16::try_from(len) {
            Ok(n) => {
                head[0] = wide;
                head[1..3].copy_from_slice(&n.to_be_bytes());
                3
            }
            Err(_) => {
                head[0] = wide + 1;
                let n = u32::try_from(len).unwrap_or(u32::MAX);
                head[1..5].copy_from_slice(&n.to_be_bytes());
                5
            }
        };
        self.out.splice(mark..=mark, head[..used].iter().copied());
    }
}

// Writing to a Vec cannot fail: the encoders' results are dropped.
impl Sink for MsgPackWriter<'_> {
    fn null(&mut self) {
        self.out.push(0xc0);
    }
    fn bool(&mut self, b: bool) {
        self.out.push(if b { 0xc3 } else { 0xc2 });
    }
    fn uint(&mut self, n: u64) {
        let _ = encode::write_uint(self.out, n);
    }
    fn int(&mut self, n: i64) {
        let _ = encode::write_sint(self.out, n);
    }
    fn f32(&mut self, f: f32) {
        let _ = encode::write_f32(self.out, f);
    }
    fn f64(&mut self, f: f64) {
        let _ = encode::write_f64(self.out, f);
    }
    fn str(&mut self, s: &str) {
        let _ = encode::write_str(self.out, s);
    }
    fn binary(&mut self, bytes: &[u8]) {
        let _ = encode::write_bin(self.out, bytes);
    }
    fn begin_array(&mut self) -> usize {
        self.out.push(0x90);
        self.out.len() - 1
    }
    fn element(&mut self, _: usize) {}
    fn end_array(&mut self, mark: usize, len: usize) {
        self.close(mark, len, 0x90, 0xdc);
    }
    fn begin_map(&mut self) -> usize {
        self.out.push(0x80);
        self.out.len() - 1
    }
    fn key(&mut self, _: usize, key: &str) {
        self.str(key);
    }
    fn end_map(&mut self, mark: usize, len: usize) {
        self.close(mark, len, 0x80, 0xde);
    }
}

/// Writes nothing: counts the binary values (validation).
#[derive(Default)]
pub(crate) struct Count {
    pub(crate) binaries: usize,
}

impl Sink for Count {
    fn null(&mut self) {}
    fn bool(&mut self, _: bool) {}
    fn uint(&mut self, _: u64) {}
    fn int(&mut self, _: i64) {}
    fn f32(&mut self, _: f32) {}
    fn f64(&mut self, _: f64) {}
    fn str(&mut self, _: &str) {}
    fn binary(&mut self, _: &[u8]) {
        self.binaries += 1;
    }
    fn begin_array(&mut self) -> usize {
        0
    }
    fn element(&mut self, _: usize) {}
    fn end_array(&mut self, _: usize, _: usize) {}
    fn begin_map(&mut self) -> usize {
        0
    }
    fn key(&mut self, _: usize, _: &str) {}
    fn end_map(&mut self, _: usize, _: usize) {}
}
