//! URL decoding for the HTTP surface: query parameters and path segments, percent-decoded.

/// One query parameter, percent-decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// A path segment, percent-decoded (`+` stays a plus); `None` if the bytes are not UTF-8.
pub(crate) fn percent_decode_path(s: &str) -> Option<String> {
    String::from_utf8(percent_decode_bytes(&s.replace('+', "%2B"))).ok()
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
}

fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                // Two hex digits, nothing else (`from_str_radix` alone would take `+f`).
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_decoded() {
        assert_eq!(
            query_param("a=1&token=x%2Ey&b", "token").as_deref(),
            Some("x.y")
        );
        assert_eq!(query_param("token=%zz", "token").as_deref(), Some("%zz"));
        assert_eq!(query_param("a=1", "token"), None);
        assert_eq!(query_param("t=%4", "t").as_deref(), Some("%4"));
        // Found by fuzzing: a sign is not a hex digit.
        assert_eq!(query_param("t=%+f%-1", "t").as_deref(), Some("% f%-1"));
        assert_eq!(percent_decode_path("%+f").as_deref(), Some("%+f"));
    }
}
