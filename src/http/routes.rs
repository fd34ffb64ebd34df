//! The route table of the HTTP surface: one list that the router matches against and the
//! OpenAPI agreement test compares with `protocol/openapi.yaml`.

/// Every route: method and path template (`{name}` is one path segment).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/ws"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.yaml"),
    ("POST", "/api/v1/push/users"),
    ("POST", "/api/v1/push/rooms/{roomId}"),
    ("POST", "/api/v1/push/broadcast"),
    ("POST", "/api/v1/push/batch"),
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/users/{userId}"),
    ("DELETE", "/api/v1/users/{userId}/connections"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/rooms"),
    ("POST", "/api/v1/rooms"),
    ("GET", "/api/v1/rooms/{roomId}"),
    ("DELETE", "/api/v1/rooms/{roomId}"),
    ("POST", "/api/v1/rooms/{roomId}/members"),
    ("DELETE", "/api/v1/rooms/{roomId}/members/{userId}"),
];

/// Matches a path against a template; returns the captured `{params}` in order.
pub(crate) fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return None;
                }
                params.push(ps);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// The methods allowed on `path` (for 405 and its `Allow` header).
pub(crate) fn allowed_methods(path: &str) -> Vec<&'static str> {
    ROUTES
        .iter()
        .filter(|(_, t)| match_template(t, path).is_some())
        .map(|(m, _)| *m)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_capture_segments() {
        assert_eq!(
            match_template("/api/v1/rooms/{roomId}", "/api/v1/rooms/abc"),
            Some(vec!["abc"])
        );
        assert_eq!(
            match_template(
                "/api/v1/rooms/{roomId}/members/{userId}",
                "/api/v1/rooms/r/members/u"
            ),
            Some(vec!["r", "u"])
        );
        assert_eq!(
            match_template("/api/v1/rooms/{roomId}", "/api/v1/rooms/"),
            None
        );
        assert_eq!(
            match_template("/api/v1/rooms/{roomId}", "/api/v1/rooms/a/b"),
            None
        );
        assert_eq!(allowed_methods("/api/v1/rooms/x"), vec!["GET", "DELETE"]);
    }
}
