//! `Ctx`: the entity being called, and typed access to every host import.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::wyrm::game::storage;
use crate::codec::{self, encode, encode_args};
use crate::{
    raw, Caller, CallerKind, EntityId, Error, Locality, LogLevel, Path, Placement, Position,
    Result, Tag, TimerId,
};

/// The context of one call into an entity: which entity, who called, and
/// typed wrappers around the host imports.
///
/// Methods without an `_of` suffix act on the current entity; their `_of`
/// twins take another entity's id. Arguments for calls (`args`) are encoded
/// with [`codec::encode_args`]: pass a tuple, `(a, b)` → `[a, b]`, `()` → `[]`.
/// Values (attributes, contexts) are encoded with named struct fields.
///
/// Effects that reach other entities or clients are queued by the host and
/// delivered after the current call returns, in the order they were made.
pub struct Ctx {
    id: EntityId,
    type_name: &'static str,
    caller: Caller,
}

impl Ctx {
    #[doc(hidden)]
    pub fn new(id: EntityId, type_name: &'static str, caller: Caller) -> Self {
        Ctx {
            id,
            type_name,
            caller,
        }
    }

    // ---- who ----

    /// The current entity's id.
    pub fn id(&self) -> EntityId {
        self.id
    }

    /// The current entity's type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Who made this call. Lifecycle hooks see the server with no entity.
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// Whether the call came from a client (own or other).
    pub fn called_by_client(&self) -> bool {
        !matches!(self.caller.kind, CallerKind::Server)
    }

    // ---- entities ----

    /// Creates an entity of `type_name` with initial attributes `attrs`: a
    /// map from attribute name to value ([`Attrs`](crate::Attrs), a
    /// `BTreeMap`, a struct with named fields) or `()` for none. Its
    /// `on_created` runs after the current call returns.
    ///
    /// The entity lives on this entity's game, so its attributes and place
    /// can be read and changed at once; [`create_entity_at`](Self::create_entity_at)
    /// lets the server place it by load.
    pub fn create_entity(&mut self, type_name: &str, attrs: impl Serialize) -> Result<EntityId> {
        self.create_entity_at(type_name, attrs, Locality::Here)
    }

    /// [`create_entity`](Self::create_entity) on the game `at` says: with
    /// [`Locality::Anywhere`], whichever game the server chooses by load.
    /// Its id is usable at once (messages to it arrive after its creation);
    /// read it with [`ask_attr`](Self::ask_attr), not `get_attr_of`, since
    /// it may live on another game.
    pub fn create_entity_at(
        &mut self,
        type_name: &str,
        attrs: impl Serialize,
        at: Locality,
    ) -> Result<EntityId> {
        raw::create_entity(type_name, &attrs_bytes(&attrs)?, at).map_err(Error::from)
    }

    /// Destroys entity `id` (possibly the current one) after the current call
    /// returns.
    pub fn destroy_entity(&mut self, id: EntityId) -> Result<()> {
        raw::destroy_entity(id).map_err(Error::from)
    }

    /// The type name of a live entity on this entity's game, or `None`
    /// (for any entity: [`ask_entity_type`](Self::ask_entity_type)).
    pub fn entity_type(&self, id: EntityId) -> Option<String> {
        raw::entity_type(id)
    }

    /// Asks for the type name of entity `id`, wherever it lives: `method`
    /// is called on the current entity with `[error, type_name, context]`
    /// (`type_name` nil if no such entity is alive), like a storage answer.
    pub fn ask_entity_type(
        &mut self,
        id: EntityId,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        raw::ask_entity_type(id, &self.reply_to(method, context)?);
        Ok(())
    }

    /// The id of the service entity of `type_name`, or `None`.
    pub fn service(&self, type_name: &str) -> Option<EntityId> {
        raw::service(type_name)
    }

    // ---- messages ----

    /// Calls `method` on entity `id` as the server. An entity of another
    /// plugin takes only methods it exposes to every client, and sees the
    /// call as one from another client (`docs/plugins.md`).
    pub fn call(&mut self, id: EntityId, method: &str, args: impl Serialize) -> Result<()> {
        raw::call_entity(id, method, &encode_args(&args)?);
        Ok(())
    }

    /// Calls `method` on the client bound to the current entity. `Ok(false)`
    /// when no client is bound.
    pub fn call_client(&mut self, method: &str, args: impl Serialize) -> Result<bool> {
        self.call_client_of(self.id, method, args)
    }

    /// Calls `method` on the client bound to entity `id`. `Ok(false)` when no
    /// client is bound.
    pub fn call_client_of(
        &mut self,
        id: EntityId,
        method: &str,
        args: impl Serialize,
    ) -> Result<bool> {
        Ok(raw::call_client(id, method, &encode_args(&args)?))
    }

    /// Calls `method` on every client whose tags include all of `filter`
    /// (`&[("room", "lobby")]`) and that is bound to an entity of this
    /// plugin; each receives it on the entity it is bound to.
    pub fn call_filtered_clients(
        &mut self,
        filter: &[(&str, &str)],
        method: &str,
        args: impl Serialize,
    ) -> Result<()> {
        let tags: Vec<Tag> = filter
            .iter()
            .map(|(k, v)| Tag {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect();
        raw::call_filtered_clients(&tags, method, &encode_args(&args)?);
        Ok(())
    }

    /// Calls `method` on every connected client bound to an entity of this
    /// plugin, on the entity it is bound to.
    pub fn broadcast(&mut self, method: &str, args: impl Serialize) -> Result<()> {
        raw::broadcast(method, &encode_args(&args)?);
        Ok(())
    }

    /// Moves the client bound to `from` to `to`. Fails if `from` has no
    /// client or `to` has one.
    pub fn give_client_to(&mut self, from: EntityId, to: EntityId) -> Result<()> {
        raw::give_client_to(from, to).map_err(Error::from)
    }

    /// Sets tag `key` = `value` on the current entity's client.
    pub fn set_client_tag(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_client_tag_of(self.id, key, value)
    }

    /// Sets tag `key` = `value` on the client bound to entity `id`.
    pub fn set_client_tag_of(&mut self, id: EntityId, key: &str, value: &str) -> Result<()> {
        raw::set_client_tag(id, key, Some(value)).map_err(Error::from)
    }

    /// Removes tag `key` from the current entity's client.
    pub fn remove_client_tag(&mut self, key: &str) -> Result<()> {
        self.remove_client_tag_of(self.id, key)
    }

    /// Removes tag `key` from the client bound to entity `id`.
    pub fn remove_client_tag_of(&mut self, id: EntityId, key: &str) -> Result<()> {
        raw::set_client_tag(id, key, None).map_err(Error::from)
    }

    // ---- spaces ----

    /// Creates an entity of `type_name` with `attrs` (as
    /// [`create_entity`](Self::create_entity)) and makes it a space of
    /// `kind`. Its `on_tick` runs at the server's space tick rate.
    pub fn create_space(
        &mut self,
        type_name: &str,
        kind: &str,
        attrs: impl Serialize,
    ) -> Result<EntityId> {
        self.create_space_at(type_name, kind, attrs, Locality::Here)
    }

    /// [`create_space`](Self::create_space) on the game `at` says. An
    /// entity entering a space on another game moves to that game.
    pub fn create_space_at(
        &mut self,
        type_name: &str,
        kind: &str,
        attrs: impl Serialize,
        at: Locality,
    ) -> Result<EntityId> {
        raw::create_space(type_name, kind, &attrs_bytes(&attrs)?, at).map_err(Error::from)
    }

    /// The kind of space `id`, or `None` if it is not a space.
    pub fn space_kind(&self, id: EntityId) -> Option<String> {
        raw::space_kind(id)
    }

    /// Puts the current entity into `space` at `pos`, facing `yaw`.
    pub fn enter_space(&mut self, space: EntityId, pos: Position, yaw: f32) -> Result<()> {
        self.enter_space_of(self.id, space, pos, yaw)
    }

    /// Puts entity `id` into `space` at `pos`, facing `yaw`.
    pub fn enter_space_of(
        &mut self,
        id: EntityId,
        space: EntityId,
        pos: Position,
        yaw: f32,
    ) -> Result<()> {
        raw::enter_space(id, space, pos, yaw).map_err(Error::from)
    }

    /// Takes the current entity out of its space.
    pub fn leave_space(&mut self) -> Result<()> {
        raw::leave_space(self.id).map_err(Error::from)
    }

    /// Moves the current entity within its space.
    pub fn set_position(&mut self, pos: Position, yaw: f32) -> Result<()> {
        self.set_position_of(self.id, pos, yaw)
    }

    /// Moves entity `id` within its space.
    pub fn set_position_of(&mut self, id: EntityId, pos: Position, yaw: f32) -> Result<()> {
        raw::set_position(id, pos, yaw).map_err(Error::from)
    }

    /// Where the current entity is, if it is in a space.
    pub fn placement(&self) -> Option<Placement> {
        raw::placement_of(self.id)
    }

    /// Where entity `id` is, if it is in a space.
    pub fn placement_of(&self, id: EntityId) -> Option<Placement> {
        raw::placement_of(id)
    }

    /// Lets (or stops) the current entity's client move it with `Move`
    /// frames.
    pub fn allow_client_moves(&mut self, allowed: bool) -> Result<()> {
        raw::allow_client_moves(self.id, allowed).map_err(Error::from)
    }

    /// The entities the current entity sees.
    pub fn aoi(&self) -> Vec<EntityId> {
        raw::aoi_of(self.id)
    }

    /// The entities of `space` within `radius` of `center`.
    pub fn entities_near(&self, space: EntityId, center: Position, radius: f32) -> Vec<EntityId> {
        raw::entities_near(space, center, radius)
    }

    /// Calls `method` on every client that sees the current entity (its own
    /// client included).
    pub fn call_aoi_clients(&mut self, method: &str, args: impl Serialize) -> Result<()> {
        raw::call_aoi_clients(self.id, method, &encode_args(&args)?);
        Ok(())
    }

    // ---- attributes ----

    /// The current entity's attribute value at `path` (an attribute name or
    /// a [`path!`](crate::path)), decoded as `T`; `None` if nothing is there.
    pub fn get_attr<T: DeserializeOwned>(&self, path: impl Into<Path>) -> Result<Option<T>> {
        self.get_attr_of(self.id, path)
    }

    /// Entity `id`'s attribute value at `path`, decoded as `T`. `id` must
    /// be on this entity's game; for any entity, [`ask_attr`](Self::ask_attr).
    pub fn get_attr_of<T: DeserializeOwned>(
        &self,
        id: EntityId,
        path: impl Into<Path>,
    ) -> Result<Option<T>> {
        let path = path.into();
        match raw::attr_get(id, path.segments())? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| Error::new(format!("attribute {}: {e}", path.display()))),
        }
    }

    /// Asks for entity `id`'s attribute value at `path`, wherever it lives:
    /// `method` is called on the current entity with `[error, value,
    /// context]` (`value` nil if nothing is there), like a storage answer.
    pub fn ask_attr(
        &mut self,
        id: EntityId,
        path: impl Into<Path>,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        let path = path.into();
        raw::ask_attr(id, path.segments(), &self.reply_to(method, context)?);
        Ok(())
    }

    /// Sets the current entity's attribute value at `path`. Intermediate
    /// maps are created; a list index must exist.
    pub fn set_attr(&mut self, path: impl Into<Path>, value: impl Serialize) -> Result<()> {
        self.set_attr_of(self.id, path, value)
    }

    /// Sets entity `id`'s attribute value at `path`.
    pub fn set_attr_of(
        &mut self,
        id: EntityId,
        path: impl Into<Path>,
        value: impl Serialize,
    ) -> Result<()> {
        let path = path.into();
        raw::attr_set(id, path.segments(), &encode(&value)?).map_err(Error::from)
    }

    /// Removes the current entity's value at `path` (a map key, or a list
    /// element). Removing what is not there is not an error.
    pub fn delete_attr(&mut self, path: impl Into<Path>) -> Result<()> {
        self.delete_attr_of(self.id, path)
    }

    /// Removes entity `id`'s value at `path`.
    pub fn delete_attr_of(&mut self, id: EntityId, path: impl Into<Path>) -> Result<()> {
        raw::attr_delete(id, path.into().segments()).map_err(Error::from)
    }

    /// Appends `value` to the current entity's list at `path`, creating the
    /// list if absent.
    pub fn append_attr(&mut self, path: impl Into<Path>, value: impl Serialize) -> Result<()> {
        self.append_attr_of(self.id, path, value)
    }

    /// Appends `value` to entity `id`'s list at `path`.
    pub fn append_attr_of(
        &mut self,
        id: EntityId,
        path: impl Into<Path>,
        value: impl Serialize,
    ) -> Result<()> {
        let path = path.into();
        raw::attr_append(id, path.segments(), &encode(&value)?).map_err(Error::from)
    }

    // ---- timers ----

    /// Calls `method` with `args` on the current entity once, after
    /// `delay_ms`.
    pub fn set_timer(
        &mut self,
        delay_ms: u32,
        method: &str,
        args: impl Serialize,
    ) -> Result<TimerId> {
        self.set_timer_on(self.id, delay_ms, false, method, args)
    }

    /// Calls `method` with `args` on the current entity every `interval_ms`.
    pub fn set_repeating_timer(
        &mut self,
        interval_ms: u32,
        method: &str,
        args: impl Serialize,
    ) -> Result<TimerId> {
        self.set_timer_on(self.id, interval_ms, true, method, args)
    }

    /// Calls `method` with `args` on entity `id` after `delay_ms`, then every
    /// `delay_ms` if `repeat`. The timer dies with its entity.
    pub fn set_timer_on(
        &mut self,
        id: EntityId,
        delay_ms: u32,
        repeat: bool,
        method: &str,
        args: impl Serialize,
    ) -> Result<TimerId> {
        raw::set_timer(id, delay_ms, repeat, method, &encode_args(&args)?).map_err(Error::from)
    }

    /// Cancels a timer. `false` if it had already fired (one-shot) or was
    /// unknown.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        raw::cancel_timer(timer)
    }

    // ---- passwords ----

    /// Hashes `password` (argon2id, off the game thread), then calls `method`
    /// on the current entity with args `[hash: String, context]`: declare it
    /// as `fn method(&mut self, ctx: &mut Ctx, hash: String, context: C)`.
    pub fn hash_password(
        &mut self,
        password: &str,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        raw::hash_password(self.id, password, method, &encode(&context)?);
        Ok(())
    }

    /// Checks `password` against an argon2 `hash` (off the game thread), then
    /// calls `method` on the current entity with args `[ok: bool, context]`;
    /// `ok` is nil when the server is too busy to check now (take it as
    /// `Option<bool>`: `None` is not a wrong password).
    pub fn verify_password(
        &mut self,
        password: &str,
        hash: &str,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        raw::verify_password(self.id, password, hash, method, &encode(&context)?);
        Ok(())
    }

    // ---- storage ----
    // Every answer comes back as a call of `method` on the current entity
    // with args `[error, value, context]`: declare it as
    // `fn method(&mut self, ctx: &mut Ctx, error: Option<String>, value: T, context: C)`.

    fn reply_to(&self, method: &str, context: impl Serialize) -> Result<storage::ReplyTo> {
        Ok(storage::ReplyTo {
            entity: self.id,
            method: method.to_owned(),
            context: encode(&context)?,
        })
    }

    /// Loads saved entity `id` with its persistent attributes (its calls
    /// waiting in the mailbox run next) on this entity's game; answers with
    /// value = the id. An entity loaded already stays where it is.
    pub fn load_entity(
        &mut self,
        id: EntityId,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        self.load_entity_at(id, Locality::Here, method, context)
    }

    /// [`load_entity`](Self::load_entity) on the game `at` says: with
    /// [`Locality::Anywhere`], whichever game the server chooses by load.
    pub fn load_entity_at(
        &mut self,
        id: EntityId,
        at: Locality,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        storage::load_entity(id, at, &self.reply_to(method, context)?);
        Ok(())
    }

    /// Saves the current entity's persistent attributes now; answers (value:
    /// the id) once they are on disk.
    pub fn save_now(&mut self, method: &str, context: impl Serialize) -> Result<()> {
        storage::save_entity(self.id, Some(&self.reply_to(method, context)?));
        Ok(())
    }

    /// Whether `id` is loaded or saved; answers with value = bool.
    pub fn entity_exists(
        &mut self,
        id: EntityId,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        storage::entity_exists(id, &self.reply_to(method, context)?);
        Ok(())
    }

    /// The saved ids of `type_name`; answers with value = a list of ids.
    pub fn saved_ids(
        &mut self,
        type_name: &str,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        storage::saved_ids(type_name, &self.reply_to(method, context)?);
        Ok(())
    }

    /// The value under `key` in the key-value store (value: `Option<T>`).
    pub fn kv_get(&mut self, key: &str, method: &str, context: impl Serialize) -> Result<()> {
        storage::kv_get(key, &self.reply_to(method, context)?);
        Ok(())
    }

    /// Stores `value` under `key`, without an answer.
    pub fn kv_put(&mut self, key: &str, value: impl Serialize) -> Result<()> {
        storage::kv_put(key, &encode(&value)?, None);
        Ok(())
    }

    /// Stores `value` under `key`; answers (value: nil) once on disk.
    pub fn kv_put_then(
        &mut self,
        key: &str,
        value: impl Serialize,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        storage::kv_put(
            key,
            &encode(&value)?,
            Some(&self.reply_to(method, context)?),
        );
        Ok(())
    }

    /// Stores `value` under `key` unless something is there; answers with
    /// whichever value is stored.
    pub fn kv_get_or_put(
        &mut self,
        key: &str,
        value: impl Serialize,
        method: &str,
        context: impl Serialize,
    ) -> Result<()> {
        storage::kv_get_or_put(key, &encode(&value)?, &self.reply_to(method, context)?);
        Ok(())
    }

    /// Every key starting with `prefix`; answers with a list of
    /// `(key, value)` pairs in key order.
    pub fn kv_range(&mut self, prefix: &str, method: &str, context: impl Serialize) -> Result<()> {
        storage::kv_range(prefix, &self.reply_to(method, context)?);
        Ok(())
    }

    /// Records a stats event: a name and fields (a serialisable map).
    pub fn emit_stat(&mut self, name: &str, fields: impl Serialize) -> Result<()> {
        storage::emit_stat(name, &encode(&fields)?);
        Ok(())
    }

    // ---- misc ----

    /// Writes a log line attributed to the plugin. See also the
    /// [`info!`](crate::info) family of macros.
    pub fn log(&self, level: LogLevel, message: &str) {
        raw::log(level, message);
    }

    /// Wall-clock time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        raw::now_ms()
    }
}

/// Initial attributes as the host takes them: `()` / `None` (nil) is none.
fn attrs_bytes(attrs: &impl Serialize) -> Result<Vec<u8>> {
    let mut bytes = encode(attrs)?;
    if bytes == [0xc0] {
        bytes.clear();
    }
    Ok(bytes)
}
