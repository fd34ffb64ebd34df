//! The applications an Engine.IO session can serve, as one enum: the [`Handler`] the shard's
//! engine and its WebSocket connections are given.
//!
//! Today there is one, the Engine.IO echo (`ECHO=true`). The Socket.IO layer adds its
//! variant here (`App::SocketIo(…)`, chosen in [`App::open`] from the configuration and the
//! handshake), with one arm in each method below: nothing else changes.

use std::rc::Rc;

use crate::engineio::echo::Echo;
use crate::engineio::{CloseReason, Handler, Message};
use crate::node::Ctx;
use crate::session::Session;
use crate::transport::engineio::Handshake;

/// What serves an Engine.IO session.
pub(crate) enum App {
    /// Every message back unchanged.
    Echo(Echo),
}

impl Handler for App {
    fn open(ctx: &Rc<Ctx>, session: &Rc<Session>, handshake: &Handshake) -> App {
        App::Echo(Echo::open(ctx, session, handshake))
    }

    fn message(&mut self, ctx: &Rc<Ctx>, session: &Rc<Session>, message: Message<'_>) {
        match self {
            App::Echo(echo) => echo.message(ctx, session, message),
        }
    }

    fn close(self, ctx: &Rc<Ctx>, session: &Rc<Session>, reason: CloseReason) {
        match self {
            App::Echo(echo) => echo.close(ctx, session, reason),
        }
    }
}
