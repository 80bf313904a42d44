//! The SQLite side of storage: opening, the schema, and running a batch of
//! operations in one transaction.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crossbeam_channel::Sender;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{EntityRow, LoadedEntity, Op, OpenError, ReplyTo};
use wyrm_wire::EntityId;

use crate::Reply;

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
";

/// Opens the game database with its lock held, checked and migrated.
pub(super) fn open(path: &Path, durable: bool) -> Result<(Connection, File), OpenError> {
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
            path: path.to_path_buf(),
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
    Ok((conn, lock))
}

/// Opens the stats database: the same checks, its own one-table schema.
pub(super) fn open_plain(path: &Path) -> Result<(Connection, File), OpenError> {
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

/// The first entity id not used by any earlier run.
pub(super) fn next_id(conn: &Connection) -> rusqlite::Result<u64> {
    let reserved: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'next_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let max_saved: Option<i64> =
        conn.query_row("SELECT max(id) FROM entities", [], |r| r.get(0))?;
    let next = reserved
        .unwrap_or(1)
        .max(max_saved.map_or(1, |m| m + 1))
        .max(1);
    Ok(next as u64)
}

/// Records that ids below `ceiling` may be in use.
pub(super) fn reserve_ids(conn: &Connection, ceiling: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('next_id', ?1)
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        [ceiling as i64],
    )?;
    Ok(())
}

/// The saved service entity of `type_name`, if an earlier run made one.
pub(super) fn load_service(
    conn: &mut Connection,
    type_name: &str,
) -> rusqlite::Result<Option<LoadedEntity>> {
    let id: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [format!("service:{type_name}")],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => load(conn, id as u64),
        None => Ok(None),
    }
}

fn load(conn: &Connection, id: EntityId) -> rusqlite::Result<Option<LoadedEntity>> {
    let row = conn
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
    let mut stmt = conn
        .prepare_cached("SELECT seq, method, args FROM mailbox WHERE entity = ?1 ORDER BY seq")?;
    let mailbox = stmt
        .query_map([id as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(LoadedEntity { row, mailbox }))
}

/// What the storage thread sends once a batch is committed.
pub(super) enum Done {
    Reply(Reply),
    Loaded(EntityId, Result<LoadedEntity, String>),
    Flushed(Sender<()>),
}

/// An operation's answers: on commit, and if the commit fails.
struct Pending {
    ok: Option<Done>,
    failed: Option<Done>,
}

/// Runs a batch in one transaction; returns the answers to send. One
/// operation failing does not fail the others (each runs in a savepoint).
/// Runs `batch` in one transaction; returns each operation's answer, if it
/// has one, in the batch's order.
pub(super) fn run_batch(conn: &mut Connection, batch: Vec<Op>) -> Vec<Option<Done>> {
    let mut pending = Vec::with_capacity(batch.len());
    let committed = (|| -> rusqlite::Result<()> {
        let mut tx = conn.transaction()?;
        for op in batch {
            let failed = failure_answer(&op, "the storage transaction failed");
            let sp = tx.savepoint()?;
            let result = apply(&sp, op);
            match result {
                Ok(ok) => {
                    sp.commit()?;
                    pending.push(Pending { ok, failed });
                }
                Err(failed) => {
                    let (e, on_error) = *failed;
                    drop(sp); // rolls this operation back
                    tracing::error!("storage operation failed: {e}");
                    pending.push(Pending {
                        ok: on_error,
                        failed: None,
                    });
                }
            }
        }
        tx.commit()
    })();
    match committed {
        Ok(()) => pending.into_iter().map(|p| p.ok).collect(),
        Err(e) => {
            tracing::error!(
                "storage transaction failed, {} operations answered with an error: {e}",
                pending.len()
            );
            pending.into_iter().map(|p| p.failed).collect()
        }
    }
}

/// An operation's answer, or its error with the answer that reports it.
type Applied = Result<Option<Done>, Box<(rusqlite::Error, Option<Done>)>>;

/// On an error an operation still answers: with the error.
fn fail(
    r: Option<&ReplyTo>,
) -> impl FnOnce(rusqlite::Error) -> (rusqlite::Error, Option<Done>) + '_ {
    move |e| {
        let msg = format!("storage error: {e}");
        let answer = r.map(|r| Done::Reply(reply(r, Some(&msg), nil)));
        (e, answer)
    }
}

fn apply(tx: &Connection, op: Op) -> Applied {
    match op {
        Op::Save { rows, reply: r } => {
            save(tx, &rows).map_err(fail(r.as_ref()))?;
            let first = rows.first().map_or(0, |row| row.id);
            Ok(r.map(|r| Done::Reply(reply(&r, None, |out| uint(out, first)))))
        }
        Op::Load { id } => {
            let result = match load(tx, id) {
                Ok(Some(l)) => Ok(l),
                Ok(None) => Err(format!("no saved entity {id}")),
                Err(e) => Err(format!("storage error: {e}")),
            };
            Ok(Some(Done::Loaded(id, result)))
        }
        Op::Exists { id, reply: r } => {
            let found = tx
                .prepare_cached("SELECT 1 FROM entities WHERE id = ?1")
                .and_then(|mut s| s.exists([id as i64]))
                .map_err(fail(Some(&r)))?;
            Ok(Some(Done::Reply(reply(&r, None, |out| {
                let _ = rmp::encode::write_bool(out, found);
            }))))
        }
        Op::SavedIds {
            type_name,
            reply: r,
        } => {
            let ids = (|| {
                let mut s =
                    tx.prepare_cached("SELECT id FROM entities WHERE type = ?1 ORDER BY id")?;
                let ids = s.query_map([&type_name], |row| row.get::<_, i64>(0))?;
                ids.collect::<rusqlite::Result<Vec<i64>>>()
            })()
            .map_err(fail(Some(&r)))?;
            Ok(Some(Done::Reply(reply(&r, None, |out| {
                let _ = rmp::encode::write_array_len(out, ids.len() as u32);
                for id in &ids {
                    uint(out, *id as u64);
                }
            }))))
        }
        Op::KvGet { key, reply: r } => {
            let v: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM kv WHERE key = ?1")
                .and_then(|mut s| s.query_row([&key], |row| row.get(0)).optional())
                .map_err(fail(Some(&r)))?;
            Ok(Some(Done::Reply(reply(&r, None, |out| {
                raw_or_nil(out, v.as_deref())
            }))))
        }
        Op::KvPut {
            key,
            value,
            reply: r,
        } => {
            tx.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .and_then(|mut s| s.execute(params![key, value]))
                .map_err(fail(r.as_ref()))?;
            Ok(r.map(|r| Done::Reply(reply(&r, None, nil))))
        }
        Op::KvGetOrPut {
            key,
            value,
            reply: r,
        } => {
            let stored: Vec<u8> = (|| {
                tx.prepare_cached("INSERT OR IGNORE INTO kv (key, value) VALUES (?1, ?2)")?
                    .execute(params![key, value])?;
                tx.prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                    .query_row([&key], |row| row.get(0))
            })()
            .map_err(fail(Some(&r)))?;
            Ok(Some(Done::Reply(reply(&r, None, |out| {
                out.extend_from_slice(&stored)
            }))))
        }
        Op::KvRange { prefix, reply: r } => {
            let pairs = (|| {
                let mut s =
                    tx.prepare_cached("SELECT key, value FROM kv WHERE key >= ?1 ORDER BY key")?;
                let mut rows = s.query([&prefix])?;
                let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
                while let Some(row) = rows.next()? {
                    let key: String = row.get(0)?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    pairs.push((key, row.get(1)?));
                }
                Ok(pairs)
            })()
            .map_err(fail(Some(&r)))?;
            Ok(Some(Done::Reply(reply(&r, None, |out| {
                let _ = rmp::encode::write_array_len(out, pairs.len() as u32);
                for (k, v) in &pairs {
                    let _ = rmp::encode::write_array_len(out, 2);
                    let _ = rmp::encode::write_str(out, k);
                    out.extend_from_slice(v);
                }
            }))))
        }
        Op::Mail {
            entity,
            method,
            args,
        } => {
            let stored = tx
                .prepare_cached(
                    "INSERT INTO mailbox (entity, method, args)
                     SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM entities WHERE id = ?1)",
                )
                .and_then(|mut s| s.execute(params![entity as i64, method, args]))
                .map_err(fail(None))?;
            if stored == 0 {
                // Common and harmless: a call (a timer's, another
                // entity's) to an entity destroyed meanwhile. The soak's
                // arena logged 17,000 of these in 30 minutes at warn.
                tracing::debug!(entity, %method, "call to an entity that is neither loaded nor saved dropped");
            }
            Ok(None)
        }
        Op::MailDone { entity, up_to } => {
            tx.prepare_cached("DELETE FROM mailbox WHERE entity = ?1 AND seq <= ?2")
                .and_then(|mut s| s.execute(params![entity as i64, up_to]))
                .map_err(fail(None))?;
            Ok(None)
        }
        Op::ReserveIds { ceiling } => {
            reserve_ids(tx, ceiling).map_err(fail(None))?;
            Ok(None)
        }
        Op::Service { type_name, id } => {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![format!("service:{type_name}"), id as i64],
            )
            .map_err(fail(None))?;
            Ok(None)
        }
        Op::Flush { done } => Ok(Some(Done::Flushed(done))),
    }
}

fn save(tx: &Connection, rows: &[EntityRow]) -> rusqlite::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO entities (id, type, attrs, saved_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET type = excluded.type, attrs = excluded.attrs, saved_at = excluded.saved_at",
    )?;
    for row in rows {
        stmt.execute(params![row.id as i64, row.type_name, row.attrs, now])?;
    }
    Ok(())
}

/// What to answer if the batch's commit fails.
fn failure_answer(op: &Op, msg: &str) -> Option<Done> {
    let r = match op {
        Op::Save { reply, .. } | Op::KvPut { reply, .. } => reply.as_ref()?,
        Op::Exists { reply, .. }
        | Op::SavedIds { reply, .. }
        | Op::KvGet { reply, .. }
        | Op::KvGetOrPut { reply, .. }
        | Op::KvRange { reply, .. } => reply,
        Op::Load { id } => return Some(Done::Loaded(*id, Err(msg.to_owned()))),
        Op::Mail { .. }
        | Op::MailDone { .. }
        | Op::ReserveIds { .. }
        | Op::Service { .. }
        | Op::Flush { .. } => return None,
    };
    Some(Done::Reply(reply(r, Some(msg), nil)))
}

/// A continuation call with args `[error, value, context]`.
pub fn reply(r: &ReplyTo, err: Option<&str>, value: impl FnOnce(&mut Vec<u8>)) -> Reply {
    let mut args = Vec::with_capacity(32 + r.context.len());
    let _ = rmp::encode::write_array_len(&mut args, 3);
    match err {
        Some(e) => {
            let _ = rmp::encode::write_str(&mut args, e);
        }
        None => nil(&mut args),
    }
    value(&mut args);
    raw_or_nil(
        &mut args,
        Some(&r.context)
            .filter(|c| !c.is_empty())
            .map(|c| c.as_slice()),
    );
    Reply {
        entity: r.entity,
        method: r.method.clone(),
        args,
    }
}

fn nil(out: &mut Vec<u8>) {
    let _ = rmp::encode::write_nil(out);
}

fn uint(out: &mut Vec<u8>, v: u64) {
    let _ = rmp::encode::write_uint(out, v);
}

fn raw_or_nil(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(bytes) => out.extend_from_slice(bytes),
        None => nil(out),
    }
}
