//! After hyper's upgrade: the socket taken out of hyper and tokio, as a non-blocking `mio`
//! socket for the shard's reactor, with the bytes hyper had already read past the handshake.

use bytes::Bytes;
use fastwebsockets::upgrade::UpgradeFut;
use hyper_util::rt::TokioIo;

use crate::transport::socket::Socket;

/// Completes the upgrade and takes the socket over; `None` (logged) if the client went away
/// or the socket cannot be taken.
pub(crate) async fn take_over(upgrade: UpgradeFut) -> Option<(Socket, Bytes)> {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return None;
        }
    };
    let upgraded = ws.into_inner().into_inner();
    let Ok(parts) = upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() else {
        tracing::error!("upgraded connection is not a TCP stream");
        return None;
    };
    match parts.io.into_inner().into_std() {
        Ok(stream) => Some((
            Socket::Tcp(mio::net::TcpStream::from_std(stream)),
            parts.read_buf,
        )),
        Err(e) => {
            tracing::warn!(error = %e, "cannot take over an upgraded socket");
            None
        }
    }
}
