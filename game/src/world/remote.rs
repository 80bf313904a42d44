//! Entities on other games. What this world's plugins address to an entity
//! that lives elsewhere — a call, a destroy, a frame for its client — goes
//! through the dispatcher at once, as storage operations do, so it keeps
//! its place among what the plugin did. A client handed to an entity on
//! another game, or leaving with its migrating entity, waits in the outbox
//! until the round's output has gone to the gate, so the client gets what
//! this game sent it before what the other game sends (and whatever is
//! routed after it in the same round waits behind it). What other games,
//! or the server's own threads, route here for this world's entities comes
//! in through [`World::take`].

use super::*;
use crate::msg::{AttrAsk, EntityCall, ToGame};
use wyrm_dispatcher::Charge;
use wyrm_protocol::attr::Segment;
use wyrm_wire::NewEntity;

/// What waits in the outbox.
pub(super) enum Outgoing {
    /// For an entity, to the game that runs it.
    ByEntity(GameInput),
    /// A migrating entity, straight to the game it goes to, with its client.
    Ship {
        to: wyrm_wire::GameId,
        client: Option<ClientId>,
        msg: GameInput,
    },
}

impl World {
    /// Queues `call` for its entity: here, on the game that runs it, or, on
    /// none, in its mailbox.
    pub(super) fn deliver_call(&mut self, call: Call) {
        if self.entities.contains_key(&call.entity) {
            let lane = self.lane_of(call.entity);
            self.work.push(lane, Work::Call(call));
            return;
        }
        self.route(GameInput::Call {
            call: EntityCall {
                entity: call.entity,
                method: call.method,
                args: call.args,
                from: call.caller.entity,
                plugin: None,
            },
            charge: call.charge,
        });
    }

    /// Sends `msg` to the game of the entity it is for (or, on none, to
    /// its mailbox): now, unless something waits in the outbox.
    pub(super) fn route(&mut self, msg: GameInput) {
        if self.outbox.is_empty() {
            self.send_now(msg);
        } else {
            self.outbox.push(Outgoing::ByEntity(msg));
        }
    }

    fn send_now(&mut self, msg: GameInput) {
        if let Err(msg) = self.routes.send(msg) {
            self.undeliverable(msg);
        }
    }

    /// Sends `out` once this round's output has gone to the gate.
    pub(super) fn defer(&mut self, out: Outgoing) {
        self.outbox.push(out);
    }

    /// Sends what waits in the outbox. Called after the round's output
    /// went to the gate.
    pub(crate) fn send_outbox(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        for out in std::mem::take(&mut self.outbox) {
            match out {
                Outgoing::ByEntity(msg) => self.send_now(msg),
                Outgoing::Ship { to, client, msg } => self.routes.ship(to, client, msg),
            }
        }
    }

    /// What was addressed to an entity on no game.
    pub(crate) fn undeliverable(&mut self, msg: GameInput) {
        match msg {
            // Kept for it, if it is saved, until it is loaded.
            GameInput::Call { call, charge } => {
                let mut call = Call::from_server(call.entity, call.method, call.args, call.from);
                call.charge = charge;
                self.mail(call);
            }
            GameInput::Ask { ask, charge } => {
                let why = format!("no entity {}", ask.entity);
                self.answer(ask.reply, Err(why), charge);
            }
            // It went before it could take the client: the client is left
            // bound to nothing, as when its entity is destroyed.
            GameInput::Wire(ToGame::TakeClient { client, entity }) => {
                tracing::debug!(%client, entity, "a client was handed to an entity that is gone");
                self.unbound(client);
            }
            other => tracing::debug!(?other, "for an entity that is gone; dropped"),
        }
    }

    /// Takes what was routed here by entity: from a gate (a client's call,
    /// held while its entity was on its way), from another game, or from
    /// the server's threads (a reply). What is for an entity that is gone
    /// is answered, or dropped, as a call to a missing entity is.
    pub(crate) fn take(&mut self, msg: GameInput) {
        match msg {
            GameInput::Wire(ToGame::ClientCall {
                client,
                req_id,
                entity,
                method,
                args,
            }) => self.client_call(client, req_id, entity, method, args),
            GameInput::Call { call, charge } => self.take_call(call, charge),
            GameInput::Wire(ToGame::DestroyEntity { entity }) => {
                if self.entities.contains_key(&entity) {
                    let _ = GameHost::destroy_entity(self, entity);
                }
            }
            GameInput::Wire(ToGame::CallClient {
                entity,
                method,
                args,
            }) => {
                if let Some(client) = self.entities.get(&entity).and_then(|e| e.client) {
                    let frame = ServerFrame::Call {
                        entity,
                        method,
                        args,
                    };
                    self.send(client, &frame);
                }
            }
            GameInput::Wire(ToGame::GiveClient { from, to }) => self.give_client_away(from, to),
            GameInput::Wire(ToGame::TakeClient { client, entity }) => {
                self.take_client(client, entity)
            }
            GameInput::Wire(ToGame::ReleaseClient { entity, client }) => {
                self.release_client(entity, client)
            }
            GameInput::Ask { ask, charge } => self.answer_ask(ask, charge),
            GameInput::Wire(ToGame::CreateEntity(new)) => self.create_for_elsewhere(*new),
            GameInput::Wire(ToGame::LoadEntity { entity, reply }) => {
                self.load_here(entity, reply, None)
            }
            GameInput::Loaded { id, result } => self.finish_load(id, *result),
            other => tracing::error!("routed by entity, but not for one: {other:?}"),
        }
    }

    /// A call routed here: from the host, queued as it is; from a plugin,
    /// checked first as if its code ran here.
    fn take_call(&mut self, call: EntityCall, charge: Option<wyrm_dispatcher::Charge>) {
        let EntityCall {
            entity,
            method,
            args,
            from,
            plugin,
        } = call;
        let mut c = Call::from_server(entity, method, args, from);
        c.charge = charge;
        if let (Some(p), Some(target)) = (plugin, self.entities.get(&entity)) {
            let ty = target.ty;
            if self.types.get(ty).method(&c.method).is_none() {
                let msg = format!(
                    "call-entity: a call to an undeclared method {}.{} of entity {entity} dropped",
                    self.types.get(ty).name,
                    c.method
                );
                self.refuse_for(Some(p as usize), "call-entity", msg);
                return;
            }
            match self.call_from_plugin(Some(p as usize), from, entity, &c.method) {
                Ok(caller) => c.caller = caller,
                Err(_) => return,
            }
        }
        self.queue_host(Work::Call(c));
    }

    /// Unbinds the client of `from` (here) for `to`, which another game
    /// runs or a plugin there named.
    pub(super) fn give_client_away(&mut self, from: EntityId, to: EntityId) {
        let Some(client) = self.entities.get(&from).and_then(|e| e.client) else {
            tracing::debug!(from, to, "a client to hand on, but its entity has none now");
            return;
        };
        if self.entities.contains_key(&to) {
            if let Err(e) = self.hand_over(client, from, to) {
                tracing::debug!(from, to, "a client could not be handed on: {e}");
            }
            return;
        }
        self.hide_view(client, from);
        self.clients.remove(&client);
        if let Some(e) = self.entities.get_mut(&from) {
            e.client = None;
        }
        self.queue_host(Work::ClientDisconnected(from));
        let take = GameInput::Wire(ToGame::TakeClient { client, entity: to });
        self.defer(Outgoing::ByEntity(take));
    }

    /// Binds a client another game handed over to `entity`, if it can still
    /// take one.
    fn take_client(&mut self, client: ClientId, entity: EntityId) {
        let free = self
            .entities
            .get(&entity)
            .is_some_and(|e| e.client.is_none() && !e.doomed);
        if !free {
            tracing::debug!(%client, entity, "a client handed to an entity that cannot take it");
            return self.unbound(client);
        }
        self.handoffs.remove(&entity);
        self.bind(client, entity);
        self.queue_host(Work::ClientConnected(entity));
    }

    /// Another game took `client` from `entity`: unbind it here.
    fn release_client(&mut self, entity: EntityId, client: ClientId) {
        let Some(e) = self.entities.get_mut(&entity) else {
            return;
        };
        if e.client != Some(client) {
            return;
        }
        e.client = None;
        self.hide_view(client, entity);
        self.clients.remove(&client);
        self.queue_host(Work::ClientDisconnected(entity));
    }

    /// `client` is bound to no entity (its gate is told).
    fn unbound(&mut self, client: ClientId) {
        self.routes.bound(client, None);
        self.output(ToGate::Bind {
            client,
            entity: None,
            plugin: 0,
        });
    }

    /// An entity a plugin on another game created, which the dispatcher
    /// placed here. What it was checked against there (the type, the
    /// attributes) holds here, since every game has the same plugins; only
    /// this game's count of the creator's entities can refuse it.
    fn create_for_elsewhere(&mut self, new: NewEntity) {
        let NewEntity {
            id,
            type_name,
            attrs,
            space,
            creator,
        } = new;
        let made = self
            .types
            .find(&type_name)
            .ok_or_else(|| format!("no entity type {type_name:?}"))
            .and_then(|ty| {
                let values = self.initial_attrs(ty, &attrs)?;
                let creator = creator.map(|p| p as usize);
                self.install_new(id, ty, values, creator, space, "create-entity")
            });
        if let Err(why) = made {
            tracing::warn!(
                entity = id,
                "an entity created on another game was not made: {why}"
            );
            let held = self.routes.gone(id);
            self.take_routed(held);
        }
    }

    /// Answers a question about an attribute of an entity here, asked by
    /// a plugin's code on another game.
    fn answer_ask(&mut self, ask: AttrAsk, charge: Option<Charge>) {
        let value = self.read_attr_for(ask.plugin as usize, ask.entity, &ask.path);
        self.answer(ask.reply, value, charge);
    }

    /// The value at `path` of `entity` (here), encoded, for plugin
    /// `plugin`'s code, which may read only its own entities (`ask-attr`).
    pub(super) fn read_attr_for<S: Segment>(
        &mut self,
        plugin: usize,
        entity: EntityId,
        path: &[S],
    ) -> Result<Option<Vec<u8>>, String> {
        let t = match self.entities.get(&entity) {
            None => return Err(format!("no entity {entity}")),
            Some(e) => self.types.get(e.ty),
        };
        if t.plugin != plugin {
            return Err(format!(
                "entity {entity} ({}) belongs to plugin {}: a plugin reads only its own \
                 entities' attributes",
                t.name,
                self.plugin_name(t.plugin)
            ));
        }
        let (e, index, _) = self.attr_target(entity, path)?;
        Ok(e.attrs.get(index, &path[1..]).map(|v| {
            let mut out = Vec::new();
            let _ = rmpv::encode::write_value(&mut out, v);
            out
        }))
    }

    /// Calls `reply` with `[error, value, context]` (`value` encoded, or
    /// nil), as storage answers.
    pub(super) fn answer(
        &mut self,
        reply: ReplyTo,
        value: Result<Option<Vec<u8>>, String>,
        charge: Option<Charge>,
    ) {
        let (err, value) = match value {
            Ok(v) => (None, v),
            Err(e) => (Some(e), None),
        };
        let msg = storage::reply(&reply, err.as_deref(), |out| match value {
            Some(v) => out.extend_from_slice(&v),
            None => {
                let _ = rmp::encode::write_nil(out);
            }
        });
        self.push_reply(msg, charge);
    }
}
