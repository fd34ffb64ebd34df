//! Validation of raw `data` values and transcoding between the two encodings.
//!
//! Transcoding streams from one format's deserializer into the other's serializer with
//! `serde_transcode`: no tree is built. MessagePack floats that JSON cannot represent (NaN,
//! ±infinity) become `null`, as serde_json writes them; integers keep their exact value.

use crate::error::{EncodeError, ProtocolError};
use crate::format::Format;
use crate::message::RawData;

/// Validates one complete value: well-formed, in the JSON data model, at most
/// [`MAX_DEPTH`](crate::MAX_DEPTH) deep, with nothing after it.
pub(crate) fn validate(format: Format, bytes: &[u8]) -> Result<(), ProtocolError> {
    match format {
        Format::Json => {
            let raw: &serde_json::value::RawValue = serde_json::from_slice(bytes)
                .map_err(|e| ProtocolError::bad_request(format!("malformed JSON: {e}")))?;
            crate::json::check_depth(raw.get().as_bytes())
        }
        Format::MsgPack => crate::msgpack::validate_data(bytes),
    }
}

/// Appends `data` encoded in `target` to `out`: a copy when formats match, else a transcode.
///
/// On error `out` is left as it was.
pub fn transcode(data: RawData<'_>, target: Format, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = match (data.format(), target) {
        (from, to) if from == to => {
            out.extend_from_slice(data.bytes());
            Ok(())
        }
        (Format::Json, _) => json_to_msgpack(data.bytes(), out),
        (Format::MsgPack, _) => msgpack_to_json(data.bytes(), out),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn json_to_msgpack(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut ser = rmp_serde::Serializer::new(&mut *out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| EncodeError(e.to_string()))?;
    de.end().map_err(|e| EncodeError(e.to_string()))
}

fn msgpack_to_json(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let mut ser = serde_json::Serializer::new(&mut *out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| EncodeError(e.to_string()))
}
