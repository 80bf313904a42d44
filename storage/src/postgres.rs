//! PostgreSQL, a cluster's storage: every game process of the cluster
//! shares one database, so nothing here assumes it is alone — entity ids
//! come in blocks reserved under the row's lock, and the schema is made
//! under an advisory lock. The storage thread drives `tokio-postgres` on a
//! runtime of its own (one thread: the connection's task runs while a
//! query is awaited), through a `deadpool-postgres` pool, which replaces a
//! connection that broke (a PostgreSQL restart) at the next batch.
//!
//! Tables are prefixed `wyrm_`, so a database may hold others too.
//!
//! TLS (rustls) is used when the URL asks for it (`sslmode=require`) or a
//! CA is given, and then required: a server that does not speak it, or
//! whose certificate the roots do not sign for the URL's host, is refused.
//! Without either, the connection is plain, as libpq's default `prefer`
//! would be with a server that has no TLS.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use crate::batch::{Backend, DbResult};
use crate::{EntityRow, IdBlock, LoadedEntity, OpenError, SavedState, ID_BLOCK, SCHEMA_VERSION};
use wyrm_wire::EntityId;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wyrm_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS wyrm_entities (
    id BIGINT PRIMARY KEY,
    type TEXT NOT NULL,
    attrs BYTEA NOT NULL,
    saved_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS wyrm_entities_by_type ON wyrm_entities (type, id);
CREATE TABLE IF NOT EXISTS wyrm_kv (key TEXT COLLATE \"C\" PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS wyrm_mailbox (
    seq BIGSERIAL PRIMARY KEY,
    entity BIGINT NOT NULL,
    method TEXT NOT NULL,
    args BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS wyrm_mailbox_by_entity ON wyrm_mailbox (entity, seq);
CREATE TABLE IF NOT EXISTS wyrm_states (
    id BIGINT PRIMARY KEY,
    version TEXT NOT NULL,
    state BYTEA NOT NULL,
    saved_at BIGINT NOT NULL
);
";

/// Any number; every Wyrm process takes this advisory lock while it makes
/// the schema, so two starting at once do not both create it.
const SCHEMA_LOCK: i64 = 0x7779_726d;

/// Connections the pool keeps: the storage thread uses one at a time, and
/// a second is ready when the first broke.
const POOL_SIZE: usize = 2;

/// How long connecting may take before the batch (or opening) fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database, and the connection of the transaction under way.
pub(crate) struct Postgres {
    rt: tokio::runtime::Runtime,
    pool: Pool,
    tx: Option<Object>,
}

/// `url` without its password, to name the database in logs and errors.
pub(crate) fn describe(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default();
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "postgres://{}@{host}:{port}/{}",
                c.get_user().unwrap_or(""),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(an unparsable PostgreSQL URL)".into(),
    }
}

/// The TLS connector for a connection that requires TLS: `ca`'s
/// certificates as roots, or the system's.
fn tls(ca: Option<&std::path::Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read the CA certificates {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "{} holds no CA certificate (PEM) to trust",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    // The process's crypto provider: ring, the only one built in (as for
    // async-nats).
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Connects to the database at `url` (over TLS when it or `ca` asks; see
/// the module docs) and makes (or checks) its schema.
pub(crate) fn open(url: &str, ca: Option<&std::path::Path>) -> Result<Postgres, OpenError> {
    let db = describe(url);
    let err = |reason: String| OpenError::Postgres {
        db: db.clone(),
        reason,
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| err(format!("the URL is not valid: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("wyrm");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(format!("cannot start its runtime: {e}")))?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if ca.is_some() || config.get_ssl_mode() == SslMode::Require {
        config.ssl_mode(SslMode::Require);
        Manager::from_config(config, tls(ca).map_err(&err)?, manager_config)
    } else {
        Manager::from_config(config, NoTls, manager_config)
    };
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let found = rt
        .block_on(async {
            let mut client = pool.get().await.map_err(|e| with_causes(&e))?;
            let tx = client.transaction().await.map_err(|e| e.to_string())?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await
                .map_err(|e| e.to_string())?;
            // Quiet: "relation already exists, skipping" on every start
            // is no news (tokio-postgres logs notices at INFO).
            tx.batch_execute("SET LOCAL client_min_messages = warning")
                .await
                .map_err(|e| e.to_string())?;
            tx.batch_execute(SCHEMA).await.map_err(|e| e.to_string())?;
            let found: Option<i64> = tx
                .query_opt(
                    "SELECT value FROM wyrm_meta WHERE key = 'schema_version'",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?
                .map(|r| r.get(0));
            if found.is_none() {
                tx.execute(
                    "INSERT INTO wyrm_meta (key, value) VALUES ('schema_version', $1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(found)
        })
        .map_err(err)?;
    if let Some(v) = found.filter(|&v| v > SCHEMA_VERSION) {
        return Err(OpenError::TooNew { db, found: v });
    }
    tracing::info!(db = %db, "opened PostgreSQL database");
    Ok(Postgres { rt, pool, tx: None })
}

/// A driver error as a [`DbError`] whose message says what the server
/// said (`tokio_postgres::Error` displays a server's error as "db error").
/// An error with what caused it ("error performing TLS handshake: invalid
/// peer certificate: UnknownIssuer"), since the cause is what says what to
/// do.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn pg(e: tokio_postgres::Error) -> crate::batch::DbError {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()).into(),
        None => e.into(),
    }
}

impl Postgres {
    /// The connection of the transaction under way.
    fn client(&self) -> DbResult<&Object> {
        self.tx
            .as_ref()
            .ok_or_else(|| "no transaction is open".into())
    }

    /// Runs SQL that takes no parameters.
    fn batch_execute(&self, sql: &str) -> DbResult<()> {
        let c = self.client()?;
        self.rt.block_on(c.batch_execute(sql)).map_err(pg)
    }

    /// Runs a cached statement that returns no rows.
    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> DbResult<u64> {
        let c = self.client()?;
        self.rt
            .block_on(async {
                let st = c.prepare_cached(sql).await?;
                c.execute(&st, params).await
            })
            .map_err(pg)
    }

    /// Runs a cached statement and returns its rows.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> DbResult<Vec<tokio_postgres::Row>> {
        let c = self.client()?;
        self.rt
            .block_on(async {
                let st = c.prepare_cached(sql).await?;
                c.query(&st, params).await
            })
            .map_err(pg)
    }
}

impl Backend for Postgres {
    fn begin(&mut self) -> DbResult<()> {
        // A pooled connection may have died since its last batch (the
        // server restarted) without its task having noticed yet: BEGIN
        // changes nothing, so it is tried once more on a new connection
        // before the batch fails.
        let mut retried = false;
        loop {
            let client = self.rt.block_on(self.pool.get())?;
            match self.rt.block_on(client.batch_execute("BEGIN")) {
                Ok(()) => {
                    self.tx = Some(client);
                    return Ok(());
                }
                Err(e) => {
                    drop(Object::take(client));
                    if retried {
                        return Err(pg(e));
                    }
                    retried = true;
                    tracing::info!("PostgreSQL connection lost ({e}); connecting again");
                }
            }
        }
    }

    fn commit(&mut self) -> DbResult<()> {
        let Some(client) = self.tx.take() else {
            return Err("no transaction is open".into());
        };
        match self.rt.block_on(client.batch_execute("COMMIT")) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Whatever state it is in, it is not going back to the pool.
                drop(Object::take(client));
                Err(pg(e))
            }
        }
    }

    fn rollback(&mut self) {
        let Some(client) = self.tx.take() else { return };
        if let Err(e) = self.rt.block_on(client.batch_execute("ROLLBACK")) {
            tracing::warn!("PostgreSQL rollback failed, dropping the connection: {e}");
            drop(Object::take(client));
        }
    }

    fn savepoint(&mut self) -> DbResult<()> {
        self.batch_execute("SAVEPOINT op")
    }

    fn release_savepoint(&mut self) -> DbResult<()> {
        self.batch_execute("RELEASE SAVEPOINT op")
    }

    fn rollback_to_savepoint(&mut self) -> DbResult<()> {
        self.batch_execute("ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op")
    }

    fn save(&mut self, rows: &[&EntityRow], now_ms: i64) -> DbResult<()> {
        // One statement for every row. An upsert may not touch a row twice,
        // so an id given twice keeps its last row, as saving in order would.
        let mut last = std::collections::HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            last.insert(row.id, i);
        }
        let mut ids = Vec::with_capacity(last.len());
        let mut types = Vec::with_capacity(last.len());
        let mut attrs = Vec::with_capacity(last.len());
        for (i, row) in rows.iter().enumerate() {
            if last.get(&row.id) == Some(&i) {
                ids.push(row.id as i64);
                types.push(row.type_name.as_str());
                attrs.push(row.attrs.as_slice());
            }
        }
        self.execute(
            "INSERT INTO wyrm_entities (id, type, attrs, saved_at)
             SELECT u.id, u.type, u.attrs, $4
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BYTEA[]) AS u (id, type, attrs)
             ON CONFLICT (id) DO UPDATE
             SET type = excluded.type, attrs = excluded.attrs, saved_at = excluded.saved_at",
            &[&ids, &types, &attrs, &now_ms],
        )?;
        Ok(())
    }

    fn load(&mut self, ids: &[EntityId]) -> DbResult<Vec<Option<LoadedEntity>>> {
        let keys: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        // Both queries sent at once: one round trip.
        let c = self.client()?;
        let (rows, mail) = self
            .rt
            .block_on(async {
                let rows = async {
                    let st = c
                        .prepare_cached(
                            "SELECT id, type, attrs FROM wyrm_entities WHERE id = ANY($1)",
                        )
                        .await?;
                    c.query(&st, &[&keys]).await
                };
                let mail = async {
                    let st = c
                        .prepare_cached(
                            "SELECT entity, seq, method, args FROM wyrm_mailbox
                             WHERE entity = ANY($1) ORDER BY entity, seq",
                        )
                        .await?;
                    c.query(&st, &[&keys]).await
                };
                tokio::try_join!(rows, mail)
            })
            .map_err(pg)?;
        let mut found: std::collections::HashMap<EntityId, LoadedEntity> = rows
            .into_iter()
            .map(|r| {
                let id = r.try_get::<_, i64>(0)? as u64;
                let row = EntityRow {
                    id,
                    type_name: r.try_get(1)?,
                    attrs: r.try_get(2)?,
                };
                Ok((
                    id,
                    LoadedEntity {
                        row,
                        mailbox: Vec::new(),
                        state: None,
                    },
                ))
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        for m in mail {
            let entity = m.try_get::<_, i64>(0)? as u64;
            if let Some(l) = found.get_mut(&entity) {
                l.mailbox
                    .push((m.try_get(1)?, m.try_get(2)?, m.try_get(3)?));
            }
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn save_states(
        &mut self,
        version: &str,
        states: &[(EntityId, Vec<u8>)],
        now_ms: i64,
    ) -> DbResult<()> {
        // One statement for all (an upsert may not touch a row twice: the
        // last state of an id given twice is kept, as in `save`).
        let mut last = std::collections::HashMap::with_capacity(states.len());
        for (i, (id, _)) in states.iter().enumerate() {
            last.insert(*id, i);
        }
        let mut ids = Vec::with_capacity(last.len());
        let mut data = Vec::with_capacity(last.len());
        for (i, (id, state)) in states.iter().enumerate() {
            if last.get(id) == Some(&i) {
                ids.push(*id as i64);
                data.push(state.as_slice());
            }
        }
        self.execute(
            "INSERT INTO wyrm_states (id, version, state, saved_at)
             SELECT u.id, $2, u.state, $4
             FROM UNNEST($1::BIGINT[], $3::BYTEA[]) AS u (id, state)
             ON CONFLICT (id) DO UPDATE
             SET version = excluded.version, state = excluded.state, saved_at = excluded.saved_at",
            &[&ids, &version, &data, &now_ms],
        )?;
        Ok(())
    }

    fn states(&mut self, ids: &[EntityId]) -> DbResult<Vec<Option<SavedState>>> {
        let keys: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let rows = self.query(
            "SELECT id, version, state FROM wyrm_states WHERE id = ANY($1)",
            &[&keys],
        )?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let id = r.try_get::<_, i64>(0)? as u64;
            found.insert(
                id,
                SavedState {
                    version: r.try_get(1)?,
                    state: r.try_get(2)?,
                },
            );
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn drop_states(&mut self, ids: &[EntityId]) -> DbResult<()> {
        let keys: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        self.execute("DELETE FROM wyrm_states WHERE id = ANY($1)", &[&keys])?;
        Ok(())
    }

    fn exists(&mut self, id: EntityId) -> DbResult<bool> {
        let rows = self.query("SELECT 1 FROM wyrm_entities WHERE id = $1", &[&(id as i64)])?;
        Ok(!rows.is_empty())
    }

    fn saved_ids(&mut self, type_name: &str) -> DbResult<Vec<EntityId>> {
        let rows = self.query(
            "SELECT id FROM wyrm_entities WHERE type = $1 ORDER BY id",
            &[&type_name],
        )?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<_, i64>(0).map(|id| id as u64))
            .collect::<Result<_, _>>()?)
    }

    fn kv_get(&mut self, key: &str) -> DbResult<Option<Vec<u8>>> {
        let rows = self.query("SELECT value FROM wyrm_kv WHERE key = $1", &[&key])?;
        Ok(match rows.first() {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    fn kv_put(&mut self, key: &str, value: &[u8]) -> DbResult<()> {
        self.execute(
            "INSERT INTO wyrm_kv (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn kv_get_or_put(&mut self, key: &str, value: &[u8]) -> DbResult<Vec<u8>> {
        self.execute(
            "INSERT INTO wyrm_kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )?;
        let rows = self.query("SELECT value FROM wyrm_kv WHERE key = $1", &[&key])?;
        match rows.first() {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(format!("key {key:?} vanished after it was stored").into()),
        }
    }

    fn kv_range(&mut self, prefix: &str) -> DbResult<Vec<(String, Vec<u8>)>> {
        // Keys collate bytewise ("C"), so a prefix is a range of the index.
        let rows = match crate::batch::prefix_end(prefix) {
            Some(end) => self.query(
                "SELECT key, value FROM wyrm_kv WHERE key >= $1 AND key < $2 ORDER BY key",
                &[&prefix, &end],
            )?,
            None => self.query(
                "SELECT key, value FROM wyrm_kv WHERE key >= $1 ORDER BY key",
                &[&prefix],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    fn mail(&mut self, entity: EntityId, method: &str, args: &[u8]) -> DbResult<bool> {
        let stored = self.execute(
            "INSERT INTO wyrm_mailbox (entity, method, args)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM wyrm_entities WHERE id = $1)",
            &[&(entity as i64), &method, &args],
        )?;
        Ok(stored > 0)
    }

    fn mail_done(&mut self, entity: EntityId, up_to: i64) -> DbResult<()> {
        self.execute(
            "DELETE FROM wyrm_mailbox WHERE entity = $1 AND seq <= $2",
            &[&(entity as i64), &up_to],
        )?;
        Ok(())
    }

    fn reserve_ids(&mut self) -> DbResult<IdBlock> {
        // The row's lock, held to the commit, orders reservations of every
        // process: each block starts where the one before it ended.
        let rows = self.query(
            "INSERT INTO wyrm_meta (key, value)
             VALUES ('next_id', (SELECT coalesce(max(id), 0) + 1 FROM wyrm_entities) + $1)
             ON CONFLICT (key) DO UPDATE
             SET value = GREATEST(wyrm_meta.value,
                                  (SELECT coalesce(max(id), 0) + 1 FROM wyrm_entities)) + $1
             RETURNING value",
            &[&(ID_BLOCK as i64)],
        )?;
        let end = match rows.first() {
            Some(r) => r.try_get::<_, i64>(0)? as u64,
            None => return Err("reserving entity ids returned nothing".into()),
        };
        Ok(end - ID_BLOCK..end)
    }

    fn set_service(&mut self, type_name: &str, id: EntityId) -> DbResult<()> {
        self.execute(
            "INSERT INTO wyrm_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&format!("service:{type_name}"), &(id as i64)],
        )?;
        Ok(())
    }

    fn service(&mut self, type_name: &str) -> DbResult<Option<EntityId>> {
        let rows = self.query(
            "SELECT value FROM wyrm_meta WHERE key = $1",
            &[&format!("service:{type_name}")],
        )?;
        Ok(match rows.first() {
            Some(r) => Some(r.try_get::<_, i64>(0)? as u64),
            None => None,
        })
    }
}
