//! The Engine.IO echo (`ECHO=true`): every message back unchanged, text as text and binary as
//! binary, over whichever transport carries the session. For conformance testing (the
//! Engine.IO protocol's own test suite) and for testing the transport on its own.

use std::rc::Rc;

use super::handler::{self, CloseReason, Handler, Message};
use crate::node::Ctx;
use crate::session::Session;
use crate::transport::engineio::Handshake;

/// The echo application; it keeps no state.
#[derive(Debug)]
pub(crate) struct Echo;

impl Handler for Echo {
    fn open(_: &Rc<Ctx>, _: &Rc<Session>, _: &Handshake) -> Echo {
        Echo
    }

    fn message(&mut self, ctx: &Rc<Ctx>, session: &Rc<Session>, message: Message<'_>) {
        let frame = match message {
            Message::Text(text) => handler::text(text.as_bytes()),
            Message::Binary(bytes) => handler::binary(&bytes),
        };
        ctx.push(session, frame);
    }

    fn close(self, _: &Rc<Ctx>, _: &Rc<Session>, _: CloseReason) {}
}
