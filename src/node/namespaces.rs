//! The Socket.IO namespaces this node serves (`SOCKETIO_NAMESPACES`: names, and prefixes
//! ending in `*`), and the slot each one in use gets in an event's cache of Socket.IO frames.
//! A slot is a namespace's for the process's life, so at most [`MAX_NAMESPACES`] distinct
//! namespaces are ever used; a `CONNECT` to one more is refused like an unknown one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most distinct namespaces in use over a process's life.
pub(crate) const MAX_NAMESPACES: usize = 1024;

/// Which namespaces exist, and the slots of those in use.
#[derive(Debug)]
pub(crate) struct Namespaces {
    names: Vec<String>,
    prefixes: Vec<String>,
    /// Each namespace in use: its shared name and slot (the order they were first used).
    slots: Mutex<HashMap<Arc<str>, usize>>,
}

impl Namespaces {
    /// The namespaces `list` names (`/`, `/chat`, `/team-*`).
    pub(crate) fn new(list: &[&str]) -> Namespaces {
        let (mut names, mut prefixes) = (Vec::new(), Vec::new());
        for item in list {
            match item.strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_owned()),
                None => names.push((*item).to_owned()),
            }
        }
        let namespaces = Namespaces {
            names,
            prefixes,
            slots: Mutex::default(),
        };
        // The configured names get the first slots, in order: the lock-free ones.
        for name in namespaces.names.clone() {
            namespaces.resolve(&name);
        }
        namespaces
    }

    /// `nsp`'s shared name and slot, if this node serves it (and it is among the first
    /// [`MAX_NAMESPACES`] used).
    pub(crate) fn resolve(&self, nsp: &str) -> Option<(Arc<str>, usize)> {
        let served = self.names.iter().any(|n| n == nsp)
            || self.prefixes.iter().any(|p| nsp.starts_with(p.as_str()));
        if !served || nsp.contains(',') {
            return None;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((name, slot)) = slots.get_key_value(nsp) {
            return Some((name.clone(), *slot));
        }
        if slots.len() >= MAX_NAMESPACES {
            return None;
        }
        let (name, slot) = (Arc::<str>::from(nsp), slots.len());
        slots.insert(name.clone(), slot);
        Some((name, slot))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_prefixes_are_served_and_keep_their_slots() {
        let ns = Namespaces::new(&["/", "/chat", "/team-*"]);
        assert_eq!(ns.resolve("/").map(|(_, s)| s), Some(0));
        assert_eq!(ns.resolve("/chat").map(|(_, s)| s), Some(1));
        assert_eq!(ns.resolve("/admin"), None, "not configured");
        let (name, slot) = ns.resolve("/team-7").unwrap();
        assert_eq!((&*name, slot), ("/team-7", 2));
        assert_eq!(ns.resolve("/team-7").map(|(_, s)| s), Some(2), "kept");
        assert_eq!(
            ns.resolve("/team-a,b"),
            None,
            "a comma cannot be in a packet"
        );
    }

    #[test]
    fn at_most_max_namespaces_are_ever_used() {
        let ns = Namespaces::new(&["/t-*"]);
        for i in 0..MAX_NAMESPACES {
            assert!(ns.resolve(&format!("/t-{i}")).is_some());
        }
        assert_eq!(ns.resolve("/t-more"), None);
        assert!(ns.resolve("/t-0").is_some(), "those in use stay");
    }
}
