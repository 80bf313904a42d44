//! Entity ids for every game of a process, never handed out twice — not
//! by another process sharing the database, not after a crash: ids come
//! in blocks that storage reserves (and commits) before any id of a block
//! is handed out. The next block is asked for when half of the current one
//! is used, so a game waits for storage only if it makes thousands of
//! entities faster than one transaction commits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use wyrm_storage::{IdBlock, Op, ID_BLOCK};

use super::Store;
use crate::msg::EntityId;

/// How long a game waits for storage to reserve ids before the creation
/// that needed one fails.
const RESERVE_WAIT: Duration = Duration::from_secs(5);

/// See the module docs; shared by the games of a process.
pub struct EntityIds {
    blocks: Mutex<Blocks>,
    store: Store,
}

struct Blocks {
    /// The next id to hand out, and the end of its block.
    next: u64,
    end: u64,
    /// The next block, once asked for.
    coming: Option<Receiver<IdBlock>>,
}

/// Storage did not reserve ids in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "no entity id: storage did not reserve a block of ids within {RESERVE_WAIT:?} (see its log)"
)]
pub struct NoIds;

impl EntityIds {
    /// Ids from `first`, the block storage reserved when it opened.
    pub fn new(first: IdBlock, store: Store) -> Arc<Self> {
        Arc::new(Self {
            blocks: Mutex::new(Blocks {
                next: first.start,
                end: first.end,
                coming: None,
            }),
            store,
        })
    }

    /// An id no entity has had.
    pub fn allocate(&self) -> Result<EntityId, NoIds> {
        let mut b = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if b.next >= b.end {
            let coming = b.coming.take().unwrap_or_else(|| self.ask());
            match coming.recv_timeout(RESERVE_WAIT) {
                Ok(block) => (b.next, b.end) = (block.start, block.end),
                // Asked again by the next creation.
                Err(_) => return Err(NoIds),
            }
        }
        let id = b.next;
        b.next += 1;
        if b.coming.is_none() && b.end - b.next <= ID_BLOCK / 2 {
            b.coming = Some(self.ask());
        }
        Ok(id)
    }

    /// Asks storage for the next block.
    fn ask(&self) -> Receiver<IdBlock> {
        let (reply, coming) = crossbeam_channel::bounded(1);
        self.store.send(Op::ReserveIds { reply });
        coming
    }

    /// Ids from this one on were never handed out by this process (nor by
    /// any, when it holds the database alone, as `wyrm serve` does).
    pub fn unused_from(&self) -> EntityId {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner()).next
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
        let location = wyrm_storage::Location::Sqlite {
            path,
            durable: false,
        };
        let opened = wyrm_storage::open::<Option<wyrm_dispatcher::Charge>>(&location, &[], |_| {})
            .expect("open");
        let ids = EntityIds::new(opened.ids.clone(), opened.store.clone());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    (0..30_000)
                        .map(|_| ids.allocate().expect("an id"))
                        .collect::<Vec<_>>()
                })
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
        let again = wyrm_storage::open::<()>(&location, &[], |_| {}).expect("reopen");
        assert!(
            again.ids.start > highest,
            "after a restart ids start at {}, but {highest} was handed out",
            again.ids.start
        );
    }
}
