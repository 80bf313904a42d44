//! Migration, the game's side: the private state of a departing entity
//! leaves through the state hook (`export-entities`), the instance it left
//! drops it (`forget-entities`), and it enters the instance of the game it
//! goes to (`import-entities`), the mechanism hot swap uses. The world
//! moves everything else (see `world/migrate.rs`).

use std::time::Duration;

use super::types::TypeIndex;
use super::Game;
use crate::msg::{EntityId, GameInput, ToGame};
use wyrm_runtime::{EntityRef, EntityState};
use wyrm_wire::{Arrival, GameId, Migrant};

impl Game {
    /// The `Depart` marker for `id` arrived: everything routed here for it
    /// before its messages were held is in the work queue. Exports it and
    /// sends it to `to`; if it cannot leave, it stays, and gets what was
    /// held for it.
    pub(super) fn depart(
        &mut self,
        id: EntityId,
        to: GameId,
        then: Option<Arrival>,
        held_at_us: u64,
    ) {
        let Some((plugin, _)) = self.world_ref().entity_ref(id) else {
            // Destroyed meanwhile: the dispatcher forgot it then.
            return;
        };
        let stay = |game: &mut Game, why: String| {
            tracing::warn!(entity = id, to = to.0, "an entity could not move: {why}");
            let world = game.world();
            let held = world.routes_migration_failed(id);
            world.take_routed(held);
        };
        if let Err(why) = self.world_ref().can_depart(id) {
            return stay(self, why);
        }
        if self.plugins[plugin].down.is_some() {
            return stay(self, "its plugin is down".into());
        }
        let state = match self.plugins[plugin].instance.export(&mut self.world, &[id]) {
            Ok(Ok(mut states)) => states.pop().map(|s| s.data).unwrap_or_default(),
            Ok(Err(e)) => return stay(self, format!("its plugin refused to export it: {e}")),
            Err(fault) => {
                self.recover(plugin, &fault);
                return stay(self, format!("its plugin faulted exporting it: {fault}"));
            }
        };
        let version = self.plugins[plugin].instance.version().to_owned();
        // The state travels in the migrant (and comes back with it if the
        // other game refuses it): this instance lets its copy go.
        if let Err(fault) = self.plugins[plugin].instance.forget(&mut self.world, &[id]) {
            self.recover(plugin, &fault);
        }
        self.forget_in_swap(plugin, id);
        self.world()
            .depart(id, to, then, state, version, held_at_us);
    }

    /// An entity arrived from another game (or came back, refused there).
    pub(super) fn arrive(&mut self, mut m: Migrant) {
        let ty = match self.world_ref().migrant_type(&m) {
            Ok(ty) => ty,
            Err(why) => return self.bounce(m, why),
        };
        // Its private state enters this game's instance: on its way in, or
        // back where it came from (which let its copy go when it left).
        if let Err(why) = self.import_migrant(&mut m, ty) {
            if m.bounced.is_none() {
                return self.bounce(m, why);
            }
            tracing::error!(
                entity = m.id,
                "an entity that came back could not take its private state back: {why}; \
                 it goes on with fresh state"
            );
        }
        let (arrived, held_at_us) = (m.bounced.is_none(), m.held_at_us);
        self.world().install(m, ty);
        if arrived {
            self.counters.count_migration();
            let pause = now_us().saturating_sub(held_at_us);
            self.migration_pauses.record(Duration::from_micros(pause));
        }
    }

    /// Imports the private state `m` carries into this game's instance of
    /// its plugin.
    fn import_migrant(&mut self, m: &mut Migrant, ty: TypeIndex) -> Result<(), String> {
        let data = std::mem::take(&mut m.state);
        let (data, imported) = self.import_state(m.id, ty, &m.version, data);
        // Kept with the migrant, in case it goes back.
        m.state = data;
        imported
    }

    /// Imports the checkpointed private state storage read for an entity
    /// loaded again after its game died into this game's instance of its
    /// plugin. One that cannot take it comes back with fresh state, logged.
    pub(super) fn restore_state(&mut self, loaded: &mut wyrm_storage::LoadedEntity) {
        let id = loaded.row.id;
        let Some(saved) = loaded.state.take() else {
            return;
        };
        if !self.world_ref().reloading(id) {
            return;
        }
        let Some(ty) = self.world_ref().types.find(&loaded.row.type_name) else {
            return; // refused as it is put in, with its reason
        };
        if let (_, Err(why)) = self.import_state(id, ty, &saved.version, saved.state) {
            tracing::warn!(entity = id, "{why}; it comes back with fresh private state");
        }
    }

    /// Imports entity `id`'s private state `data` (exported by `version`)
    /// into this game's instance of the plugin of its type `ty`, and hands
    /// `data` back with why it could not, if it could not.
    fn import_state(
        &mut self,
        id: EntityId,
        ty: TypeIndex,
        version: &str,
        data: Vec<u8>,
    ) -> (Vec<u8>, Result<(), String>) {
        let t = self.world_ref().types.get(ty);
        let (plugin, kind, type_name) = (t.plugin, t.kind, t.name.clone());
        if let Some(down) = &self.plugins[plugin].down {
            return (
                data,
                Err(format!("its plugin is down here ({})", down.reason)),
            );
        }
        let mut states = [EntityState {
            entity: EntityRef { id, kind },
            type_name,
            data,
        }];
        let imported = self.plugins[plugin]
            .instance
            .import(&mut self.world, version, &states);
        let data = std::mem::take(&mut states[0].data);
        let result = match imported {
            Ok(Ok(())) => {
                if let Some(swap) = self.swapping.as_mut().filter(|s| s.plugin() == plugin) {
                    // Copy it before the switch.
                    swap.touch(id);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(format!("its plugin refused to import it: {e}")),
            Err(fault) => {
                self.recover(plugin, &fault);
                Err(format!("its plugin faulted importing it: {fault}"))
            }
        };
        (data, result)
    }

    /// Sends a migrant this game cannot take back where it came from, with
    /// its private state.
    fn bounce(&mut self, mut m: Migrant, why: String) {
        if m.bounced.is_some() {
            // It cannot go back either: nothing to do but say so.
            tracing::error!(
                entity = m.id,
                "an entity that came back cannot be taken in: {why}; it is lost"
            );
            return;
        }
        let (from, client) = (m.from, m.client);
        m.bounced = Some(why);
        self.world()
            .ship_now(from, client, GameInput::Wire(ToGame::Arrive(Box::new(m))));
    }
}

/// Microseconds since the Unix epoch (what `Depart` stamps).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
