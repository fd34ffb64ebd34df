//! Engine.IO v4 on wsgate's transports: the session id, the handshake a handler is given, and
//! the long-polling wire (a response body made of the frames queued in a session's outbox).
//!
//! # Encode once: what an outbox frame means to Engine.IO
//!
//! A session's outbox holds WebSocket frames, built once per wire format by whoever queues
//! them (fan-out, a handler, the sweep's heartbeat) and shared by every recipient. An
//! Engine.IO session keeps that outbox whatever carries it, so the same frame works over both
//! of Engine.IO's transports:
//!
//! - a **text frame** carries one complete Engine.IO packet, its type digit included: `4` and
//!   the message for a message (Socket.IO over WebSocket sends `42[...]` exactly so), `2` for
//!   the heartbeat's ping, `0{...}` for the open packet, `6` for a noop;
//! - a **binary frame** carries the raw bytes of one binary message, without a type (Engine.IO
//!   over WebSocket sends binary messages so).
//!
//! Over WebSocket the frames go out as they are. Over long-polling ([`polling::drain`]) each
//! frame's WebSocket header is stripped: a text payload is written as it is, a binary one as
//! `b<base64>`, joined by `\x1e`, up to `maxPayload` bytes per response. The `4` prefix lives
//! in the frame, so nothing is re-encoded per transport or per recipient.

pub(crate) mod polling;

/// Characters of a session id after the shard's two digits (URL-safe base64's alphabet).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of a session id: two decimal digits of the shard, then 18 random characters (108
/// bits: a session id is the only credential of a long-polling request, so it is not guessable).
pub(crate) const SID_LEN: usize = 20;

/// Characters of a [`NodeTag`].
const TAG_LEN: usize = 8;

/// Length of a session id in cluster mode: the shard's digits, the [`NodeTag`] of the node that
/// holds the session, then the same 18 random characters.
const CLUSTER_SID_LEN: usize = SID_LEN + TAG_LEN;

/// A node of a cluster as its session ids name it: 48 bits of its random id, in 8 characters
/// of the alphabet. Any node that receives a request for another node's session knows where
/// it belongs (the node's address is in Redis under its tag).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct NodeTag([u8; TAG_LEN]);

impl NodeTag {
    /// The tag of the node whose random id is `node`.
    pub(crate) fn of(node: u64) -> NodeTag {
        let mut tag = [0u8; TAG_LEN];
        for (i, c) in tag.iter_mut().enumerate() {
            *c = ALPHABET[((node >> (6 * i)) & 63) as usize];
        }
        NodeTag(tag)
    }

    /// The tag as text.
    pub(crate) fn as_str(&self) -> &str {
        // Only the alphabet is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// An Engine.IO session id; it names the shard that owns the session, so any shard that
/// receives a request for it knows where to send it, and in cluster mode the node.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Sid {
    bytes: [u8; CLUSTER_SID_LEN],
    /// `SID_LEN`, or `CLUSTER_SID_LEN` with a node's tag.
    len: u8,
}

impl Sid {
    /// A new random id for a session of shard `shard` (below 100), on node `node` in cluster
    /// mode.
    pub(crate) fn new(shard: usize, node: Option<NodeTag>) -> Sid {
        let mut bytes = [0u8; CLUSTER_SID_LEN];
        let shard = shard % 100;
        bytes[0] = b'0' + (shard / 10) as u8;
        bytes[1] = b'0' + (shard % 10) as u8;
        let mut at = 2;
        if let Some(NodeTag(tag)) = node {
            bytes[at..at + TAG_LEN].copy_from_slice(&tag);
            at += TAG_LEN;
        }
        let random: [u8; SID_LEN - 2] = rand::random();
        for (c, r) in bytes[at..].iter_mut().zip(random) {
            *c = ALPHABET[usize::from(r & 63)];
        }
        Sid {
            bytes,
            len: (at + SID_LEN - 2) as u8,
        }
    }

    /// The id a client sent, if it is one this server (or another node) could have made.
    pub(crate) fn parse(s: &str) -> Option<Sid> {
        let given = s.as_bytes();
        if given.len() != SID_LEN && given.len() != CLUSTER_SID_LEN {
            return None;
        }
        let ok = given[..2].iter().all(u8::is_ascii_digit)
            && given[2..].iter().all(|c| ALPHABET.contains(c));
        let mut bytes = [0u8; CLUSTER_SID_LEN];
        bytes[..given.len()].copy_from_slice(given);
        ok.then_some(Sid {
            bytes,
            len: given.len() as u8,
        })
    }

    /// The shard that owns the session.
    pub(crate) fn shard(&self) -> usize {
        usize::from(self.bytes[0] - b'0') * 10 + usize::from(self.bytes[1] - b'0')
    }

    /// The node that holds the session, if the id names one (cluster mode).
    pub(crate) fn node(&self) -> Option<NodeTag> {
        let tag = self.bytes[2..2 + TAG_LEN].try_into().ok()?;
        (usize::from(self.len) == CLUSTER_SID_LEN).then_some(NodeTag(tag))
    }

    /// The id as text.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and the alphabet are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A session id is a credential: logs show its shard (and node) only.
        match self.node() {
            Some(node) => write!(f, "Sid({}{}…)", &self.as_str()[..2], node.as_str()),
            None => write!(f, "Sid({}…)", &self.as_str()[..2]),
        }
    }
}

/// What the request that opened a session said, for the handler (Socket.IO reads its token
/// and parser from here). Bounded by the HTTP head's bounds.
#[derive(Clone, Debug)]
pub(crate) struct Handshake {
    /// The token it offered: `Authorization: Bearer <jwt>`, else `?token=<jwt>`.
    pub(crate) token: Option<Box<str>>,
    /// The Socket.IO parser its path chose: `Json` for the default parser (ENGINEIO_PATH),
    /// `MsgPack` for socket.io-msgpack-parser (SOCKETIO_MSGPACK_PATH).
    pub(crate) parser: wsgate_protocol::Format,
}

impl Default for Handshake {
    fn default() -> Handshake {
        Handshake {
            token: None,
            parser: wsgate_protocol::Format::Json,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn session_ids_name_their_shard_and_parse_back() {
        let sid = Sid::new(42, None);
        assert_eq!(sid.as_str().len(), SID_LEN);
        assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        assert_eq!(sid.shard(), 42);
        assert_ne!(Sid::new(42, None), sid, "random");
        assert_eq!(sid.node(), None);
        assert_eq!(Sid::parse("x"), None);
        assert_eq!(Sid::parse("0aAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(Sid::parse("00AAAAAAAAAAAAAAAAA="), None);
        assert!(!format!("{sid:?}").contains(&sid.as_str()[2..]));
    }

    #[test]
    fn cluster_session_ids_name_their_node_and_keep_their_random_part() {
        let node = NodeTag::of(0x0123_4567_89ab_cdef);
        assert_ne!(node, NodeTag::of(0x0123_4567_89ab_cdee));
        let sid = Sid::new(7, Some(node));
        assert_eq!(sid.as_str().len(), SID_LEN + TAG_LEN);
        assert_eq!(&sid.as_str()[2..10], node.as_str());
        assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        assert_eq!(sid.node(), Some(node));
        assert_eq!(sid.shard(), 7);
        assert_ne!(Sid::new(7, Some(node)), sid, "random");
        assert_eq!(Sid::parse(&sid.as_str()[..SID_LEN + TAG_LEN - 1]), None);
        assert!(!format!("{sid:?}").contains(&sid.as_str()[10..]));
    }
}
