//! Storage: the game's database, on a thread of its own — SQLite embedded
//! in the process, or PostgreSQL shared by a cluster (one interface, two
//! [`Location`]s) — and the stats sink ([`StatsSink`]) on another.
//!
//! A game sends [`Op`]s; the storage thread takes everything queued, runs
//! it in one transaction, commits, and only then answers — as a [`Reply`]
//! (a call `entity.method([error, value, context])`) or, for loads, with
//! the entity read — through the function the game gave [`open`]. So an
//! answer always means "on disk", writes are batched without anyone
//! waiting, and the game thread never touches the disk. A failed
//! transaction answers every request in it with the error; nothing panics.
//!
//! An operation may carry a ticket of the caller's (`T`; the host's counts
//! the bytes a request holds against the plugin that made it): a reply
//! carries it back, so it lives until the reply has run; any other answer
//! drops it once the operation has run. Storage knows nothing of plugins,
//! games or channels.
//!
//! Opening is careful: an SQLite database another process holds is
//! refused, a file that is not a healthy SQLite database is refused and
//! left as it is, and a new database is created only where there is none,
//! with a log line that says so. A PostgreSQL database is shared: every
//! process of a cluster opens the same one.

mod batch;
mod postgres;
mod sqlite;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;

use crossbeam_channel::Sender;

use wyrm_wire::EntityId;

pub use batch::reply;
pub use sqlite::SCHEMA_VERSION;
pub use stats::StatsSink;

/// Entity ids a process may hand out: reserved in storage, so no other
/// process (or later run) is given any of them.
pub type IdBlock = std::ops::Range<u64>;

/// Where the game's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file, held by this process alone; `durable` syncs every
    /// commit to the disk itself.
    Sqlite { path: PathBuf, durable: bool },
    /// A PostgreSQL database (`postgres://user:password@host:port/db`),
    /// which every process of a cluster shares. TLS is used, and required,
    /// when the URL says `sslmode=require` or `ca` names the CA
    /// certificates (PEM) to trust (else the system's roots are trusted);
    /// the server's certificate must match the URL's host.
    Postgres { url: String, ca: Option<PathBuf> },
}

impl std::fmt::Display for Location {
    /// The database's name for logs and errors (never a password).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path, .. } => write!(f, "{}", path.display()),
            Self::Postgres { url, .. } => f.write_str(&postgres::describe(url)),
        }
    }
}

/// Where an answer goes (the WIT `reply-to`): a wire type, since answers
/// travel between games too.
pub use wyrm_wire::ReplyTo;

/// One entity as saved: its type and its persistent attributes.
#[derive(Debug, Clone)]
pub struct EntityRow {
    /// The entity's id.
    pub id: EntityId,
    /// Its type name.
    pub type_name: String,
    /// A MessagePack map of its persistent attributes.
    pub attrs: Vec<u8>,
}

/// A saved entity read back, with the calls waiting for it.
#[derive(Debug, Clone)]
pub struct LoadedEntity {
    /// The row.
    pub row: EntityRow,
    /// Mailbox calls in the order they were made: (sequence, method, args).
    pub mailbox: Vec<(i64, String, Vec<u8>)>,
    /// Its private state as last checkpointed, for [`Op::Recover`] (never
    /// read for [`Op::Load`]).
    pub state: Option<SavedState>,
}

/// An entity's private state as a checkpoint wrote it: what its plugin's
/// state hook exported, and the plugin version that exported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    pub version: String,
    pub state: Vec<u8>,
}

/// A request to the storage thread.
#[derive(Debug)]
pub enum Op {
    /// Upsert entity rows; answer `reply` (value: the first id) after commit.
    Save {
        rows: Vec<EntityRow>,
        reply: Option<ReplyTo>,
    },
    /// Read an entity and its mailbox; answers with [`Answer::Loaded`].
    Load {
        id: EntityId,
    },
    /// [`Op::Load`] with the entity's last checkpointed private state:
    /// how an entity whose game died comes back.
    Recover {
        id: EntityId,
    },
    /// Private states of a checkpoint (plugin `version`'s), each replacing
    /// the entity's last: what [`Op::Recover`] reads back.
    SaveStates {
        version: String,
        states: Vec<(EntityId, Vec<u8>)>,
    },
    /// Forget these entities' checkpointed states (they were destroyed:
    /// a later load must not take a state of an earlier life).
    DropStates {
        ids: Vec<EntityId>,
    },
    /// Whether an entity is saved.
    Exists {
        id: EntityId,
        reply: ReplyTo,
    },
    /// The saved ids of a type.
    SavedIds {
        type_name: String,
        reply: ReplyTo,
    },
    /// Key-value reads and writes.
    KvGet {
        key: String,
        reply: ReplyTo,
    },
    KvPut {
        key: String,
        value: Vec<u8>,
        reply: Option<ReplyTo>,
    },
    KvGetOrPut {
        key: String,
        value: Vec<u8>,
        reply: ReplyTo,
    },
    KvRange {
        prefix: String,
        reply: ReplyTo,
    },
    /// A call to an entity that is not loaded: kept in its mailbox if the
    /// entity is saved, dropped (with a log line) otherwise.
    Mail {
        entity: EntityId,
        method: String,
        args: Vec<u8>,
    },
    /// Mailbox calls up to `seq` were delivered.
    MailDone {
        entity: EntityId,
        up_to: i64,
    },
    /// Reserves the next block of entity ids and sends it on `reply`
    /// once that is committed (if it fails, `reply` is dropped unanswered).
    ReserveIds {
        reply: Sender<IdBlock>,
    },
    /// `id` is the service entity of `type_name`.
    Service {
        type_name: String,
        id: EntityId,
    },
    /// Answers `done` once everything before it is committed.
    Flush {
        done: Sender<()>,
    },
}

/// A call storage answers with: `method` on `entity`, with MessagePack
/// `args` `[error, value, context]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub entity: EntityId,
    pub method: String,
    pub args: Vec<u8>,
}

/// What the storage thread answers, once the operation is on disk.
#[derive(Debug)]
pub enum Answer<T> {
    /// A reply, with the ticket its operation came with.
    Reply { reply: Reply, ticket: T },
    /// A saved entity read back (or why it could not be), for [`Op::Load`]
    /// and [`Op::Recover`].
    Loaded {
        id: EntityId,
        result: Result<LoadedEntity, String>,
    },
}

/// A handle to the storage thread; `T` is the ticket an operation carries
/// (see the crate docs).
#[derive(Debug)]
pub struct Store<T> {
    tx: flume::Sender<Queued<T>>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// An operation in the storage thread's queue, with its ticket.
struct Queued<T> {
    op: Op,
    ticket: T,
}

impl<T: Default> Store<T> {
    /// Queues an operation with an empty ticket. If the storage thread has
    /// stopped (only at shutdown) the operation is dropped with a log line.
    pub fn send(&self, op: Op) {
        self.send_with(op, T::default());
    }
}

impl<T> Store<T> {
    /// Queues an operation with `ticket`, which its reply carries back (and
    /// any other answer drops once the operation has run).
    pub fn send_with(&self, op: Op, ticket: T) {
        if let Err(e) = self.tx.send(Queued { op, ticket }) {
            tracing::error!("storage has stopped; dropped {:?}", e.0.op);
        }
    }

    /// Waits until everything queued so far is on disk.
    pub fn flush(&self, timeout: std::time::Duration) -> bool
    where
        T: Default,
    {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.send(Op::Flush { done });
        wait.recv_timeout(timeout).is_ok()
    }
}

/// What opening found.
pub struct Opened<T> {
    /// The handle.
    pub store: Store<T>,
    /// The first block of entity ids this process may hand out; reserve
    /// the next with [`Op::ReserveIds`] before it runs out.
    pub ids: IdBlock,
    /// Service entities saved by earlier runs, by type.
    pub services: HashMap<String, LoadedEntity>,
    /// The storage thread.
    pub thread: std::thread::JoinHandle<()>,
}

/// Why the database could not be opened. Every message names it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds it.
    #[error("database {path} is in use by another process (its lock file {lock} is held); stop that server or set [storage] path to another file")]
    Locked { path: PathBuf, lock: PathBuf },
    /// Not a healthy SQLite database; left untouched.
    #[error("database {path} is damaged or not a Wyrm database ({reason}); it was left untouched — restore it from a backup, or move it away to start with an empty one")]
    Corrupt { path: PathBuf, reason: String },
    /// Written by a newer Wyrm.
    #[error("database {db} has schema version {found}, newer than this Wyrm understands ({SCHEMA_VERSION}); run a newer Wyrm")]
    TooNew { db: String, found: i64 },
    /// The file system refused.
    #[error("cannot open database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("cannot open database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// PostgreSQL could not be reached, or refused.
    #[error("cannot open PostgreSQL database {db}: {reason}; check [storage] url, and that the server is up and lets this user in")]
    Postgres { db: String, reason: String },
    /// The first reads (an id block, the services) failed.
    #[error("cannot read database {db}: {reason}")]
    Read { db: String, reason: String },
}

/// Reservations of entity ids are made this many at a time.
pub const ID_BLOCK: u64 = 10_000;

/// Opens (or creates) the database at `location` and starts its thread,
/// which hands every answer to `answer`. `answer` must not wait on whoever
/// sends operations (the queue of operations is bounded; a game that waits
/// for room while storage waits for the game would never move again).
pub fn open<T: Send + 'static>(
    location: &Location,
    services: &[String],
    answer: impl FnMut(Answer<T>) + Send + 'static,
) -> Result<Opened<T>, OpenError> {
    // Bounded: a game that asks faster than the disk answers waits for it
    // (storage never waits for the game: its answers go to an inbox the
    // game drains, so this cannot deadlock).
    // (flume's bounded channel allocates as it fills: crossbeam's would hold
    // room for all of it, megabytes, from the start.)
    let (tx, rx) = flume::bounded(QUEUE);
    let (ready_tx, ready) = crossbeam_channel::bounded(1);
    let (at, services) = (location.clone(), services.to_vec());
    // The database is opened on the storage thread: PostgreSQL's driver
    // runs on a runtime of that thread's own, which must not start inside
    // a caller's (a test's, a server's) async context.
    let thread = std::thread::Builder::new()
        .name("wyrm-storage".into())
        .spawn(move || match &at {
            Location::Sqlite { path, durable } => serve(
                sqlite::open(path, *durable),
                &at,
                &services,
                ready_tx,
                rx,
                answer,
            ),
            Location::Postgres { url, ca } => serve(
                postgres::open(url, ca.as_deref()),
                &at,
                &services,
                ready_tx,
                rx,
                answer,
            ),
        })
        .map_err(|source| OpenError::Io {
            path: PathBuf::from(location.to_string()),
            source,
        })?;
    match ready.recv() {
        Ok(Ok((ids, services))) => Ok(Opened {
            store: Store { tx },
            ids,
            services,
            thread,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(OpenError::Read {
            db: location.to_string(),
            reason: "the storage thread stopped while opening it (see the log)".into(),
        }),
    }
}

/// What a run starts from: its first id block, and the services earlier
/// runs made.
type FirstReads = (IdBlock, HashMap<String, LoadedEntity>);

/// The storage thread: reads what a run starts from on the database just
/// opened, reports it (or why not) on `ready`, then serves operations.
fn serve<B: batch::Backend, T>(
    opened: Result<B, OpenError>,
    location: &Location,
    services: &[String],
    ready: crossbeam_channel::Sender<Result<FirstReads, OpenError>>,
    rx: flume::Receiver<Queued<T>>,
    answer: impl FnMut(Answer<T>),
) {
    let mut db = match opened {
        Ok(db) => db,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let first = (|| -> batch::DbResult<FirstReads> {
        db.begin()?;
        let ids = db.reserve_ids()?;
        let mut saved = HashMap::new();
        for ty in services {
            if let Some(id) = db.service(ty)? {
                if let Some(loaded) = db.load(&[id])?.pop().flatten() {
                    saved.insert(ty.clone(), loaded);
                }
            }
        }
        db.commit()?;
        Ok((ids, saved))
    })();
    match first {
        Ok(first) => {
            if ready.send(Ok(first)).is_ok() {
                run(db, rx, answer, location.to_string());
            }
        }
        Err(e) => {
            db.rollback();
            let _ = ready.send(Err(OpenError::Read {
                db: location.to_string(),
                reason: e.to_string(),
            }));
        }
    }
}

/// Most operations one transaction takes.
const BATCH: usize = 8192;

/// Operations queued to the storage thread before the game waits.
const QUEUE: usize = 64 * 1024;

fn run<B: batch::Backend, T>(
    mut db: B,
    rx: flume::Receiver<Queued<T>>,
    mut answer: impl FnMut(Answer<T>),
    name: String,
) {
    let _span = tracing::info_span!("storage", db = %name).entered();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first.op];
        // One per operation, to go with its answer.
        let mut tickets = vec![first.ticket];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(q) => {
                    batch.push(q.op);
                    tickets.push(q.ticket);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let answers = batch::run_batch(&mut db, &batch);
        tracing::trace!(ops = batch.len(), elapsed = ?started.elapsed(), "storage batch");
        for (a, ticket) in answers.into_iter().zip(tickets) {
            match a {
                Some(batch::Done::Reply(reply)) => answer(Answer::Reply { reply, ticket }),
                Some(batch::Done::Loaded(id, result)) => answer(Answer::Loaded { id, result }),
                Some(batch::Done::Flushed(done)) => {
                    let _ = done.send(());
                }
                Some(batch::Done::Reserved(to, block)) => {
                    let _ = to.send(block);
                }
                None => {}
            }
        }
    }
    tracing::debug!("storage stopped");
}
