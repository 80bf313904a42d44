//! Services a cluster runs on, started by Wyrm itself on this machine: a
//! PostgreSQL server in a folder of its own ([`LocalPostgres`]), for a
//! cluster on one machine and for tests and benchmarks. Production points
//! `[storage] url` at a PostgreSQL it runs itself.
//!
//! The binaries are Debian's `postgresql` (`scripts/setup-cluster`
//! installs it). PostgreSQL refuses to run as root, so as root it runs as
//! the `postgres` user, in a folder that user owns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// The folder of PostgreSQL's server binaries (`initdb`, `pg_ctl`), the
/// newest version installed.
pub fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    on_path.context(
        "PostgreSQL's server is not installed (no initdb): run scripts/setup-cluster, \
         or `apt-get install postgresql`",
    )
}

/// A PostgreSQL server of our own: made (`initdb`) in `dir` if it holds
/// none yet, listening on loopback only, with trust authentication for
/// user `wyrm`. Stopped when dropped; the folder stays (with its data)
/// unless made with [`LocalPostgres::temporary`].
///
/// Not `durable`, it never asks the disk to sync (`fsync` and
/// `full_page_writes` off): like SQLite's `synchronous = NORMAL`, what it
/// committed survives a crash of any process, its own included, but not
/// of the machine. It still writes its log before it answers a commit.
pub struct LocalPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run as this user (when we are root).
    user: Option<(u32, u32)>,
    /// The server's options (port, socket folder, durability).
    options: String,
    remove_on_drop: bool,
    stopped: bool,
}

impl LocalPostgres {
    /// Starts a server on `dir` (made if absent) on a free port.
    pub fn start(dir: &Path, durable: bool) -> anyhow::Result<Self> {
        // The server may run as another user, from another folder.
        let dir = &std::path::absolute(dir)
            .with_context(|| format!("cannot make {} absolute", dir.display()))?;
        let bin = postgres_bin()?;
        let user = postgres_user()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("cannot give {} to the postgres user", dir.display()))?;
        }
        let dir_str = dir
            .to_str()
            .with_context(|| format!("{} is not UTF-8", dir.display()))?;
        let options = |port: u16| {
            let mut options = format!("-p {port} -k {dir_str} -c listen_addresses=127.0.0.1");
            if !durable {
                options.push_str(" -c fsync=off -c full_page_writes=off");
            }
            options
        };
        let port = free_port()?;
        let mut pg = Self {
            bin,
            dir: dir.to_path_buf(),
            port,
            user,
            options: options(port),
            remove_on_drop: false,
            stopped: true,
        };
        if !dir.join("PG_VERSION").exists() {
            let args = [
                "-D",
                dir_str,
                "-A",
                "trust",
                "-U",
                "wyrm",
                "-E",
                "UTF8",
                "--no-sync",
            ];
            pg.run("initdb", &args)?;
        }
        // The free port may be taken by someone else before the server
        // binds it (tests start several at once): then another.
        let mut tries = 0;
        while let Err(e) = pg.restart() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            tries += 1;
            if tries == 5 || !log.contains("already in use") {
                return Err(e);
            }
            pg.port = free_port()?;
            pg.options = options(pg.port);
        }
        tracing::info!(port = pg.port, dir = %dir.display(), "local PostgreSQL started");
        Ok(pg)
    }

    /// Starts the server again after [`kill`](Self::kill), on its port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join("server.log");
        let dir = self.dir_str()?;
        let log_str = log.to_string_lossy();
        let args = [
            "-D",
            &dir,
            "-l",
            &log_str,
            "-o",
            &self.options,
            "-w",
            "-t",
            "60",
            "start",
        ];
        self.run("pg_ctl", &args)
            .with_context(|| format!("PostgreSQL did not start; its log is {}", log.display()))?;
        self.stopped = false;
        Ok(())
    }

    /// Starts a server in a new folder under `parent`, removed with the
    /// server when dropped. `parent` is made readable by everyone (the
    /// server may run as another user), and every folder of this kind
    /// under it whose process is gone is removed first.
    pub fn temporary(parent: &Path, durable: bool) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot make {}", parent.display()))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot open {} to the postgres user", parent.display()))?;
        remove_stale(parent);
        let dir = tempfile_dir(parent)?;
        let mut pg = Self::start(&dir, durable)?;
        pg.remove_on_drop = true;
        Ok(pg)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on it.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://wyrm@127.0.0.1:{}/{name}", self.port)
    }

    /// Makes database `name` if there is none, and returns its URL.
    pub fn database(&self, name: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "wyrm",
                name,
            ])
            .stdin(Stdio::null())
            .output()
            .context("cannot run createdb")?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !err.contains("already exists") {
            anyhow::bail!("createdb {name} failed: {}", err.trim());
        }
        Ok(self.url(name))
    }

    /// Serves TLS from now on with certificate `cert` and key `key` (PEM),
    /// copied into its folder for the server's user (it restarts to take
    /// them); clients may still connect without TLS.
    pub fn enable_tls(&mut self, cert: &Path, key: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = self.dir.join(name);
            std::fs::copy(from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            // PostgreSQL refuses a key others may read.
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = self.user {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid))?;
            }
        }
        self.options
            .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        self.kill()?;
        self.restart()
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m
    /// immediate`); [`restart`](Self::restart) brings it back on its port.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.dir_str()?, "-m", "immediate", "-w", "stop"],
        )?;
        self.stopped = true;
        Ok(())
    }

    fn dir_str(&self) -> anyhow::Result<String> {
        self.dir
            .to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not UTF-8", self.dir.display()))
    }

    /// Runs one of PostgreSQL's programs (as the postgres user if we are
    /// root); its output becomes the error if it fails.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args).stdin(Stdio::null()).current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        if !out.status.success() {
            anyhow::bail!(
                "{program} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Stops the server (and removes its folder if it is temporary), as
    /// dropping it does.
    pub fn shutdown(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let dir = self.dir.to_string_lossy().into_owned();
            if let Err(e) = self.run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]) {
                tracing::warn!("stopping the local PostgreSQL: {e:#}");
            }
        }
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `postgres` user's uid and gid when we are root (PostgreSQL will not
/// run as root); `None` otherwise.
fn postgres_user() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: a NUL-terminated name; the result is read at once, before
    // any other call that could reuse getpwnam's static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        anyhow::bail!(
            "running as root, PostgreSQL must run as another user, and there is no \
             'postgres' user: install Debian's postgresql (scripts/setup-cluster) or run as a normal user"
        );
    }
    // SAFETY: non-null, from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// A new, empty folder under `parent` named for this process
/// (`pg-<pid>-<n>`, which [`remove_stale`] reads).
fn tempfile_dir(parent: &Path) -> anyhow::Result<PathBuf> {
    for n in 0..1000 {
        let dir = parent.join(format!("pg-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot make {}", dir.display())),
        }
    }
    anyhow::bail!("{} holds 1,000 servers of this process", parent.display())
}

/// Stops and removes the temporary servers under `parent` whose process
/// is gone (killed before it could stop them).
pub fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pg-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if alive {
            continue;
        }
        let dir = e.path();
        if let (Ok(bin), Ok(user)) = (postgres_bin(), postgres_user()) {
            let stale = LocalPostgres {
                bin,
                dir: dir.clone(),
                port: 0,
                user,
                options: String::new(),
                remove_on_drop: true,
                stopped: !dir.join("postmaster.pid").exists(),
            };
            drop(stale);
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
