//! Client bytes through the connection's WebSocket frame reader, whole and byte by byte.
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate::testing::fuzz::targets::frame_reader(data));
