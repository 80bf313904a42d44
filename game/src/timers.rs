//! Timers as data: (entity, method, args), ordered by due time. A timer
//! outlives any plugin instance; it fires into whatever code runs then.
//!
//! What a plugin may arm is bounded (`[limits] timer_bytes`, counted per
//! plugin with [`Timer::cost`]), and so is what timers put in the work
//! queue: a round takes at most so many due timers, and a repeating timer
//! whose last call has not run yet skips its beat instead of queueing
//! another, so a thousand 1 ms timers cannot pile up calls faster than they
//! run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::msg::EntityId;
use wyrm_dispatcher::ITEM_BYTES;

/// An armed timer.
#[derive(Debug, Clone)]
pub struct Timer {
    /// The entity to call.
    pub entity: EntityId,
    /// The method to call.
    pub method: String,
    /// MessagePack arguments.
    pub args: Vec<u8>,
    /// Period for a repeating timer.
    pub every: Option<Duration>,
    /// The plugin that armed it (and runs the entity).
    pub plugin: usize,
}

impl Timer {
    /// What the timer counts against its plugin's `[limits] timer_bytes`.
    pub fn cost(&self) -> usize {
        self.method.len() + self.args.len() + ITEM_BYTES
    }
}

#[derive(Debug)]
struct Armed {
    timer: Timer,
    /// Its last call waits in the work queue.
    queued: bool,
}

/// All armed timers of a game.
#[derive(Debug, Default)]
pub struct Timers {
    next_id: u64,
    /// Due time and id; a cancelled id is skipped when it comes due.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    armed: HashMap<u64, Armed>,
    /// Per plugin, the bytes of its armed timers.
    bytes: Vec<usize>,
}

impl Timers {
    /// The timers of game `game`: their ids are unique across the games of
    /// a process (the game's number in the top 16 bits), so a timer keeps
    /// its id when its entity moves to another game.
    pub fn of_game(game: u16) -> Self {
        Self {
            next_id: u64::from(game) << 48,
            ..Self::default()
        }
    }

    /// Arms a timer due after `delay`; returns its id.
    pub fn arm(&mut self, delay: Duration, timer: Timer) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.arm_as(id, Instant::now() + delay, timer, false);
        id
    }

    /// Arms a timer that came from another game with its entity, under the
    /// id it had there, due at `due`; `queued` if its last call travelled
    /// with the entity's work.
    pub fn arm_as(&mut self, id: u64, due: Instant, timer: Timer, queued: bool) {
        self.count(timer.plugin, timer.cost(), true);
        self.queue.push(Reverse((due, id)));
        self.armed.insert(id, Armed { timer, queued });
    }

    /// Removes every timer of `entity`, for it to move to another game:
    /// each with its id, when it is due and whether its last call waits.
    pub fn take_entity(&mut self, entity: EntityId) -> Vec<(u64, Instant, Timer, bool)> {
        let mut due: HashMap<u64, Instant> = HashMap::new();
        for Reverse((at, id)) in &self.queue {
            if self.armed.get(id).is_some_and(|a| a.timer.entity == entity) {
                // A cancelled and re-used id cannot happen (ids only grow);
                // a timer has one live heap entry.
                due.insert(*id, *at);
            }
        }
        let mut out = Vec::new();
        for (id, at) in due {
            let queued = self.armed.get(&id).is_some_and(|a| a.queued);
            if let Some(t) = self.remove(id) {
                out.push((id, at, t, queued));
            }
        }
        out.sort_by_key(|(id, ..)| *id);
        out
    }

    /// The bytes of plugin `plugin`'s armed timers.
    pub fn bytes_of(&self, plugin: usize) -> usize {
        self.bytes.get(plugin).copied().unwrap_or(0)
    }

    fn count(&mut self, plugin: usize, cost: usize, armed: bool) {
        if self.bytes.len() <= plugin {
            self.bytes.resize(plugin + 1, 0);
        }
        let b = &mut self.bytes[plugin];
        *b = if armed {
            *b + cost
        } else {
            b.saturating_sub(cost)
        };
    }

    fn remove(&mut self, id: u64) -> Option<Timer> {
        let a = self.armed.remove(&id)?;
        self.count(a.timer.plugin, a.timer.cost(), false);
        self.compact();
        Some(a.timer)
    }

    /// Drops the heap entries of cancelled timers once they outnumber the
    /// armed ones: arming and cancelling in a loop must not grow the heap
    /// until the cancelled timers would have come due.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.armed.len() + 1024 {
            let armed = &self.armed;
            self.queue.retain(|Reverse((_, id))| armed.contains_key(id));
        }
    }

    /// Cancels a timer; false if it was not armed, or (with `plugin`) is
    /// not that plugin's.
    pub fn cancel(&mut self, id: u64, plugin: Option<usize>) -> bool {
        match self.armed.get(&id) {
            Some(a) if plugin.is_none_or(|p| p == a.timer.plugin) => self.remove(id).is_some(),
            _ => false,
        }
    }

    /// Cancels every timer of `entity`.
    pub fn cancel_entity(&mut self, entity: EntityId) {
        let ids: Vec<u64> = self
            .armed
            .iter()
            .filter(|(_, a)| a.timer.entity == entity)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// The call timer `id` fired has run (or was dropped): a repeating
    /// timer may queue its next.
    pub fn ran(&mut self, id: u64) {
        if let Some(a) = self.armed.get_mut(&id) {
            a.queued = false;
        }
    }

    /// When the earliest timer is due.
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.queue.peek() {
            if self.armed.contains_key(id) {
                return Some(*at);
            }
            self.queue.pop();
        }
        None
    }

    /// Removes and returns (with their ids) timers due at `now`, earliest
    /// first, looking at `max` of them at most (the rest stay due, for the
    /// next round); repeating ones are re-armed, and skip this beat if
    /// their last call still waits.
    pub fn take_due(&mut self, now: Instant, max: usize, out: &mut Vec<(u64, Timer)>) {
        for _ in 0..max {
            let Some(Reverse((at, id))) = self.queue.peek().copied() else {
                break;
            };
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(a) = self.armed.get_mut(&id) else {
                continue;
            };
            match a.timer.every {
                Some(every) => {
                    if !a.queued {
                        a.queued = true;
                        out.push((id, a.timer.clone()));
                    }
                    // Re-arm from the due time, not from now, so a repeating
                    // timer does not drift; never schedule in the past twice.
                    let next = (at + every).max(now);
                    self.queue.push(Reverse((next, id)));
                }
                None => {
                    if let Some(t) = self.remove(id) {
                        out.push((id, t));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(entity: EntityId, every: Option<Duration>) -> Timer {
        Timer {
            entity,
            method: "m".into(),
            args: vec![],
            every,
            plugin: 0,
        }
    }

    fn fired(t: &mut Timers, at: Instant, max: usize) -> Vec<EntityId> {
        let mut out = Vec::new();
        t.take_due(at, max, &mut out);
        out.iter().map(|(_, t)| t.entity).collect()
    }

    #[test]
    fn fires_in_order_repeats_and_cancels() {
        let mut t = Timers::default();
        let a = t.arm(Duration::from_millis(20), timer(1, None));
        let r = t.arm(
            Duration::from_millis(10),
            timer(2, Some(Duration::from_millis(10))),
        );
        let start = Instant::now();
        assert_eq!(fired(&mut t, start + Duration::from_millis(15), 100), [2]);
        // Its call ran, so it fires again with the one-shot.
        t.ran(r);
        let mut got = fired(&mut t, start + Duration::from_millis(25), 100);
        got.sort();
        assert_eq!(got, [1, 2]);
        assert!(!t.cancel(a, None), "one-shot already fired");
        t.cancel_entity(2);
        assert_eq!(t.next_due(), None);
        assert_eq!(t.bytes_of(0), 0, "nothing armed, nothing counted");
    }

    #[test]
    fn a_repeating_timer_skips_beats_while_its_call_waits() {
        let mut t = Timers::default();
        let ms = Duration::from_millis(1);
        let id = t.arm(ms, timer(7, Some(ms)));
        let start = Instant::now();
        assert_eq!(fired(&mut t, start + ms * 2, 100), [7]);
        for i in 3..10 {
            assert!(fired(&mut t, start + ms * i, 100).is_empty(), "beat {i}");
        }
        t.ran(id);
        assert_eq!(fired(&mut t, start + ms * 11, 100), [7]);
    }

    #[test]
    fn a_round_takes_at_most_max_and_the_rest_stay_due() {
        let mut t = Timers::default();
        for e in 0..10 {
            t.arm(Duration::ZERO, timer(e, None));
        }
        let later = Instant::now() + Duration::from_millis(1);
        assert_eq!(fired(&mut t, later, 4).len(), 4);
        assert_eq!(fired(&mut t, later, 100).len(), 6);
    }

    #[test]
    fn only_the_plugin_that_armed_a_timer_cancels_it_and_costs_are_counted() {
        let mut t = Timers::default();
        let mut other = timer(1, None);
        other.plugin = 1;
        let cost = other.cost();
        let id = t.arm(Duration::from_secs(60), other);
        assert_eq!((t.bytes_of(0), t.bytes_of(1)), (0, cost));
        assert!(!t.cancel(id, Some(0)));
        assert!(t.cancel(id, Some(1)));
        assert_eq!(t.bytes_of(1), 0);
    }

    #[test]
    fn arming_and_cancelling_in_a_loop_does_not_grow_the_heap() {
        let mut t = Timers::default();
        for _ in 0..100_000 {
            let id = t.arm(Duration::from_secs(3600), timer(1, None));
            t.cancel(id, None);
        }
        assert!(t.queue.len() <= 1024 + 1, "{}", t.queue.len());
    }

    #[test]
    fn an_entitys_timers_move_to_another_game_with_their_ids_and_due_times() {
        let (mut here, mut there) = (Timers::of_game(0), Timers::of_game(1));
        let stays = here.arm(Duration::from_millis(10), timer(2, None));
        let once = here.arm(Duration::from_millis(5), timer(1, None));
        let every = here.arm(
            Duration::from_millis(7),
            timer(1, Some(Duration::from_millis(7))),
        );
        let mut moving = here.take_entity(1);
        assert_eq!(
            moving.iter().map(|m| m.0).collect::<Vec<_>>(),
            [once, every]
        );
        assert_eq!(
            here.bytes_of(0),
            timer(2, None).cost(),
            "only what stayed counts"
        );
        let ids_there = there.arm(Duration::from_secs(60), timer(3, None));
        assert!(
            ids_there >> 48 == 1 && stays >> 48 == 0,
            "ids differ by game"
        );
        for (id, due, t, queued) in moving.drain(..) {
            there.arm_as(id, due, t, queued);
        }
        let later = Instant::now() + Duration::from_millis(20);
        assert_eq!(fired(&mut there, later, 10), [1, 1]);
        assert_eq!(fired(&mut here, later, 10), [2]);
        // The repeating one kept its id: its owner can still cancel it.
        assert!(there.cancel(every, None));
    }
}
