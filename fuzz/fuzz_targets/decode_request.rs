//! Fuzzes both request decoders: no input may panic, and whatever decodes must re-encode and
//! decode to the same request (the codec is its own oracle).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_protocol::{decode_request, encode_request, Format};

fuzz_target!(|input: &[u8]| {
    for format in Format::ALL {
        if let Ok(req) = decode_request(format, input) {
            let mut out = Vec::new();
            if encode_request(format, &req, &mut out).is_ok() {
                let again = decode_request(format, &out).expect("re-encoded request decodes");
                assert_eq!(again, req);
            }
        }
    }
});
