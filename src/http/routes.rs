//! The route table of the HTTP surface, declared once: each route binds a method and a path
//! template to its handler. The router matches against it, the REST dispatcher runs the
//! handler it names, and the OpenAPI agreement test compares [`ROUTES`] with
//! `protocol/openapi.yaml`.

/// What serves a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    /// `GET /ws`: the WebSocket upgrade.
    Upgrade,
    Health,
    Ready,
    Metrics,
    OpenApi,
    PushUsers,
    PushRoom,
    PushBroadcast,
    PushBatch,
    ListUsers,
    GetUser,
    UserUnread,
    KickUser,
    Stats,
    ListRooms,
    CreateRoom,
    GetRoom,
    CloseRoom,
    RoomMessages,
    AddMember,
    RemoveMember,
    ListMembers,
    UserPresence,
}

impl Handler {
    /// Whether the handler reads a JSON body (and so has a body validation to fuzz).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) const fn takes_body(self) -> bool {
        matches!(
            self,
            Handler::PushUsers
                | Handler::PushRoom
                | Handler::PushBroadcast
                | Handler::PushBatch
                | Handler::CreateRoom
                | Handler::AddMember
        )
    }
}

/// One route: method, path template (`{name}` is one path segment) and handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) handler: Handler,
}

const fn route(method: &'static str, path: &'static str, handler: Handler) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// Every route.
pub(crate) const TABLE: [Route; 23] = [
    route("GET", "/ws", Handler::Upgrade),
    route("GET", "/healthz", Handler::Health),
    route("GET", "/readyz", Handler::Ready),
    route("GET", "/metrics", Handler::Metrics),
    route("GET", "/api/v1/openapi.yaml", Handler::OpenApi),
    route("POST", "/api/v1/push/users", Handler::PushUsers),
    route("POST", "/api/v1/push/rooms/{roomId}", Handler::PushRoom),
    route("POST", "/api/v1/push/broadcast", Handler::PushBroadcast),
    route("POST", "/api/v1/push/batch", Handler::PushBatch),
    route("GET", "/api/v1/users", Handler::ListUsers),
    route("GET", "/api/v1/users/{userId}", Handler::GetUser),
    route("GET", "/api/v1/users/{userId}/unread", Handler::UserUnread),
    route(
        "GET",
        "/api/v1/users/{userId}/presence",
        Handler::UserPresence,
    ),
    route(
        "DELETE",
        "/api/v1/users/{userId}/connections",
        Handler::KickUser,
    ),
    route("GET", "/api/v1/stats", Handler::Stats),
    route("GET", "/api/v1/rooms", Handler::ListRooms),
    route("POST", "/api/v1/rooms", Handler::CreateRoom),
    route("GET", "/api/v1/rooms/{roomId}", Handler::GetRoom),
    route("DELETE", "/api/v1/rooms/{roomId}", Handler::CloseRoom),
    route(
        "GET",
        "/api/v1/rooms/{roomId}/messages",
        Handler::RoomMessages,
    ),
    route(
        "GET",
        "/api/v1/rooms/{roomId}/members",
        Handler::ListMembers,
    ),
    route("POST", "/api/v1/rooms/{roomId}/members", Handler::AddMember),
    route(
        "DELETE",
        "/api/v1/rooms/{roomId}/members/{userId}",
        Handler::RemoveMember,
    ),
];

/// Every route's method and path template, in table order.
pub const ROUTES: &[(&str, &str)] = &method_and_path(&TABLE);

const fn method_and_path<const N: usize>(table: &[Route; N]) -> [(&'static str, &'static str); N] {
    let mut out = [("", ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (table[i].method, table[i].path);
        i += 1;
    }
    out
}

/// The routes whose handlers read a JSON body, in table order (the fuzzer picks one by
/// index).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn body_routes() -> impl Iterator<Item = &'static Route> {
    TABLE.iter().filter(|r| r.handler.takes_body())
}

/// The route for `method` and `path`, with the captured `{params}`; or, when none matches,
/// the methods allowed on `path` (empty: no such path).
pub(crate) fn find<'p>(
    method: &str,
    path: &'p str,
) -> Result<(Handler, Vec<&'p str>), Vec<&'static str>> {
    TABLE
        .iter()
        .filter(|r| r.method == method)
        .find_map(|r| match_template(r.path, path).map(|p| (r.handler, p)))
        .ok_or_else(|| allowed_methods(path))
}

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
    TABLE
        .iter()
        .filter(|r| match_template(r.path, path).is_some())
        .map(|r| r.method)
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

    #[test]
    fn the_table_finds_handlers_and_the_paths_follow_it() {
        assert_eq!(
            find("DELETE", "/api/v1/rooms/r/members/u"),
            Ok((Handler::RemoveMember, vec!["r", "u"]))
        );
        assert_eq!(find("PUT", "/api/v1/rooms"), Err(vec!["GET", "POST"]));
        assert_eq!(ROUTES.len(), TABLE.len());
        assert_eq!(ROUTES[5], ("POST", "/api/v1/push/users"));
        assert_eq!(body_routes().count(), 6);
    }
}
