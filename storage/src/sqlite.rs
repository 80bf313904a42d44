//! SQLite, the embedded default: opening a file carefully (its lock, a
//! damage check, never over an existing file that is not Wyrm's), the
//! schema, and the [`Backend`] a batch runs on.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::batch::{Backend, DbResult};
use crate::{EntityRow, IdBlock, LoadedEntity, OpenError, SavedState, ID_BLOCK};
use wyrm_wire::EntityId;

/// The schema this version writes; a database with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    attrs BLOB NOT NULL,
    saved_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entities_by_type ON entities (type, id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entity INTEGER NOT NULL,
    method TEXT NOT NULL,
    args BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS mailbox_by_entity ON mailbox (entity, seq);
CREATE TABLE IF NOT EXISTS states (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    state BLOB NOT NULL,
    saved_at INTEGER NOT NULL
);
";

/// The game database: a connection, and the lock file held while it is open.
pub(crate) struct Sqlite {
    conn: Connection,
    _lock: File,
}

/// Opens the game database with its lock held, checked and migrated.
pub(crate) fn open(path: &Path, durable: bool) -> Result<Sqlite, OpenError> {
    let (conn, lock, existed) = open_checked(path)?;
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let found: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .or_else(|e| match e {
            // A database with no meta table yet (new, or not ours and empty).
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such table") => {
                Ok(None)
            }
            e => Err(e),
        })
        .map_err(sqlite)?;
    if let Some(v) = found.filter(|&v| v > SCHEMA_VERSION) {
        return Err(OpenError::TooNew {
            db: path.display().to_string(),
            found: v,
        });
    }
    if found.is_none() && existed && has_foreign_tables(&conn).map_err(sqlite)? {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: "it holds tables but no Wyrm schema version".into(),
        });
    }
    let sync = if durable { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};"
    ))
    .map_err(sqlite)?;
    conn.execute_batch(SCHEMA).map_err(sqlite)?;
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )
    .map_err(sqlite)?;
    Ok(Sqlite { conn, _lock: lock })
}

/// Opens the stats database: the same checks, its own one-table schema.
pub(crate) fn open_plain(path: &Path) -> Result<(Connection, File), OpenError> {
    let (conn, lock, _) = open_checked(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, name TEXT NOT NULL, fields BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS events_by_name ON events (name, at_ms);",
    )
    .map_err(|source| OpenError::Sqlite { path: path.to_path_buf(), source })?;
    Ok((conn, lock))
}

/// Takes the file's lock, opens it (creating it only if absent, and saying
/// so) and checks it is a healthy SQLite database before anything writes.
/// Returns whether it existed.
fn open_checked(path: &Path) -> Result<(Connection, File, bool), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_name);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(OpenError::Locked {
                path: path.to_path_buf(),
                lock: lock_path,
            })
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }

    let existed = path.exists();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if existed {
        tracing::info!(path = %path.display(), "opening database");
    } else {
        tracing::info!(path = %path.display(), "no database here yet: creating a new, empty one");
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite)?;

    // Check before writing anything: a damaged file must stay as it is.
    let corrupt = |reason: String| OpenError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match conn.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0)) {
        Ok(s) if s == "ok" => {}
        Ok(s) => return Err(corrupt(s)),
        Err(e) => return Err(corrupt(e.to_string())),
    }
    Ok((conn, lock, existed))
}

fn has_foreign_tables(conn: &Connection) -> rusqlite::Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

impl Sqlite {
    fn load_one(&self, id: EntityId) -> rusqlite::Result<Option<LoadedEntity>> {
        let row = self
            .conn
            .prepare_cached("SELECT type, attrs FROM entities WHERE id = ?1")?
            .query_row([id as i64], |r| {
                Ok(EntityRow {
                    id,
                    type_name: r.get(0)?,
                    attrs: r.get(1)?,
                })
            })
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, method, args FROM mailbox WHERE entity = ?1 ORDER BY seq",
        )?;
        let mailbox = stmt
            .query_map([id as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(LoadedEntity {
            row,
            mailbox,
            state: None,
        }))
    }
}

impl Backend for Sqlite {
    fn begin(&mut self) -> DbResult<()> {
        Ok(self.conn.execute_batch("BEGIN")?)
    }

    fn commit(&mut self) -> DbResult<()> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!("storage rollback failed: {e}");
            }
        }
    }

    fn savepoint(&mut self) -> DbResult<()> {
        Ok(self.conn.execute_batch("SAVEPOINT op")?)
    }

    fn release_savepoint(&mut self) -> DbResult<()> {
        Ok(self.conn.execute_batch("RELEASE op")?)
    }

    fn rollback_to_savepoint(&mut self) -> DbResult<()> {
        Ok(self.conn.execute_batch("ROLLBACK TO op; RELEASE op")?)
    }

    fn save(&mut self, rows: &[&EntityRow], now_ms: i64) -> DbResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO entities (id, type, attrs, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET type = excluded.type, attrs = excluded.attrs, saved_at = excluded.saved_at",
        )?;
        for row in rows {
            stmt.execute(params![row.id as i64, row.type_name, row.attrs, now_ms])?;
        }
        Ok(())
    }

    fn load(&mut self, ids: &[EntityId]) -> DbResult<Vec<Option<LoadedEntity>>> {
        // In process, a statement per id costs about what one query would.
        Ok(ids
            .iter()
            .map(|&id| self.load_one(id))
            .collect::<rusqlite::Result<_>>()?)
    }

    fn save_states(
        &mut self,
        version: &str,
        states: &[(EntityId, Vec<u8>)],
        now_ms: i64,
    ) -> DbResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO states (id, version, state, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, state = excluded.state, saved_at = excluded.saved_at",
        )?;
        for (id, state) in states {
            stmt.execute(params![*id as i64, version, state, now_ms])?;
        }
        Ok(())
    }

    fn states(&mut self, ids: &[EntityId]) -> DbResult<Vec<Option<SavedState>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT version, state FROM states WHERE id = ?1")?;
        Ok(ids
            .iter()
            .map(|&id| {
                stmt.query_row([id as i64], |r| {
                    Ok(SavedState {
                        version: r.get(0)?,
                        state: r.get(1)?,
                    })
                })
                .optional()
            })
            .collect::<rusqlite::Result<_>>()?)
    }

    fn drop_states(&mut self, ids: &[EntityId]) -> DbResult<()> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM states WHERE id = ?1")?;
        for &id in ids {
            stmt.execute([id as i64])?;
        }
        Ok(())
    }

    fn exists(&mut self, id: EntityId) -> DbResult<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM entities WHERE id = ?1")?
            .exists([id as i64])?)
    }

    fn saved_ids(&mut self, type_name: &str) -> DbResult<Vec<EntityId>> {
        let mut s = self
            .conn
            .prepare_cached("SELECT id FROM entities WHERE type = ?1 ORDER BY id")?;
        let ids = s.query_map([type_name], |row| row.get::<_, i64>(0))?;
        Ok(ids
            .map(|id| id.map(|id| id as u64))
            .collect::<rusqlite::Result<_>>()?)
    }

    fn kv_get(&mut self, key: &str) -> DbResult<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?)
    }

    fn kv_put(&mut self, key: &str, value: &[u8]) -> DbResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    fn kv_get_or_put(&mut self, key: &str, value: &[u8]) -> DbResult<Vec<u8>> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO kv (key, value) VALUES (?1, ?2)")?
            .execute(params![key, value])?;
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
            .query_row([key], |row| row.get(0))?)
    }

    fn kv_range(&mut self, prefix: &str) -> DbResult<Vec<(String, Vec<u8>)>> {
        let mut s = self
            .conn
            .prepare_cached("SELECT key, value FROM kv WHERE key >= ?1 ORDER BY key")?;
        let mut rows = s.query([prefix])?;
        let mut pairs = Vec::new();
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            if !key.starts_with(prefix) {
                break;
            }
            pairs.push((key, row.get(1)?));
        }
        Ok(pairs)
    }

    fn mail(&mut self, entity: EntityId, method: &str, args: &[u8]) -> DbResult<bool> {
        let stored = self
            .conn
            .prepare_cached(
                "INSERT INTO mailbox (entity, method, args)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM entities WHERE id = ?1)",
            )?
            .execute(params![entity as i64, method, args])?;
        Ok(stored > 0)
    }

    fn mail_done(&mut self, entity: EntityId, up_to: i64) -> DbResult<()> {
        self.conn
            .prepare_cached("DELETE FROM mailbox WHERE entity = ?1 AND seq <= ?2")?
            .execute(params![entity as i64, up_to])?;
        Ok(())
    }

    fn reserve_ids(&mut self) -> DbResult<IdBlock> {
        // `next_id` is the end of the last block; a database from before
        // reservations (or edited by hand) may hold rows above it.
        let end: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO meta (key, value)
                 VALUES ('next_id', (SELECT coalesce(max(id), 0) + 1 FROM entities) + ?1)
                 ON CONFLICT (key) DO UPDATE
                 SET value = max(value, (SELECT coalesce(max(id), 0) + 1 FROM entities)) + ?1
                 RETURNING value",
            )?
            .query_row([ID_BLOCK as i64], |r| r.get(0))?;
        let end = end as u64;
        Ok(end - ID_BLOCK..end)
    }

    fn set_service(&mut self, type_name: &str, id: EntityId) -> DbResult<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![format!("service:{type_name}"), id as i64],
        )?;
        Ok(())
    }

    fn service(&mut self, type_name: &str) -> DbResult<Option<EntityId>> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [format!("service:{type_name}")],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.map(|id| id as u64))
    }
}
