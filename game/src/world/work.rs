//! The queue of work the game runs: one lane per plugin, served fairly.
//!
//! Work produced by a plugin's code (the calls it makes, the entities it
//! creates) waits in that plugin's lane; work that arrives from outside (a
//! client's call, a timer, a storage reply, a space tick) waits in the lane
//! of the plugin that runs its entity. Each lane is first in, first out, so
//! what one plugin produced runs in the order it produced it. Between
//! lanes, the next piece of work comes from the lane whose work has held
//! the game thread least: a plugin that floods the queue, or whose calls
//! each run close to the deadline, takes its share of the thread and no
//! more, and every other plugin's work goes on at the same time.

use std::collections::VecDeque;
use std::time::Duration;

use super::Work;

/// See the module docs.
#[derive(Debug)]
pub struct WorkQueue {
    lanes: Vec<Lane>,
    len: usize,
    /// The queue's clock: the time used, so far, of the lane served last
    /// (the one that had used least among those waiting). A lane that
    /// starts waiting starts no earlier.
    clock: Duration,
}

#[derive(Debug, Default)]
struct Lane {
    items: VecDeque<Work>,
    /// How long this lane's work has held the game thread, on the queue's
    /// clock (see [`WorkQueue::push`]).
    used: Duration,
}

impl WorkQueue {
    /// A queue with a lane for each of `plugins` plugins (at least one).
    pub fn new(plugins: usize) -> Self {
        Self {
            lanes: (0..plugins.max(1)).map(|_| Lane::default()).collect(),
            len: 0,
            clock: Duration::ZERO,
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `work` at the back of `lane` (the last lane if there is no
    /// such lane).
    pub fn push(&mut self, lane: usize, work: Work) {
        let lane = lane.min(self.lanes.len() - 1);
        let clock = self.clock;
        let l = &mut self.lanes[lane];
        if l.items.is_empty() {
            // A lane that was idle starts level with the queue's clock,
            // not with the time it did not use: idleness is not credit for
            // a burst that would hold the others up, and time another lane
            // used while it ran alone is no debt of this one.
            l.used = l.used.max(clock);
        }
        self.lanes[lane].items.push_back(work);
        self.len += 1;
    }

    /// The next work to run and its lane: the front of the lane that has
    /// used the least time.
    pub fn pop(&mut self) -> Option<(usize, Work)> {
        let lane = if self.lanes.len() == 1 {
            0
        } else {
            self.lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.items.is_empty())
                .min_by_key(|(_, l)| l.used)
                .map(|(i, _)| i)?
        };
        let work = self.lanes[lane].items.pop_front()?;
        self.len -= 1;
        Some((lane, work))
    }

    /// Takes out every piece of work for entity `id` (it moves to another
    /// game), each lane's in order.
    pub fn take_entity(&mut self, id: crate::msg::EntityId) -> Vec<Work> {
        let mut out = Vec::new();
        for lane in &mut self.lanes {
            if !lane.items.iter().any(|w| w.entity() == id) {
                continue;
            }
            let (theirs, rest): (VecDeque<Work>, VecDeque<Work>) =
                lane.items.drain(..).partition(|w| w.entity() == id);
            lane.items = rest;
            out.extend(theirs);
        }
        self.len -= out.len();
        out
    }

    /// Records that work from `lane` held the game thread for `took`.
    pub fn spent(&mut self, lane: usize, took: Duration) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.used += took;
            self.clock = self.clock.max(l.used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(q: &mut WorkQueue, n: usize, cost: &[Duration]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some((lane, Work::Created(id))) = q.pop() else {
                break;
            };
            q.spent(lane, cost[lane]);
            out.push((lane, id));
        }
        out
    }

    #[test]
    fn one_lane_is_first_in_first_out() {
        let mut q = WorkQueue::new(1);
        for id in 0..5 {
            q.push(0, Work::Created(id));
        }
        let got = ids(&mut q, 10, &[Duration::from_millis(1)]);
        assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_slow_lane_gets_its_share_of_time_not_of_turns() {
        let mut q = WorkQueue::new(2);
        for id in 0..100 {
            q.push(0, Work::Created(id)); // each takes 100 ms
            q.push(1, Work::Created(1000 + id)); // each takes 1 ms
        }
        let cost = [Duration::from_millis(100), Duration::from_millis(1)];
        let got = ids(&mut q, 60, &cost);
        let slow = got.iter().filter(|(l, _)| *l == 0).count();
        // Equal time: about one slow item for every hundred fast ones.
        assert!(slow <= 2, "{slow} slow items in {got:?}");
        // Each lane stays in order.
        let fast: Vec<u64> = got.iter().filter(|(l, _)| *l == 1).map(|x| x.1).collect();
        assert!(fast.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn time_used_alone_is_no_debt() {
        let mut q = WorkQueue::new(2);
        q.push(0, Work::Created(0));
        // Lane 0 ran alone for a second.
        ids(&mut q, 1, &[Duration::from_secs(1), Duration::ZERO]);
        // Lane 1 starts waiting, then lane 0 again: they alternate, lane 1
        // does not get a second of turns first.
        for id in 0..4 {
            q.push(1, Work::Created(100 + id));
            q.push(0, Work::Created(200 + id));
        }
        let ms = Duration::from_millis(1);
        let lanes: Vec<usize> = ids(&mut q, 6, &[ms, ms]).iter().map(|x| x.0).collect();
        assert!(
            lanes.windows(3).all(|w| w.contains(&0) && w.contains(&1)),
            "{lanes:?}"
        );
    }

    #[test]
    fn an_idle_lane_does_not_bank_credit() {
        let mut q = WorkQueue::new(2);
        for id in 0..10 {
            q.push(0, Work::Created(id));
        }
        let ms = Duration::from_millis(1);
        ids(&mut q, 9, &[ms, ms]);
        // Lane 1 wakes up after lane 0 used 9 ms: they now alternate.
        for id in 0..4 {
            q.push(0, Work::Created(100 + id));
            q.push(1, Work::Created(200 + id));
        }
        let lanes: Vec<usize> = ids(&mut q, 6, &[ms, ms]).iter().map(|x| x.0).collect();
        assert!(
            lanes.windows(3).all(|w| w.contains(&0) && w.contains(&1)),
            "{lanes:?}"
        );
    }

    #[test]
    fn an_entitys_work_is_taken_out_in_order_and_the_rest_stays() {
        let mut q = WorkQueue::new(2);
        for (lane, id) in [(0, 7), (1, 8), (0, 8), (1, 7), (0, 7)] {
            q.push(lane, Work::Created(id));
        }
        let taken: Vec<(usize, u64)> = q
            .take_entity(7)
            .into_iter()
            .map(|w| (0, w.entity()))
            .collect();
        assert_eq!(taken.len(), 3);
        let zero = [Duration::ZERO; 2];
        let rest = ids(&mut q, 10, &zero);
        assert_eq!(rest.iter().map(|r| r.1).collect::<Vec<_>>(), [8, 8]);
        assert!(q.is_empty());
    }
}
