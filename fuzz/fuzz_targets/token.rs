//! Handshake token extraction, percent-decoding and HS256 JWT verification.
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate::testing::fuzz::targets::token(data));
