//! Entity ids for every game of a process, from one counter, never handed
//! out twice even across a crash: ids are reserved from storage in blocks,
//! ahead of need, and a block's reservation is queued to storage before
//! any id of it is handed out, so every saved row lies below a
//! reservation committed no later than it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wyrm_storage::{Op, ID_BLOCK};

use super::Store;
use crate::msg::EntityId;

/// See the module docs; shared by the games of a process.
pub struct EntityIds {
    next: AtomicU64,
    /// Ids below this are reserved; read without the lock on the hot path.
    reserved_hint: AtomicU64,
    /// The reservation, changed (and its operation queued) under the lock.
    reserved: Mutex<u64>,
    store: Store,
}

impl EntityIds {
    /// Ids from `next` on; ids below `reserved` are reserved already.
    pub fn new(next: EntityId, reserved: u64, store: Store) -> Arc<Self> {
        Arc::new(Self {
            next: AtomicU64::new(next),
            reserved_hint: AtomicU64::new(reserved),
            reserved: Mutex::new(reserved),
            store,
        })
    }

    /// An id no entity has had.
    pub fn allocate(&self) -> EntityId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Acquire: a reservation seen here was queued before this thread
        // queues anything about `id`.
        if id + ID_BLOCK / 2 >= self.reserved_hint.load(Ordering::Acquire) {
            let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
            while id + ID_BLOCK / 2 >= *reserved {
                *reserved += ID_BLOCK;
                self.store.send(Op::ReserveIds { ceiling: *reserved });
            }
            self.reserved_hint.store(*reserved, Ordering::Release);
        }
        id
    }

    /// Ids from this one on were never handed out.
    pub fn unused_from(&self) -> EntityId {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    /// Ids from several threads are all different, and a database opened
    /// after them (as after a crash) hands out none of them again.
    #[test]
    fn ids_are_unique_across_threads_and_a_restart() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("ids.db");
        let opened =
            wyrm_storage::open::<Option<wyrm_dispatcher::Charge>>(&path, false, &[], |_| {})
                .expect("open");
        let ids = EntityIds::new(opened.next_id, opened.reserved, opened.store.clone());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..30_000).map(|_| ids.allocate()).collect::<Vec<_>>())
            })
            .collect();
        let all: Vec<EntityId> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("a thread"))
            .collect();
        let unique: HashSet<EntityId> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "an id was handed out twice");
        let highest = all.iter().copied().max().unwrap_or(0);
        assert!(opened.store.flush(Duration::from_secs(30)));
        drop((ids, opened.store));
        let _ = opened.thread.join();
        let again = wyrm_storage::open::<()>(&path, false, &[], |_| {}).expect("reopen");
        assert!(
            again.next_id > highest,
            "after a restart ids start at {}, but {highest} was handed out",
            again.next_id
        );
    }
}
