//! What each client sees, and keeping it told: a client sees its own entity,
//! the space that entity is in, and the entities its entity sees (its area
//! of interest). AOI is worked out once per tick, and `Create` and `Destroy`
//! follow its changes in that tick (leaving a space, or its end, at once);
//! attribute pushes and AOI calls reach exactly the clients that see the
//! entity; positions go out once per tick, batched per client.

use wyrm_protocol::{EntityPosition, PositionsWriter};

use super::*;
use crate::plugin::bindings::AoiEvent as WitAoiEvent;

impl World {
    /// An entity that exists and is not being destroyed.
    pub(super) fn live_entity(&self, id: EntityId) -> Result<&Entity, String> {
        match self.entities.get(&id) {
            Some(e) if !e.doomed => Ok(e),
            Some(_) => Err(format!("entity {id} is being destroyed")),
            None => Err(format!("no entity {id}")),
        }
    }

    /// The `Create` frame for `id` as its owner (`own`) or a viewer sees it.
    pub(super) fn create_frame(&self, id: EntityId, own: bool) -> ServerFrame {
        let type_name = self
            .entities
            .get(&id)
            .map(|e| self.types.get(e.ty).name.clone())
            .unwrap_or_default();
        ServerFrame::Create {
            entity: id,
            type_name,
            own,
            attrs: self.visible_attrs(id, own),
        }
    }

    /// Sends `id`'s position to `client`, if it is in a space.
    pub(super) fn send_positions_of(&self, client: ClientId, id: EntityId) {
        if let Some(p) = self.entity_position(id) {
            let mut w = PositionsWriter::new();
            w.push(&p);
            self.send_bytes(client, Bytes::from(w.finish()));
        }
    }

    fn entity_position(&self, id: EntityId) -> Option<EntityPosition> {
        let p = self.spaces.placement(id)?;
        Some(EntityPosition {
            entity: id,
            pos: wyrm_protocol::Position {
                x: p.pos.x,
                y: p.pos.y,
                z: p.pos.z,
            },
            yaw: p.yaw,
        })
    }

    /// Tells a newly bound client everything it sees.
    pub(super) fn show_view(&self, client: ClientId, id: EntityId) {
        self.send(client, &self.create_frame(id, true));
        self.send_positions_of(client, id);
        if let Some(space) = self.spaces.space_of(id) {
            self.send(client, &self.create_frame(space, false));
            for other in self.spaces.visible(id) {
                self.send(client, &self.create_frame(other, false));
                self.send_positions_of(client, other);
            }
        }
    }

    /// Tells a client that is leaving `id` to forget everything it saw.
    pub(super) fn hide_view(&self, client: ClientId, id: EntityId) {
        for other in self.spaces.visible(id) {
            self.send(client, &ServerFrame::Destroy { entity: other });
        }
        if let Some(space) = self.spaces.space_of(id) {
            self.send(client, &ServerFrame::Destroy { entity: space });
        }
        self.send(client, &ServerFrame::Destroy { entity: id });
    }

    /// The clients that see `id`: its owner, and with `others` every client
    /// whose entity sees it (for a space, every client in it).
    pub(super) fn audience(&self, id: EntityId, others: bool) -> Vec<ClientId> {
        let client_of = |e: EntityId| self.entities.get(&e).and_then(|e| e.client);
        let mut out: Vec<ClientId> = client_of(id).into_iter().collect();
        if others {
            out.extend(self.spaces.watchers(id).filter_map(client_of));
            if self.spaces.is_space(id) {
                out.extend(self.spaces.members(id).filter_map(client_of));
            }
        }
        out
    }

    /// Acts on the AOI changes the last space operations produced: clients
    /// are told to create or destroy what came into or left their view, and
    /// watchers whose type asked for events get them at the next tick.
    pub(super) fn apply_aoi_events(&mut self) {
        let events = std::mem::take(&mut self.spaces.events);
        for ev in &events {
            let Some(w) = self.entities.get(&ev.watcher) else {
                continue;
            };
            if let Some(client) = w.client {
                if ev.entered {
                    self.send(client, &self.create_frame(ev.other, false));
                    self.send_positions_of(client, ev.other);
                } else {
                    self.send(client, &ServerFrame::Destroy { entity: ev.other });
                }
            }
            if self.types.get(w.ty).aoi.is_some_and(|a| a.events) {
                self.aoi_pending.push(*ev);
            }
        }
        // Hand the (now empty) buffer back so its capacity is reused.
        let mut events = events;
        events.clear();
        self.spaces.events = events;
    }

    /// Takes `id` out of its space, telling everyone concerned.
    pub(super) fn leave_space_now(&mut self, id: EntityId) {
        let Some(space) = self.spaces.leave(id) else {
            return;
        };
        self.apply_aoi_events();
        if let Some(client) = self.entities.get(&id).and_then(|e| e.client) {
            self.send(client, &ServerFrame::Destroy { entity: space });
        }
    }

    /// Ends space `id` if it is one: every entity in it leaves it.
    pub(super) fn end_space(&mut self, id: EntityId) {
        if !self.spaces.is_space(id) {
            return;
        }
        let members = self.spaces.destroy(id);
        self.apply_aoi_events();
        for m in members {
            if let Some(client) = self.entities.get(&m).and_then(|e| e.client) {
                self.send(client, &ServerFrame::Destroy { entity: id });
            }
        }
    }

    /// A client's `Move` frame: applied if its entity lets it.
    pub(in crate::game) fn client_move(
        &mut self,
        client: ClientId,
        pos: wyrm_protocol::Position,
        yaw: f32,
    ) {
        let Some(&id) = self.clients.get(&client) else {
            return;
        };
        if !self
            .entities
            .get(&id)
            .is_some_and(|e| e.client_moves && !e.doomed)
        {
            tracing::trace!(
                client,
                entity = id,
                "move ignored: its logic does not allow client moves"
            );
            return;
        }
        let pos = Position {
            x: pos.x,
            y: pos.y,
            z: pos.z,
        };
        if let Err(e) = self.spaces.set_position(id, pos, yaw) {
            tracing::debug!(client, entity = id, "move ignored: {e}");
        }
    }

    /// Works out who sees whom in every space after this tick's moves and
    /// acts on the changes.
    pub(in crate::game) fn update_aoi(&mut self) {
        self.spaces.update_aoi();
        self.apply_aoi_events();
    }

    /// The AOI events waiting for logic, grouped by plugin. Events whose
    /// watcher is gone are dropped.
    pub(in crate::game) fn take_aoi_events(&mut self) -> Vec<(usize, Vec<WitAoiEvent>)> {
        let mut by_plugin: Vec<(usize, Vec<WitAoiEvent>)> = Vec::new();
        for ev in std::mem::take(&mut self.aoi_pending) {
            let Some((plugin, watcher)) = self.entity_ref(ev.watcher) else {
                continue;
            };
            let ev = WitAoiEvent {
                watcher,
                other: ev.other,
                entered: ev.entered,
            };
            match by_plugin.iter_mut().find(|(p, _)| *p == plugin) {
                Some((_, list)) => list.push(ev),
                None => by_plugin.push((plugin, vec![ev])),
            }
        }
        by_plugin
    }

    /// Sends every client the positions that changed since the last tick
    /// among the entities it sees (its own included), one frame per client.
    pub(in crate::game) fn flush_positions(&mut self) {
        for (&client, &id) in &self.clients {
            if self.spaces.space_of(id).is_none() {
                continue;
            }
            let mut w = PositionsWriter::new();
            let seen = std::iter::once(id).chain(self.spaces.visible(id));
            for other in seen.filter(|&o| self.spaces.moved(o)) {
                let Some(p) = self.entity_position(other) else {
                    continue;
                };
                if !w.push(&p) {
                    self.send_bytes(client, Bytes::from(std::mem::take(&mut w).finish()));
                    w.push(&p);
                }
            }
            if !w.is_empty() {
                self.send_bytes(client, Bytes::from(w.finish()));
            }
        }
        self.spaces.clear_moved();
    }
}
