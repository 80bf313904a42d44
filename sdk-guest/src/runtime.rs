//! The guest side of the `entities` interface: the private-state table and
//! the export functions `plugin!` wires up.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;

use crate::bindings::exports::wyrm::game::entities;
use crate::bindings::wyrm::game::types::{
    AoiDecl, AoiEvent, AttrDecl, EntityType, MethodDecl, PluginInfo,
};
use crate::entity::{AnyEntity, Hook};
use crate::{
    Caller, CallerKind, Ctx, EntityId, EntityRef, EntityState, EntityTypeDef, LogLevel, PluginDef,
};

/// Implemented by [`plugin!`](crate::plugin) for a hidden type that names the
/// plugin's [`PluginDef`].
pub trait Plugin: 'static {
    /// The plugin's description.
    fn def() -> &'static PluginDef;
}

/// The `entities` export, implemented once for any [`Plugin`].
pub struct Guest<P>(PhantomData<P>);

struct Slot {
    kind: u32,
    state: Box<dyn AnyEntity>,
}

thread_local! {
    /// The table's size when the running call began (see `states_held`).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static TABLE: RefCell<HashMap<EntityId, Slot, BuildHasherDefault<IdHasher>>> =
        const { RefCell::new(HashMap::with_hasher(BuildHasherDefault::new())) };
}

/// Hashes entity ids for the state table. Ids are host-assigned integers, not
/// attacker-chosen keys, so a multiply-shift (as in FxHash) is safe and far
/// cheaper than SipHash on the swap path.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

const SERVER: Caller = Caller {
    kind: CallerKind::Server,
    entity: None,
};

fn type_def(def: &PluginDef, kind: u32) -> Result<&'static EntityTypeDef, String> {
    let types: &'static [EntityTypeDef] = def.types;
    usize::try_from(kind)
        .ok()
        .and_then(|k| types.get(k))
        .ok_or_else(|| {
            format!(
                "unknown entity kind {kind}: plugin {} declares {} type(s)",
                def.name,
                types.len()
            )
        })
}

/// Runs `f` on the entity's state, creating `Default` state first if the
/// table does not know the id (a new entity, or one whose state was lost).
fn with_entity<R>(
    def: &PluginDef,
    entity: EntityRef,
    caller: Caller,
    f: impl FnOnce(&mut dyn AnyEntity, &mut Ctx) -> Result<R, String>,
) -> Result<R, String> {
    TABLE.with(|table| {
        let mut table = table
            .try_borrow_mut()
            .map_err(|_| "re-entrant call into the plugin".to_owned())?;
        let len = table.len();
        let entry = table.entry(entity.id);
        // The table's size once this entity has its state (no second
        // lookup on the call path).
        let held = len
            + usize::from(matches!(
                entry,
                std::collections::hash_map::Entry::Vacant(_)
            ));
        let slot = match entry {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let ty = type_def(def, entity.kind)?;
                e.insert(Slot {
                    kind: entity.kind,
                    state: (ty.fresh)(),
                })
            }
        };
        let ty = type_def(def, slot.kind)?;
        let mut ctx = Ctx::new(entity.id, ty.name, caller);
        HELD.set(held);
        f(slot.state.as_mut(), &mut ctx)
    })
}

fn run_hook(def: &PluginDef, entity: EntityRef, hook: Hook) -> Result<(), String> {
    with_entity(def, entity, SERVER, |state, ctx| state.hook(ctx, hook))
}

fn log_hook_error(def: &PluginDef, entity: EntityRef, hook: Hook, result: Result<(), String>) {
    if let Err(e) = result {
        crate::log(
            LogLevel::Warn,
            &format!(
                "{}: {hook:?} hook of entity {} failed: {e}",
                def.name, entity.id
            ),
        );
    }
}

/// `init`: the plugin's name, version and entity types.
pub(crate) fn init(def: &PluginDef) -> PluginInfo {
    PluginInfo {
        name: def.name.to_owned(),
        version: def.version.to_owned(),
        entity_types: def
            .types
            .iter()
            .map(|t| EntityType {
                name: t.name.to_owned(),
                attrs: t
                    .attrs
                    .iter()
                    .map(|a| AttrDecl {
                        name: a.name.to_owned(),
                        flags: a.flags,
                    })
                    .collect(),
                methods: t
                    .methods
                    .iter()
                    .map(|m| MethodDecl {
                        name: m.name.to_owned(),
                        exposure: m.exposure,
                    })
                    .collect(),
                aoi: t.aoi.map(|a| AoiDecl {
                    radius: a.radius,
                    hysteresis: a.hysteresis,
                    events: a.events,
                }),
            })
            .collect(),
    }
}

/// `created`: fresh state, then `on_created`.
pub(crate) fn created(def: &PluginDef, entity: EntityRef) -> Result<(), String> {
    run_hook(def, entity, Hook::Created)
}

/// `destroyed`: `on_destroyed`, then drop the state.
pub(crate) fn destroyed(def: &PluginDef, entity: EntityRef) -> Result<(), String> {
    let result = run_hook(def, entity, Hook::Destroyed);
    TABLE.with(|table| {
        if let Ok(mut table) = table.try_borrow_mut() {
            table.remove(&entity.id);
        }
    });
    result
}

/// See [`crate::states_held`]. During a call the table is borrowed: the
/// count is what it was when the call began.
pub(crate) fn states_held() -> usize {
    TABLE.with(|table| table.try_borrow().map_or_else(|_| HELD.get(), |t| t.len()))
}

/// `forget-entities`: the entities moved to another game; drop their state
/// (no hook runs: they live on there).
pub(crate) fn forget_entities(ids: &[EntityId]) {
    TABLE.with(|table| {
        if let Ok(mut table) = table.try_borrow_mut() {
            for id in ids {
                table.remove(id);
            }
        }
    });
}

/// `call`: decode and run a method.
pub(crate) fn call(
    def: &PluginDef,
    entity: EntityRef,
    method: &str,
    args: &[u8],
    caller: Caller,
) -> Result<(), String> {
    with_entity(def, entity, caller, |state, ctx| {
        state.dispatch(ctx, method, args)
    })
}

/// `export-entities`: each entity's state, serialised.
///
/// An id the table does not know (its state was never touched since this
/// instance started) is exported with empty data ("start fresh"), its type
/// looked up with `lookup_type`; ids no type is found for are left out.
pub(crate) fn export_entities(
    def: &PluginDef,
    ids: &[EntityId],
    lookup_type: impl Fn(EntityId) -> Option<String>,
) -> Result<Vec<EntityState>, String> {
    TABLE.with(|table| {
        let table = table
            .try_borrow()
            .map_err(|_| "re-entrant call into the plugin".to_owned())?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            match table.get(&id) {
                Some(slot) => {
                    let ty = type_def(def, slot.kind)?;
                    let data = slot
                        .state
                        .save()
                        .map_err(|e| format!("cannot export {} {id}: {e}", ty.name))?;
                    out.push(EntityState {
                        entity: EntityRef {
                            id,
                            kind: slot.kind,
                        },
                        type_name: ty.name.to_owned(),
                        data,
                    });
                }
                None => {
                    let Some(name) = lookup_type(id) else {
                        continue;
                    };
                    let Some(kind) = kind_of(def, &name) else {
                        continue;
                    };
                    out.push(EntityState {
                        entity: EntityRef { id, kind },
                        type_name: name,
                        data: Vec::new(),
                    });
                }
            }
        }
        Ok(out)
    })
}

fn kind_of(def: &PluginDef, type_name: &str) -> Option<u32> {
    def.types
        .iter()
        .position(|t| t.name == type_name)
        .and_then(|k| u32::try_from(k).ok())
}

/// `import-entities`: rebuild every state (through `Entity::migrate`), then
/// take them all over, or none if any fails. Types are matched by name, so a
/// new version may reorder its types.
pub(crate) fn import_entities(
    def: &PluginDef,
    from_version: &str,
    states: &[EntityState],
) -> Result<(), String> {
    let mut rebuilt = Vec::with_capacity(states.len());
    for s in states {
        let kind = kind_of(def, &s.type_name).ok_or_else(|| {
            format!(
                "cannot import entity {}: plugin {} {} has no entity type {}",
                s.entity.id, def.name, def.version, s.type_name
            )
        })?;
        let ty = type_def(def, kind)?;
        let state = (ty.restore)(from_version, &s.data).map_err(|e| {
            format!(
                "cannot import {} {} from version {from_version}: {e}",
                s.type_name, s.entity.id
            )
        })?;
        rebuilt.push((s.entity.id, Slot { kind, state }));
    }
    TABLE.with(|table| {
        let mut table = table
            .try_borrow_mut()
            .map_err(|_| "re-entrant call into the plugin".to_owned())?;
        table.extend(rebuilt);
        Ok(())
    })
}

/// How many entities have state in this instance (for tests and debugging).
#[cfg(test)]
pub(crate) fn table_len() -> usize {
    TABLE.with(|t| t.borrow().len())
}

impl<P: Plugin> entities::Guest for Guest<P> {
    fn init() -> PluginInfo {
        init(P::def())
    }

    fn created(entity: EntityRef) -> Result<(), String> {
        created(P::def(), entity)
    }

    fn destroyed(entity: EntityRef) {
        let def = P::def();
        log_hook_error(def, entity, Hook::Destroyed, destroyed(def, entity));
    }

    fn client_connected(entity: EntityRef) {
        let def = P::def();
        log_hook_error(
            def,
            entity,
            Hook::ClientConnected,
            run_hook(def, entity, Hook::ClientConnected),
        );
    }

    fn client_disconnected(entity: EntityRef) {
        let def = P::def();
        log_hook_error(
            def,
            entity,
            Hook::ClientDisconnected,
            run_hook(def, entity, Hook::ClientDisconnected),
        );
    }

    fn call(
        entity: EntityRef,
        method: String,
        args: Vec<u8>,
        caller: Caller,
    ) -> Result<(), String> {
        call(P::def(), entity, &method, &args, caller)
    }

    fn tick(space: EntityRef, dt_ms: u32) {
        let def = P::def();
        let hook = Hook::Tick(dt_ms);
        log_hook_error(def, space, hook, run_hook(def, space, hook));
    }

    fn aoi_events(events: Vec<AoiEvent>) {
        let def = P::def();
        for ev in events {
            let hook = if ev.entered {
                Hook::AoiEnter(ev.other)
            } else {
                Hook::AoiLeave(ev.other)
            };
            log_hook_error(def, ev.watcher, hook, run_hook(def, ev.watcher, hook));
        }
    }

    fn export_entities(ids: Vec<EntityId>) -> Result<Vec<EntityState>, String> {
        export_entities(P::def(), &ids, crate::raw::entity_type)
    }

    fn forget_entities(ids: Vec<EntityId>) {
        forget_entities(&ids)
    }

    fn import_entities(from_version: String, states: Vec<EntityState>) -> Result<(), String> {
        import_entities(P::def(), &from_version, &states)
    }
}
