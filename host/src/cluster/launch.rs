//! `wyrm cluster`: a whole cluster on this machine from one config — the
//! node (`wyrm serve`), a `wyrm game` for each of `[cluster] games` and a
//! `wyrm gate` for each of `[cluster] gates`, each a process of its own,
//! with a `nats-server` and a PostgreSQL of their own unless the config
//! names them. The same roles run on several machines with the same
//! commands, each given the same config (see the README).

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{Config, ENV_NATS, ENV_STORAGE_URL};
use crate::local::LocalPostgres;

/// What a running cluster waits for.
enum Event {
    Ended(String, std::io::Result<ExitStatus>),
    Stop,
}

/// Asks a running cluster to stop (from a signal handler's thread).
#[derive(Clone)]
pub struct Stopper(mpsc::Sender<Event>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(Event::Stop);
    }
}

/// A cluster's processes, and the services started for them.
pub struct Launched {
    /// In start order: the node, the games, the gates; by process id.
    roles: Vec<(String, u32)>,
    /// Each role's end as it comes, and the request to stop.
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    nats: Option<wyrm_fabric::local::LocalNats>,
    postgres: Option<LocalPostgres>,
}

impl Launched {
    /// Starts the services the config does not name, then every role, each
    /// once the one it joins is ready (the node first, then the games,
    /// then the gates).
    pub fn start(config: &Path) -> anyhow::Result<Self> {
        let cfg = Config::load(config)?;
        let exe = std::env::current_exe().context("cannot find the wyrm binary")?;
        let (events_tx, events) = mpsc::channel();
        let mut launched = Self {
            roles: Vec::new(),
            events_tx,
            events,
            nats: None,
            postgres: None,
        };
        let nats_url = match &cfg.cluster.nats {
            Some(url) => url.clone(),
            None => {
                let nats = wyrm_fabric::local::LocalNats::start()
                    .context("cannot start nats-server (scripts/setup-cluster installs it)")?;
                let url = nats.url();
                println!("NATS: {url} (started for this cluster)");
                launched.nats = Some(nats);
                url
            }
        };
        let storage_url = match &cfg.storage.url {
            Some(url) => url.clone(),
            None => {
                let dir = cfg.server.data_dir.join("postgres");
                let pg = LocalPostgres::start(&dir, true).with_context(|| {
                    format!(
                        "cannot start PostgreSQL in {} (scripts/setup-cluster installs it)",
                        dir.display()
                    )
                })?;
                let url = pg.database(&cfg.server.name)?;
                println!(
                    "PostgreSQL: {url} (started for this cluster, data in {})",
                    dir.display()
                );
                launched.postgres = Some(pg);
                url
            }
        };
        let role = |args: &[String]| -> anyhow::Result<Child> {
            Command::new(&exe)
                .args(args)
                .arg(config)
                .env(ENV_NATS, &nats_url)
                .env(ENV_STORAGE_URL, &storage_url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start wyrm {}", args.join(" ")))
        };
        let node = role(&["serve".into()])?;
        launched.add("node", node, &["clients:", "is serving"])?;
        let first = cfg.workers();
        for i in 0..usize::from(cfg.cluster.games) {
            let id = (first + i).to_string();
            let game = role(&["game".into(), "--id".into(), id.clone()])?;
            launched.add(&format!("game {id}"), game, &["is running"])?;
        }
        for (i, listen) in cfg.cluster.gates.iter().enumerate() {
            let mut args = vec!["gate".to_owned(), "--id".to_owned(), (i + 1).to_string()];
            for (flag, addr) in [
                ("--tcp", listen.tcp),
                ("--websocket", listen.websocket),
                ("--kcp", listen.kcp),
            ] {
                if let Some(addr) = addr {
                    args.extend([flag.to_owned(), addr.to_string()]);
                }
            }
            let gate = role(&args)?;
            launched.add(&format!("gate {}", i + 1), gate, &["clients:"])?;
        }
        Ok(launched)
    }

    /// Keeps `child` as role `name` once it printed a line containing
    /// one of `ready`; passes on everything it prints, prefixed with its
    /// name.
    fn add(&mut self, name: &str, mut child: Child, ready: &[&str]) -> anyhow::Result<()> {
        let stdout = child.stdout.take().context("no output from a role")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = name.to_owned();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                println!("[{prefix}] {line}");
                let _ = tx.send(line);
            }
        });
        self.roles.push((name.to_owned(), child.id()));
        let (name, events) = (name.to_owned(), self.events_tx.clone());
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = events.send(Event::Ended(name, status));
        });
        // Building and compiling plugins on a first start takes minutes.
        let deadline = std::time::Instant::now() + Duration::from_secs(900);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if ready.iter().any(|r| line.contains(r)) => return Ok(()),
                Ok(_) => {}
                Err(_) => anyhow::bail!(
                    "{} did not start (its log is above)",
                    self.roles.last().map_or("a role", |r| r.0.as_str())
                ),
            }
        }
    }

    /// A handle that asks [`wait`](Self::wait) to return.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.events_tx.clone())
    }

    /// Runs until asked to stop or until a role ends by itself (which is
    /// said, and returned).
    pub fn wait(&self) -> Option<String> {
        match self.events.recv().ok()? {
            Event::Stop => None,
            Event::Ended(name, status) => {
                match status {
                    Ok(status) => eprintln!("{name} ended ({status}): stopping the cluster"),
                    Err(e) => {
                        eprintln!("{name} could not be waited for ({e}): stopping the cluster")
                    }
                }
                Some(name)
            }
        }
    }

    /// Stops the gates and the node (which stops its games once they have
    /// saved), waits for every role, then stops the services. `gone` is a
    /// role that ended already.
    pub fn stop(mut self, gone: Option<String>) {
        println!("stopping the cluster");
        let signal = |pid: u32| {
            // SAFETY: kill(2) on the id of a child of ours.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        };
        for (name, pid) in self.roles.iter().rev() {
            if name.starts_with("gate") || name == "node" {
                signal(*pid);
            }
        }
        let mut running: Vec<String> = self.roles.iter().map(|r| r.0.clone()).collect();
        running.retain(|r| Some(r) != gone.as_ref());
        // The node's end stops the games; one that did not hear it is asked
        // itself.
        let mut asked_games = false;
        while !running.is_empty() {
            match self.events.recv_timeout(Duration::from_secs(30)) {
                Ok(Event::Stop) => {}
                Ok(Event::Ended(name, status)) => {
                    if let Ok(s) = status {
                        if !s.success() {
                            eprintln!("{name} ended with {s}");
                        }
                    }
                    running.retain(|r| *r != name);
                }
                Err(_) if !asked_games => {
                    asked_games = true;
                    for (name, pid) in &self.roles {
                        if running.contains(name) {
                            signal(*pid);
                        }
                    }
                }
                Err(_) => {
                    eprintln!("{} did not stop", running.join(", "));
                    break;
                }
            }
        }
        self.roles.clear();
        if let Some(mut pg) = self.postgres.take() {
            pg.shutdown();
        }
        drop(self.nats.take());
    }
}

impl Drop for Launched {
    /// A cluster that did not start whole (or was not stopped) leaves no
    /// role running: each is ended at once, before the services go.
    fn drop(&mut self) {
        // Not one that ended already: its id may be another process's now.
        while let Ok(event) = self.events.try_recv() {
            if let Event::Ended(name, _) = event {
                self.roles.retain(|(n, _)| *n != name);
            }
        }
        for (_, pid) in &self.roles {
            // SAFETY: kill(2) on the id of a child of ours.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}
