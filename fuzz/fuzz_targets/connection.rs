//! Client bytes after an upgrade through the real connection code of a running server.
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate::testing::fuzz::targets::connection(data));
