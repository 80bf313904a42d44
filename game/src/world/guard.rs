//! What a plugin may ask of the host: whose entities it may act on, how
//! large what it hands over may be, and how much it may have queued.
//!
//! Every entity belongs to the plugin that declares its type. A plugin acts
//! on its own entities — destroys them, sets their attributes, speaks to
//! their clients, moves them, arms timers on them, has replies sent to them
//! — and only calls the entities of other plugins, through the methods
//! those expose to clients (as another client would: the call arrives with
//! caller kind `other-client`). It may create entities of any plugin's
//! types, without initial attributes (their plugin sets those), and give
//! its own client to an entity of another plugin that it created itself
//! and that never had a client: the way one plugin (a login) hands players
//! on to another (the game).
//!
//! A limit a plugin passes fails the import with a message naming the
//! limit and its value — as the import's error value, or, for an import
//! WIT gives none, by stopping the plugin's call — and is logged, at most
//! once a second per plugin and kind.

use super::*;
use wyrm_dispatcher::{Charge, Held, ITEM_BYTES};

/// Longest name a plugin may pass: a method, a type, a space kind, a tag's
/// key or value, an attribute path's key, a storage key, a stat's name, a
/// password or its hash.
pub const NAME_BYTES: usize = 1024;
/// Most tags a filter may hold (`call-filtered-clients`).
pub const FILTER_TAGS: usize = 64;
/// Most steps an attribute path may have, its name included: each step can
/// nest the value a level deeper, and clients apply the whole path too
/// (the protocol's limit for an attribute edit).
pub const PATH_STEPS: usize = wyrm_protocol::attr::MAX_PATH;

/// The `[limits]` the world enforces on plugins (see
/// [`LimitsConfig`](crate::config::LimitsConfig)).
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    /// `[limits] value_bytes`.
    pub value_bytes: usize,
    /// `[limits] queued_bytes`.
    pub queued_bytes: usize,
    /// `[limits] timer_bytes`.
    pub timer_bytes: usize,
    /// `[limits] entities`.
    pub entities: usize,
    /// The most bytes of arguments (or of an attribute's value) a frame a
    /// plugin sends clients may carry: what `[net] client_queue_bytes`
    /// leaves after the frame's header and method name. A larger frame
    /// could never be queued for a client: it would only get the client
    /// dropped as too slow.
    pub client_frame_bytes: usize,
}

impl GuestLimits {
    /// The limits `[limits]` sets, for clients whose queues hold
    /// `client_queue_bytes` (`[net] client_queue_bytes`).
    pub fn new(limits: &crate::config::LimitsConfig, client_queue_bytes: usize) -> Self {
        Self {
            value_bytes: limits.value_bytes,
            queued_bytes: limits.queued_bytes,
            timer_bytes: limits.timer_bytes,
            entities: limits.entities,
            client_frame_bytes: frame_room(client_queue_bytes),
        }
    }
}

impl Default for GuestLimits {
    /// The default `[limits]`, for clients with a queue of 1 MiB (`[net]
    /// client_queue_bytes`'s default).
    fn default() -> Self {
        Self::new(&crate::config::LimitsConfig::default(), 1024 * 1024)
    }
}

/// What a client's queue of `queue_bytes` leaves for a frame's arguments:
/// room for the longest method name and the frame's own fields.
fn frame_room(queue_bytes: usize) -> usize {
    queue_bytes.saturating_sub(NAME_BYTES + 64)
}

/// What the world keeps about each plugin.
#[derive(Debug)]
pub(crate) struct PluginBook {
    /// Its configured name, for messages.
    pub name: String,
    /// Bytes it has queued on the host, not yet delivered.
    pub held: Held,
    /// What this round's frames for clients count against it, until the
    /// gate has them.
    pub out: Option<Charge>,
    /// Entities alive that count against it (`[limits] entities`).
    pub entities: usize,
}

impl World {
    /// Tells the world which plugins there are, in slot order.
    pub(crate) fn set_plugins(&mut self, names: Vec<String>) {
        self.books = names
            .into_iter()
            .map(|name| PluginBook {
                name,
                held: Held::default(),
                out: None,
                entities: 0,
            })
            .collect();
        self.work = WorkQueue::new(self.books.len());
    }

    /// The name of plugin `p`.
    pub(super) fn plugin_name(&self, p: usize) -> &str {
        self.books.get(p).map_or("?", |b| b.name.as_str())
    }

    /// The plugin that runs entity `id`.
    pub(super) fn owner(&self, id: EntityId) -> Option<usize> {
        let e = self.entities.get(&id)?;
        Some(self.types.get(e.ty).plugin)
    }

    /// Whether the plugin whose code runs may act on entity `id`: it
    /// exists and is one of its own (or the host itself asks). `verb` says
    /// what it wanted to do, for the message.
    pub(super) fn own(&mut self, id: EntityId, verb: &str) -> Result<(), String> {
        let Some(ty) = self.type_anywhere(id) else {
            return Err(format!("no entity {id}"));
        };
        let owner = self.types.get(ty).plugin;
        match self.calling {
            Some(me) if me != owner => {
                let msg = format!(
                    "entity {id} ({}) belongs to plugin {}: plugin {} may call its methods \
                     for clients, not {verb} it",
                    self.types.get(ty).name,
                    self.plugin_name(owner),
                    self.plugin_name(me)
                );
                Err(self.refuse("foreign entity", msg))
            }
            _ => Ok(()),
        }
    }

    /// The type of `id`, whether it lives on this game or another.
    pub(super) fn type_anywhere(&self, id: EntityId) -> Option<TypeIndex> {
        match self.entities.get(&id) {
            Some(e) => Some(e.ty),
            None => self.routes.type_of(id).map(|t| t as TypeIndex),
        }
    }

    /// Logs that the calling plugin was refused (at most once a second per
    /// kind: an import's name, or what was refused) and returns the message
    /// for it.
    pub(super) fn refuse(&mut self, kind: &'static str, msg: String) -> String {
        self.refuse_for(self.calling, kind, msg)
    }

    /// [`refuse`](Self::refuse) for plugin `p`, whose code may run on
    /// another game.
    pub(super) fn refuse_for(
        &mut self,
        p: Option<usize>,
        kind: &'static str,
        msg: String,
    ) -> String {
        if let Some(p) = p {
            if let Some(skipped) = self.throttle.admit(p, kind) {
                let plugin = self.plugin_name(p).to_owned();
                if skipped > 0 {
                    tracing::warn!(%plugin, skipped, "plugin {plugin} refused: {msg} (and {skipped} more like it in the last second)");
                } else {
                    tracing::warn!(%plugin, "plugin {plugin} refused: {msg}");
                }
            }
        }
        msg
    }

    /// Counts a new entity against plugin `p`, or refuses it when `p` has
    /// as many as `[limits] entities` allows.
    pub(super) fn count_entity(&mut self, p: usize, import: &'static str) -> Result<(), String> {
        let limit = self.limits.entities;
        let Some(book) = self.books.get_mut(p) else {
            return Ok(());
        };
        if book.entities >= limit {
            let msg = format!(
                "{import}: plugin {} has {limit} entities alive, the most [limits] entities allows; \
                 destroy some first",
                book.name
            );
            return Err(self.refuse_for(Some(p), import, msg));
        }
        book.entities += 1;
        Ok(())
    }

    /// An entity that counted against plugin `p` is gone.
    pub(super) fn uncount_entity(&mut self, p: usize) {
        if let Some(book) = self.books.get_mut(p) {
            book.entities = book.entities.saturating_sub(1);
        }
    }

    /// Refuses a name (`what`, passed to `import`) longer than
    /// [`NAME_BYTES`].
    pub(super) fn name_ok(
        &mut self,
        import: &'static str,
        what: &str,
        name: &str,
    ) -> Result<(), String> {
        if name.len() <= NAME_BYTES {
            return Ok(());
        }
        let msg = format!(
            "{import}: the {what} is {} bytes, over the {NAME_BYTES} bytes a name may have",
            name.len()
        );
        Err(self.refuse(import, msg))
    }

    /// Refuses a value (`what`, passed to `import`) over `[limits]
    /// value_bytes`.
    pub(super) fn value_ok(
        &mut self,
        import: &'static str,
        what: &str,
        len: usize,
    ) -> Result<(), String> {
        let limit = self.limits.value_bytes;
        if len <= limit {
            return Ok(());
        }
        let msg =
            format!("{import}: the {what} is {len} bytes, over [limits] value_bytes = {limit}");
        Err(self.refuse(import, msg))
    }

    /// Refuses a frame for clients (`len` bytes of arguments or value)
    /// larger than a client may be sent.
    pub(super) fn frame_ok(&mut self, import: &'static str, len: usize) -> Result<(), String> {
        let limit = self.limits.client_frame_bytes;
        if len <= limit {
            return Ok(());
        }
        let msg = format!(
            "{import}: {len} bytes for clients are over the {limit} bytes a frame may carry \
             with [net] client_queue_bytes = {} (a client could never take it)",
            limit + NAME_BYTES + 64
        );
        Err(self.refuse(import, msg))
    }

    /// Counts `bytes` (and an item's own cost) against the calling
    /// plugin's `[limits] queued_bytes`: the charge to keep with what was
    /// queued, or why it may not be queued. The host's own work is not
    /// counted.
    pub(super) fn charge(
        &mut self,
        import: &'static str,
        bytes: usize,
    ) -> Result<Option<Charge>, String> {
        let Some(p) = self.calling else {
            return Ok(None);
        };
        let bytes = bytes + ITEM_BYTES;
        let held = self.books[p].held.bytes();
        let limit = self.limits.queued_bytes;
        if held + bytes > limit {
            let msg = format!(
                "{import}: plugin {} has {held} bytes queued on the host, not yet delivered; \
                 {bytes} more would pass [limits] queued_bytes = {limit}",
                self.plugin_name(p)
            );
            return Err(self.refuse(import, msg));
        }
        Ok(Some(self.books[p].held.charge(bytes)))
    }

    /// Like [`charge`](Self::charge), for a frame for clients: counted with
    /// the round's output until the gate has it.
    pub(super) fn charge_output(
        &mut self,
        import: &'static str,
        bytes: usize,
    ) -> Result<(), String> {
        let Some(p) = self.calling else {
            return Ok(());
        };
        let Some(charge) = self.charge(import, bytes)? else {
            return Ok(());
        };
        let bytes = charge.bytes();
        // One charge per plugin per round, grown frame by frame.
        match &mut self.books[p].out {
            Some(out) => {
                out.add(bytes);
                drop(charge);
            }
            None => self.books[p].out = Some(charge),
        }
        Ok(())
    }

    /// The charges of this round's output, to travel with it to the gate.
    pub(super) fn take_output_charges(&mut self) -> Vec<Charge> {
        self.books.iter_mut().filter_map(|b| b.out.take()).collect()
    }

    /// A call the calling plugin makes to `id`: who it comes from, as the
    /// target sees it, or why it may not be made. Entities of another
    /// plugin take calls only to methods they expose to every client, and
    /// see them as a call from another client.
    pub(super) fn call_from_plugin(
        &mut self,
        me: Option<usize>,
        from: Option<EntityId>,
        id: EntityId,
        method: &str,
    ) -> Result<Caller, String> {
        let server = Caller {
            kind: CallerKind::Server,
            entity: from,
        };
        let ty = self.type_anywhere(id);
        let owner = ty.map(|t| self.types.get(t).plugin);
        let (Some(me), Some(owner), Some(ty)) = (me, owner, ty) else {
            return Ok(server);
        };
        if me == owner {
            return Ok(server);
        }
        use wyrm_runtime::bindings::Exposure;
        let t = self.types.get(ty);
        match t.method(method) {
            Some(Exposure::AllClients) => Ok(Caller {
                kind: CallerKind::OtherClient,
                entity: from,
            }),
            _ => {
                let msg = format!(
                    "call-entity: {}.{method} of entity {id} (plugin {}) is not a method for \
                     every client, so plugin {} may not call it; the call is dropped",
                    t.name,
                    self.plugin_name(owner),
                    self.plugin_name(me)
                );
                Err(self.refuse_for(Some(me), "foreign call", msg))
            }
        }
    }

    /// Whether a reply (of storage, of a password check) may go to `id`:
    /// only to the calling plugin's own entities, whose server-only methods
    /// it may call anyway.
    pub(super) fn reply_ok(&mut self, import: &'static str, id: EntityId) -> Result<(), String> {
        let owner = self.type_anywhere(id).map(|t| self.types.get(t).plugin);
        match (self.calling, owner) {
            (Some(me), Some(owner)) if me != owner => {
                let msg = format!(
                    "{import}: the reply would go to entity {id} of plugin {}; plugin {} may \
                     have replies sent only to its own entities. Dropped",
                    self.plugin_name(owner),
                    self.plugin_name(me)
                );
                Err(self.refuse(import, msg))
            }
            _ => Ok(()),
        }
    }
}
