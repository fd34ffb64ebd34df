//! Redis key and channel names of one deployment (`CLUSTER_PREFIX`). A room's or a user's
//! keys and channel share one hash tag (`{r:<room>}`, `{u:<user>}`), so that on a Redis
//! Cluster they sit in one slot: a script may append to the stream and publish to the
//! channel atomically, and sharded pub/sub spreads channels over the shards.

/// Which stream a name is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Room,
    User,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Room => "r",
            Kind::User => "u",
        }
    }
}

/// What a channel carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Channel<'a> {
    /// A room's events, stored or ephemeral.
    Room(&'a str),
    /// A user's private messages.
    User(&'a str),
    /// Events to every connection (REST broadcasts): every node listens.
    Broadcast,
    /// A user's `user.online` / `user.offline`: subscribed while this node has watchers of
    /// the user (see `presence.rs`).
    Watch(&'a str),
    /// Room definitions made, changed or closed on any node: every node listens.
    Rooms,
}

/// The names of one deployment's keys and channels.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    /// The channel of `name`'s events.
    pub(crate) fn channel(&self, kind: Kind, name: &str) -> String {
        format!("{}:{{{}:{}}}", self.prefix, kind.tag(), name)
    }

    /// The channel every node listens to.
    pub(crate) fn broadcast(&self) -> String {
        format!("{}:{{b}}", self.prefix)
    }

    /// The channel of `user`'s online and offline changes: in the user's slot.
    pub(crate) fn watch(&self, user: &str) -> String {
        format!("{}:w", self.channel(Kind::User, user))
    }

    /// The channel of room definitions, which every node listens to.
    pub(crate) fn rooms(&self) -> String {
        format!("{}:{{n}}:d", self.prefix)
    }

    /// A key of the cluster's shared records (nodes' heartbeats and what each contributes,
    /// room definitions), all in one slot (`{n}`) so one script may read them together.
    pub(crate) fn shared(&self, suffix: &str) -> String {
        format!("{}:{{n}}:{}", self.prefix, suffix)
    }

    /// The key of an idempotency key (its scope and key), shared by every node.
    pub(crate) fn shared_key(&self, key: &str) -> String {
        format!("{}:k:{key}", self.prefix)
    }

    /// A key of `name`'s presence (`suffix`), in its stream's slot.
    pub(crate) fn presence(&self, kind: Kind, name: &str, suffix: &str) -> String {
        format!("{}:{}", self.channel(kind, name), suffix)
    }

    /// The hash of `name`'s stream head: `e` its epoch (16 hex digits), `o` its last offset,
    /// and for a user `a` the offset acknowledged and `m` whether the user acks.
    pub(crate) fn meta(&self, kind: Kind, name: &str) -> String {
        format!("{}:m", self.channel(kind, name))
    }

    /// The Redis stream of `name`'s kept messages, each with id `<offset>-0`.
    pub(crate) fn stream(&self, kind: Kind, name: &str) -> String {
        format!("{}:s", self.channel(kind, name))
    }

    /// What `channel` carries, if it is one of this deployment's.
    pub(crate) fn parse<'a>(&self, channel: &'a str) -> Option<Channel<'a>> {
        let rest = channel.strip_prefix(&*self.prefix)?.strip_prefix(":{")?;
        if rest == "b}" {
            return Some(Channel::Broadcast);
        }
        if rest == "n}:d" {
            return Some(Channel::Rooms);
        }
        // A stream's channel ends with its tag's `}`; a watch channel with `}:w`.
        if let Some(user) = rest.strip_prefix("u:").and_then(|r| r.strip_suffix("}:w")) {
            return Some(Channel::Watch(user));
        }
        let name = |tag: &str| rest.strip_prefix(tag)?.strip_suffix('}');
        if let Some(room) = name("r:") {
            return Some(Channel::Room(room));
        }
        name("u:").map(Channel::User)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_parses_back_to_its_name_whatever_the_name_holds() {
        let names = Names::new("wsgate");
        for room in ["lobby", "a}b", "{x}", "", "r:u:}"] {
            let channel = names.channel(Kind::Room, room);
            assert_eq!(names.parse(&channel), Some(Channel::Room(room)));
            let channel = names.channel(Kind::User, room);
            assert_eq!(names.parse(&channel), Some(Channel::User(room)));
        }
        assert_eq!(names.channel(Kind::Room, "lobby"), "wsgate:{r:lobby}");
        assert_eq!(names.meta(Kind::User, "bob"), "wsgate:{u:bob}:m");
        assert_eq!(names.parse(&names.broadcast()), Some(Channel::Broadcast));
        assert_eq!(names.parse(&names.rooms()), Some(Channel::Rooms));
        for user in ["bob", "a}:w", "x}", "}:w}"] {
            assert_eq!(names.parse(&names.watch(user)), Some(Channel::Watch(user)));
            let channel = names.channel(Kind::User, user);
            assert_eq!(names.parse(&channel), Some(Channel::User(user)));
        }
        assert_eq!(Names::new("other").parse("wsgate:{r:lobby}"), None);
    }
}
