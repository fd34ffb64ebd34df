//! Cluster mode's room definitions on the local backplane's side: a room this node creates,
//! closes or lets a user into is shared through Redis (`crate::cluster::redis::rooms`), and
//! what other nodes share is applied here, to the directory and to this node's members.

use std::sync::Arc;

use bytes::Bytes;
use wsgate_protocol::Format;

use super::Local;
use crate::cluster::directory::RoomInfo;
use crate::cluster::redis::rooms::RoomChange;
use crate::cluster::redis::Redis;
use crate::hub::{Backplane, BackplaneError, OutEvent, RoomRefused, Task};
use crate::store::RoomDef;

/// The `room.closed` event members of a room closed by the backend get.
pub(crate) fn room_closed_event(room: &str) -> Arc<OutEvent> {
    let data = Bytes::from_static(br#"{"reason":"closed by the backend"}"#);
    OutEvent::new(
        "room.closed",
        Some(Arc::from(room)),
        None,
        data,
        Format::Json,
    )
}

impl Local {
    /// Cluster mode: shares the room this node just created with every node. Another
    /// node's room of that name makes it `Exists` (and Redis not answering `Unavailable`):
    /// then it is closed here again.
    pub(crate) async fn share_room(
        &self,
        room: &Arc<str>,
        info: &RoomInfo,
    ) -> Result<(), RoomRefused> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let refused = match redis.define(room, &def_of(info)).await {
            Ok(true) => return Ok(()),
            Ok(false) => RoomRefused::Exists,
            Err(_) => RoomRefused::Unavailable,
        };
        let (slot, _) = self.store.reserve().await;
        self.close_room(room, slot);
        Err(refused)
    }

    /// Cluster mode: closes the room on every other node too.
    pub(crate) async fn unshare_room(&self, room: &str) -> Result<(), BackplaneError> {
        match &self.redis {
            Some(redis) => redis.undefine(room).await,
            None => Ok(()),
        }
    }

    /// Cluster mode: lets `user` into `room` on every other node (and adds its connections
    /// there), or takes it back (and removes them).
    pub(crate) async fn share_member(
        &self,
        room: &str,
        user: &str,
        allowed: bool,
    ) -> Result<(), BackplaneError> {
        match &self.redis {
            Some(redis) => redis.allow(room, user, allowed).await,
            None => Ok(()),
        }
    }

    /// Cluster mode, at the start: every room some node defined.
    pub(crate) fn define_rooms(&self, defs: Vec<(String, RoomDef, Vec<String>)>) {
        for (room, def, users) in defs {
            let room: Arc<str> = Arc::from(room);
            self.directory.define(&room, def);
            self.streams.set_limits(&room, || self.room_limits(&room));
            for user in users {
                let slot = self.store.try_reserve();
                if let Some(slot) = slot {
                    self.directory.allow(&room, &Arc::from(user), slot);
                }
            }
        }
    }

    /// Cluster mode: gives Redis back the room definitions this node knows, if Redis lost
    /// them (it holds no mark that nodes gave it any: restarted empty, or new): how many it
    /// gave, `None` if Redis had them.
    pub(crate) async fn redefine_rooms(
        &self,
        redis: &Redis,
    ) -> Result<Option<usize>, BackplaneError> {
        let defs: Vec<_> = self
            .directory
            .definitions()
            .into_iter()
            .map(|(room, info, users)| {
                let users = users.iter().map(|u| u.to_string()).collect();
                (room.to_string(), def_of(&info), users)
            })
            .collect();
        let n = defs.len();
        Ok(redis.redefine(defs).await?.then_some(n))
    }

    /// Applies what another node changed of a room definition.
    pub(super) async fn receive_room_change(&self, redis: &Redis, bytes: &[u8]) {
        let Some(change) = redis.room_change(bytes) else {
            return;
        };
        let task: Task<Local> = match change {
            RoomChange::Created(room, def) => {
                return self.define_rooms(vec![(room, def, Vec::new())]);
            }
            RoomChange::Closed(room) => {
                let (slot, _) = self.store.reserve().await;
                self.close_room(&room, slot);
                let event = room_closed_event(&room);
                Arc::new(move |hub| {
                    hub.close_room(&room, &event);
                })
            }
            RoomChange::Allowed(room, user, true) => {
                let (slot, _) = self.store.reserve().await;
                self.directory.allow(&room, &Arc::from(user.as_str()), slot);
                Arc::new(move |hub| {
                    hub.add_to_room(&user, &room);
                })
            }
            RoomChange::Allowed(room, user, false) => {
                let (slot, _) = self.store.reserve().await;
                self.directory.disallow(&room, &user, slot);
                Arc::new(move |hub| {
                    hub.remove_from_room(&user, &room);
                })
            }
        };
        self.run_everywhere(task).await;
    }
}

/// A room's definition as it is shared.
fn def_of(info: &RoomInfo) -> RoomDef {
    let at = info
        .created_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    RoomDef {
        private: info.private,
        max_members: info.max_members,
        presence: info.presence,
        by_client: info.by_client,
        created_by: info.created_by.clone(),
        created_at: at.map_or(0, |d| d.as_millis() as u64),
        history_size: info.history.size,
        history_ttl: info.history.ttl_secs,
    }
}
