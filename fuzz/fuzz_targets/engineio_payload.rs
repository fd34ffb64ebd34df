//! A client's long-polling payload through the Engine.IO decoder (see `wsgate_protocol::fuzzing`).
#![no_main]

use wsgate_protocol::fuzzing::CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsgate_protocol::fuzzing::engineio_payload(data));
