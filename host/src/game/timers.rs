//! Timers as data: (entity, method, args), ordered by due time. A timer
//! outlives any plugin instance; it fires into whatever code runs then.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::msg::EntityId;

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
}

/// All armed timers of a game.
#[derive(Debug, Default)]
pub struct Timers {
    next_id: u64,
    /// Due time and id; a cancelled id is skipped when it comes due.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    armed: HashMap<u64, Timer>,
}

impl Timers {
    /// Arms a timer due after `delay`; returns its id.
    pub fn arm(&mut self, delay: Duration, timer: Timer) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.queue.push(Reverse((Instant::now() + delay, id)));
        self.armed.insert(id, timer);
        id
    }

    /// Cancels a timer; false if it was not armed.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.armed.remove(&id).is_some()
    }

    /// Cancels every timer of `entity`.
    pub fn cancel_entity(&mut self, entity: EntityId) {
        self.armed.retain(|_, t| t.entity != entity);
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

    /// Removes and returns the timers due at `now`, earliest first; repeating
    /// ones are re-armed.
    pub fn take_due(&mut self, now: Instant, out: &mut Vec<Timer>) {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(timer) = self.armed.get(&id) else {
                continue;
            };
            match timer.every {
                Some(every) => {
                    out.push(timer.clone());
                    // Re-arm from the due time, not from now, so a repeating
                    // timer does not drift; never schedule in the past twice.
                    let next = (at + every).max(now);
                    self.queue.push(Reverse((next, id)));
                }
                None => {
                    if let Some(t) = self.armed.remove(&id) {
                        out.push(t);
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
        }
    }

    #[test]
    fn fires_in_order_repeats_and_cancels() {
        let mut t = Timers::default();
        let a = t.arm(Duration::from_millis(20), timer(1, None));
        t.arm(
            Duration::from_millis(10),
            timer(2, Some(Duration::from_millis(10))),
        );
        let mut out = Vec::new();
        t.take_due(Instant::now() + Duration::from_millis(25), &mut out);
        let mut fired: Vec<_> = out.iter().map(|t| t.entity).collect();
        assert_eq!(fired[0], 2, "earliest first");
        fired.sort();
        assert_eq!(fired, vec![1, 2, 2], "the repeating timer fired twice");
        assert!(!t.cancel(a), "one-shot already fired");
        t.cancel_entity(2);
        assert_eq!(t.next_due(), None);
    }
}
