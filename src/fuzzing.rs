//! Entry points for the fuzz targets (`fuzz/`) and the corpus-replay tests: the real parsers
//! and the real connection code, driven from arbitrary bytes. Not API: hidden from the docs and
//! free to change with the fuzz targets.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wsgate_protocol::Format;

use crate::auth::Identity;
use crate::router::ShardMsg;
use crate::server::{ConnPermit, ServerHandle, UserSlot};
use crate::shard::Shard;
use crate::transport::Transport;
use crate::ws::reader::{Incoming, Reader};

/// What a reader made of a byte stream: the items, then the close code of a framing error.
#[derive(Debug, PartialEq, Eq)]
pub struct ReaderOutcome {
    items: Vec<Incoming>,
    error: Option<u16>,
}

/// Parses `data` with the connection's frame reader, fed whole, and checks that feeding the
/// same bytes one at a time gives the same items and the same error: framing must not depend
/// on how the network splits a stream. Panics if the two disagree.
pub fn frame_reader(data: &[u8], max_message: usize) -> ReaderOutcome {
    let whole = read_all(std::iter::once(data), max_message);
    let bytewise = read_all(data.chunks(1), max_message);
    assert_eq!(
        whole, bytewise,
        "the reader's result depends on how the input is split"
    );
    whole
}

fn read_all<'a>(chunks: impl Iterator<Item = &'a [u8]>, max_message: usize) -> ReaderOutcome {
    let mut reader = Reader::new(Bytes::new(), max_message);
    let mut items = Vec::new();
    for chunk in chunks {
        reader.feed(chunk);
        loop {
            match reader.next() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    return ReaderOutcome {
                        items,
                        error: Some(e.close_code()),
                    }
                }
            }
        }
        reader.release_if_idle();
    }
    ReaderOutcome { items, error: None }
}

/// Why [`attach`] could not hand a stream to the server.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The server holds its maximum number of connections.
    #[error("the server holds its maximum number of connections")]
    ServerFull,
    /// The user holds its maximum number of connections.
    #[error("the user holds its maximum number of connections")]
    UserFull,
    /// The stream could not be made non-blocking.
    #[error("cannot prepare the stream: {0}")]
    Io(#[from] io::Error),
    /// Shard 0's inbox stayed full.
    #[error("shard 0 did not take the stream")]
    Busy,
}

/// Serves `stream` on shard 0 through the real connection code, as if it had just completed
/// a WebSocket upgrade in `format` (authenticated as `user` when given, as with a token in the
/// handshake). The caller speaks WebSocket on the other end of the pair.
pub fn attach(
    server: &ServerHandle,
    stream: UnixStream,
    format: Format,
    user: Option<&str>,
) -> Result<(), AttachError> {
    let shared = server.shared();
    let permit = ConnPermit::acquire(shared).ok_or(AttachError::ServerFull)?;
    let identity = match user {
        Some(user) => {
            let user: Arc<str> = user.into();
            let slot = UserSlot::acquire(shared, &user).ok_or(AttachError::UserFull)?;
            let identity = Identity {
                user,
                session: None,
            };
            Some((identity, slot))
        }
        None => None,
    };
    stream.set_nonblocking(true)?;
    let mut msg =
        ShardMsg::Run(Box::new(
            move |shard: &Rc<Shard>| match tokio::net::UnixStream::from_std(stream) {
                Ok(stream) => {
                    let serve = crate::connection::serve(
                        shard.clone(),
                        Transport::Unix(stream),
                        Bytes::new(),
                        format,
                        identity,
                        permit,
                    );
                    tokio::task::spawn_local(serve);
                }
                Err(e) => tracing::error!(error = %e, "cannot register an attached stream"),
            },
        ));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match shared.router.try_send(0, msg) {
            Ok(()) => return Ok(()),
            Err(back) if Instant::now() < deadline => {
                msg = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return Err(AttachError::Busy),
        }
    }
}

/// How long [`connection`] waits for the server to finish with one input.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Feeds `data` to a fresh connection on `server` as the client's bytes after a valid upgrade,
/// then ends the stream and returns everything the server wrote. The first byte picks the
/// connection: bit 0 MessagePack (else JSON), bit 1 authenticated as user `fuzz` (else not).
/// Panics if the server does not close the connection within 10 s of the end of input (a
/// hang is a bug too).
pub fn connection(server: &ServerHandle, data: &[u8]) -> Vec<u8> {
    let Some((&mode, data)) = data.split_first() else {
        return Vec::new();
    };
    let format = if mode & 1 == 1 {
        Format::MsgPack
    } else {
        Format::Json
    };
    let user = (mode & 2 == 2).then_some("fuzz");
    let (mut client, theirs) = UnixStream::pair().expect("a socket pair");
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    // The previous input's connection may still hold its slots for a moment.
    loop {
        let stream = theirs.try_clone().expect("a socket clone");
        match attach(server, stream, format, user) {
            Ok(()) => break,
            Err(AttachError::ServerFull | AttachError::UserFull) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("cannot attach: {e}"),
        }
    }
    drop(theirs);
    client
        .set_nonblocking(true)
        .expect("a non-blocking client socket");
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut written = 0;
    let mut write_open = true;
    loop {
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection within {CONNECTION_DEADLINE:?}"
        );
        let mut progress = false;
        if written < data.len() {
            match client.write(&data[written..]) {
                Ok(n) => {
                    written += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server closed first (after a framing error, say).
                Err(_) => written = data.len(),
            }
        } else if write_open {
            let _ = client.shutdown(std::net::Shutdown::Write);
            write_open = false;
        }
        match client.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return out,
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
