//! The messages of a Socket.IO connection (default parser, binary attachments) through the packet decoder, allocations capped.
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate_protocol::fuzzing::socketio_json(data));
