//! A REST request body through its endpoint's validation (first byte: the endpoint).
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate::testing::fuzz::targets::rest_body(data));
