//! The game's world: entities, their attributes and client bindings, timers
//! and the queue of work produced by calls. It implements the host imports
//! ([`GameHost`]); the game lends it to a plugin for each call.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rmpv::Value;
use tokio::sync::mpsc::UnboundedSender;
use wyrm_protocol::{AttrOp, ErrorCode, ServerFrame};

use super::attrs::Attrs;
use super::passwords::{Continuation, PasswordPool};
use super::timers::{Timer, Timers};
use super::types::{SwapPlan, TypeIndex, TypeRegistry};
use crate::msg::{ClientId, EntityId, ToDispatcher, ToGame, ToGate};
use crate::plugin::bindings::{AttrFlags, PathSegment, ReplyTo as WitReplyTo, Tag};
use crate::plugin::{Caller, CallerKind, EntityRef, EntityState, GameHost};
use crate::storage::{self, EntityRow, LoadedEntity, Op, ReplyTo, StatsSink, Store};

/// Work a call produced, run after it returns, in order.
#[derive(Debug)]
pub enum Work {
    /// Run the `created` hook.
    Created(EntityId),
    /// Remove the entity and run the `destroyed` hook.
    Destroy(EntityId),
    /// Run the `client-connected` hook.
    ClientConnected(EntityId),
    /// Run the `client-disconnected` hook.
    ClientDisconnected(EntityId),
    /// Run a method.
    Call(Call),
}

/// A method call waiting to run.
#[derive(Debug)]
pub struct Call {
    /// Target entity.
    pub entity: EntityId,
    /// Method name.
    pub method: String,
    /// MessagePack arguments.
    pub args: Vec<u8>,
    /// Who called.
    pub caller: Caller,
    /// Where to report a failure, for client calls.
    pub reply: Option<Reply>,
}

/// The client request a call answers.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// The calling client.
    pub client: ClientId,
    /// Its request id.
    pub req_id: u32,
}

struct Entity {
    ty: TypeIndex,
    attrs: Attrs,
    client: Option<ClientId>,
    /// Destruction is queued; it takes no new client.
    doomed: bool,
}

/// See the module docs.
pub struct World {
    pub(super) types: TypeRegistry,
    entities: HashMap<EntityId, Entity>,
    next_entity: EntityId,
    services: HashMap<String, EntityId>,
    clients: HashMap<ClientId, EntityId>,
    pub(super) timers: Timers,
    pub(super) work: VecDeque<Work>,
    /// The entity whose code is running, for attributing its calls.
    pub(super) current: Option<EntityId>,
    out: UnboundedSender<ToDispatcher>,
    passwords: PasswordPool,
    storage: Persistence,
}

/// What the world keeps for storage.
pub(super) struct Persistence {
    pub store: Store,
    pub stats: StatsSink,
    /// Entity ids may be handed out below this without asking storage.
    pub reserved: u64,
    /// Persistent entities changed since their last save.
    pub dirty: HashSet<EntityId>,
    /// Entities being loaded: who waits for them, and calls made to them
    /// meanwhile.
    pub loading: HashMap<EntityId, Loading>,
}

/// An entity on its way from storage.
#[derive(Default)]
pub(super) struct Loading {
    replies: Vec<ReplyTo>,
    calls: Vec<Call>,
}

fn reply_to(r: WitReplyTo) -> ReplyTo {
    ReplyTo {
        entity: r.entity,
        method: r.method,
        context: r.context,
    }
}

impl World {
    /// A world whose entity ids start at `next_entity` (ids below it may be
    /// saved by earlier runs).
    pub(super) fn new(
        types: TypeRegistry,
        out: UnboundedSender<ToDispatcher>,
        passwords: PasswordPool,
        storage: Persistence,
        next_entity: EntityId,
    ) -> Self {
        Self {
            types,
            entities: HashMap::new(),
            next_entity,
            services: HashMap::new(),
            clients: HashMap::new(),
            timers: Timers::default(),
            work: VecDeque::new(),
            current: None,
            out,
            passwords,
            storage,
        }
    }

    /// Number of live entities.
    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }

    /// Brings up the service entity of `type_name`: the one an earlier run
    /// saved, with its mailbox, or a new one.
    pub(super) fn start_service(
        &mut self,
        type_name: &str,
        saved: Option<LoadedEntity>,
    ) -> Result<EntityId, String> {
        let id = match saved {
            Some(loaded) => {
                let id = loaded.row.id;
                self.insert_loaded(loaded, Vec::new())?;
                id
            }
            None => {
                let id = self.create_entity(type_name, &[])?;
                self.storage.store.send(Op::Service {
                    type_name: type_name.to_owned(),
                    id,
                });
                id
            }
        };
        self.services.insert(type_name.to_owned(), id);
        Ok(id)
    }

    /// The next free entity id, reserving more from storage ahead of need so
    /// no id is ever handed out twice, even across a crash.
    fn allocate_id(&mut self) -> EntityId {
        self.next_entity += 1;
        let id = self.next_entity - 1;
        let p = &mut self.storage;
        if id + storage::ID_BLOCK / 2 >= p.reserved {
            p.reserved += storage::ID_BLOCK;
            p.store.send(Op::ReserveIds {
                ceiling: p.reserved,
            });
        }
        id
    }

    // ---- persistence ----

    /// The saved form of a persistent entity.
    fn row(&self, id: EntityId) -> Option<EntityRow> {
        let e = self.entities.get(&id)?;
        let t = self.types.get(e.ty);
        if !t.persistent() {
            return None;
        }
        let map: Vec<(Value, Value)> = t
            .attrs
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| f.contains(AttrFlags::PERSISTENT))
            .filter_map(|(i, (name, _))| {
                e.attrs
                    .top(i)
                    .map(|v| (Value::from(name.as_str()), v.clone()))
            })
            .collect();
        let mut attrs = Vec::new();
        let _ = rmpv::encode::write_value(&mut attrs, &Value::Map(map));
        Some(EntityRow {
            id,
            type_name: t.name.clone(),
            attrs,
        })
    }

    /// Saves every persistent entity changed since its last save.
    pub(super) fn save_dirty(&mut self) {
        if self.storage.dirty.is_empty() {
            return;
        }
        let mut ids: Vec<EntityId> = self.storage.dirty.drain().collect();
        ids.sort_unstable();
        let rows: Vec<EntityRow> = ids.into_iter().filter_map(|id| self.row(id)).collect();
        if !rows.is_empty() {
            self.storage.store.send(Op::Save { rows, reply: None });
        }
    }

    /// Saves every persistent entity and waits until it is on disk: the
    /// graceful shutdown.
    pub(super) fn save_all_and_flush(&mut self) {
        self.storage.dirty.clear();
        let mut ids: Vec<EntityId> = self.entities.keys().copied().collect();
        ids.sort_unstable();
        let rows: Vec<EntityRow> = ids.into_iter().filter_map(|id| self.row(id)).collect();
        let n = rows.len();
        if !rows.is_empty() {
            self.storage.store.send(Op::Save { rows, reply: None });
        }
        if self.storage.store.flush(Duration::from_secs(30)) {
            tracing::info!(entities = n, "saved every persistent entity");
        } else {
            tracing::error!("storage did not confirm the final save within 30 s");
        }
    }

    fn mark_dirty(&mut self, id: EntityId, flags: AttrFlags) {
        if flags.contains(AttrFlags::PERSISTENT) {
            self.storage.dirty.insert(id);
        }
    }

    /// Puts a loaded entity into the world and queues, in order: its
    /// `created` hook, its mailbox, `calls` made while it was loading.
    fn insert_loaded(&mut self, loaded: LoadedEntity, calls: Vec<Call>) -> Result<(), String> {
        let LoadedEntity { row, mailbox } = loaded;
        let ty = self.types.find(&row.type_name).ok_or_else(|| {
            format!(
                "saved entity {} is of type {}, which no plugin declares",
                row.id, row.type_name
            )
        })?;
        if self.entities.contains_key(&row.id) {
            return Err(format!("entity {} is already loaded", row.id));
        }
        let t = self.types.get(ty);
        let mut attrs = Attrs::new(t.attrs.len());
        if let Value::Map(entries) = decode_value(&row.attrs)? {
            for (k, v) in entries {
                match k.as_str().and_then(|name| t.attr(name)) {
                    Some(i) => attrs.set(i, &[], v)?,
                    None => {
                        tracing::warn!(entity = row.id, attr = ?k, "saved attribute no longer declared by {}; dropped", t.name)
                    }
                }
            }
        }
        self.entities.insert(
            row.id,
            Entity {
                ty,
                attrs,
                client: None,
                doomed: false,
            },
        );
        self.work.push_back(Work::Created(row.id));
        let last = mailbox.last().map(|(seq, ..)| *seq);
        for (_, method, args) in mailbox {
            self.work.push_back(Work::Call(Call {
                entity: row.id,
                method,
                args,
                caller: Caller {
                    kind: CallerKind::Server,
                    entity: None,
                },
                reply: None,
            }));
        }
        if let Some(up_to) = last {
            // Once these run, they are not delivered again.
            self.storage.store.send(Op::MailDone {
                entity: row.id,
                up_to,
            });
        }
        self.work.extend(calls.into_iter().map(Work::Call));
        Ok(())
    }

    /// Storage answered a load.
    pub(super) fn finish_load(&mut self, id: EntityId, result: Result<LoadedEntity, String>) {
        let Loading { replies, calls } = self.storage.loading.remove(&id).unwrap_or_default();
        let outcome = result.and_then(|loaded| self.insert_loaded(loaded, calls));
        let err = outcome.as_ref().err().map(String::as_str);
        if let Some(e) = err {
            tracing::warn!(entity = id, "load failed: {e}");
        }
        for r in replies {
            let msg = storage::reply(&r, err, |out| {
                let _ = rmp::encode::write_uint(out, id);
            });
            self.push_continuation(msg);
        }
    }

    /// Queues a reply produced in the game itself (not by storage).
    fn push_continuation(&mut self, msg: ToGame) {
        if let ToGame::Continuation {
            entity,
            method,
            args,
        } = msg
        {
            self.work.push_back(Work::Call(Call {
                entity,
                method,
                args,
                caller: Caller {
                    kind: CallerKind::Server,
                    entity: None,
                },
                reply: None,
            }));
        }
    }

    /// Checks a value a plugin wants stored: exactly one MessagePack value,
    /// since it is handed back verbatim inside reply arguments.
    fn checked_value(&mut self, value: &[u8], reply: Option<&ReplyTo>) -> bool {
        match decode_value(value) {
            Ok(_) => true,
            Err(e) => {
                let why = format!("value not stored: {e}");
                match reply {
                    Some(r) => {
                        let msg = storage::reply(r, Some(&why), |out| {
                            let _ = rmp::encode::write_nil(out);
                        });
                        self.push_continuation(msg);
                    }
                    None => tracing::warn!(from = ?self.current, "{why}"),
                }
                false
            }
        }
    }

    /// The plugin that runs `id` and the reference to pass it.
    pub(super) fn entity_ref(&self, id: EntityId) -> Option<(usize, EntityRef)> {
        let e = self.entities.get(&id)?;
        let t = self.types.get(e.ty);
        Some((t.plugin, EntityRef { id, kind: t.kind }))
    }

    /// The ids of every live entity a plugin runs, in ascending order.
    pub(super) fn ids_of_plugin(&self, plugin: usize) -> Vec<EntityId> {
        let mut ids: Vec<EntityId> = self
            .entities
            .iter()
            .filter(|(_, e)| self.types.get(e.ty).plugin == plugin)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// What a fresh instance of `plugin` must take over: every live entity
    /// it runs, with its state from `saved` (a checkpoint) where there is
    /// one, fresh otherwise.
    pub(super) fn states_for_revival(
        &self,
        plugin: usize,
        saved: Option<&HashMap<EntityId, Vec<u8>>>,
    ) -> Vec<EntityState> {
        self.ids_of_plugin(plugin)
            .into_iter()
            .filter_map(|id| {
                let t = self.types.get(self.entities.get(&id)?.ty);
                Some(EntityState {
                    entity: EntityRef { id, kind: t.kind },
                    type_name: t.name.clone(),
                    data: saved.and_then(|s| s.get(&id)).cloned().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Checks a new version of `plugin` against the live entities.
    pub(super) fn plan_swap(
        &self,
        plugin: usize,
        info: &crate::plugin::PluginInfo,
    ) -> Result<SwapPlan, String> {
        self.types.plan_swap(plugin, info, |ty| {
            self.entities.values().any(|e| e.ty == ty)
        })
    }

    /// Switches the registry to a new version's types, moving attribute
    /// values whose declared position changed.
    pub(super) fn apply_swap(&mut self, plan: SwapPlan) {
        for (ty, map, len) in plan.attr_moves() {
            for e in self.entities.values_mut().filter(|e| e.ty == ty) {
                e.attrs.remap(map, len);
            }
        }
        self.types.apply(plan);
    }

    // ---- clients ----

    /// A client connected: create its boot entity and bind it.
    pub(super) fn connect_client(
        &mut self,
        client: ClientId,
        boot_type: &str,
    ) -> Result<EntityId, String> {
        let id = self.create_entity(boot_type, &[])?;
        self.bind(client, id);
        self.work.push_back(Work::ClientConnected(id));
        Ok(id)
    }

    /// A client went away: unbind it from its entity.
    pub(super) fn disconnect_client(&mut self, client: ClientId) {
        let Some(id) = self.clients.remove(&client) else {
            return;
        };
        if let Some(e) = self.entities.get_mut(&id) {
            e.client = None;
            self.work.push_back(Work::ClientDisconnected(id));
        }
    }

    /// Checks a client's call and queues it, or answers with an error.
    pub(super) fn client_call(
        &mut self,
        client: ClientId,
        req_id: u32,
        entity: EntityId,
        method: String,
        args: Vec<u8>,
    ) {
        let reply = Some(Reply { client, req_id });
        let Some(target) = self.entities.get(&entity) else {
            return self.reply_error(
                reply,
                ErrorCode::NoSuchEntity,
                format!("no entity {entity}"),
            );
        };
        let t = self.types.get(target.ty);
        let own = target.client == Some(client);
        let Some(exposure) = t.method(&method) else {
            let msg = format!("{} has no method {method:?}", t.name);
            return self.reply_error(reply, ErrorCode::NoSuchMethod, msg);
        };
        use crate::plugin::bindings::Exposure;
        let allowed = match exposure {
            Exposure::Server => false,
            Exposure::OwnClient => own,
            Exposure::AllClients => true,
        };
        if !allowed {
            let who = if matches!(exposure, Exposure::Server) {
                "the server"
            } else {
                "its own client"
            };
            let msg = format!("{}.{method} may only be called by {who}", t.name);
            return self.reply_error(reply, ErrorCode::NotAllowed, msg);
        }
        let caller = Caller {
            kind: if own {
                CallerKind::OwnClient
            } else {
                CallerKind::OtherClient
            },
            entity: self.clients.get(&client).copied(),
        };
        self.work.push_back(Work::Call(Call {
            entity,
            method,
            args,
            caller,
            reply,
        }));
    }

    /// Tells a client its request failed.
    pub(super) fn reply_error(&self, reply: Option<Reply>, code: ErrorCode, message: String) {
        if let Some(Reply { client, req_id }) = reply {
            self.send(
                client,
                &ServerFrame::Error {
                    req_id,
                    code,
                    message,
                },
            );
        }
    }

    fn bind(&mut self, client: ClientId, id: EntityId) {
        let Some(e) = self.entities.get_mut(&id) else {
            return;
        };
        e.client = Some(client);
        let ty = e.ty;
        self.clients.insert(client, id);
        self.to_gate(ToGate::Bind {
            client,
            entity: Some(id),
        });
        let frame = ServerFrame::Create {
            entity: id,
            type_name: self.types.get(ty).name.clone(),
            own: true,
            attrs: self.visible_attrs(id),
        };
        self.send(client, &frame);
    }

    /// A MessagePack map of the attributes an entity's owner may see.
    fn visible_attrs(&self, id: EntityId) -> Vec<u8> {
        let mut map = Vec::new();
        if let Some(e) = self.entities.get(&id) {
            for (i, (name, flags)) in self.types.get(e.ty).attrs.iter().enumerate() {
                if !client_visible(*flags) {
                    continue;
                }
                if let Some(v) = e.attrs.top(i) {
                    map.push((Value::from(name.as_str()), v.clone()));
                }
            }
        }
        let mut out = Vec::new();
        let _ = rmpv::encode::write_value(&mut out, &Value::Map(map));
        out
    }

    // ---- work the game runs ----

    /// Removes a doomed entity; returns its reference for the `destroyed`
    /// hook.
    pub(super) fn remove_entity(&mut self, id: EntityId) -> Option<(usize, EntityRef)> {
        let r = self.entity_ref(id)?;
        // A persistent entity is saved as it leaves (and stays saved, to be
        // loaded again).
        let row = self.row(id);
        let e = self.entities.remove(&id)?;
        if let Some(client) = e.client {
            self.clients.remove(&client);
            self.send(client, &ServerFrame::Destroy { entity: id });
            self.to_gate(ToGate::Bind {
                client,
                entity: None,
            });
        }
        self.timers.cancel_entity(id);
        self.services.retain(|_, s| *s != id);
        self.storage.dirty.remove(&id);
        if let Some(row) = row {
            self.storage.store.send(Op::Save {
                rows: vec![row],
                reply: None,
            });
        }
        Some(r)
    }

    /// Fires due timers into the work queue.
    pub(super) fn fire_timers(&mut self, now: std::time::Instant) {
        let mut due = Vec::new();
        self.timers.take_due(now, &mut due);
        for t in due {
            self.work.push_back(Work::Call(Call {
                entity: t.entity,
                method: t.method,
                args: t.args,
                caller: Caller {
                    kind: CallerKind::Server,
                    entity: None,
                },
                reply: None,
            }));
        }
    }

    // ---- output ----

    fn to_gate(&self, msg: ToGate) {
        // The dispatcher outlives the game except at shutdown, when output
        // no longer matters.
        let _ = self.out.send(ToDispatcher::FromGame(msg));
    }

    fn send(&self, client: ClientId, frame: &ServerFrame) {
        self.to_gate(ToGate::Send {
            client,
            frame: Bytes::from(frame.to_bytes()),
        });
    }

    // ---- attribute helpers ----

    /// Resolves an attribute path's first step; returns the entity, the
    /// attribute's index and flags.
    fn attr_target(
        &mut self,
        id: EntityId,
        path: &[PathSegment],
    ) -> Result<(&mut Entity, usize, AttrFlags), String> {
        let e = self
            .entities
            .get_mut(&id)
            .ok_or_else(|| format!("no entity {id}"))?;
        let t = self.types.get(e.ty);
        let Some(PathSegment::Key(name)) = path.first() else {
            return Err("an attribute path starts with the attribute's name".into());
        };
        let index = t
            .attr(name)
            .ok_or_else(|| format!("{} declares no attribute {name:?}", t.name))?;
        Ok((e, index, t.attrs[index].1))
    }

    /// Pushes a change to the entity's owner if the attribute is visible.
    fn push_attr(
        &self,
        client: Option<ClientId>,
        flags: AttrFlags,
        id: EntityId,
        op: AttrOp,
        path: &[PathSegment],
        value: &[u8],
    ) {
        let Some(client) = client else { return };
        if !client_visible(flags) {
            return;
        }
        let path = path
            .iter()
            .map(|s| match s {
                PathSegment::Key(k) => wyrm_protocol::PathSegment::Key(k.clone()),
                PathSegment::Index(i) => wyrm_protocol::PathSegment::Index(*i),
            })
            .collect();
        let frame = ServerFrame::Attr {
            entity: id,
            op,
            path,
            value: value.to_vec(),
        };
        self.send(client, &frame);
    }

    fn continuation(&self, id: EntityId, method: String, context: Vec<u8>) -> Option<Continuation> {
        if !self.entities.contains_key(&id) {
            tracing::warn!(entity = id, %method, "password reply target does not exist; dropped");
            return None;
        }
        let context = if context.is_empty() || decode_value(&context).is_ok() {
            context
        } else {
            tracing::warn!(entity = id, %method, "password context is not one MessagePack value; replaced by nil");
            Vec::new()
        };
        Some(Continuation {
            entity: id,
            method,
            context,
        })
    }
}

/// Whether any client may see an attribute with these flags.
fn client_visible(flags: AttrFlags) -> bool {
    flags.contains(AttrFlags::OWN_CLIENT) || flags.contains(AttrFlags::ALL_CLIENTS)
}

/// Decodes exactly one MessagePack value.
fn decode_value(bytes: &[u8]) -> Result<Value, String> {
    let mut cur = bytes;
    let v = rmpv::decode::read_value(&mut cur)
        .map_err(|e| format!("invalid MessagePack value: {e}"))?;
    if !cur.is_empty() {
        return Err("trailing bytes after a MessagePack value".into());
    }
    Ok(v)
}

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
            let call = Call {
                entity: id,
                method,
                args,
                caller: Caller {
                    kind: CallerKind::Server,
                    entity: self.current,
                },
                reply: None,
            };
            match self.storage.loading.get_mut(&id) {
                // On its way: delivered right after it arrives.
                Some(loading) => loading.calls.push(call),
                // Not loaded: storage keeps it if the entity is saved.
                None => self.storage.store.send(Op::Mail {
                    entity: id,
                    method: call.method,
                    args: call.args,
                }),
            }
            return;
        };
        if self.types.get(target.ty).method(&method).is_none() {
            let ty = &self.types.get(target.ty).name;
            tracing::warn!(entity = id, %method, from = ?self.current, "call to an undeclared method {ty}.{method} dropped");
            return;
        }
        self.work.push_back(Work::Call(Call {
            entity: id,
            method,
            args,
            caller: Caller {
                kind: CallerKind::Server,
                entity: self.current,
            },
            reply: None,
        }));
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
        self.to_gate(ToGate::CallFiltered {
            filter: filter.into_iter().map(|t| (t.key, t.value)).collect(),
            method,
            args: Bytes::from(args),
        });
    }

    fn broadcast(&mut self, method: String, args: Vec<u8>) {
        self.to_gate(ToGate::Broadcast {
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
        if let Some(e) = self.entities.get_mut(&from) {
            e.client = None;
        }
        self.send(client, &ServerFrame::Destroy { entity: from });
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
        self.to_gate(ToGate::SetTag { client, key, value });
        Ok(())
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
        let (e, index, flags) = self.attr_target(id, path)?;
        e.attrs.set(index, &path[1..], v)?;
        let client = e.client;
        self.push_attr(client, flags, id, AttrOp::Set, path, value);
        self.mark_dirty(id, flags);
        Ok(())
    }

    fn attr_delete(&mut self, id: EntityId, path: &[PathSegment]) -> Result<(), String> {
        let (e, index, flags) = self.attr_target(id, path)?;
        e.attrs.delete(index, &path[1..])?;
        let client = e.client;
        self.push_attr(client, flags, id, AttrOp::Delete, path, &[]);
        self.mark_dirty(id, flags);
        Ok(())
    }

    fn attr_append(
        &mut self,
        id: EntityId,
        path: &[PathSegment],
        value: &[u8],
    ) -> Result<(), String> {
        let v = decode_value(value)?;
        let (e, index, flags) = self.attr_target(id, path)?;
        e.attrs.append(index, &path[1..], v)?;
        let client = e.client;
        self.push_attr(client, flags, id, AttrOp::Append, path, value);
        self.mark_dirty(id, flags);
        Ok(())
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
        let reply = reply_to(reply);
        if self.entities.contains_key(&id) {
            let msg = storage::reply(&reply, None, |out| {
                let _ = rmp::encode::write_uint(out, id);
            });
            return self.push_continuation(msg);
        }
        let loading = self.storage.loading.entry(id).or_default();
        loading.replies.push(reply);
        if loading.replies.len() == 1 {
            self.storage.store.send(Op::Load { id });
        }
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
