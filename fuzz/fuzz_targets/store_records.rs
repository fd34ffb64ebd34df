//! Records of the durable store as read back from disk: refused when damaged, never a panic.
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate::testing::fuzz::targets::store_records(data));
