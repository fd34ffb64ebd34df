//! The envelope an event crosses Redis in: encoded once per event, whatever the number of
//! nodes. A published envelope is `<epoch> <offset> ` in ASCII (written by the publish
//! script, which gives the offset; `- 0 ` for an event outside any stream), then the
//! sender's header, then the message as the store keeps it (`crate::store::encode_message`:
//! time, format, event, room, sender, data). A stream keeps the message alone.

/// Flag bit: an ephemeral event (not stored, dropped first under pressure).
const EPHEMERAL: u8 = 1;

/// Flag bit: a presence change (`presence.*` to a room's followers, `user.*` to a user's
/// watchers), published by a presence script (`presence.rs`).
const PRESENCE: u8 = 2;

/// An exclusion's length when there is none.
const NONE: u16 = u16::MAX;

/// The part of an envelope the sending node writes before the message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// The sending node (random at its start).
    pub(crate) node: u64,
    /// The sender's number for this publish, so that the sending node finds what it kept of
    /// the publish (its report, the excluded connection) when the event comes back to it.
    pub(crate) nonce: u64,
    pub(crate) ephemeral: bool,
    /// A presence change, not a room event.
    pub(crate) presence: bool,
    /// A user none of whose connections get it (a REST room push's `exceptUserId`).
    pub(crate) exclude_user: Option<&'a str>,
}

impl Header<'_> {
    /// The header followed by `message`.
    pub(crate) fn encode(&self, message: &[u8]) -> Vec<u8> {
        let exclude = self.exclude_user.map_or(&[][..], str::as_bytes);
        let mut out = Vec::with_capacity(19 + exclude.len() + message.len());
        out.extend_from_slice(&self.node.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        let flags = if self.ephemeral { EPHEMERAL } else { 0 };
        out.push(flags | if self.presence { PRESENCE } else { 0 });
        match self.exclude_user {
            // Names are bounded far below 64 KiB (MAX_ID_LEN).
            Some(user) => {
                out.extend_from_slice(&(user.len().min(usize::from(NONE) - 1) as u16).to_be_bytes())
            }
            None => out.extend_from_slice(&NONE.to_be_bytes()),
        }
        out.extend_from_slice(exclude);
        out.extend_from_slice(message);
        out
    }
}

/// An envelope as a node receives it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    /// The stream's epoch and the event's offset in it; `None` outside any stream.
    pub(crate) position: Option<(u64, u64)>,
    pub(crate) header: Header<'a>,
    /// The message, as `crate::store::decode_message` reads it.
    pub(crate) message: &'a [u8],
}

/// The prefix of an envelope outside any stream.
pub(crate) const UNSEQUENCED: &[u8] = b"- 0 ";

/// Reads an envelope; `None` if it is not one.
pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope<'_>> {
    let (epoch, rest) = word(bytes)?;
    let (offset, rest) = word(rest)?;
    let position = match epoch {
        b"-" => None,
        hex => {
            let epoch = u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            let offset = std::str::from_utf8(offset).ok()?.parse().ok()?;
            Some((epoch, offset))
        }
    };
    let (node, rest) = take_u64(rest)?;
    let (nonce, rest) = take_u64(rest)?;
    let (&flags, rest) = rest.split_first()?;
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let (exclude_user, message) = match u16::from_be_bytes(*len) {
        NONE => (None, rest),
        len => {
            let (user, rest) = rest.split_at_checked(usize::from(len))?;
            (Some(std::str::from_utf8(user).ok()?), rest)
        }
    };
    Some(Envelope {
        position,
        header: Header {
            node,
            nonce,
            ephemeral: flags & EPHEMERAL != 0,
            presence: flags & PRESENCE != 0,
            exclude_user,
        },
        message,
    })
}

fn word(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = bytes.iter().position(|&b| b == b' ')?;
    Some((&bytes[..space], &bytes[space + 1..]))
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (n, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*n), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_reads_back_as_written_by_the_node_and_the_script() {
        let header = Header {
            node: 7,
            nonce: 42,
            ephemeral: true,
            presence: true,
            exclude_user: Some("bob"),
        };
        let mut published = b"00000000000000ff 12 ".to_vec();
        published.extend(header.encode(b"message"));
        let env = decode(&published).expect("an envelope");
        assert_eq!(env.position, Some((255, 12)));
        assert_eq!(env.header, header);
        assert_eq!(env.message, b"message");

        let plain = Header {
            exclude_user: None,
            ephemeral: false,
            presence: false,
            ..header
        };
        let mut published = UNSEQUENCED.to_vec();
        published.extend(plain.encode(b""));
        let env = decode(&published).expect("an envelope");
        assert_eq!(
            (env.position, env.header, env.message),
            (None, plain, &b""[..])
        );
    }

    #[test]
    fn anything_else_is_refused_not_misread() {
        for bad in [&b""[..], b"- 0 ", b"zz 1 ", b"ff x ", b"- 0 \x00\x00"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let mut short = UNSEQUENCED.to_vec();
        short.extend_from_slice(&[0; 17]);
        short.extend_from_slice(&5u16.to_be_bytes());
        short.extend_from_slice(b"ab");
        assert_eq!(
            decode(&short),
            None,
            "an exclusion longer than what follows"
        );
    }
}
