//! The stats sink: events (a name and a MessagePack map of fields) written
//! to a database of their own by a thread of their own, so analytics never
//! slows gameplay or its storage. The queue is bounded: when the sink falls
//! behind, events are dropped and counted, never waited for.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flume::{Sender, TrySendError};
use rusqlite::{params, Connection};

use super::OpenError;

/// Events queued before new ones are dropped.
const QUEUE: usize = 65_536;

struct Event<T> {
    at_ms: i64,
    name: String,
    fields: Vec<u8>,
    /// The caller's ticket, dropped once the event is written.
    _ticket: T,
}

/// A handle to the stats thread; `T` is a ticket each event carries until
/// it is written (see the crate docs).
pub struct StatsSink<T> {
    tx: Sender<Event<T>>,
    dropped: Arc<AtomicU64>,
}

impl<T> Clone for StatsSink<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl<T: Default + Send + 'static> StatsSink<T> {
    /// Records an event; drops it if the sink is behind.
    pub fn emit(&self, name: String, fields: Vec<u8>) {
        self.emit_with(name, fields, T::default());
    }
}

impl<T: Send + 'static> StatsSink<T> {
    /// Opens (or creates) the stats database at `path` and starts its
    /// thread, which ends when every handle is dropped.
    pub fn open(path: &Path) -> Result<(Self, std::thread::JoinHandle<()>), OpenError> {
        let (conn, lock) = super::sqlite::open_plain(path)?;
        let (tx, rx) = flume::bounded::<Event<T>>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let path_buf: PathBuf = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("wyrm-stats".into())
            .spawn(move || {
                let _lock = lock;
                let mut conn = conn;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(8191));
                    if let Err(e) = write(&mut conn, &batch) {
                        tracing::error!(path = %path_buf.display(), events = batch.len(), "stats write failed: {e}");
                    }
                    let lost = counter.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        tracing::warn!(lost, "stats sink fell behind; events were dropped");
                    }
                }
            })
            .map_err(|source| OpenError::Io { path: path.to_path_buf(), source })?;
        Ok((Self { tx, dropped }, thread))
    }

    /// Records an event with `ticket`, which lives until the event is
    /// written. Dropped if the sink is behind.
    pub fn emit_with(&self, name: String, fields: Vec<u8>, ticket: T) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match self.tx.try_send(Event {
            at_ms,
            name,
            fields,
            _ticket: ticket,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write<T>(conn: &mut Connection, batch: &[Event<T>]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt =
            tx.prepare_cached("INSERT INTO events (at_ms, name, fields) VALUES (?1, ?2, ?3)")?;
        for e in batch {
            stmt.execute(params![e.at_ms, e.name, e.fields])?;
        }
    }
    tx.commit()
}
