//! A client's binary message through the MessagePack request decoder, allocations capped.
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate_protocol::fuzzing::decode_msgpack(data));
