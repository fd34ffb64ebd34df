//! The JSON codec (text frames).
use crate::{DecodeError, EncodeError, OwnedServerMessage, ProtocolError, Request, ServerMessage};
pub(crate) fn decode_request(_p: &[u8]) -> Result<Request<'_>, DecodeError<'_>> {
    todo!()
}
pub(crate) fn encode_server_message(
    _m: &ServerMessage<'_>,
    _o: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    todo!()
}
pub(crate) fn encode_request(_r: &Request<'_>, _o: &mut Vec<u8>) -> Result<(), EncodeError> {
    todo!()
}
pub(crate) fn decode_server_message(_p: &[u8]) -> Result<OwnedServerMessage, ProtocolError> {
    todo!()
}
