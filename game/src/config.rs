//! The game's settings: `[game]` and `[limits]` of the server's config.

use std::collections::HashMap;

use serde::Deserialize;
use wyrm_protocol::Resolution;

/// `[game]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameConfig {
    /// Entity type created for, and bound to, each client that connects.
    pub boot_entity: String,
    /// Entity types of which one instance is created at start and found by
    /// plugins through the `service` import.
    #[serde(default)]
    pub services: Vec<String>,
    /// How often plugins' private state is checkpointed, so a crash costs
    /// at most this much of it (0 turns checkpoints off; every swap takes
    /// one anyway).
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_interval_ms: u64,
    /// How many times a second every space ticks: logic's `tick` runs, AOI
    /// events are delivered and clients receive the positions that changed.
    #[serde(default = "default_space_tick_hz")]
    pub space_tick_hz: u32,
    /// How finely positions are sent to clients, in world units: a power of
    /// two (`0.03125`, the default, is 1/32; `1`, `0.25`, `0.0078125`…).
    /// Positions sent are rounded to it.
    #[serde(default = "default_position_resolution")]
    pub position_resolution: f64,
    /// Settings per kind of space (the `kind` given to `create-space`):
    /// `[game.spaces.<kind>]`.
    #[serde(default)]
    pub spaces: HashMap<String, SpaceConfig>,
    /// Games ("workers") this process runs, each on a thread of its own
    /// with its own entities, plugin instances and spaces. New clients'
    /// entities go to the least loaded; an entity a plugin creates lives
    /// where its creator does; services run on the first. By default half
    /// the cores (at least one); the network takes the rest.
    #[serde(default)]
    pub workers: Option<usize>,
}

/// `[game.spaces.<kind>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceConfig {
    /// `position_resolution` for spaces of this kind.
    pub position_resolution: f64,
}

fn default_space_tick_hz() -> u32 {
    20
}

fn default_position_resolution() -> f64 {
    Resolution::default().step()
}

impl GameConfig {
    /// Defaults, with clients bound to `boot_entity` first.
    pub fn new(boot_entity: &str) -> Self {
        Self {
            boot_entity: boot_entity.to_owned(),
            services: Vec::new(),
            checkpoint_interval_ms: default_checkpoint_ms(),
            space_tick_hz: default_space_tick_hz(),
            workers: None,
            position_resolution: default_position_resolution(),
            spaces: HashMap::new(),
        }
    }

    /// The resolution of spaces of a kind without settings of its own.
    pub fn position_resolution(&self) -> anyhow::Result<Resolution> {
        Resolution::from_step(self.position_resolution)
            .map_err(|e| anyhow::anyhow!("[game] position_resolution: {e}"))
    }

    /// The resolution of each kind of space that sets one.
    pub fn space_resolutions(&self) -> anyhow::Result<HashMap<String, Resolution>> {
        self.spaces
            .iter()
            .map(|(kind, s)| {
                Resolution::from_step(s.position_resolution)
                    .map(|r| (kind.clone(), r))
                    .map_err(|e| anyhow::anyhow!("[game.spaces.{kind}] position_resolution: {e}"))
            })
            .collect()
    }
}

fn default_checkpoint_ms() -> u64 {
    5000
}

/// `[limits]`: what a plugin may take from the host. Every limit a plugin
/// hits fails what it was doing with a message naming the limit and its
/// value, and is logged (see `docs/plugins.md`, "Limits").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most CPU time a single call into a plugin may use before it is
    /// stopped (time spent waiting for a core does not count).
    pub call_deadline_ms: u64,
    /// Largest linear memory a plugin instance may grow to, in MiB. A
    /// plugin's exported private state (a checkpoint, a swap's copy) may be
    /// at most twice this.
    pub memory_mb: usize,
    /// Largest MessagePack value a plugin may pass to one import: call
    /// arguments, an attribute value, initial attributes, timer arguments,
    /// a storage value or context, stats fields.
    pub value_bytes: usize,
    /// Bytes a plugin may have queued on the host, not yet delivered:
    /// calls and new entities waiting to run, frames for clients not yet
    /// handed to their connections, storage operations, password hashes
    /// and stats events waiting for their threads. Each item also counts
    /// 128 bytes for itself.
    pub queued_bytes: usize,
    /// Bytes of timers a plugin may have armed at once: each timer counts
    /// its arguments and method name, and 128 bytes for itself (so the
    /// default holds about 130,000 timers with small arguments).
    pub timer_bytes: usize,
    /// Entities a plugin may have alive at once: those it created (of any
    /// plugin's types), and those of its types the server made or loaded
    /// (clients' boot entities, services, loads).
    pub entities: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            call_deadline_ms: 200,
            memory_mb: 64,
            value_bytes: 1024 * 1024,
            queued_bytes: 64 * 1024 * 1024,
            timer_bytes: 16 * 1024 * 1024,
            entities: 1_000_000,
        }
    }
}
