//! Entities moving between games. The game an entity leaves takes out
//! everything that is its own — attributes, timers, the work queued for
//! it, its client, with the private state the game exported through the
//! state hook — into a [`Migrant`], and leaves its space (its watchers, and
//! its client, are told). The game it goes to installs it, queues the work
//! it came with and then what the dispatcher held for it meanwhile, binds
//! its client (which sees its surroundings there, as after entering a
//! space) and does what the move was for.

use std::time::{Duration, Instant};

use super::remote::Outgoing;
use super::*;
use crate::msg::{EntityCall, ToGame};
use wyrm_wire::{Arrival, GameId, Migrant, MigrantTimer, QueuedWork};

impl World {
    /// Starts moving `id` to game `to`, to enter `space` there: the
    /// dispatcher holds its messages from now on and the game it leaves
    /// (this one, or another) gets a marker behind what it was sent before
    /// ([`depart`](Self::depart)).
    pub(super) fn move_to_space(
        &mut self,
        id: EntityId,
        to: GameId,
        space: EntityId,
        pos: wyrm_protocol::Position,
        yaw: f32,
    ) -> Result<(), String> {
        if self.spaces.is_space(id) {
            return Err(format!(
                "space {id} cannot enter space {space}, which is on another game: a space \
                 does not move"
            ));
        }
        let then = Arrival::EnterSpace { space, pos, yaw };
        self.routes.begin_migration(id, to, Some(then))
    }

    /// Whether `id` can leave this game now; why not otherwise.
    pub(crate) fn can_depart(&self, id: EntityId) -> Result<(), String> {
        self.live_entity(id)?;
        if self.spaces.is_space(id) {
            return Err(format!("entity {id} is a space"));
        }
        Ok(())
    }

    /// Takes `id` out of this world to move to game `to`, with the private
    /// state its plugin (version `version`) exported. The migrant leaves
    /// once this round's output has gone to the gate, so its client's
    /// frames from here arrive first.
    pub(crate) fn depart(
        &mut self,
        id: EntityId,
        to: GameId,
        then: Option<Arrival>,
        state: Vec<u8>,
        version: String,
        held_at_us: u64,
    ) {
        let Some(e) = self.entities.get(&id) else {
            return;
        };
        let type_name = self.types.get(e.ty).name.clone();
        let attrs = self.attrs_map(id, |_| true).unwrap_or_default();
        let (client, client_moves, counted) = (e.client, e.client_moves, e.counted);
        // Its watchers here, and its client, see it leave its space.
        self.leave_space_now(id);
        if let Some(client) = client {
            self.hide_surroundings(client, id);
            self.clients.remove(&client);
        }
        let now = Instant::now();
        let timers = self
            .timers
            .take_entity(id)
            .into_iter()
            .map(|(timer, due, t, queued)| MigrantTimer {
                id: timer,
                due_in_us: micros(due.saturating_duration_since(now)),
                every_us: t.every.map(micros),
                method: t.method,
                args: t.args,
                queued,
            })
            .collect();
        let work = self
            .work
            .take_entity(id)
            .into_iter()
            .filter_map(queued_work)
            .collect();
        let dirty = self.storage.dirty.remove(&id);
        // Its state goes with it; the game it goes to writes it from now on.
        self.storage.forget_written(id);
        let handoff = self.handoffs.remove(&id).map(|p| p as PluginIndex);
        self.entities.remove(&id);
        self.uncount_entity(counted as usize);
        let migrant = Migrant {
            id,
            type_name,
            from: self.routes.game(),
            attrs,
            state,
            version,
            timers,
            client,
            client_moves,
            dirty,
            counted,
            handoff,
            work,
            then,
            bounced: None,
            held_at_us,
        };
        self.defer(Outgoing::Ship {
            to,
            client,
            msg: GameInput::Wire(ToGame::Arrive(Box::new(migrant))),
        });
    }

    /// What the dispatcher held for `id`, which could not move: it stays.
    pub(crate) fn routes_migration_failed(
        &mut self,
        id: EntityId,
    ) -> std::collections::VecDeque<GameInput> {
        self.routes.migration_failed(id)
    }

    /// Sends a migrant on at once (one this game never installed: it
    /// produced nothing for its client here).
    pub(crate) fn ship_now(&mut self, to: GameId, client: Option<ClientId>, msg: GameInput) {
        self.routes.ship(to, client, msg);
    }

    /// The type a migrant is of here.
    pub(crate) fn migrant_type(&self, m: &Migrant) -> Result<TypeIndex, String> {
        if self.entities.contains_key(&m.id) {
            return Err(format!("entity {} is here already", m.id));
        }
        self.types
            .find(&m.type_name)
            .ok_or_else(|| format!("no plugin here has entity type {}", m.type_name))
    }

    /// Installs an entity that arrived (its private state is imported
    /// already), or that came back refused (`m.bounced`: its private state
    /// never left this game's instance).
    pub(crate) fn install(&mut self, m: Migrant, ty: TypeIndex) {
        let Migrant {
            id,
            attrs: attr_bytes,
            timers,
            client,
            client_moves,
            dirty,
            counted,
            handoff,
            work,
            then,
            bounced,
            ..
        } = m;
        let t = self.types.get(ty);
        let (plugin, len) = (t.plugin, t.attrs.len());
        let mut attrs = Attrs::new(len);
        if let Ok(Value::Map(entries)) = decode_value(&attr_bytes) {
            for (k, v) in entries {
                let index = k.as_str().and_then(|name| self.types.get(ty).attr(name));
                match index {
                    Some(i) => {
                        let _ = attrs.set_top(i, v);
                    }
                    None => {
                        tracing::warn!(entity = id, attr = ?k, "attribute of a migrant no longer declared; dropped")
                    }
                }
            }
        }
        // It existed already: it counts, whatever the limit.
        if let Some(book) = self.books.get_mut(counted as usize) {
            book.entities += 1;
        }
        self.entities.insert(
            id,
            Entity {
                ty,
                attrs,
                client,
                doomed: false,
                client_moves,
                counted,
            },
        );
        if dirty {
            self.storage.dirty.insert(id);
        }
        if let Some(p) = handoff {
            self.handoffs.insert(id, p as usize);
        }
        let now = Instant::now();
        for mt in timers {
            let timer = Timer {
                entity: id,
                method: mt.method,
                args: mt.args,
                every: mt.every_us.map(Duration::from_micros),
                plugin,
            };
            let due = now + Duration::from_micros(mt.due_in_us);
            self.timers.arm_as(mt.id, due, timer, mt.queued);
        }
        // The work it came with, then what waited for it.
        for w in work {
            self.queue_host(local_work(id, w));
        }
        let held = match &bounced {
            None => self.routes.arrived(id, ty as u32),
            Some(_) => self.routes.migration_failed(id),
        };
        self.take_routed(held);
        if let Some(client) = client {
            // Bound again here; no `client-connected`: it never left.
            self.bind(client, id);
        }
        match (then, bounced) {
            (Some(Arrival::EnterSpace { space, pos, yaw }), None) => {
                if let Err(e) = self.enter_space_here(id, space, pos, yaw) {
                    tracing::warn!(
                        entity = id,
                        space,
                        "a migrant could not enter its space: {e}"
                    );
                }
            }
            (_, Some(why)) => {
                tracing::warn!(
                    entity = id,
                    "could not move to another game, stays here: {why}"
                )
            }
            (None, None) => {}
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Work that waited for a departing entity, as it travels. Destroys and
/// ticks do not travel: a doomed entity or a space does not move.
fn queued_work(w: Work) -> Option<QueuedWork> {
    Some(match w {
        Work::Created(_) => QueuedWork::Created,
        Work::ClientConnected(_) => QueuedWork::ClientConnected,
        Work::ClientDisconnected(_) => QueuedWork::ClientDisconnected,
        Work::Call(c) => QueuedWork::Call {
            caller_kind: match c.caller.kind {
                CallerKind::Server => 0,
                CallerKind::OwnClient => 1,
                CallerKind::OtherClient => 2,
            },
            reply: c.reply.map(|r| (r.client, r.req_id)),
            timer: c.timer,
            call: EntityCall {
                entity: c.entity,
                method: c.method,
                args: c.args,
                from: c.caller.entity,
                plugin: None,
            },
        },
        Work::Destroy(_) | Work::Tick { .. } => return None,
    })
}

/// Travelled work, queued again.
fn local_work(id: EntityId, w: QueuedWork) -> Work {
    match w {
        QueuedWork::Created => Work::Created(id),
        QueuedWork::ClientConnected => Work::ClientConnected(id),
        QueuedWork::ClientDisconnected => Work::ClientDisconnected(id),
        QueuedWork::Call {
            call,
            caller_kind,
            reply,
            timer,
        } => Work::Call(Call {
            entity: id,
            method: call.method,
            args: call.args,
            caller: Caller {
                kind: match caller_kind {
                    1 => CallerKind::OwnClient,
                    2 => CallerKind::OtherClient,
                    _ => CallerKind::Server,
                },
                entity: call.from,
            },
            reply: reply.map(|(client, req_id)| Reply { client, req_id }),
            charge: None,
            timer,
        }),
    }
}
