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

/// Characters of the slot in a session id: 30 bits, far more sessions than a shard can hold.
const SLOT_LEN: usize = 5;

/// Characters of the random part of a session id: 108 bits (a session id is the only
/// credential of a long-polling request, so it is not guessable).
const SECRET_LEN: usize = 18;

/// Length of a session id: two decimal digits of the shard, the session's slot in its shard's
/// engine, then the random part.
pub(crate) const SID_LEN: usize = 2 + SLOT_LEN + SECRET_LEN;

/// Characters of a [`NodeTag`].
const TAG_LEN: usize = 8;

/// Length of a session id in cluster mode: the shard's digits, the [`NodeTag`] of the node that
/// holds the session, then the same slot and random part.
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

/// What a shard's engine keeps of a session id: the slot (its slab key, so a request finds its
/// session without a map from ids) and the random part that proves the id was given out. The
/// shard and the node are the engine's own, so no session stores them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Local {
    pub(crate) slot: u32,
    secret: [u8; SECRET_LEN],
}

impl Local {
    /// A fresh random id for slot `slot`; `None` past the slots an id can name.
    pub(crate) fn new(slot: usize) -> Option<Local> {
        let slot = u32::try_from(slot)
            .ok()
            .filter(|s| *s < 1 << (6 * SLOT_LEN))?;
        let random: [u8; SECRET_LEN] = rand::random();
        Some(Local {
            slot,
            secret: random.map(|r| ALPHABET[usize::from(r & 63)]),
        })
    }

    /// Whether `given` is this id (its random part compared in constant time).
    pub(crate) fn is(&self, given: &Local) -> bool {
        let differ = self
            .secret
            .iter()
            .zip(&given.secret)
            .fold(0, |acc, (a, b)| acc | (a ^ b));
        self.slot == given.slot && differ == 0
    }
}

/// An Engine.IO session id; it names the shard that owns the session, so any shard that
/// receives a request for it knows where to send it, in cluster mode the node, and the
/// session's slot in its shard.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sid {
    shard: u8,
    node: Option<NodeTag>,
    pub(crate) local: Local,
}

/// A session id as text, on the stack.
pub(crate) struct SidText {
    bytes: [u8; CLUSTER_SID_LEN],
    len: usize,
}

impl SidText {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and the alphabet are ever stored.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Sid {
    /// The id of session `local` of shard `shard` (below 100), on node `node` in cluster mode.
    pub(crate) fn new(shard: usize, node: Option<NodeTag>, local: Local) -> Sid {
        Sid {
            shard: (shard % 100) as u8,
            node,
            local,
        }
    }

    /// The id a client sent, if it is one this server (or another node) could have made.
    pub(crate) fn parse(s: &str) -> Option<Sid> {
        let given = s.as_bytes();
        let node_len = match given.len() {
            SID_LEN => 0,
            CLUSTER_SID_LEN => TAG_LEN,
            _ => return None,
        };
        let ok = given[..2].iter().all(u8::is_ascii_digit)
            && given[2..].iter().all(|c| ALPHABET.contains(c));
        if !ok {
            return None;
        }
        let shard = (given[0] - b'0') * 10 + (given[1] - b'0');
        let node = (node_len > 0)
            .then(|| given[2..2 + TAG_LEN].try_into().ok().map(NodeTag))
            .flatten();
        let at = 2 + node_len;
        let mut slot = 0u32;
        for (i, c) in given[at..at + SLOT_LEN].iter().enumerate() {
            let digit = ALPHABET.iter().position(|a| a == c)? as u32;
            slot |= digit << (6 * i);
        }
        let secret = given[at + SLOT_LEN..].try_into().ok()?;
        Some(Sid {
            shard,
            node,
            local: Local { slot, secret },
        })
    }

    /// The shard that owns the session.
    pub(crate) fn shard(&self) -> usize {
        usize::from(self.shard)
    }

    /// The node that holds the session, if the id names one (cluster mode).
    pub(crate) fn node(&self) -> Option<NodeTag> {
        self.node
    }

    /// The id as text.
    pub(crate) fn text(&self) -> SidText {
        let mut bytes = [0u8; CLUSTER_SID_LEN];
        bytes[0] = b'0' + self.shard / 10;
        bytes[1] = b'0' + self.shard % 10;
        let mut at = 2;
        if let Some(NodeTag(tag)) = self.node {
            bytes[at..at + TAG_LEN].copy_from_slice(&tag);
            at += TAG_LEN;
        }
        for (i, c) in bytes[at..at + SLOT_LEN].iter_mut().enumerate() {
            *c = ALPHABET[(self.local.slot >> (6 * i)) as usize & 63];
        }
        bytes[at + SLOT_LEN..at + SLOT_LEN + SECRET_LEN].copy_from_slice(&self.local.secret);
        SidText {
            bytes,
            len: at + SLOT_LEN + SECRET_LEN,
        }
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A session id is a credential: logs show its shard (and node) only.
        match self.node {
            Some(node) => write!(f, "Sid({:02}{}…)", self.shard, node.as_str()),
            None => write!(f, "Sid({:02}…)", self.shard),
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
    fn session_ids_name_their_shard_and_slot_and_parse_back() {
        let sid = Sid::new(42, None, Local::new(123_456).unwrap());
        let text = sid.text();
        assert_eq!(text.as_str().len(), SID_LEN);
        assert_eq!(Sid::parse(text.as_str()), Some(sid));
        assert_eq!(sid.shard(), 42);
        assert_eq!(sid.local.slot, 123_456);
        let other = Sid::new(42, None, Local::new(123_456).unwrap());
        assert_ne!(other, sid, "random");
        assert!(!other.local.is(&sid.local) && sid.local.is(&sid.local));
        assert_eq!(sid.node(), None);
        assert_eq!(Sid::parse("x"), None);
        assert_eq!(Sid::parse("0aAAAAAAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(Sid::parse("00AAAAAAAAAAAAAAAAAAAAAA="), None);
        assert!(Sid::parse("00AAAAAAAAAAAAAAAAAAAAAAA").is_some());
        assert!(!format!("{sid:?}").contains(&text.as_str()[2..]));
        assert!(Local::new(1 << 30).is_none() && Local::new((1 << 30) - 1).is_some());
    }

    #[test]
    fn cluster_session_ids_name_their_node_and_keep_their_random_part() {
        let node = NodeTag::of(0x0123_4567_89ab_cdef);
        assert_ne!(node, NodeTag::of(0x0123_4567_89ab_cdee));
        let sid = Sid::new(7, Some(node), Local::new(9).unwrap());
        let text = sid.text();
        assert_eq!(text.as_str().len(), SID_LEN + TAG_LEN);
        assert_eq!(&text.as_str()[2..10], node.as_str());
        assert_eq!(Sid::parse(text.as_str()), Some(sid));
        assert_eq!(sid.node(), Some(node));
        assert_eq!(sid.shard(), 7);
        assert_eq!(sid.local.slot, 9);
        assert_eq!(Sid::parse(&text.as_str()[..SID_LEN + TAG_LEN - 1]), None);
        assert!(!format!("{sid:?}").contains(&text.as_str()[10..]));
    }
}
