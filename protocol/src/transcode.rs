//! Validation of raw `data` values and transcoding between the two encodings.
use crate::{EncodeError, Format, ProtocolError, RawData};
/// Validates one complete value.
pub(crate) fn validate(_f: Format, _b: &[u8]) -> Result<(), ProtocolError> {
    todo!()
}
/// Appends `data` encoded in `target` to `out`: a copy when formats match, else a transcode.
pub fn transcode(
    _data: RawData<'_>,
    _target: Format,
    _out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    todo!()
}
