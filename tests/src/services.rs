//! The services a cluster runs on, for tests: one throwaway PostgreSQL
//! server per test process (`wyrm::local::LocalPostgres` under the system's
//! temporary folder), started on first use and stopped when the process
//! exits; a database on it per data folder, so a server restarted on the
//! same folder finds its data again. Likewise one `nats-server` per test
//! process, which clusters share under names of their own.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wyrm::local::LocalPostgres;

static POSTGRES: OnceLock<Mutex<LocalPostgres>> = OnceLock::new();
static NATS: OnceLock<Mutex<wyrm_fabric::local::LocalNats>> = OnceLock::new();

extern "C" fn stop_nats() {
    if let Some(nats) = NATS.get() {
        nats.lock().unwrap_or_else(|e| e.into_inner()).kill();
    }
}

/// The URL of this process's `nats-server`, started on first use.
pub fn nats_url() -> String {
    setup_cluster();
    let nats = NATS.get_or_init(|| {
        let nats = match wyrm_fabric::local::LocalNats::start() {
            Ok(n) => n,
            Err(e) => panic!("cannot start nats-server: {e:#}"),
        };
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_nats) };
        Mutex::new(nats)
    });
    nats.lock().unwrap_or_else(|e| e.into_inner()).url()
}

/// Makes sure `nats-server` and PostgreSQL are installed, once per process.
pub fn setup_cluster() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = crate::repo_root().join("scripts/setup-cluster");
        match std::process::Command::new(&script).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("cannot run {}: {e}", script.display()),
        }
    });
}

extern "C" fn stop_postgres() {
    if let Some(pg) = POSTGRES.get() {
        pg.lock().unwrap_or_else(|e| e.into_inner()).shutdown();
    }
}

/// Where this process's throwaway servers live.
fn parent() -> PathBuf {
    std::env::temp_dir().join("wyrm-test-postgres")
}

/// The URL of a database of this process's PostgreSQL server, the same for
/// the same `key` (a data folder), made on first use.
pub fn postgres_database(key: &Path) -> String {
    setup_cluster();
    let pg = POSTGRES.get_or_init(|| {
        let pg = match LocalPostgres::temporary(&parent(), false) {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start a throwaway PostgreSQL: {e:#}"),
        };
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_postgres) };
        Mutex::new(pg)
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let name = format!("t{:016x}", h.finish());
    let pg = pg.lock().unwrap_or_else(|e| e.into_inner());
    match pg.database(&name) {
        Ok(url) => url,
        Err(e) => panic!("cannot make database {name}: {e:#}"),
    }
}

/// A PostgreSQL server of the caller's own (to kill and restart), stopped
/// and removed when dropped.
pub fn own_postgres() -> LocalPostgres {
    setup_cluster();
    match LocalPostgres::temporary(&parent(), false) {
        Ok(pg) => pg,
        Err(e) => panic!("cannot start a throwaway PostgreSQL: {e:#}"),
    }
}
