//! `auth`: authenticates a connection that came without a token, or refreshes the token of
//! an authenticated one; and [`authenticate`], which both paths to an identity end in.

use std::rc::Rc;

use wsgate_protocol::{
    CloseCode, ErrorCode, Heartbeat, Limits, ProtocolError, ServerMessage, Welcome,
};

use super::Client;
use crate::node::permit::UserSlot;
use crate::node::Ctx;
use crate::session::auth::Identity;
use crate::session::{Deadline, Session};
use crate::stats::ShardStats;

/// Verifies the token; on failure the error is followed by a close with 1008. On an
/// authenticated connection it refreshes the token instead (see [`refresh`]).
pub(super) fn apply(
    ctx: &Ctx,
    session: &Rc<Session>,
    client: &mut Client,
    token: &str,
) -> Result<(), ProtocolError> {
    if client.is_authenticated() {
        return refresh(ctx, session, client, token);
    }
    let shared = &ctx.shared;
    let mut refused = |e: ProtocolError| {
        client.close_after_answer = Some((CloseCode::PolicyViolation, e.code.as_str()));
        e
    };
    let identity = match shared.verifier.verify(token) {
        Ok(identity) => identity,
        Err(e) => {
            ShardStats::inc(&ctx.stats().auth_failures);
            return Err(refused(e));
        }
    };
    let Some(slot) = UserSlot::acquire(shared, &identity.user) else {
        let max = ctx.config().max_connections_per_user;
        let e = ProtocolError::new(
            ErrorCode::UserConnectionLimit,
            format!("user already holds {max} connections"),
        );
        return Err(refused(e));
    };
    authenticate(ctx, session, client, identity, slot);
    Ok(())
}

/// `auth` again: a valid token for the same user moves the connection's expiry to the new
/// token's. A refused token, or one for another user, is an error and changes nothing: the
/// connection stays open until the token it has expires.
fn refresh(
    ctx: &Ctx,
    session: &Session,
    client: &mut Client,
    token: &str,
) -> Result<(), ProtocolError> {
    let identity = ctx.shared.verifier.verify(token).inspect_err(|_| {
        ShardStats::inc(&ctx.stats().auth_failures);
    })?;
    if !session.is_user(&identity.user) {
        return Err(ProtocolError::new(
            ErrorCode::AuthAlready,
            "already authenticated as another user",
        ));
    }
    session.deadline.set(expiry(ctx, identity.expires_at));
    client.grant = identity.rooms;
    Ok(())
}

/// The sweep's deadline for a token that stops being valid at `expires_at`: none without an
/// expiry, or with `CLOSE_ON_TOKEN_EXPIRY` off.
fn expiry(ctx: &Ctx, expires_at: Option<u64>) -> Deadline {
    let expires_at = expires_at.filter(|_| ctx.config().close_on_token_expiry);
    Deadline::token_expiry(expires_at, ctx.now_ms())
}

/// Marks the session authenticated as `identity`, holding `slot`, and sends `welcome`.
pub(crate) fn authenticate(
    ctx: &Ctx,
    session: &Rc<Session>,
    client: &mut Client,
    identity: Identity,
    slot: UserSlot,
) {
    client.user_slot = Some(slot);
    client.grant = identity.rooms.clone();
    session.deadline.set(expiry(ctx, identity.expires_at));
    session.set_user(identity.user.clone());
    ctx.hub.add_user(&identity.user, session);
    let id = identity.session.unwrap_or_else(|| {
        let bytes: [u8; 16] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    let cfg = ctx.config();
    let conn = ctx.wire_id(session.id);
    ctx.send(
        session,
        &ServerMessage::Welcome(Welcome {
            user: &identity.user,
            conn: &conn,
            session: &id,
            shard: ctx.shard as u32,
            heartbeat: Heartbeat {
                interval_ms: cfg.heartbeat_interval.as_millis() as u64,
                timeout_ms: cfg.heartbeat_timeout.as_millis() as u64,
            },
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes as u64,
                rate_per_sec: cfg.rate_per_sec,
                rate_burst: cfg.rate_burst,
                max_rooms: cfg.max_rooms_per_connection,
            },
        }),
    );
    // What came for the user while it had no connection (or was not acknowledged), in order,
    // before anything live.
    ctx.hub.replay_mailbox(session, &identity.user);
}
