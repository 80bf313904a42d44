//! Persistence: what the world saves, loads and mails through storage.

use super::*;

/// What the world keeps for storage.
pub(crate) struct Persistence {
    pub(super) store: Store,
    pub(super) stats: StatsSink,
    /// Persistent entities changed since their last save.
    pub(super) dirty: HashSet<EntityId>,
    /// Entities being loaded: who waits for them, and calls made to them
    /// meanwhile.
    loading: HashMap<EntityId, Loading>,
    /// In a game whose entities are recovered elsewhere if its process
    /// dies: a digest of the private state last written to storage for
    /// each of its persistent entities, so an unchanged one is not written
    /// again.
    written: Option<HashMap<EntityId, u64>>,
}

impl Persistence {
    /// What the world saves through `store`, and emits to `stats`;
    /// `recoverable` also writes the persistent entities' checkpointed
    /// private states there.
    pub(crate) fn new(store: Store, stats: StatsSink, recoverable: bool) -> Self {
        Self {
            store,
            stats,
            dirty: HashSet::new(),
            loading: HashMap::new(),
            written: recoverable.then(HashMap::new),
        }
    }

    /// `id` left this game (destroyed, or gone to another): what this game
    /// wrote of its state is no longer its to compare with.
    pub(super) fn forget_written(&mut self, id: EntityId) {
        if let Some(w) = &mut self.written {
            w.remove(&id);
        }
    }

    /// `id`, persistent, was destroyed: its checkpointed state goes too, so
    /// a later load cannot take a state of this life.
    pub(super) fn drop_state(&mut self, id: EntityId) {
        if self.written.is_some() {
            self.store.send(Op::DropStates { ids: vec![id] });
        }
    }
}

/// An entity on its way from storage.
#[derive(Default)]
struct Loading {
    replies: Vec<ReplyTo>,
    calls: Vec<Call>,
    /// What each reply counts against the plugin that asked, until it has
    /// run.
    charges: Vec<Option<wyrm_dispatcher::Charge>>,
    /// Loaded again after its game died: one that was never saved is
    /// simply gone, not a failure to report.
    reload: bool,
    /// The client that was bound to it there, still connected.
    client: Option<ClientId>,
}

/// A digest of a private state and the version that exported it: equal
/// digests mean (but for a 64-bit collision) equal states.
fn digest(version: &str, state: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    state.hash(&mut h);
    h.finish()
}

/// The storage form of a WIT `reply-to`.
pub(super) fn reply_to(r: WitReplyTo) -> ReplyTo {
    ReplyTo {
        entity: r.entity,
        method: r.method,
        context: r.context,
    }
}

impl World {
    /// The saved form of a persistent entity.
    pub(super) fn row(&self, id: EntityId) -> Option<EntityRow> {
        let t = self.types.get(self.entities.get(&id)?.ty);
        if !t.persistent() {
            return None;
        }
        Some(EntityRow {
            id,
            type_name: t.name.clone(),
            attrs: self.attrs_map(id, |f| f.contains(AttrFlags::PERSISTENT))?,
        })
    }

    /// Saves every persistent entity changed since its last save.
    pub(crate) fn save_dirty(&mut self) {
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

    /// Writes a checkpoint of one plugin (`version`'s private states) to
    /// storage, in a game whose entities are recovered elsewhere if its
    /// process dies: the states of its persistent entities that changed
    /// since they were last written.
    pub(crate) fn store_checkpoint(&mut self, version: &str, states: &HashMap<EntityId, Vec<u8>>) {
        let Some(mut written) = self.storage.written.take() else {
            return;
        };
        let mut changed = Vec::new();
        for (&id, state) in states {
            let persistent = self
                .entities
                .get(&id)
                .is_some_and(|e| self.types.get(e.ty).persistent());
            if !persistent {
                continue;
            }
            let digest = digest(version, state);
            if written.insert(id, digest) != Some(digest) {
                changed.push((id, state.clone()));
            }
        }
        self.storage.written = Some(written);
        if !changed.is_empty() {
            tracing::debug!(states = changed.len(), "checkpoint written to storage");
            self.storage.store.send(Op::SaveStates {
                version: version.to_owned(),
                states: changed,
            });
        }
    }

    /// Saves every persistent entity and waits until it is on disk: the
    /// graceful shutdown.
    pub(crate) fn save_all_and_flush(&mut self) {
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

    pub(super) fn mark_dirty(&mut self, id: EntityId, flags: AttrFlags) {
        if flags.contains(AttrFlags::PERSISTENT) {
            self.storage.dirty.insert(id);
        }
    }

    /// Puts a loaded entity into the world and queues, in order: its
    /// `created` hook, its mailbox, `calls` made while it was loading.
    /// Returns its type.
    pub(super) fn insert_loaded(
        &mut self,
        loaded: LoadedEntity,
        calls: Vec<Call>,
    ) -> Result<TypeIndex, String> {
        let LoadedEntity { row, mailbox, .. } = loaded;
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
                    Some(i) => attrs.set_top(i, v)?,
                    None => {
                        tracing::warn!(entity = row.id, attr = ?k, "saved attribute no longer declared by {}; dropped", t.name)
                    }
                }
            }
        }
        let owner = t.plugin;
        self.count_entity(owner, "load-entity")?;
        self.entities.insert(row.id, Entity::new(ty, attrs, owner));
        self.queue_host(Work::Created(row.id));
        let last = mailbox.last().map(|(seq, ..)| *seq);
        for (_, method, args) in mailbox {
            self.queue_host(Work::Call(Call::from_server(row.id, method, args, None)));
        }
        if let Some(up_to) = last {
            // Once these run, they are not delivered again.
            self.storage.store.send(Op::MailDone {
                entity: row.id,
                up_to,
            });
        }
        for call in calls {
            self.queue_host(Work::Call(call));
        }
        Ok(ty)
    }

    /// Storage answered a load.
    pub(crate) fn finish_load(&mut self, id: EntityId, result: Result<LoadedEntity, String>) {
        let Loading {
            replies,
            calls,
            charges,
            reload,
            client,
        } = self.storage.loading.remove(&id).unwrap_or_default();
        let outcome = result.and_then(|loaded| self.insert_loaded(loaded, calls));
        let err = outcome.as_ref().err().map(String::as_str);
        // What others sent it while it loaded follows what this game did.
        let held = match &outcome {
            Ok(ty) => self.routes.arrived(id, *ty as u32),
            Err(e) => {
                if reload && replies.is_empty() {
                    tracing::debug!(entity = id, "not loaded again after its game died: {e}");
                } else {
                    tracing::warn!(entity = id, "load failed: {e}");
                }
                self.routes.gone(id)
            }
        };
        self.take_routed(held);
        if let Some(client) = client {
            match outcome {
                Ok(_) => self.rebind(client, id),
                Err(_) => self.output(ToGate::Release { client }),
            }
        }
        let charges = charges.into_iter().chain(std::iter::repeat_with(|| None));
        for (r, charge) in replies.into_iter().zip(charges) {
            let msg = storage::reply(&r, err, |out| {
                let _ = rmp::encode::write_uint(out, id);
            });
            self.push_reply(msg, charge);
        }
    }

    /// Queues a reply produced in the game itself (not by storage) for a
    /// request of a plugin's, counted against it (`charge`) until it has
    /// run.
    pub(super) fn push_reply(
        &mut self,
        reply: storage::Reply,
        charge: Option<wyrm_dispatcher::Charge>,
    ) {
        let mut call = Call::from_server(reply.entity, reply.method, reply.args, None);
        call.charge = charge;
        self.deliver_call(call);
    }

    /// Checks a value a plugin wants stored: exactly one MessagePack value,
    /// since it is handed back verbatim inside reply arguments. A refusal
    /// answered takes `charge` with it.
    pub(super) fn checked_value(
        &mut self,
        value: &[u8],
        reply: Option<&ReplyTo>,
        charge: &mut Option<wyrm_dispatcher::Charge>,
    ) -> bool {
        match decode_value(value) {
            Ok(_) => true,
            Err(e) => {
                let why = format!("value not stored: {e}");
                match reply {
                    Some(r) => {
                        let msg = storage::reply(r, Some(&why), |out| {
                            let _ = rmp::encode::write_nil(out);
                        });
                        self.push_reply(msg, charge.take());
                    }
                    None => tracing::warn!(from = ?self.current, "{why}"),
                }
                false
            }
        }
    }

    /// A call to an entity that is not loaded: held for it if it is being
    /// loaded, otherwise handed to storage, which keeps it in the entity's
    /// mailbox if the entity is saved.
    pub(super) fn mail(&mut self, call: Call) {
        match self.storage.loading.get_mut(&call.entity) {
            Some(loading) => loading.calls.push(call),
            None => self.storage.store.send_with(
                Op::Mail {
                    entity: call.entity,
                    method: call.method,
                    args: call.args,
                },
                call.charge,
            ),
        }
    }

    /// Loads `id` (once, however many ask) and answers `reply` when it is
    /// in; an entity already loaded answers at once.
    pub(super) fn request_load(
        &mut self,
        id: EntityId,
        anywhere: bool,
        reply: ReplyTo,
        charge: Option<wyrm_dispatcher::Charge>,
    ) {
        if self.storage.loading.contains_key(&id) {
            return self.load_here(id, reply, charge);
        }
        // Live here, or live (or arriving) on another game: loaded.
        let to = match self.entities.contains_key(&id) {
            true => None,
            false => self.routes.arriving(id, anywhere),
        };
        match to {
            Some(game) if game == self.routes.game() => self.load_here(id, reply, charge),
            // That game loads it and answers; it holds none of this
            // plugin's bytes meanwhile (the reply is small: a method and a
            // context).
            Some(game) => {
                let load = GameInput::Wire(wyrm_wire::ToGame::LoadEntity { entity: id, reply });
                self.routes.ship(game, None, load);
            }
            None => {
                let msg = storage::reply(&reply, None, |out| {
                    let _ = rmp::encode::write_uint(out, id);
                });
                self.push_reply(msg, charge);
            }
        }
    }

    /// Loads `id` on this game with its last checkpointed private state:
    /// the game that ran it died and the dispatcher placed it here (it
    /// holds its messages already). `client` was bound to it there.
    pub(crate) fn reload(&mut self, id: EntityId, client: Option<ClientId>) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.storage.loading.entry(id) {
            e.insert(Loading {
                reload: true,
                client,
                ..Loading::default()
            });
            self.storage.store.send(Op::Recover { id });
        }
    }

    /// Whether `id` is being loaded again after its game died, and not
    /// here yet: what storage read for it brings its private state.
    pub(crate) fn reloading(&self, id: EntityId) -> bool {
        self.storage.loading.get(&id).is_some_and(|l| l.reload) && !self.entities.contains_key(&id)
    }

    /// Loads `id` on this game (the dispatcher holds its messages already)
    /// and answers `reply` once it is in.
    pub(super) fn load_here(
        &mut self,
        id: EntityId,
        reply: ReplyTo,
        charge: Option<wyrm_dispatcher::Charge>,
    ) {
        let first = !self.storage.loading.contains_key(&id);
        let loading = self.storage.loading.entry(id).or_default();
        loading.replies.push(reply);
        loading.charges.push(charge);
        if first {
            self.storage.store.send(Op::Load { id });
        }
    }
}
