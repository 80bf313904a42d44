//! The client registry: the [`Gate`] task and what it is told.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use wyrm_protocol::ServerFrame;

use crate::net::{CloseReason, Link};
use wyrm_dispatcher::HeldBatch;
use wyrm_wire::IdMap;
use wyrm_wire::{ClientId, EntityId, GateBatch, PluginIndex, ToGate};

/// From connections to the gate.
#[derive(Debug)]
pub enum Registration {
    /// A connection started; frames for it go to `link`.
    Register { client: ClientId, link: Arc<Link> },
    /// A connection ended.
    Unregister { client: ClientId },
    /// Every connection is to end (the games they reached are gone).
    ReleaseAll,
}

struct ClientSlot {
    link: Arc<Link>,
    entity: Option<EntityId>,
    /// The plugin that runs `entity`.
    plugin: PluginIndex,
    tags: HashMap<String, String>,
    /// Frames are queued and not yet flushed.
    pending: bool,
}

/// The gate's client registry; run it with [`Gate::run`].
pub struct Gate {
    clients: IdMap<ClientSlot, ClientId>,
    registrations: flume::Receiver<Registration>,
    batches: flume::Receiver<HeldBatch>,
    /// Clients with frames queued since their last flush.
    pending: Vec<ClientId>,
    /// Clients sent a frame of their own in the current batch.
    urgent: Vec<ClientId>,
}

impl Gate {
    /// A gate taking connections from `registrations` and games' output
    /// from `batches`.
    pub fn new(
        registrations: flume::Receiver<Registration>,
        batches: flume::Receiver<HeldBatch>,
    ) -> Self {
        Self {
            clients: IdMap::default(),
            registrations,
            batches,
            pending: Vec::new(),
            urgent: Vec::new(),
        }
    }

    /// Runs until every game and every connection is gone; dropping the
    /// registry then lets every connection go.
    pub async fn run(mut self) {
        loop {
            // A connection registers before it tells the game it exists, so
            // when both are waiting the registration goes first.
            tokio::select! {
                biased;
                r = self.registrations.recv_async() => match r {
                    Ok(r) => self.register(r),
                    Err(_) => break,
                },
                b = self.batches.recv_async() => match b {
                    // What the batch held against plugins is given back
                    // once its frames are queued on the clients' links.
                    Ok(b) => self.apply(b.batch),
                    Err(_) => break,
                },
            }
        }
        for slot in self.clients.values() {
            slot.link.close(CloseReason::Released);
        }
    }

    fn register(&mut self, r: Registration) {
        match r {
            Registration::Register { client, link } => {
                self.clients.insert(
                    client,
                    ClientSlot {
                        link,
                        entity: None,
                        plugin: 0,
                        tags: HashMap::new(),
                        pending: false,
                    },
                );
            }
            Registration::Unregister { client } => {
                self.clients.remove(&client);
            }
            Registration::ReleaseAll => {
                for slot in self.clients.values() {
                    slot.link.close(CloseReason::Released);
                }
            }
        }
    }

    /// Carries out one batch of a game's output, then writes.
    pub fn apply(&mut self, batch: GateBatch) {
        for op in batch.ops {
            match op {
                ToGate::Bind {
                    client,
                    entity,
                    plugin,
                } => {
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.entity = entity;
                        c.plugin = plugin;
                    }
                }
                ToGate::Send { client, frame } => {
                    if self.queue(client, &frame) {
                        self.urgent.push(client);
                    }
                }
                ToGate::View { client, frame } => {
                    self.queue(client, &frame);
                }
                ToGate::SendMany { clients, frame } => {
                    for client in clients {
                        self.queue(client, &frame);
                    }
                }
                ToGate::SetTag { client, key, value } => {
                    if let Some(c) = self.clients.get_mut(&client) {
                        match value {
                            Some(v) => c.tags.insert(key, v),
                            None => c.tags.remove(&key),
                        };
                    }
                }
                ToGate::CallFiltered {
                    filter,
                    method,
                    args,
                    plugin,
                } => self.call_own(&method, &args, |c| {
                    c.plugin == plugin && filter.iter().all(|(k, v)| c.tags.get(k) == Some(v))
                }),
                ToGate::Broadcast {
                    method,
                    args,
                    plugin,
                } => self.call_own(&method, &args, |c| c.plugin == plugin),
                ToGate::Release { client } => {
                    if let Some(c) = self.clients.get(&client) {
                        c.link.close(CloseReason::Released);
                    }
                }
            }
        }
        if batch.tick {
            for client in std::mem::take(&mut self.pending) {
                self.flush(client);
            }
        } else {
            for client in std::mem::take(&mut self.urgent) {
                self.flush(client);
            }
        }
        self.urgent.clear();
    }

    /// Calls `method` on the own entity of every matching client that has
    /// one: one frame, the same bytes for all.
    fn call_own(&mut self, method: &str, args: &[u8], matches: impl Fn(&ClientSlot) -> bool) {
        let targets: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.entity.is_some() && matches(c))
            .map(|(&id, _)| id)
            .collect();
        if targets.is_empty() {
            return;
        }
        let frame = Bytes::from(
            ServerFrame::CallOwn {
                method: method.to_owned(),
                args: args.to_vec(),
            }
            .to_bytes(),
        );
        for client in targets {
            self.queue(client, &frame);
        }
    }

    /// Queues a frame for a client; a client whose queue would pass its
    /// limit reads too slowly to keep and is dropped, alone. Returns whether
    /// the frame was queued.
    fn queue(&mut self, client: ClientId, frame: &Bytes) -> bool {
        let Some(c) = self.clients.get_mut(&client) else {
            return false;
        };
        match c.link.push(frame) {
            Ok(()) => {
                if !c.pending {
                    c.pending = true;
                    self.pending.push(client);
                }
                true
            }
            Err(over) => {
                // The connection's task logs why it ends.
                c.link.close(CloseReason::SlowReader {
                    queued: over.queued,
                    limit: over.limit,
                });
                self.clients.remove(&client);
                false
            }
        }
    }

    fn flush(&mut self, client: ClientId) {
        if let Some(c) = self.clients.get_mut(&client) {
            if c.pending {
                c.pending = false;
                c.link.flush();
            }
        }
    }
}
