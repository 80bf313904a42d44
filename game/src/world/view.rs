//! What each client sees, and keeping it told: a client sees its own entity,
//! the space that entity is in, and the entities its entity sees (its area
//! of interest). AOI is worked out once per tick, and `Create` and `Destroy`
//! follow its changes in that tick (leaving a space, or its end, at once);
//! attribute pushes and AOI calls reach exactly the clients that see the
//! entity; positions go out once per tick, one compact frame per client
//! ([`sync`](super::sync)).

use std::collections::hash_map::Entry;

use super::*;
use wyrm_runtime::bindings::AoiEvent as WitAoiEvent;

/// Bytes allocated at a time for a tick's `Positions` frames.
const POSITIONS_ARENA: usize = 64 * 1024;
/// `Positions` frames handed to the gate at a time.
const POSITIONS_CHUNK: usize = 128;

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

    /// Tells `client` to create `other`, which is in its space, and gives
    /// `other` a slot for positions.
    fn show(&mut self, client: ClientId, other: EntityId, frame: Bytes) {
        self.output(ToGate::View { client, frame });
        if let (Some(h), Some(c)) = (self.spaces.handle(other), self.clients.get_mut(&client)) {
            c.sync.show(other, h);
        }
    }

    /// Tells `client` that `other` is gone from its view.
    fn hide(&mut self, client: ClientId, other: EntityId) {
        let frame = Bytes::from(ServerFrame::Destroy { entity: other }.to_bytes());
        self.output(ToGate::View { client, frame });
        if let Some(c) = self.clients.get_mut(&client) {
            let places = c.sync.space().and_then(|s| self.spaces.places(s));
            c.sync.hide(other, places.as_ref());
        }
    }

    /// Points `client`'s position sync at the space its own entity `id` is
    /// in now (if any), with a slot for `id` itself.
    pub(super) fn resync(&mut self, client: ClientId, id: EntityId) {
        let space = self.spaces.space_of(id);
        let handle = self.spaces.handle(id);
        if let Some(c) = self.clients.get_mut(&client) {
            c.sync.reset(space);
            if let Some(h) = handle {
                c.sync.show(id, h);
            }
        }
    }

    /// Tells a newly bound client everything it sees, with positions.
    pub(super) fn show_view(&mut self, client: ClientId, id: EntityId) {
        self.send(client, &self.create_frame(id, true));
        self.resync(client, id);
        if let Some(space) = self.spaces.space_of(id) {
            self.send(client, &self.create_frame(space, false));
            let visible: Vec<EntityId> = self.spaces.visible(id).collect();
            for other in visible {
                let frame = Bytes::from(self.create_frame(other, false).to_bytes());
                self.show(client, other, frame);
            }
        }
        self.flush_positions_of(client);
    }

    /// Tells a client that is leaving `id` to forget everything it saw.
    /// Binds `client` again to `id`, which came back here after the game
    /// that ran it died: the client's view starts over, since what it was
    /// shown came from a game that is gone and cannot take it back.
    pub(super) fn rebind(&mut self, client: ClientId, id: EntityId) {
        self.send(client, &ServerFrame::ViewReset);
        self.bind(client, id);
    }

    pub(super) fn hide_view(&mut self, client: ClientId, id: EntityId) {
        self.hide_surroundings(client, id);
        self.send(client, &ServerFrame::Destroy { entity: id });
    }

    /// Tells the client of `id` to forget what `id` sees here (it keeps
    /// `id` itself: it moves with it to another game).
    pub(super) fn hide_surroundings(&mut self, client: ClientId, id: EntityId) {
        let visible: Vec<EntityId> = self.spaces.visible(id).collect();
        for other in visible {
            self.send(client, &ServerFrame::Destroy { entity: other });
        }
        if let Some(space) = self.spaces.space_of(id) {
            self.send(client, &ServerFrame::Destroy { entity: space });
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.sync.reset(None);
        }
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
        // An entity that comes into many views is encoded once.
        let mut creates: IdMap<Bytes> = IdMap::default();
        for ev in &events {
            let Some(w) = self.entities.get(&ev.watcher) else {
                continue;
            };
            let (client, wants_events) =
                (w.client, self.types.get(w.ty).aoi.is_some_and(|a| a.events));
            if let Some(client) = client {
                if ev.entered {
                    let frame = match creates.entry(ev.other) {
                        Entry::Occupied(f) => f.get().clone(),
                        Entry::Vacant(v) => v
                            .insert(Bytes::from(self.create_frame(ev.other, false).to_bytes()))
                            .clone(),
                    };
                    self.show(client, ev.other, frame);
                } else {
                    self.hide(client, ev.other);
                }
            }
            if wants_events {
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
            self.resync(client, id);
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
                self.resync(client, m);
            }
        }
    }

    /// A client's `Move` frame: applied if its entity lets it.
    pub(crate) fn client_move(&mut self, client: ClientId, pos: wyrm_protocol::Position, yaw: f32) {
        let Some(id) = self.clients.get(&client).map(|c| c.entity) else {
            return;
        };
        if !self
            .entities
            .get(&id)
            .is_some_and(|e| e.client_moves && !e.doomed)
        {
            tracing::trace!(
                %client,
                entity = id,
                "move ignored: its logic does not allow client moves"
            );
            return;
        }
        if let Err(e) = self.spaces.set_position(id, pos, yaw) {
            tracing::debug!(%client, entity = id, "move ignored: {e}");
        }
    }

    /// Works out who sees whom in every space after this tick's moves and
    /// acts on the changes.
    pub(crate) fn update_aoi(&mut self) {
        self.spaces.update_aoi();
        self.apply_aoi_events();
    }

    /// The AOI events waiting for logic, grouped by plugin. Events whose
    /// watcher is gone are dropped.
    pub(crate) fn take_aoi_events(&mut self) -> Vec<(usize, Vec<WitAoiEvent>)> {
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

    /// Sends every client in a space a `Positions` frame with what changed
    /// among the entities it sees (its own included) since it was last sent
    /// them; a client for which nothing changed gets none. The output goes
    /// to `gate` every `POSITIONS_CHUNK` frames, so the gate writes the
    /// first clients while the game builds the frames of the next.
    pub(crate) fn flush_positions(&mut self, gate: &wyrm_dispatcher::Gates) {
        // Each frame is written in a scratch buffer, then copied into
        // allocations the tick's frames share.
        let mut buf = std::mem::take(&mut self.positions_buf);
        let mut frames = bytes::BytesMut::new();
        let mut in_chunk = 0;
        for (&client, view) in &mut self.clients {
            let Some(places) = view.sync.space().and_then(|s| self.spaces.places(s)) else {
                continue;
            };
            buf.clear();
            if view.sync.write(&places, true, &mut buf) {
                if frames.capacity() - frames.len() < buf.len() {
                    frames.reserve(buf.len().max(POSITIONS_ARENA));
                }
                frames.extend_from_slice(&buf);
                let frame = frames.split().freeze();
                self.out.push(ToGate::Send { client, frame });
                in_chunk += 1;
                if in_chunk == POSITIONS_CHUNK {
                    in_chunk = 0;
                    let ops = std::mem::take(&mut self.out);
                    // The gate outlives the game but at shutdown.
                    gate.send(crate::msg::HeldBatch {
                        batch: crate::msg::GateBatch { ops, tick: false },
                        held: Vec::new(),
                    });
                }
            }
        }
        self.positions_buf = buf;
        self.spaces.settle();
    }

    /// [`flush_positions`](Self::flush_positions) for one client, at once.
    pub(super) fn flush_positions_of(&mut self, client: ClientId) {
        let Some(view) = self.clients.get_mut(&client) else {
            return;
        };
        let Some(places) = view.sync.space().and_then(|s| self.spaces.places(s)) else {
            return;
        };
        let mut buf = Vec::new();
        if view.sync.write(&places, false, &mut buf) {
            self.out.push(ToGate::Send {
                client,
                frame: Bytes::from(buf),
            });
        }
    }
}
