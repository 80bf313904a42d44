//! The host imports a plugin calls, answered by the world.
//!
//! Each checks what it is given against the rules of [`guard`](super::guard)
//! before it changes anything: whose entity it is, how large each part is,
//! how much the plugin has queued already.

use super::guard::{FILTER_TAGS, PATH_STEPS};
use super::persist::reply_to;
use super::*;
use crate::msg::{AttrAsk, EntityCall, PluginIndex, ToGame};
use wyrm_dispatcher::Charge;
use wyrm_runtime::Stop;

/// Why a request with a reply is not made.
enum Refused {
    /// The reply would go to another plugin's entity: dropped (and
    /// logged), as a call to an undeclared method is; WIT gives these
    /// imports no error value.
    Dropped,
    /// A limit: the plugin's call stops.
    Stop(Stop),
}

impl Refused {
    fn into_result(self) -> Result<(), Stop> {
        match self {
            Refused::Dropped => Ok(()),
            Refused::Stop(e) => Err(e),
        }
    }
}

/// A WIT position as the game's spaces take it.
fn place(p: Position) -> wyrm_protocol::Position {
    wyrm_protocol::Position {
        x: p.x,
        y: p.y,
        z: p.z,
    }
}

/// The bytes a reply carries: its method and context.
fn reply_bytes(r: &WitReplyTo) -> usize {
    r.method.len() + r.context.len()
}

impl World {
    /// `create-entity` and `create-space`: checks what the calling plugin
    /// asks for and makes the entity here, or has the dispatcher place it
    /// (`anywhere`) and sends it to the game it chose.
    fn create(
        &mut self,
        import: &'static str,
        type_name: &str,
        attrs: &[u8],
        space: Option<String>,
        at: Locality,
    ) -> Result<EntityId, String> {
        self.name_ok(import, "type name", type_name)?;
        self.value_ok(import, "initial attributes", attrs.len())?;
        let ty = self
            .types
            .find(type_name)
            .ok_or_else(|| format!("no entity type {type_name:?}"))?;
        let owner = self.types.get(ty).plugin;
        if self.calling.is_some_and(|me| me != owner) && !attrs.is_empty() {
            let msg = format!(
                "{import}: {type_name} is a type of plugin {}; another plugin creates it \
                 without attributes (its own plugin sets them)",
                self.plugin_name(owner)
            );
            return Err(self.refuse(import, msg));
        }
        let values = self.initial_attrs(ty, attrs)?;
        let id = match self.ids.allocate() {
            Ok(id) => id,
            Err(e) => return Err(self.refuse(import, format!("{import}: {e}"))),
        };
        if at == Locality::Anywhere {
            let new = wyrm_wire::NewEntity {
                id,
                type_name: type_name.to_owned(),
                attrs: attrs.to_vec(),
                space: space.clone(),
                creator: self.calling.map(|p| p as PluginIndex),
            };
            let create = GameInput::Wire(ToGame::CreateEntity(Box::new(new)));
            if self.routes.create_anywhere(id, ty as u32, create).is_ok() {
                if let Some(me) = self.calling.filter(|&me| me != owner) {
                    self.handoffs.insert(id, me);
                }
                return Ok(id);
            }
            // Placed here: made as `here` would be.
        }
        self.install_new(id, ty, values, self.calling, space, import)?;
        self.routes.created(id, ty as u32);
        Ok(id)
    }

    /// The initial attributes `attrs` (a MessagePack map by name, or
    /// empty) of a new entity of type `ty`.
    pub(super) fn initial_attrs(&self, ty: TypeIndex, attrs: &[u8]) -> Result<Attrs, String> {
        let t = self.types.get(ty);
        let mut values = Attrs::new(t.attrs.len());
        if !attrs.is_empty() {
            let Value::Map(entries) = decode_value(attrs)? else {
                return Err("initial attributes must be a MessagePack map".into());
            };
            for (k, v) in entries {
                let name = k.as_str().ok_or("attribute names must be strings")?;
                let index = t
                    .attr(name)
                    .ok_or_else(|| format!("{} declares no attribute {name:?}", t.name))?;
                values.set_top(index, v)?;
            }
        }
        Ok(values)
    }

    /// Makes new entity `id` here, created by `creator`'s code (here or
    /// on another game): counted against it, its `created` hook queued as
    /// its work, and, of another plugin's type, its to give a client once.
    /// The dispatcher is told by the caller (or was, by the game that
    /// placed it here).
    pub(super) fn install_new(
        &mut self,
        id: EntityId,
        ty: TypeIndex,
        attrs: Attrs,
        creator: Option<usize>,
        space: Option<String>,
        import: &'static str,
    ) -> Result<(), String> {
        let t = self.types.get(ty);
        let (persistent, owner) = (t.persistent(), t.plugin);
        let counted = creator.unwrap_or(owner);
        self.count_entity(counted, import)?;
        self.entities.insert(id, Entity::new(ty, attrs, counted));
        if persistent {
            self.storage.dirty.insert(id);
        }
        if let Some(creator) = creator.filter(|&c| c != owner) {
            // It may give its client to what it made, once.
            self.handoffs.insert(id, creator);
        }
        if let Some(kind) = space {
            self.spaces.create(id, kind);
        }
        self.work.push(counted, Work::Created(id));
        Ok(())
    }

    /// Checks an attribute path: its length and its keys.
    fn path_ok(&mut self, import: &'static str, path: &[PathSegment]) -> Result<(), String> {
        if path.len() > PATH_STEPS {
            let msg = format!(
                "{import}: the attribute path has {} steps, over the {PATH_STEPS} a path may have",
                path.len()
            );
            return Err(self.refuse(import, msg));
        }
        for seg in path {
            if let PathSegment::Key(k) = seg {
                self.name_ok(import, "key in the attribute path", k)?;
            }
        }
        Ok(())
    }

    /// Checks a reply the calling plugin asks for (where it goes, its
    /// method and context) and counts `extra` bytes with it.
    fn reply_charge(
        &mut self,
        import: &'static str,
        reply: &WitReplyTo,
        extra: usize,
    ) -> Result<Option<Charge>, Refused> {
        if self.reply_ok(import, reply.entity).is_err() {
            return Err(Refused::Dropped);
        }
        self.name_ok(import, "reply's method", &reply.method)
            .map_err(Refused::Stop)?;
        self.value_ok(import, "reply's context", reply.context.len())
            .map_err(Refused::Stop)?;
        self.charge(import, reply_bytes(reply) + extra)
            .map_err(Refused::Stop)
    }

    /// Checks a change to an attribute of `id` at `path` with a value of
    /// `len` bytes: the entity is the calling plugin's, the path and value
    /// are within bounds, and a change clients see fits in a frame.
    fn attr_change_ok(
        &mut self,
        import: &'static str,
        id: EntityId,
        path: &[PathSegment],
        len: usize,
    ) -> Result<(), String> {
        self.own(id, "change the attributes of")?;
        self.path_ok(import, path)?;
        self.value_ok(import, "value", len)?;
        if let Ok((_, _, flags)) = self.attr_target(id, path) {
            if client_visible(flags) {
                self.frame_ok(import, len)?;
            }
        }
        Ok(())
    }

    /// A call the host queues for the calling plugin: charged to it.
    fn queue_call(&mut self, mut call: Call) -> Result<(), Stop> {
        call.charge = self.charge("call-entity", call.method.len() + call.args.len())?;
        let lane = self.lane_of(call.entity);
        self.work.push(lane, Work::Call(call));
        Ok(())
    }
}

impl World {
    /// Puts `id` in `space`, both on this game, at `pos`.
    pub(super) fn enter_space_here(
        &mut self,
        id: EntityId,
        space: EntityId,
        pos: wyrm_protocol::Position,
        yaw: f32,
    ) -> Result<(), String> {
        let e = self.live_entity(id)?;
        let (aoi, client) = (self.types.get(e.ty).aoi, e.client);
        if self.spaces.space_of(id) == Some(space) {
            return self.spaces.set_position(id, pos, yaw);
        }
        if self.entities.get(&space).is_none_or(|s| s.doomed) {
            return Err(format!("no space {space}"));
        }
        let left = self.spaces.enter(id, space, pos, yaw, aoi)?;
        // Leaving the old space tells its watchers (and this entity's
        // client) first.
        self.apply_aoi_events();
        if let Some(client) = client {
            if let Some(old) = left {
                self.send(client, &ServerFrame::Destroy { entity: old });
            }
            self.send(client, &self.create_frame(space, false));
            self.resync(client, id);
            self.flush_positions_of(client);
        }
        Ok(())
    }
}

/// Most ids of other processes' blocks a game remembers were handed out.
const HANDED_OUT_KEPT: usize = 65_536;

impl GameHost for World {
    fn enter_plugin(&mut self, plugin: usize) {
        self.calling = Some(plugin);
    }

    fn leave_plugin(&mut self) {
        self.calling = None;
    }

    fn create_entity(
        &mut self,
        type_name: &str,
        attrs: &[u8],
        at: Locality,
    ) -> Result<EntityId, String> {
        self.create("create-entity", type_name, attrs, None, at)
    }

    fn destroy_entity(&mut self, id: EntityId) -> Result<(), String> {
        self.own(id, "destroy")?;
        let lane = self.lane_of(id);
        let Some(e) = self.entities.get_mut(&id) else {
            self.route(GameInput::Wire(ToGame::DestroyEntity { entity: id }));
            return Ok(());
        };
        if !e.doomed {
            e.doomed = true;
            self.work.push(lane, Work::Destroy(id));
        }
        Ok(())
    }

    fn entity_type(&mut self, id: EntityId) -> Option<String> {
        let e = self.entities.get(&id)?;
        Some(self.types.get(e.ty).name.clone())
    }

    fn ask_entity_type(&mut self, id: EntityId, reply: WitReplyTo) -> Result<(), Stop> {
        let charge = match self.reply_charge("ask-entity-type", &reply, 0) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        // Every game's registry is the same: the dispatcher's type index
        // answers for all of them.
        let name = self.type_anywhere(id).map(|ty| {
            let mut out = Vec::new();
            let _ = rmp::encode::write_str(&mut out, &self.types.get(ty).name);
            out
        });
        self.answer(reply_to(reply), Ok(name), charge);
        Ok(())
    }

    fn service(&mut self, type_name: &str) -> Option<EntityId> {
        self.routes.service(type_name)
    }

    fn call_entity(&mut self, id: EntityId, method: String, args: Vec<u8>) -> Result<(), Stop> {
        self.name_ok("call-entity", "method name", &method)?;
        self.value_ok("call-entity", "arguments", args.len())?;
        if !self.entities.contains_key(&id) {
            // Past every id this process handed out, and live on no game
            // (another process of a cluster hands out its own blocks):
            // never handed out, and no mailbox can hold it.
            if id >= self.ids.unused_from() && !self.handed_out.contains(&id) {
                match self.routes.exists_if_known(id) {
                    Some(false) => {
                        let msg = format!(
                            "call-entity: no entity {id} (it never existed); {method} dropped"
                        );
                        self.refuse("call-entity", msg);
                        return Ok(());
                    }
                    // Once handed out, always: not asked again (the set
                    // is kept small, at the cost of asking again now and
                    // then).
                    Some(true) => {
                        if self.handed_out.len() >= HANDED_OUT_KEPT {
                            self.handed_out.clear();
                        }
                        self.handed_out.insert(id);
                    }
                    // The node is away: sent, and held until one is back.
                    None => {}
                }
            }
            // To the game that runs it, which checks it as this one would,
            // or into its mailbox.
            let charge = self.charge("call-entity", method.len() + args.len())?;
            let call = EntityCall {
                entity: id,
                method,
                args,
                from: self.current,
                plugin: self.calling.map(|p| p as PluginIndex),
            };
            self.route(GameInput::Call { call, charge });
            return Ok(());
        }
        let caller = match self.call_from_plugin(self.calling, self.current, id, &method) {
            Ok(c) => c,
            // Dropped, as a call to an undeclared method is: the import
            // has no error value to give, and it is logged.
            Err(_) => return Ok(()),
        };
        let Some(target) = self.entities.get(&id) else {
            return Ok(());
        };
        if self.types.get(target.ty).method(&method).is_none() {
            let ty = self.types.get(target.ty).name.clone();
            let msg = format!(
                "call-entity: a call to an undeclared method {ty}.{method} of entity {id} dropped"
            );
            self.refuse("call-entity", msg);
            return Ok(());
        }
        let mut call = Call::from_server(id, method, args, self.current);
        call.caller = caller;
        self.queue_call(call)
    }

    fn call_client(&mut self, id: EntityId, method: &str, args: &[u8]) -> Result<bool, Stop> {
        self.name_ok("call-client", "method name", method)?;
        self.frame_ok("call-client", args.len())?;
        if self.own(id, "call the client of").is_err() {
            // As if no client were bound: a plugin speaks only to the
            // clients of its own entities.
            return Ok(false);
        }
        let Some(e) = self.entities.get(&id) else {
            // On another game: sent there, for its client if it has one.
            self.charge_output("call-client", method.len() + args.len())?;
            self.route(GameInput::Wire(ToGame::CallClient {
                entity: id,
                method: method.to_owned(),
                args: args.to_vec(),
            }));
            return Ok(true);
        };
        let Some(client) = e.client else {
            return Ok(false);
        };
        self.charge_output("call-client", method.len() + args.len())?;
        let frame = ServerFrame::Call {
            entity: id,
            method: method.to_owned(),
            args: args.to_vec(),
        };
        self.send(client, &frame);
        Ok(true)
    }

    fn call_filtered_clients(
        &mut self,
        filter: Vec<Tag>,
        method: String,
        args: Vec<u8>,
    ) -> Result<(), Stop> {
        const IMPORT: &str = "call-filtered-clients";
        if filter.len() > FILTER_TAGS {
            let msg = format!(
                "{IMPORT}: the filter has {} tags, over the {FILTER_TAGS} a filter may have",
                filter.len()
            );
            return Err(self.refuse(IMPORT, msg));
        }
        for t in &filter {
            self.name_ok(IMPORT, "tag key", &t.key)?;
            self.name_ok(IMPORT, "tag value", &t.value)?;
        }
        self.name_ok(IMPORT, "method name", &method)?;
        self.frame_ok(IMPORT, args.len())?;
        let tags: usize = filter.iter().map(|t| t.key.len() + t.value.len()).sum();
        self.charge_output(IMPORT, tags + method.len() + args.len())?;
        self.output(ToGate::CallFiltered {
            filter: filter.into_iter().map(|t| (t.key, t.value)).collect(),
            method,
            args: Bytes::from(args),
            plugin: self.calling.unwrap_or(0) as crate::msg::PluginIndex,
        });
        Ok(())
    }

    fn broadcast(&mut self, method: String, args: Vec<u8>) -> Result<(), Stop> {
        self.name_ok("broadcast", "method name", &method)?;
        self.frame_ok("broadcast", args.len())?;
        self.charge_output("broadcast", method.len() + args.len())?;
        self.output(ToGate::Broadcast {
            method,
            args: Bytes::from(args),
            plugin: self.calling.unwrap_or(0) as crate::msg::PluginIndex,
        });
        Ok(())
    }

    fn give_client_to(&mut self, from: EntityId, to: EntityId) -> Result<(), String> {
        self.own(from, "give away the client of")?;
        let handed_over = self.calling.is_some() && self.handoffs.get(&to) == self.calling.as_ref();
        if !handed_over {
            self.own(to, "give a client to")?;
        }
        if let Some(target) = self.entities.get(&to) {
            if target.client.is_some() {
                return Err(format!("entity {to} already has a client"));
            }
            if target.doomed {
                return Err(format!("entity {to} is being destroyed"));
            }
        }
        let Some(e) = self.entities.get(&from) else {
            if !self.entities.contains_key(&to) {
                // Its game hands the client on, if it still has one.
                self.handoffs.remove(&to);
                self.route(GameInput::Wire(ToGame::GiveClient { from, to }));
                return Ok(());
            }
            // Taken here at once (what `to` sends its client from now on
            // reaches it); `from`'s game lets it go once this round is
            // over, so `from` runs no hook while the code that gave its
            // client away may still act on it.
            let client = self
                .routes
                .claim_client(from, to)
                .ok_or_else(|| format!("entity {from} has no client"))?;
            self.handoffs.remove(&to);
            self.bind(client, to);
            let lane = self.lane_of(to);
            self.work.push(lane, Work::ClientConnected(to));
            let release = GameInput::Wire(ToGame::ReleaseClient {
                entity: from,
                client,
            });
            self.defer(super::remote::Outgoing::ByEntity(release));
            return Ok(());
        };
        let client = e
            .client
            .ok_or_else(|| format!("entity {from} has no client"))?;
        if !self.entities.contains_key(&to) {
            self.handoffs.remove(&to);
            self.give_client_away(from, to);
            return Ok(());
        }
        self.hand_over(client, from, to)
    }

    fn set_client_tag(
        &mut self,
        id: EntityId,
        key: String,
        value: Option<String>,
    ) -> Result<(), String> {
        self.own(id, "tag the client of")?;
        self.name_ok("set-client-tag", "tag key", &key)?;
        if let Some(v) = &value {
            self.name_ok("set-client-tag", "tag value", v)?;
        }
        let client = self
            .entities
            .get(&id)
            .ok_or_else(|| format!("no entity {id}"))?
            .client
            .ok_or_else(|| format!("entity {id} has no client"))?;
        self.output(ToGate::SetTag { client, key, value });
        Ok(())
    }

    fn create_space(
        &mut self,
        type_name: &str,
        kind: String,
        attrs: &[u8],
        at: Locality,
    ) -> Result<EntityId, String> {
        self.name_ok("create-space", "space kind", &kind)?;
        self.create("create-space", type_name, attrs, Some(kind), at)
    }

    fn space_kind(&mut self, id: EntityId) -> Option<String> {
        self.spaces.kind(id).map(str::to_owned)
    }

    fn enter_space(
        &mut self,
        id: EntityId,
        space: EntityId,
        pos: Position,
        yaw: f32,
    ) -> Result<(), String> {
        // A space is a shared place: any plugin's entity may enter any
        // plugin's space, but a plugin moves only its own entities.
        self.own(id, "move")?;
        let local = self.entities.contains_key(&id);
        if local {
            self.live_entity(id)?;
        }
        if local && self.entities.contains_key(&space) {
            return self.enter_space_here(id, space, place(pos), yaw);
        }
        // The entity moves to the space's game first, and enters there.
        let Some(there) = self.routes.game_of(space) else {
            return Err(format!("no space {space}"));
        };
        if !local && self.routes.game_of(id) == Some(there) {
            return Err(format!(
                "entity {id} and space {space} are both on another game: have the entity \
                 enter it from there (call it)"
            ));
        }
        self.move_to_space(id, there, space, place(pos), yaw)
    }

    fn leave_space(&mut self, id: EntityId) -> Result<(), String> {
        self.own(id, "move")?;
        self.live_entity(id)?;
        self.leave_space_now(id);
        Ok(())
    }

    fn set_position(&mut self, id: EntityId, pos: Position, yaw: f32) -> Result<(), String> {
        self.own(id, "move")?;
        self.live_entity(id)?;
        self.spaces.set_position(id, place(pos), yaw)
    }

    fn placement_of(&mut self, id: EntityId) -> Option<Placement> {
        self.spaces.placement(id).map(|p| Placement {
            space: p.space,
            pos: Position {
                x: p.pos.x,
                y: p.pos.y,
                z: p.pos.z,
            },
            yaw: p.yaw,
        })
    }

    fn allow_client_moves(&mut self, id: EntityId, allowed: bool) -> Result<(), String> {
        self.own(id, "let clients move")?;
        self.entities
            .get_mut(&id)
            .ok_or_else(|| format!("no entity {id}"))?
            .client_moves = allowed;
        Ok(())
    }

    fn aoi_of(&mut self, id: EntityId) -> Vec<EntityId> {
        self.spaces.visible(id).collect()
    }

    fn entities_near(&mut self, space: EntityId, center: Position, radius: f32) -> Vec<EntityId> {
        self.spaces.near(space, place(center), radius)
    }

    fn call_aoi_clients(&mut self, id: EntityId, method: &str, args: &[u8]) -> Result<(), Stop> {
        self.name_ok("call-aoi-clients", "method name", method)?;
        self.frame_ok("call-aoi-clients", args.len())?;
        if self.own(id, "speak for").is_err() {
            return Ok(()); // logged; WIT gives no error value
        }
        let audience = self.audience(id, true);
        if audience.is_empty() {
            return Ok(());
        }
        self.charge_output("call-aoi-clients", method.len() + args.len())?;
        let frame = ServerFrame::Call {
            entity: id,
            method: method.to_owned(),
            args: args.to_vec(),
        };
        self.send_to_all(audience, &frame);
        Ok(())
    }

    fn attr_get(&mut self, id: EntityId, path: &[PathSegment]) -> Result<Option<Vec<u8>>, String> {
        self.own(id, "read the attributes of")?;
        self.path_ok("attr-get", path)?;
        let (e, index, _) = self.attr_target(id, path)?;
        Ok(e.attrs.get(index, &path[1..]).map(|v| {
            let mut out = Vec::new();
            let _ = rmpv::encode::write_value(&mut out, v);
            out
        }))
    }

    fn ask_attr(
        &mut self,
        id: EntityId,
        path: Vec<PathSegment>,
        reply: WitReplyTo,
    ) -> Result<(), Stop> {
        let steps: usize = path
            .iter()
            .map(|s| match s {
                PathSegment::Key(k) => k.len(),
                PathSegment::Index(_) => 4,
            })
            .sum();
        let charge = match self.reply_charge("ask-attr", &reply, steps) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        let reply = reply_to(reply);
        if let Err(why) = self.path_ok("ask-attr", &path) {
            self.answer(reply, Err(why), charge);
            return Ok(());
        }
        let plugin = self.calling.unwrap_or(0);
        if self.entities.contains_key(&id) {
            let value = self.read_attr_for(plugin, id, &path);
            self.answer(reply, value, charge);
            return Ok(());
        }
        let ask = AttrAsk {
            entity: id,
            path: path.into_iter().map(wire_step).collect(),
            reply,
            plugin: plugin as PluginIndex,
        };
        self.route(GameInput::Ask { ask, charge });
        Ok(())
    }

    fn attr_set(&mut self, id: EntityId, path: &[PathSegment], value: &[u8]) -> Result<(), String> {
        self.attr_change_ok("attr-set", id, path, value.len())?;
        let v = decode_value(value)?;
        self.change_attr(id, path, AttrOp::Set, value, |a, i, rest| a.set(i, rest, v))
    }

    fn attr_delete(&mut self, id: EntityId, path: &[PathSegment]) -> Result<(), String> {
        self.attr_change_ok("attr-delete", id, path, 0)?;
        self.change_attr(id, path, AttrOp::Delete, &[], |a, i, rest| {
            a.delete(i, rest)
        })
    }

    fn attr_append(
        &mut self,
        id: EntityId,
        path: &[PathSegment],
        value: &[u8],
    ) -> Result<(), String> {
        self.attr_change_ok("attr-append", id, path, value.len())?;
        let v = decode_value(value)?;
        self.change_attr(id, path, AttrOp::Append, value, |a, i, rest| {
            a.append(i, rest, v)
        })
    }

    fn set_timer(
        &mut self,
        id: EntityId,
        delay_ms: u32,
        repeat: bool,
        method: String,
        args: Vec<u8>,
    ) -> Result<u64, String> {
        self.own(id, "set a timer on")?;
        self.name_ok("set-timer", "method name", &method)?;
        self.value_ok("set-timer", "arguments", args.len())?;
        let e = self
            .entities
            .get(&id)
            .ok_or_else(|| format!("no entity {id}"))?;
        let t = self.types.get(e.ty);
        if t.method(&method).is_none() {
            return Err(format!(
                "{} has no method {method:?} for a timer to call",
                t.name
            ));
        }
        if repeat && delay_ms == 0 {
            return Err("a repeating timer needs a delay of at least 1 ms".into());
        }
        let plugin = t.plugin;
        let delay = Duration::from_millis(u64::from(delay_ms));
        let timer = Timer {
            entity: id,
            method,
            args,
            every: repeat.then_some(delay),
            plugin,
        };
        let (armed, limit) = (self.timers.bytes_of(plugin), self.limits.timer_bytes);
        if armed + timer.cost() > limit {
            let msg = format!(
                "set-timer: plugin {} has timers of {armed} bytes armed; this one ({} bytes) \
                 would pass [limits] timer_bytes = {limit}",
                self.plugin_name(plugin),
                timer.cost()
            );
            return Err(self.refuse("set-timer", msg));
        }
        Ok(self.timers.arm(delay, timer))
    }

    fn cancel_timer(&mut self, timer: u64) -> bool {
        // A plugin cancels only its own timers; another's id is unknown
        // to it.
        self.timers.cancel(timer, self.calling)
    }

    fn hash_password(
        &mut self,
        id: EntityId,
        password: String,
        method: String,
        context: Vec<u8>,
    ) -> Result<(), Stop> {
        const IMPORT: &str = "hash-password";
        self.name_ok(IMPORT, "password", &password)?;
        self.name_ok(IMPORT, "method name", &method)?;
        self.value_ok(IMPORT, "context", context.len())?;
        if self.reply_ok(IMPORT, id).is_err() {
            return Ok(()); // logged; WIT gives no error value
        }
        let charge = self.charge(IMPORT, password.len() + method.len() + context.len())?;
        if let Some(cont) = self.continuation(id, method, context, charge) {
            self.passwords.hash(password, cont);
        }
        Ok(())
    }

    fn verify_password(
        &mut self,
        id: EntityId,
        password: String,
        hash: String,
        method: String,
        context: Vec<u8>,
    ) -> Result<(), Stop> {
        const IMPORT: &str = "verify-password";
        self.name_ok(IMPORT, "password", &password)?;
        self.name_ok(IMPORT, "hash", &hash)?;
        self.name_ok(IMPORT, "method name", &method)?;
        self.value_ok(IMPORT, "context", context.len())?;
        if self.reply_ok(IMPORT, id).is_err() {
            return Ok(());
        }
        let bytes = password.len() + hash.len() + method.len() + context.len();
        let charge = self.charge(IMPORT, bytes)?;
        if let Some(cont) = self.continuation(id, method, context, charge) {
            self.passwords.verify(password, hash, cont);
        }
        Ok(())
    }

    fn load_entity(&mut self, id: EntityId, at: Locality, reply: WitReplyTo) -> Result<(), Stop> {
        let charge = match self.reply_charge("load-entity", &reply, 0) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        self.request_load(id, at == Locality::Anywhere, reply_to(reply), charge);
        Ok(())
    }

    fn save_entity(&mut self, id: EntityId, reply: Option<WitReplyTo>) -> Result<(), Stop> {
        let charge = match &reply {
            Some(r) => match self.reply_charge("save-entity", r, 0) {
                Ok(c) => c,
                Err(r) => return r.into_result(),
            },
            None => self.charge("save-entity", 0)?,
        };
        let reply = reply.map(reply_to);
        match self.row(id) {
            Some(row) => {
                self.storage.dirty.remove(&id);
                self.storage.store.send_with(
                    Op::Save {
                        rows: vec![row],
                        reply,
                    },
                    charge,
                );
            }
            None => {
                if let Some(r) = reply {
                    let why = if self.entities.contains_key(&id) {
                        format!("entity {id} is not of a persistent type")
                    } else {
                        format!("no entity {id}")
                    };
                    let msg = storage::reply(&r, Some(&why), |out| {
                        let _ = rmp::encode::write_nil(out);
                    });
                    self.push_reply(msg, charge);
                }
            }
        }
        Ok(())
    }

    fn entity_exists(&mut self, id: EntityId, reply: WitReplyTo) -> Result<(), Stop> {
        let charge = match self.reply_charge("entity-exists", &reply, 0) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        let reply = reply_to(reply);
        if self.entities.contains_key(&id) || self.routes.exists(id) {
            let msg = storage::reply(&reply, None, |out| {
                let _ = rmp::encode::write_bool(out, true);
            });
            self.push_reply(msg, charge);
            return Ok(());
        }
        self.storage
            .store
            .send_with(Op::Exists { id, reply }, charge);
        Ok(())
    }

    fn saved_ids(&mut self, type_name: String, reply: WitReplyTo) -> Result<(), Stop> {
        self.name_ok("saved-ids", "type name", &type_name)?;
        let charge = match self.reply_charge("saved-ids", &reply, type_name.len()) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        self.storage.store.send_with(
            Op::SavedIds {
                type_name,
                reply: reply_to(reply),
            },
            charge,
        );
        Ok(())
    }

    fn kv_get(&mut self, key: String, reply: WitReplyTo) -> Result<(), Stop> {
        self.name_ok("kv-get", "key", &key)?;
        let charge = match self.reply_charge("kv-get", &reply, key.len()) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        self.storage.store.send_with(
            Op::KvGet {
                key,
                reply: reply_to(reply),
            },
            charge,
        );
        Ok(())
    }

    fn kv_put(
        &mut self,
        key: String,
        value: Vec<u8>,
        reply: Option<WitReplyTo>,
    ) -> Result<(), Stop> {
        self.name_ok("kv-put", "key", &key)?;
        self.value_ok("kv-put", "value", value.len())?;
        let extra = key.len() + value.len();
        let charge = match &reply {
            Some(r) => match self.reply_charge("kv-put", r, extra) {
                Ok(c) => c,
                Err(r) => return r.into_result(),
            },
            None => self.charge("kv-put", extra)?,
        };
        let reply = reply.map(reply_to);
        let mut charge = charge;
        if self.checked_value(&value, reply.as_ref(), &mut charge) {
            self.storage
                .store
                .send_with(Op::KvPut { key, value, reply }, charge);
        }
        Ok(())
    }

    fn kv_get_or_put(
        &mut self,
        key: String,
        value: Vec<u8>,
        reply: WitReplyTo,
    ) -> Result<(), Stop> {
        self.name_ok("kv-get-or-put", "key", &key)?;
        self.value_ok("kv-get-or-put", "value", value.len())?;
        let charge = match self.reply_charge("kv-get-or-put", &reply, key.len() + value.len()) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        let reply = reply_to(reply);
        let mut charge = charge;
        if self.checked_value(&value, Some(&reply), &mut charge) {
            self.storage
                .store
                .send_with(Op::KvGetOrPut { key, value, reply }, charge);
        }
        Ok(())
    }

    fn kv_range(&mut self, prefix: String, reply: WitReplyTo) -> Result<(), Stop> {
        self.name_ok("kv-range", "prefix", &prefix)?;
        let charge = match self.reply_charge("kv-range", &reply, prefix.len()) {
            Ok(c) => c,
            Err(r) => return r.into_result(),
        };
        self.storage.store.send_with(
            Op::KvRange {
                prefix,
                reply: reply_to(reply),
            },
            charge,
        );
        Ok(())
    }

    fn emit_stat(&mut self, name: String, fields: Vec<u8>) {
        // Never fails the caller (wit/storage.wit): what is over a limit is
        // dropped, and logged.
        if self.name_ok("emit-stat", "stat name", &name).is_err()
            || self.value_ok("emit-stat", "fields", fields.len()).is_err()
        {
            return;
        }
        let Ok(charge) = self.charge("emit-stat", name.len() + fields.len()) else {
            return;
        };
        self.storage.stats.emit_with(name, fields, charge);
    }
}

/// A WIT path step as the wire carries it (the protocol's).
fn wire_step(s: PathSegment) -> wyrm_protocol::PathSegment {
    match s {
        PathSegment::Key(k) => wyrm_protocol::PathSegment::Key(k),
        PathSegment::Index(i) => wyrm_protocol::PathSegment::Index(i),
    }
}
