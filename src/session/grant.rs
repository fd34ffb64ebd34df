//! The rooms a token lets its user into: the patterns of its `rooms` claim
//! (`["team:42:*", "support-*"]`), where `*` stands for any run of characters.

use wsgate_protocol::{ErrorCode, ProtocolError, MAX_NAME_LEN};

/// Most patterns one token may carry.
pub(crate) const MAX_PATTERNS: usize = 64;

/// A token's room patterns. With one, its user may join only the rooms it matches (and, among
/// private rooms, those too); without one, public rooms and the private rooms it was let into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoomGrant {
    patterns: Box<[Box<str>]>,
}

impl RoomGrant {
    /// Checks the claim: at most [`MAX_PATTERNS`] patterns of 1 to 128 bytes.
    pub(crate) fn parse(patterns: Vec<String>) -> Result<RoomGrant, ProtocolError> {
        if patterns.len() > MAX_PATTERNS {
            return Err(ProtocolError::new(
                ErrorCode::AuthInvalid,
                format!("token rooms claim: at most {MAX_PATTERNS} patterns"),
            ));
        }
        if patterns
            .iter()
            .any(|p| p.is_empty() || p.len() > MAX_NAME_LEN)
        {
            return Err(ProtocolError::new(
                ErrorCode::AuthInvalid,
                "token rooms claim: every pattern must be 1 to 128 bytes",
            ));
        }
        Ok(RoomGrant {
            patterns: patterns.into_iter().map(String::into_boxed_str).collect(),
        })
    }

    /// Whether some pattern matches `room`.
    pub(crate) fn allows(&self, room: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| glob(p.as_bytes(), room.as_bytes()))
    }
}

/// `*` matches any run of bytes (none included); every other byte matches itself. Iterative,
/// with one backtrack point, so a hostile pattern costs at most pattern × name steps.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn grant(patterns: &[&str]) -> RoomGrant {
        RoomGrant::parse(patterns.iter().map(|p| p.to_string()).collect()).unwrap()
    }

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        let g = grant(&["team:42:*", "support-*", "lobby", "a*b*c"]);
        for room in [
            "team:42:",
            "team:42:general",
            "support-7",
            "lobby",
            "abc",
            "axxbyyc",
        ] {
            assert!(g.allows(room), "{room}");
        }
        for room in [
            "team:4",
            "team:43:x",
            "lobby2",
            "xlobby",
            "support",
            "acb",
            "abcx",
        ] {
            assert!(!g.allows(room), "{room}");
        }
        assert!(grant(&["*"]).allows("anything"));
        assert!(
            !grant(&[]).allows("anything"),
            "an empty claim allows nothing"
        );
    }

    #[test]
    fn the_claim_is_bounded() {
        assert!(RoomGrant::parse(vec![String::new()]).is_err());
        assert!(RoomGrant::parse(vec!["x".repeat(129)]).is_err());
        assert!(RoomGrant::parse(vec!["r".into(); MAX_PATTERNS + 1]).is_err());
        assert!(RoomGrant::parse(vec!["r".into(); MAX_PATTERNS]).is_ok());
        // A pattern built to backtrack costs pattern × name steps, not more.
        let hostile = grant(&[&"*a".repeat(60)]);
        assert!(!hostile.allows(&"a".repeat(59)));
    }
}
