//! The host imports a plugin calls, answered by the world.

use super::persist::reply_to;
use super::*;

impl GameHost for World {
    fn create_entity(&mut self, type_name: &str, attrs: &[u8]) -> Result<EntityId, String> {
        let ty = self
            .types
            .find(type_name)
            .ok_or_else(|| format!("no entity type {type_name:?}"))?;
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
                    .ok_or_else(|| format!("{type_name} declares no attribute {name:?}"))?;
                values.set(index, &[], v)?;
            }
        }
        let persistent = t.persistent();
        let id = self.allocate_id();
        self.entities.insert(
            id,
            Entity {
                ty,
                attrs: values,
                client: None,
                doomed: false,
                client_moves: false,
            },
        );
        if persistent {
            self.storage.dirty.insert(id);
        }
        self.work.push_back(Work::Created(id));
        Ok(id)
    }

    fn destroy_entity(&mut self, id: EntityId) -> Result<(), String> {
        let e = self
            .entities
            .get_mut(&id)
            .ok_or_else(|| format!("no entity {id}"))?;
        if !e.doomed {
            e.doomed = true;
            self.work.push_back(Work::Destroy(id));
        }
        Ok(())
    }

    fn entity_type(&mut self, id: EntityId) -> Option<String> {
        self.entities
            .get(&id)
            .map(|e| self.types.get(e.ty).name.clone())
    }

    fn service(&mut self, type_name: &str) -> Option<EntityId> {
        self.services.get(type_name).copied()
    }

    fn call_entity(&mut self, id: EntityId, method: String, args: Vec<u8>) {
        let Some(target) = self.entities.get(&id) else {
            let call = Call::from_server(id, method, args, self.current);
            self.mail(call);
            return;
        };
        if self.types.get(target.ty).method(&method).is_none() {
            let ty = &self.types.get(target.ty).name;
            tracing::warn!(entity = id, %method, from = ?self.current, "call to an undeclared method {ty}.{method} dropped");
            return;
        }
        self.work.push_back(Work::Call(Call::from_server(
            id,
            method,
            args,
            self.current,
        )));
    }

    fn call_client(&mut self, id: EntityId, method: &str, args: &[u8]) -> bool {
        let Some(client) = self.entities.get(&id).and_then(|e| e.client) else {
            return false;
        };
        let frame = ServerFrame::Call {
            entity: id,
            method: method.to_owned(),
            args: args.to_vec(),
        };
        self.send(client, &frame);
        true
    }

    fn call_filtered_clients(&mut self, filter: Vec<Tag>, method: String, args: Vec<u8>) {
        self.output(ToGate::CallFiltered {
            filter: filter.into_iter().map(|t| (t.key, t.value)).collect(),
            method,
            args: Bytes::from(args),
        });
    }

    fn broadcast(&mut self, method: String, args: Vec<u8>) {
        self.output(ToGate::Broadcast {
            method,
            args: Bytes::from(args),
        });
    }

    fn give_client_to(&mut self, from: EntityId, to: EntityId) -> Result<(), String> {
        let client = self
            .entities
            .get(&from)
            .ok_or_else(|| format!("no entity {from}"))?
            .client
            .ok_or_else(|| format!("entity {from} has no client"))?;
        let target = self
            .entities
            .get(&to)
            .ok_or_else(|| format!("no entity {to}"))?;
        if target.client.is_some() {
            return Err(format!("entity {to} already has a client"));
        }
        if target.doomed {
            return Err(format!("entity {to} is being destroyed"));
        }
        self.hide_view(client, from);
        if let Some(e) = self.entities.get_mut(&from) {
            e.client = None;
        }
        self.work.push_back(Work::ClientDisconnected(from));
        self.bind(client, to);
        self.work.push_back(Work::ClientConnected(to));
        Ok(())
    }

    fn set_client_tag(
        &mut self,
        id: EntityId,
        key: String,
        value: Option<String>,
    ) -> Result<(), String> {
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
    ) -> Result<EntityId, String> {
        let id = self.create_entity(type_name, attrs)?;
        self.spaces.create(id, kind);
        Ok(id)
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
        let e = self.live_entity(id)?;
        let (aoi, client) = (self.types.get(e.ty).aoi, e.client);
        if self.spaces.space_of(id) == Some(space) {
            return self.set_position(id, pos, yaw);
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

    fn leave_space(&mut self, id: EntityId) -> Result<(), String> {
        self.live_entity(id)?;
        self.leave_space_now(id);
        Ok(())
    }

    fn set_position(&mut self, id: EntityId, pos: Position, yaw: f32) -> Result<(), String> {
        self.live_entity(id)?;
        self.spaces.set_position(id, pos, yaw)
    }

    fn placement_of(&mut self, id: EntityId) -> Option<Placement> {
        self.spaces.placement(id)
    }

    fn allow_client_moves(&mut self, id: EntityId, allowed: bool) -> Result<(), String> {
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
        self.spaces.near(space, center, radius)
    }

    fn call_aoi_clients(&mut self, id: EntityId, method: &str, args: &[u8]) {
        let audience = self.audience(id, true);
        if audience.is_empty() {
            return;
        }
        let frame = ServerFrame::Call {
            entity: id,
            method: method.to_owned(),
            args: args.to_vec(),
        };
        self.send_to_all(audience, &frame);
    }

    fn attr_get(&mut self, id: EntityId, path: &[PathSegment]) -> Result<Option<Vec<u8>>, String> {
        let (e, index, _) = self.attr_target(id, path)?;
        Ok(e.attrs.get(index, &path[1..]).map(|v| {
            let mut out = Vec::new();
            let _ = rmpv::encode::write_value(&mut out, v);
            out
        }))
    }

    fn attr_set(&mut self, id: EntityId, path: &[PathSegment], value: &[u8]) -> Result<(), String> {
        let v = decode_value(value)?;
        self.change_attr(id, path, AttrOp::Set, value, |a, i, rest| a.set(i, rest, v))
    }

    fn attr_delete(&mut self, id: EntityId, path: &[PathSegment]) -> Result<(), String> {
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
        let delay = Duration::from_millis(u64::from(delay_ms));
        Ok(self.timers.arm(
            delay,
            Timer {
                entity: id,
                method,
                args,
                every: repeat.then_some(delay),
            },
        ))
    }

    fn cancel_timer(&mut self, timer: u64) -> bool {
        self.timers.cancel(timer)
    }

    fn hash_password(&mut self, id: EntityId, password: String, method: String, context: Vec<u8>) {
        if let Some(cont) = self.continuation(id, method, context) {
            self.passwords.hash(password, cont);
        }
    }

    fn verify_password(
        &mut self,
        id: EntityId,
        password: String,
        hash: String,
        method: String,
        context: Vec<u8>,
    ) {
        if let Some(cont) = self.continuation(id, method, context) {
            self.passwords.verify(password, hash, cont);
        }
    }

    fn load_entity(&mut self, id: EntityId, reply: WitReplyTo) {
        self.request_load(id, reply_to(reply));
    }

    fn save_entity(&mut self, id: EntityId, reply: Option<WitReplyTo>) {
        let reply = reply.map(reply_to);
        match self.row(id) {
            Some(row) => {
                self.storage.dirty.remove(&id);
                self.storage.store.send(Op::Save {
                    rows: vec![row],
                    reply,
                });
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
                    self.push_continuation(msg);
                }
            }
        }
    }

    fn entity_exists(&mut self, id: EntityId, reply: WitReplyTo) {
        let reply = reply_to(reply);
        if self.entities.contains_key(&id) {
            let msg = storage::reply(&reply, None, |out| {
                let _ = rmp::encode::write_bool(out, true);
            });
            return self.push_continuation(msg);
        }
        self.storage.store.send(Op::Exists { id, reply });
    }

    fn saved_ids(&mut self, type_name: String, reply: WitReplyTo) {
        self.storage.store.send(Op::SavedIds {
            type_name,
            reply: reply_to(reply),
        });
    }

    fn kv_get(&mut self, key: String, reply: WitReplyTo) {
        self.storage.store.send(Op::KvGet {
            key,
            reply: reply_to(reply),
        });
    }

    fn kv_put(&mut self, key: String, value: Vec<u8>, reply: Option<WitReplyTo>) {
        let reply = reply.map(reply_to);
        if self.checked_value(&value, reply.as_ref()) {
            self.storage.store.send(Op::KvPut { key, value, reply });
        }
    }

    fn kv_get_or_put(&mut self, key: String, value: Vec<u8>, reply: WitReplyTo) {
        let reply = reply_to(reply);
        if self.checked_value(&value, Some(&reply)) {
            self.storage
                .store
                .send(Op::KvGetOrPut { key, value, reply });
        }
    }

    fn kv_range(&mut self, prefix: String, reply: WitReplyTo) {
        self.storage.store.send(Op::KvRange {
            prefix,
            reply: reply_to(reply),
        });
    }

    fn emit_stat(&mut self, name: String, fields: Vec<u8>) {
        self.storage.stats.emit(name, fields);
    }
}
