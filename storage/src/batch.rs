//! One batch of operations in one transaction, whatever the database.
//!
//! [`Backend`] is what an operation is made of — begin, commit, savepoints,
//! and one method per read or write — and each database implements it
//! (`sqlite.rs`, `postgres.rs`). [`run_batch`] keeps the rules for both,
//! so they cannot drift: every operation of a batch runs in one
//! transaction, its answer is sent only once that transaction committed,
//! one operation failing fails only itself, and a failed commit answers
//! every request of the batch with the error.
//!
//! A batch first runs straight through, loads next to each other read
//! together and saves next to each other written together (one statement
//! for a whole save tick's rows, or a thousand `save-entity` calls). Only
//! if an operation fails is the batch rolled back and run
//! again with a savepoint around each operation: PostgreSQL aborts a
//! whole transaction on any error, and a savepoint there costs two round
//! trips, which a batch of thousands of saves should not pay when nothing
//! fails.

use crossbeam_channel::Sender;

use crate::{EntityRow, IdBlock, LoadedEntity, Op, Reply, ReplyTo, SavedState};
use wyrm_wire::EntityId;

/// An error from a database, as each backend's driver gives it.
pub(crate) type DbError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type DbResult<T> = Result<T, DbError>;

/// A database the storage thread runs batches on. Every method but
/// `begin` runs inside the transaction `begin` opened.
pub(crate) trait Backend {
    fn begin(&mut self) -> DbResult<()>;
    fn commit(&mut self) -> DbResult<()>;
    /// Abandons the transaction (a backend that cannot is to drop its
    /// connection, so nothing of it survives).
    fn rollback(&mut self);
    fn savepoint(&mut self) -> DbResult<()>;
    fn release_savepoint(&mut self) -> DbResult<()>;
    fn rollback_to_savepoint(&mut self) -> DbResult<()>;

    /// Upserts `rows`, stamped `now_ms`; of rows with the same id, the
    /// last one is saved.
    fn save(&mut self, rows: &[&EntityRow], now_ms: i64) -> DbResult<()>;
    /// Each id's row and mailbox, in the order of `ids`.
    fn load(&mut self, ids: &[EntityId]) -> DbResult<Vec<Option<LoadedEntity>>>;
    /// Upserts checkpointed private states, all exported by `version`.
    fn save_states(
        &mut self,
        version: &str,
        states: &[(EntityId, Vec<u8>)],
        now_ms: i64,
    ) -> DbResult<()>;
    /// Each id's checkpointed private state, in the order of `ids`.
    fn states(&mut self, ids: &[EntityId]) -> DbResult<Vec<Option<SavedState>>>;
    /// Removes these ids' checkpointed private states.
    fn drop_states(&mut self, ids: &[EntityId]) -> DbResult<()>;
    fn exists(&mut self, id: EntityId) -> DbResult<bool>;
    /// The saved ids of a type, ascending.
    fn saved_ids(&mut self, type_name: &str) -> DbResult<Vec<EntityId>>;
    fn kv_get(&mut self, key: &str) -> DbResult<Option<Vec<u8>>>;
    fn kv_put(&mut self, key: &str, value: &[u8]) -> DbResult<()>;
    /// The value stored under `key`, storing `value` first if there is none.
    fn kv_get_or_put(&mut self, key: &str, value: &[u8]) -> DbResult<Vec<u8>>;
    /// Every pair whose key starts with `prefix`, by key (bytewise).
    fn kv_range(&mut self, prefix: &str) -> DbResult<Vec<(String, Vec<u8>)>>;
    /// Puts a call in `entity`'s mailbox if the entity is saved; whether
    /// it was.
    fn mail(&mut self, entity: EntityId, method: &str, args: &[u8]) -> DbResult<bool>;
    /// Removes `entity`'s mail up to sequence `up_to`.
    fn mail_done(&mut self, entity: EntityId, up_to: i64) -> DbResult<()>;
    /// The next block of [`ID_BLOCK`](crate::ID_BLOCK) entity ids no one
    /// was or will be given: above every saved entity and every block
    /// reserved before, by any process sharing the database.
    fn reserve_ids(&mut self) -> DbResult<IdBlock>;
    /// Records `id` as the service entity of `type_name`.
    fn set_service(&mut self, type_name: &str, id: EntityId) -> DbResult<()>;
    /// The service entity of `type_name` an earlier run recorded.
    fn service(&mut self, type_name: &str) -> DbResult<Option<EntityId>>;
}

/// What the storage thread sends once a batch is committed.
pub(crate) enum Done {
    Reply(Reply),
    Loaded(EntityId, Result<LoadedEntity, String>),
    Flushed(Sender<()>),
    Reserved(Sender<IdBlock>, IdBlock),
}

/// Why a pass over a batch stopped.
enum Failed {
    /// An operation failed (run again with savepoints to find which).
    Operation,
    /// The transaction itself: every request of the batch fails.
    Batch(DbError),
}

/// Runs `batch` in one transaction; returns each operation's answer, if it
/// has one, in the batch's order.
pub(crate) fn run_batch<B: Backend>(db: &mut B, batch: &[Op]) -> Vec<Option<Done>> {
    let failed = match pass(db, batch, false) {
        Ok(answers) => return answers,
        Err(Failed::Operation) => match pass(db, batch, true) {
            Ok(answers) => return answers,
            Err(Failed::Batch(e)) => e,
            Err(Failed::Operation) => "an operation failed outside its savepoint".into(),
        },
        Err(Failed::Batch(e)) => e,
    };
    tracing::error!(
        "storage transaction failed, {} operations answered with an error: {failed}",
        batch.len()
    );
    let msg = format!("the storage transaction failed: {failed}");
    batch.iter().map(|op| error_answer(op, &msg)).collect()
}

/// One pass over the batch: straight through (`savepoints` false: the
/// first failing operation stops it) or with a savepoint per operation.
fn pass<B: Backend>(
    db: &mut B,
    batch: &[Op],
    savepoints: bool,
) -> Result<Vec<Option<Done>>, Failed> {
    db.begin().map_err(Failed::Batch)?;
    let mut answers = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        if !savepoints {
            let together = match together(db, &batch[i..]) {
                Ok(together) => together,
                Err(_) => {
                    db.rollback();
                    return Err(Failed::Operation);
                }
            };
            if !together.is_empty() {
                i += together.len();
                answers.extend(together);
                continue;
            }
        }
        let op = &batch[i];
        i += 1;
        if !savepoints {
            match apply(db, op) {
                Ok(done) => answers.push(done),
                Err(_) => {
                    db.rollback();
                    return Err(Failed::Operation);
                }
            }
            continue;
        }
        let step = (|| {
            db.savepoint()?;
            match apply(db, op) {
                Ok(done) => {
                    db.release_savepoint()?;
                    Ok(done)
                }
                Err(e) => {
                    tracing::error!("storage operation failed: {e}");
                    db.rollback_to_savepoint()?;
                    Ok(error_answer(op, &format!("storage error: {e}")))
                }
            }
        })();
        match step {
            Ok(done) => answers.push(done),
            Err(e) => {
                db.rollback();
                return Err(Failed::Batch(e));
            }
        }
    }
    match db.commit() {
        Ok(()) => Ok(answers),
        Err(e) => {
            db.rollback();
            Err(Failed::Batch(e))
        }
    }
}

/// Runs the loads, or the saves, at the head of `ops` as one read or one
/// write, and returns their answers (none if `ops` starts with neither).
fn together<B: Backend>(db: &mut B, ops: &[Op]) -> DbResult<Vec<Option<Done>>> {
    // (id, whether its private state is wanted too)
    let loads: Vec<(EntityId, bool)> = ops
        .iter()
        .map_while(|op| match op {
            Op::Load { id } => Some((*id, false)),
            Op::Recover { id } => Some((*id, true)),
            _ => None,
        })
        .collect();
    if !loads.is_empty() {
        let ids: Vec<EntityId> = loads.iter().map(|(id, _)| *id).collect();
        let mut found = db.load(&ids)?;
        with_states(db, &loads, &mut found)?;
        return Ok(ids
            .into_iter()
            .zip(found)
            .map(|(id, l)| Some(loaded(id, l)))
            .collect());
    }
    let saves: Vec<(&[EntityRow], Option<&ReplyTo>)> = ops
        .iter()
        .map_while(|op| match op {
            Op::Save { rows, reply } => Some((rows.as_slice(), reply.as_ref())),
            _ => None,
        })
        .collect();
    if saves.len() < 2 {
        return Ok(Vec::new());
    }
    let rows: Vec<&EntityRow> = saves.iter().flat_map(|(rows, _)| rows.iter()).collect();
    db.save(&rows, now_ms())?;
    Ok(saves.into_iter().map(|(rows, r)| saved(rows, r)).collect())
}

/// Reads the private states of the loads that want them into `found`.
fn with_states<B: Backend>(
    db: &mut B,
    loads: &[(EntityId, bool)],
    found: &mut [Option<LoadedEntity>],
) -> DbResult<()> {
    let wanted: Vec<usize> = (0..loads.len())
        .filter(|&i| loads[i].1 && found[i].is_some())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let ids: Vec<EntityId> = wanted.iter().map(|&i| loads[i].0).collect();
    for (i, state) in wanted.into_iter().zip(db.states(&ids)?) {
        if let Some(l) = &mut found[i] {
            l.state = state;
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A save's answer: its first row's id.
fn saved(rows: &[EntityRow], r: Option<&ReplyTo>) -> Option<Done> {
    let first = rows.first().map_or(0, |row| row.id);
    r.map(|r| Done::Reply(reply(r, None, |out| uint(out, first))))
}

fn loaded(id: EntityId, found: Option<LoadedEntity>) -> Done {
    Done::Loaded(id, found.ok_or_else(|| format!("no saved entity {id}")))
}

fn apply<B: Backend>(db: &mut B, op: &Op) -> DbResult<Option<Done>> {
    Ok(match op {
        Op::Save { rows, reply: r } => {
            let rows_ref: Vec<&EntityRow> = rows.iter().collect();
            db.save(&rows_ref, now_ms())?;
            saved(rows, r.as_ref())
        }
        Op::Load { id } | Op::Recover { id } => {
            let recover = matches!(op, Op::Recover { .. });
            let mut found = db.load(&[*id])?;
            with_states(db, &[(*id, recover)], &mut found)?;
            Some(loaded(*id, found.pop().flatten()))
        }
        Op::SaveStates { version, states } => {
            db.save_states(version, states, now_ms())?;
            None
        }
        Op::DropStates { ids } => {
            db.drop_states(ids)?;
            None
        }
        Op::Exists { id, reply: r } => {
            let found = db.exists(*id)?;
            Some(Done::Reply(reply(r, None, |out| {
                let _ = rmp::encode::write_bool(out, found);
            })))
        }
        Op::SavedIds {
            type_name,
            reply: r,
        } => {
            let ids = db.saved_ids(type_name)?;
            Some(Done::Reply(reply(r, None, |out| {
                let _ = rmp::encode::write_array_len(out, ids.len() as u32);
                for id in &ids {
                    uint(out, *id);
                }
            })))
        }
        Op::KvGet { key, reply: r } => {
            let v = db.kv_get(key)?;
            Some(Done::Reply(reply(r, None, |out| {
                raw_or_nil(out, v.as_deref())
            })))
        }
        Op::KvPut {
            key,
            value,
            reply: r,
        } => {
            db.kv_put(key, value)?;
            r.as_ref().map(|r| Done::Reply(reply(r, None, nil)))
        }
        Op::KvGetOrPut {
            key,
            value,
            reply: r,
        } => {
            let stored = db.kv_get_or_put(key, value)?;
            Some(Done::Reply(reply(r, None, |out| {
                out.extend_from_slice(&stored)
            })))
        }
        Op::KvRange { prefix, reply: r } => {
            let pairs = db.kv_range(prefix)?;
            Some(Done::Reply(reply(r, None, |out| {
                let _ = rmp::encode::write_array_len(out, pairs.len() as u32);
                for (k, v) in &pairs {
                    let _ = rmp::encode::write_array_len(out, 2);
                    let _ = rmp::encode::write_str(out, k);
                    out.extend_from_slice(v);
                }
            })))
        }
        Op::Mail {
            entity,
            method,
            args,
        } => {
            if !db.mail(*entity, method, args)? {
                // Common and harmless: a call (a timer's, another
                // entity's) to an entity destroyed meanwhile. The soak's
                // arena logged 17,000 of these in 30 minutes at warn.
                tracing::debug!(entity, %method, "call to an entity that is neither loaded nor saved dropped");
            }
            None
        }
        Op::MailDone { entity, up_to } => {
            db.mail_done(*entity, *up_to)?;
            None
        }
        Op::ReserveIds { reply } => Some(Done::Reserved(reply.clone(), db.reserve_ids()?)),
        Op::Service { type_name, id } => {
            db.set_service(type_name, *id)?;
            None
        }
        Op::Flush { done } => Some(Done::Flushed(done.clone())),
    })
}

/// What an operation answers when it, or its batch, failed with `msg`.
fn error_answer(op: &Op, msg: &str) -> Option<Done> {
    let r = match op {
        Op::Save { reply, .. } | Op::KvPut { reply, .. } => reply.as_ref()?,
        Op::Exists { reply, .. }
        | Op::SavedIds { reply, .. }
        | Op::KvGet { reply, .. }
        | Op::KvGetOrPut { reply, .. }
        | Op::KvRange { reply, .. } => reply,
        Op::Load { id } | Op::Recover { id } => {
            return Some(Done::Loaded(*id, Err(msg.to_owned())))
        }
        // Its caller sees the channel close, and asks again.
        Op::ReserveIds { .. } => return None,
        Op::Mail { .. }
        | Op::MailDone { .. }
        | Op::Service { .. }
        | Op::Flush { .. }
        | Op::SaveStates { .. }
        | Op::DropStates { .. } => return None,
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

/// The smallest string above every string that starts with `prefix`
/// (bytewise, as both databases compare keys), or `None` if there is none
/// (an empty prefix, or one of nothing but `char::MAX`).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value; UTF-8 order is code point order.
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        for key in ["ab", "ab\u{0}", "ab\u{10FFFF}", "abzzz"] {
            assert!(key.as_bytes() < "ac".as_bytes(), "{key:?}");
        }
    }
}
