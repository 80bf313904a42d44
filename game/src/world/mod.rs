//! The game's world: entities, their attributes and client bindings, timers
//! and the queue of work produced by calls. It implements the host imports
//! ([`GameHost`]); the game lends it to a plugin for each call.

mod guard;
mod imports;
mod migrate;
mod persist;
mod remote;
mod sync;
mod view;
mod work;

pub use guard::GuestLimits;
pub(crate) use persist::Persistence;
pub use work::WorkQueue;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use rmpv::Value;
use wyrm_protocol::attr::Segment;
use wyrm_protocol::{AttrOp, ErrorCode, ServerFrame};

use super::attrs::Attrs;
use super::passwords::{Continuation, PasswordPool};
use super::space::Spaces;
use super::timers::{Timer, Timers};
use super::types::{SwapPlan, TypeIndex, TypeRegistry};
use super::{StatsSink, Store};
use crate::msg::{ClientId, EntityId, GameInput, PluginIndex, ToGate};
use wyrm_runtime::bindings::{
    AttrFlags, Locality, PathSegment, Placement, Position, ReplyTo as WitReplyTo, Tag,
};
use wyrm_runtime::{Caller, CallerKind, EntityRef, EntityState, GameHost};
use wyrm_storage::{self as storage, EntityRow, LoadedEntity, Op, ReplyTo};
use wyrm_wire::IdMap;

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
    /// Run a space's `tick`.
    Tick { space: EntityId, dt_ms: u32 },
}

impl Work {
    /// The entity the work is for.
    pub fn entity(&self) -> EntityId {
        match self {
            Work::Created(id)
            | Work::Destroy(id)
            | Work::ClientConnected(id)
            | Work::ClientDisconnected(id)
            | Work::Tick { space: id, .. } => *id,
            Work::Call(c) => c.entity,
        }
    }
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
    /// What the call counts against the plugin that made it, until it has
    /// run (`[limits] queued_bytes`).
    pub charge: Option<wyrm_dispatcher::Charge>,
    /// The timer that fired it, if one did: a repeating timer does not
    /// fire again while its last call still waits.
    pub timer: Option<u64>,
}

impl Call {
    /// A call made by the server: by entity `from`, or by the host itself
    /// (timers, replies) when `None`.
    pub fn from_server(
        entity: EntityId,
        method: String,
        args: Vec<u8>,
        from: Option<EntityId>,
    ) -> Self {
        Self {
            entity,
            method,
            args,
            caller: Caller {
                kind: CallerKind::Server,
                entity: from,
            },
            reply: None,
            charge: None,
            timer: None,
        }
    }
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
    /// Its client may move it (`allow-client-moves`).
    client_moves: bool,
    /// The plugin (slot) it counts against (`[limits] entities`).
    counted: u32,
}

impl Entity {
    /// A new entity of type `ty`, counted against plugin `counted`, with
    /// no client.
    fn new(ty: TypeIndex, attrs: Attrs, counted: usize) -> Self {
        Self {
            ty,
            attrs,
            client: None,
            doomed: false,
            client_moves: false,
            counted: counted as u32,
        }
    }
}

/// A connected client, as the game knows it.
struct ClientView {
    /// The entity it is bound to.
    entity: EntityId,
    /// What it was last sent of positions.
    sync: sync::PositionSync,
}

/// See the module docs.
pub struct World {
    pub(super) types: TypeRegistry,
    entities: IdMap<Entity>,
    ids: std::sync::Arc<super::EntityIds>,
    /// Ids past this process's own that the dispatcher said were handed
    /// out (by another process of a cluster): asked once, not per call.
    handed_out: HashSet<EntityId>,
    /// What the dispatcher is told of this world's entities, and where
    /// services are found.
    routes: crate::msg::GameRoutes,
    clients: IdMap<ClientView, ClientId>,
    pub(super) timers: Timers,
    pub(super) work: WorkQueue,
    /// The entity whose code is running, for attributing its calls.
    pub(super) current: Option<EntityId>,
    /// The plugin whose code is running (its slot), for the rules of
    /// [`guard`]: `None` while the host itself acts.
    calling: Option<usize>,
    /// Per plugin, in slot order: its name and what it has queued.
    books: Vec<guard::PluginBook>,
    limits: GuestLimits,
    /// Warnings about what plugins did, kept to a rate.
    throttle: wyrm_runtime::logs::Throttle,
    /// Entities of one plugin's type that another plugin created and may
    /// hand its client to (the creator's slot), until one is bound.
    handoffs: HashMap<EntityId, usize>,
    /// Output for clients since the last batch went to the gate.
    out: Vec<ToGate>,
    /// What waits for this round's output to go to the gate: clients
    /// handed to, or leaving with, entities on other games (see
    /// [`remote`]).
    outbox: Vec<remote::Outgoing>,
    /// Where one client's `Positions` frame is written.
    positions_buf: Vec<u8>,
    passwords: PasswordPool,
    storage: Persistence,
    pub(super) spaces: Spaces,
    /// AOI events for logic, delivered at the next tick.
    aoi_pending: Vec<wyrm_aoi::AoiEvent>,
}

impl World {
    /// A world whose entity ids come from `ids` (ids below its first may be
    /// saved by earlier runs).
    pub(super) fn new(
        types: TypeRegistry,
        spaces: Spaces,
        passwords: PasswordPool,
        storage: Persistence,
        routes: crate::msg::GameRoutes,
        ids: std::sync::Arc<super::EntityIds>,
        limits: GuestLimits,
    ) -> Self {
        let game = routes.game().0;
        Self {
            types,
            entities: IdMap::default(),
            ids,
            handed_out: HashSet::new(),
            routes,
            clients: IdMap::default(),
            timers: Timers::of_game(game),
            work: WorkQueue::new(1),
            current: None,
            calling: None,
            books: Vec::new(),
            limits,
            throttle: Default::default(),
            handoffs: HashMap::new(),
            out: Vec::new(),
            outbox: Vec::new(),
            positions_buf: Vec::new(),
            passwords,
            storage,
            spaces,
            aoi_pending: Vec::new(),
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
                let ty = self.insert_loaded(loaded, Vec::new())?;
                self.routes.created(id, ty as u32);
                id
            }
            None => {
                let id = self.create_entity(type_name, &[], Locality::Here)?;
                self.storage.store.send(Op::Service {
                    type_name: type_name.to_owned(),
                    id,
                });
                id
            }
        };
        self.routes.register_service(type_name, id);
        Ok(id)
    }

    /// The lane of the work queue work for `id` waits in: the calling
    /// plugin's for what its code produces, otherwise that of the plugin
    /// that runs `id`.
    pub(super) fn lane_of(&self, id: EntityId) -> usize {
        self.calling.or_else(|| self.owner(id)).unwrap_or(0)
    }

    /// Queues work the host itself produced (not a plugin's code).
    pub(crate) fn queue_host(&mut self, work: Work) {
        let lane = self.owner(work.entity()).unwrap_or(0);
        self.work.push(lane, work);
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
        info: &wyrm_runtime::PluginInfo,
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
        let id = self.create_entity(boot_type, &[], Locality::Here)?;
        self.bind(client, id);
        self.queue_host(Work::ClientConnected(id));
        Ok(id)
    }

    /// A client went away: unbind it from its entity.
    pub(super) fn disconnect_client(&mut self, client: ClientId) {
        let Some(ClientView { entity: id, .. }) = self.clients.remove(&client) else {
            return;
        };
        if let Some(e) = self.entities.get_mut(&id) {
            e.client = None;
            self.queue_host(Work::ClientDisconnected(id));
        }
    }

    /// Waits until the dispatcher has done what this game told it, before
    /// frames go out (see `GameRoutes::settle`).
    pub(crate) fn settle_routes(&self) {
        self.routes.settle();
    }

    /// The node of the cluster is gone, and every client with it (its
    /// gates let them go): each is disconnected here, as if it had left.
    pub(crate) fn node_lost(&mut self) {
        tracing::warn!(
            clients = self.clients.len(),
            "the cluster's node is gone: this game's players are disconnected"
        );
        self.let_clients_go();
    }

    fn let_clients_go(&mut self) {
        let clients: Vec<ClientId> = self.clients.keys().copied().collect();
        for client in clients {
            self.disconnect_client(client);
        }
    }

    /// The node is back (its dispatcher restarted): every entity here is
    /// reported to it; one another game reported first stays there, and
    /// this game's copy is forgotten (not saved: the other is the one that
    /// lives on).
    pub(crate) fn rejoin(&mut self) {
        // Any that connected through the old node in its last moments.
        self.let_clients_go();
        let live = self
            .entities
            .iter()
            .map(|(id, e)| (*id, e.ty as u32))
            .collect();
        for id in self.routes.rejoin(live) {
            tracing::warn!(
                entity = id,
                "another game runs this entity since the node restarted: dropped here"
            );
            self.take_out(id);
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
        use wyrm_runtime::bindings::Exposure;
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
            entity: match self.clients.get(&client) {
                Some(c) => Some(c.entity),
                // Its entity is on another game.
                None => self.routes.client_entity(client),
            },
        };
        self.queue_host(Work::Call(Call {
            entity,
            method,
            args,
            caller,
            reply,
            charge: None,
            timer: None,
        }));
    }

    /// Takes messages routed here by entity — what the dispatcher held for
    /// an entity while it was on its way here (or, when it is gone, to be
    /// answered as calls to a missing entity) — in order, behind everything
    /// already queued.
    pub(super) fn take_routed(&mut self, held: std::collections::VecDeque<GameInput>) {
        for msg in held {
            self.take(msg);
        }
    }

    /// Tells a client its request failed.
    pub(super) fn reply_error(&mut self, reply: Option<Reply>, code: ErrorCode, message: String) {
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
        self.clients.insert(
            client,
            ClientView {
                entity: id,
                sync: Default::default(),
            },
        );
        self.routes.bound(client, Some(id));
        let plugin = self.owner(id).unwrap_or(0) as PluginIndex;
        self.output(ToGate::Bind {
            client,
            entity: Some(id),
            plugin,
        });
        self.show_view(client, id);
    }

    /// Moves `client` from `from` to `to`, both on this game.
    pub(super) fn hand_over(
        &mut self,
        client: ClientId,
        from: EntityId,
        to: EntityId,
    ) -> Result<(), String> {
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
        self.handoffs.remove(&to);
        self.hide_view(client, from);
        if let Some(e) = self.entities.get_mut(&from) {
            e.client = None;
        }
        let lane = self.lane_of(from);
        self.work.push(lane, Work::ClientDisconnected(from));
        self.bind(client, to);
        let lane = self.lane_of(to);
        self.work.push(lane, Work::ClientConnected(to));
        Ok(())
    }

    /// A MessagePack map of the attributes of `id` a client may see: its
    /// owner (`own`) or a client that sees it.
    fn visible_attrs(&self, id: EntityId, own: bool) -> Vec<u8> {
        self.attrs_map(id, |flags| {
            if own {
                client_visible(flags)
            } else {
                flags.contains(AttrFlags::ALL_CLIENTS)
            }
        })
        .unwrap_or_else(|| vec![0x80])
    }

    /// The attributes of `id` whose flags `keep` takes, as a MessagePack
    /// map by name; `None` if there is no such entity.
    fn attrs_map(&self, id: EntityId, keep: impl Fn(AttrFlags) -> bool) -> Option<Vec<u8>> {
        let e = self.entities.get(&id)?;
        let map: Vec<(Value, Value)> = self
            .types
            .get(e.ty)
            .attrs
            .iter()
            .enumerate()
            .filter(|(_, (_, flags))| keep(*flags))
            .filter_map(|(i, (name, _))| {
                e.attrs
                    .top(i)
                    .map(|v| (Value::from(name.as_str()), v.clone()))
            })
            .collect();
        let mut out = Vec::new();
        let _ = rmpv::encode::write_value(&mut out, &Value::Map(map));
        Some(out)
    }

    // ---- work the game runs ----

    /// Removes a doomed entity; returns its reference for the `destroyed`
    /// hook.
    pub(super) fn remove_entity(&mut self, id: EntityId) -> Option<(usize, EntityRef)> {
        let r = self.entity_ref(id)?;
        // A persistent entity is saved as it leaves (and stays saved, to be
        // loaded again).
        let row = self.row(id);
        let e = self.take_out(id)?;
        if let Some(client) = e.client {
            self.clients.remove(&client);
            self.routes.bound(client, None);
            self.send(client, &ServerFrame::Destroy { entity: id });
            self.output(ToGate::Bind {
                client,
                entity: None,
                plugin: 0,
            });
        }
        let held = self.routes.gone(id);
        self.take_routed(held);
        if let Some(row) = row {
            self.storage.store.send(Op::Save {
                rows: vec![row],
                reply: None,
            });
            self.storage.drop_state(id);
        }
        Some(r)
    }

    /// Takes `id` out of this game's own state — its space, its count, its
    /// timers, its hand-offs, its pending save and what it knows it wrote
    /// of its private state — and returns it; what the
    /// rest of the server knows of it is the caller's to settle.
    fn take_out(&mut self, id: EntityId) -> Option<Entity> {
        self.end_space(id);
        self.leave_space_now(id);
        let e = self.entities.remove(&id)?;
        self.uncount_entity(e.counted as usize);
        self.handoffs.remove(&id);
        self.timers.cancel_entity(id);
        self.storage.dirty.remove(&id);
        self.storage.forget_written(id);
        Some(e)
    }

    /// Fires due timers into the work queue, at most `max`: the rest stay
    /// due, for the next round.
    pub(super) fn fire_timers(&mut self, now: std::time::Instant, max: usize) {
        let mut due = Vec::new();
        self.timers.take_due(now, max, &mut due);
        for (id, t) in due {
            let mut call = Call::from_server(t.entity, t.method, t.args, None);
            call.timer = Some(id);
            self.work.push(t.plugin, Work::Call(call));
        }
    }

    // ---- output ----

    /// What was produced for clients since the last call, in order, and
    /// what it counts against the plugins that produced it.
    pub(super) fn take_output(&mut self) -> (Vec<ToGate>, Vec<wyrm_dispatcher::Charge>) {
        (std::mem::take(&mut self.out), self.take_output_charges())
    }

    fn output(&mut self, msg: ToGate) {
        self.out.push(msg);
    }

    fn send(&mut self, client: ClientId, frame: &ServerFrame) {
        self.send_bytes(client, Bytes::from(frame.to_bytes()));
    }

    fn send_bytes(&mut self, client: ClientId, frame: Bytes) {
        self.output(ToGate::Send { client, frame });
    }

    /// Sends one frame, encoded once, to several clients (sent with the
    /// next tick; a frame for one client goes at once).
    fn send_to_all(&mut self, clients: Vec<ClientId>, frame: &ServerFrame) {
        let frame = Bytes::from(frame.to_bytes());
        match clients[..] {
            [] => {}
            [client] => self.send_bytes(client, frame),
            _ => self.output(ToGate::SendMany { clients, frame }),
        }
    }

    // ---- attribute helpers ----

    /// Resolves an attribute path's first step; returns the entity, the
    /// attribute's index and flags.
    fn attr_target<S: Segment>(
        &mut self,
        id: EntityId,
        path: &[S],
    ) -> Result<(&mut Entity, usize, AttrFlags), String> {
        let e = self
            .entities
            .get_mut(&id)
            .ok_or_else(|| format!("no entity {id}"))?;
        let t = self.types.get(e.ty);
        let Some(name) = path.first().and_then(Segment::key) else {
            return Err("an attribute path starts with the attribute's name".into());
        };
        // Clients apply the whole path, so the whole path is what is held to
        // the protocol's limit (the edit below sees it without the name).
        if path.len() > wyrm_protocol::attr::MAX_PATH {
            return Err(format!(
                "an attribute path of {} steps is longer than the limit of {}",
                path.len(),
                wyrm_protocol::attr::MAX_PATH
            ));
        }
        let index = t
            .attr(name)
            .ok_or_else(|| format!("{} declares no attribute {name:?}", t.name))?;
        Ok((e, index, t.attrs[index].1))
    }

    /// Applies `change` to the attribute at `path`, then pushes it (`op`,
    /// `value`) to the clients that may see it and marks the entity for
    /// saving. Every attribute change goes through here.
    fn change_attr(
        &mut self,
        id: EntityId,
        path: &[PathSegment],
        op: AttrOp,
        value: &[u8],
        change: impl FnOnce(&mut Attrs, usize, &[PathSegment]) -> Result<(), String>,
    ) -> Result<(), String> {
        let (e, index, flags) = self.attr_target(id, path)?;
        change(&mut e.attrs, index, &path[1..])?;
        self.push_attr(flags, id, op, path, value);
        self.mark_dirty(id, flags);
        Ok(())
    }

    /// Pushes a change to the clients that may see the attribute: the
    /// owner, and for an all-clients attribute everyone who sees the entity.
    fn push_attr(
        &mut self,
        flags: AttrFlags,
        id: EntityId,
        op: AttrOp,
        path: &[PathSegment],
        value: &[u8],
    ) {
        if !client_visible(flags) {
            return;
        }
        let audience = self.audience(id, flags.contains(AttrFlags::ALL_CLIENTS));
        if audience.is_empty() {
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
        self.send_to_all(audience, &frame);
    }

    fn continuation(
        &mut self,
        id: EntityId,
        method: String,
        context: Vec<u8>,
        charge: Option<wyrm_dispatcher::Charge>,
    ) -> Option<Continuation> {
        if self.type_anywhere(id).is_none() {
            let msg = format!("a password reply to entity {id}, which does not exist; dropped");
            self.refuse("password reply", msg);
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
            charge,
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

#[cfg(test)]
mod tests;
