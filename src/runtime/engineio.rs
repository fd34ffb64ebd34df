//! The applications an Engine.IO session can serve, as one enum: the [`Handler`] the shard's
//! engine and its WebSocket connections are given.
//!
//! Socket.IO (`SOCKETIO=true`, the default), or the Engine.IO echo (`SOCKETIO=false` with
//! `ECHO=true`, for the Engine.IO protocol's own test suite), chosen in [`App::open`].

use std::rc::Rc;

use crate::engineio::echo::Echo;
use crate::engineio::{CloseReason, Handler, Message};
use crate::node::Ctx;
use crate::session::Session;
use crate::socketio::SocketIo;
use crate::transport::engineio::Handshake;

/// What serves an Engine.IO session.
pub(crate) enum App {
    /// Socket.IO v5.
    SocketIo(SocketIo),
    /// Every message back unchanged.
    Echo(Echo),
}

impl Handler for App {
    fn open(ctx: &Rc<Ctx>, session: &Rc<Session>, handshake: &Handshake) -> App {
        if ctx.config().socketio {
            App::SocketIo(SocketIo::open(ctx, session, handshake))
        } else {
            App::Echo(Echo::open(ctx, session, handshake))
        }
    }

    fn message(&mut self, ctx: &Rc<Ctx>, session: &Rc<Session>, message: Message<'_>) {
        match self {
            App::SocketIo(sio) => sio.message(ctx, session, message),
            App::Echo(echo) => echo.message(ctx, session, message),
        }
    }

    fn close(self, ctx: &Rc<Ctx>, session: &Rc<Session>, reason: CloseReason) {
        match self {
            App::SocketIo(sio) => sio.close(ctx, session, reason),
            App::Echo(echo) => echo.close(ctx, session, reason),
        }
    }
}
