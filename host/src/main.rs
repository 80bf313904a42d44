//! The `wyrm` command line: a thin layer over the `wyrm` library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod dev;

#[derive(Parser)]
#[command(name = "wyrm", version, about = "Wyrm game server host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a game server from a config file.
    Serve {
        /// The server's TOML config.
        config: PathBuf,
    },
    /// Run a gate of a cluster in a process of its own: clients connect to
    /// it, and it carries their messages to the cluster's server (`wyrm
    /// serve` with `[cluster] nats`) over NATS.
    Gate {
        /// The cluster's TOML config (its `[cluster]` and `[net]`).
        config: PathBuf,
        /// This gate's number, 1 or more, different for every gate
        /// (instead of `[cluster] gate`).
        #[arg(long)]
        id: Option<u16>,
        /// Listen for TCP clients here (with any of these three, only the
        /// ones given listen, instead of `[net]`'s).
        #[arg(long)]
        tcp: Option<std::net::SocketAddr>,
        /// Listen for WebSocket clients (and serve the web page) here.
        #[arg(long)]
        websocket: Option<std::net::SocketAddr>,
        /// Listen for KCP clients here.
        #[arg(long)]
        kcp: Option<std::net::SocketAddr>,
    },
    /// Run one game of a cluster in a process of its own: it joins the
    /// cluster's node (`wyrm serve` with `[cluster] nats` and `[cluster]
    /// games`), which routes entities and their messages to it, and writes
    /// to the cluster's gates itself. Storage must be the node's PostgreSQL.
    Game {
        /// The cluster's TOML config (the node's own).
        config: PathBuf,
        /// This game's number: from the node's `[game] workers` up, one
        /// for each of its `[cluster] games`.
        #[arg(long)]
        id: u16,
    },
    /// Run a whole cluster on this machine: the node (`serve`), `[cluster]
    /// games` game processes and `[cluster] gates` gate processes, with a
    /// nats-server and a PostgreSQL of their own unless the config names
    /// them (`[cluster] nats`, `[storage] url`). Ctrl-C stops them all.
    Cluster {
        /// The cluster's TOML config.
        config: PathBuf,
    },
    /// Run a server and hot-swap its Rust plugins whenever their source
    /// changes: edit, save, and connected players keep playing on the new
    /// code with their state.
    Dev {
        /// The server's TOML config.
        config: PathBuf,
    },
    /// Replace a plugin of a running server (started with the same config)
    /// with a new version, keeping every player connected and every entity's
    /// state.
    Swap {
        /// The running server's TOML config (to find its admin endpoint).
        config: PathBuf,
        /// The plugin's name in that config.
        plugin: String,
        /// The new version: a `.wasm` component, or a plugin folder (any
        /// language) to build first.
        source: PathBuf,
        /// Cargo features, when `source` is a crate.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Export, import into a scratch instance and report; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Build a plugin (Rust, JavaScript, Python or C) into a component and
    /// print its path. The language is told by the folder's marker file.
    Build {
        /// The plugin's folder.
        dir: PathBuf,
        /// Cargo features to enable (Rust plugins).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// Load-test a running server: N bots log in and play a scenario,
    /// printing throughput, latency and errors every second
    /// (see bots/README.md).
    Bots(BotsArgs),
    /// Soak the example games: bots on the chatroom and the arena over
    /// every transport for a long while, a hot swap every few seconds, one
    /// SIGKILL and restart of both servers in the middle; prints a report
    /// and exits non-zero if a player would have noticed anything but the
    /// kill (see `scripts/soak`).
    Soak(SoakArgs),
    /// Make a new plugin project that builds and serves as it is.
    New {
        /// The project's folder; its last part names the plugin.
        dir: PathBuf,
        /// The plugin's language: rust, js, python or c.
        #[arg(long, default_value = "rust")]
        lang: wyrm_toolchains::Language,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WYRM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(config, false),
        Command::Dev { config } => serve(config, true),
        Command::Gate {
            config,
            id,
            tcp,
            websocket,
            kcp,
        } => run_gate(config, id, [tcp, websocket, kcp]),
        Command::Game { config, id } => run_game(config, id),
        Command::Cluster { config } => run_cluster(config),
        Command::Swap {
            config,
            plugin,
            source,
            features,
            dry_run,
        } => swap(config, plugin, source, features, dry_run),
        Command::Build { dir, features } => {
            let opts = wyrm_toolchains::BuildOptions {
                features,
                debug: false,
            };
            let wasm = wyrm_toolchains::build_plugin(&dir, &opts)?;
            println!("{}", wasm.display());
            Ok(())
        }
        Command::Bots(args) => bots(args),
        Command::Soak(args) => soak(args),
        Command::New { dir, lang } => {
            wyrm_toolchains::scaffold::create(&dir, lang)?;
            println!(
                "Made a {lang} plugin in {0}. Serve it: wyrm serve {0}/wyrm.toml",
                dir.display()
            );
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(1)
}

/// The runtime for serving: `threads` network threads.
fn runtime_with(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .thread_name("wyrm-net")
        .build()
        .context("cannot start the async runtime")
}

/// Tunes glibc's allocator for a server: one arena per busy thread (the
/// game's and each network thread's) rather than its default of eight per
/// core, and large blocks always mapped. Frames are made on the game thread
/// and freed on a network thread; with many arenas the memory freed that
/// way stays spread over them, and a crowd of players costs a third more
/// memory per player (measured with `--bench scale`).
fn tune_malloc(threads: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = libc::c_int::try_from(threads + 1).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tuning parameter of the allocator; it
        // is called before the runtime and the game start their threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            // glibc raises its mmap threshold to the size of each large
            // block freed, so after the first password hash (Argon2 takes
            // 19 MiB) every later one came from the heap and stayed: 120
            // logins left 300 MiB resident. A fixed threshold turns that
            // off: blocks of 4 MiB and more are mapped and given back.
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threads;
}

fn serve(config: PathBuf, dev: bool) -> anyhow::Result<()> {
    let cfg = wyrm::Config::load(&config)?;
    tune_malloc(cfg.net_threads());
    runtime_with(cfg.net_threads())?.block_on(async {
        let server = wyrm::Server::start(cfg.clone()).await?;
        if let Some(addr) = server.websocket {
            println!(
                "Wyrm is serving. Open http://{addr}/ in a browser (WebSocket at ws://{addr}/ws)."
            );
        }
        if let Some(addr) = server.tcp {
            println!("TCP clients: {addr}");
        }
        if let Some(addr) = server.kcp {
            println!("KCP clients: {addr}");
        }
        if let Some(addr) = server.websocket_tls {
            println!("Over TLS: open https://{addr}/ (WebSocket at wss://{addr}/ws).");
        }
        if let Some(addr) = server.tcp_tls {
            println!("TLS TCP clients: {addr}");
        }
        if let Some(dev) = &server.dev_certificate {
            println!(
                "TLS uses a development certificate for localhost, issued by an authority made for this machine ({ca}). To trust it:\n  \
                 Chromium: --ignore-certificate-errors-spki-list={spki}\n  \
                 Node: NODE_EXTRA_CA_CERTS={ca}, or the SDK's `tls: {{ ca }}` option\n  \
                 curl: --cacert {ca}\n  \
                 a browser or the system: import {ca} as a trusted authority.",
                ca = dev.ca.display(),
                spki = dev.spki_sha256,
            );
        }
        if dev {
            let watch = dev::watch(&cfg, server.swapper());
            tokio::select! {
                _ = wait_for_signal() => {}
                _ = watch => {}
            }
        } else {
            wait_for_signal().await;
        }
        tracing::info!("shutting down");
        server.shutdown().await;
        anyhow::Ok(())
    })
}

fn run_gate(
    config: PathBuf,
    id: Option<u16>,
    listen: [Option<std::net::SocketAddr>; 3],
) -> anyhow::Result<()> {
    let mut cfg = wyrm::Config::load(&config)?;
    if let Some(id) = id {
        cfg.cluster.gate = id;
    }
    if listen.iter().any(Option::is_some) {
        [cfg.net.tcp, cfg.net.websocket, cfg.net.kcp] = listen;
    }
    runtime_with(cfg.net_threads())?.block_on(async {
        let gate = wyrm::cluster::GateProcess::start(cfg).await?;
        for (name, addr) in [
            ("TCP", gate.tcp),
            ("WebSocket", gate.websocket),
            ("KCP", gate.kcp),
            ("TLS TCP", gate.tcp_tls),
            ("TLS WebSocket", gate.websocket_tls),
        ] {
            if let Some(addr) = addr {
                println!("{name} clients: {addr}");
            }
        }
        wait_for_signal().await;
        gate.shutdown();
        anyhow::Ok(())
    })
}

fn run_cluster(config: PathBuf) -> anyhow::Result<()> {
    let launched = wyrm::cluster::Launched::start(&config)?;
    println!("The cluster is running. Ctrl-C stops it.");
    let stopper = launched.stopper();
    let signals = runtime_with(1)?;
    std::thread::spawn(move || {
        signals.block_on(wait_for_signal());
        stopper.stop();
    });
    let gone = launched.wait();
    launched.stop(gone);
    Ok(())
}

fn run_game(config: PathBuf, id: u16) -> anyhow::Result<()> {
    let cfg = wyrm::Config::load(&config)?;
    runtime_with(cfg.net_threads())?.block_on(async {
        let game = wyrm::cluster::GameProcess::start(cfg, id).await?;
        println!("Game {id} is running.");
        game.run_until(wait_for_signal()).await;
        anyhow::Ok(())
    })
}

fn swap(
    config: PathBuf,
    plugin: String,
    source: PathBuf,
    features: Vec<String>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let cfg = wyrm::Config::load(&config)?;
    let info = wyrm::admin::read_info(&cfg)?;
    let wasm_path = if source.is_dir() {
        wyrm_toolchains::build_plugin(
            &source,
            &wyrm_toolchains::BuildOptions {
                features,
                debug: false,
            },
        )?
    } else {
        source
    };
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let report = runtime()?.block_on(wyrm::admin::request_swap(&info, &plugin, &wasm, dry_run))?;
    println!("{report}");
    if !report.succeeded() {
        std::process::exit(1);
    }
    Ok(())
}

/// Options of `wyrm bots`.
#[derive(clap::Args)]
struct BotsArgs {
    /// Number of bots.
    #[arg(short = 'n', long = "bots", default_value_t = 10)]
    n: usize,
    /// The server's address for the transport (host:port); several,
    /// separated by commas (a cluster's gates), spread the bots over them.
    #[arg(long)]
    addr: String,
    /// tcp, ws or kcp.
    #[arg(long, default_value = "tcp", value_parser = wyrm_bots::parse_transport)]
    transport: wyrm_bots::wyrm_client::Transport,
    /// Seconds the bots act.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// chat (examples/chatroom), arena (examples/arena) or world
    /// (plugins/openworld).
    #[arg(long)]
    scenario: wyrm_bots::Scenario,
    /// Exit non-zero on any error or timeout.
    #[arg(long)]
    strict: bool,
    /// Actions per second per bot (default: chat 1, arena 10, world 6).
    #[arg(long)]
    rate: Option<f64>,
    /// Milliseconds to wait for an answer before counting a timeout.
    #[arg(long, default_value_t = 5000)]
    timeout: u64,
    /// Milliseconds over which the bots start (default: 10 per bot, at
    /// most 2000).
    #[arg(long)]
    ramp: Option<u64>,
    /// Threads for the bots; one keeps them to one core, leaving the rest
    /// to a server on the same machine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds at the start whose answers are left out of the summary's
    /// latency (shown in the rows): a steady-state figure.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
}

fn bots(a: BotsArgs) -> anyhow::Result<()> {
    use std::time::Duration;
    if !(a.duration.is_finite() && a.duration > 0.0) {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    if !(a.warmup.is_finite() && a.warmup >= 0.0 && a.warmup < a.duration) {
        anyhow::bail!("--warmup must be a number of seconds below --duration");
    }
    let mut cfg = wyrm_bots::Config::new(a.addr, a.transport, a.scenario)
        .bots(a.n)
        .duration(Duration::from_secs_f64(a.duration))
        .timeout(Duration::from_millis(a.timeout))
        .warmup(Duration::from_secs_f64(a.warmup))
        .strict(a.strict);
    if let Some(r) = a.rate {
        cfg = cfg.rate(r);
    }
    if let Some(r) = a.ramp {
        cfg = cfg.ramp(Duration::from_millis(r));
    }
    let rt = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .thread_name("wyrm-bots")
            .build()
    }
    .context("cannot start the async runtime")?;
    println!("{}", wyrm_bots::SecondStats::header());
    let result = rt.block_on(wyrm_bots::run_with_progress(cfg, |s| println!("{s}")));
    match result {
        Ok(report) => {
            print!("{report}");
            Ok(())
        }
        Err(wyrm_bots::BotsError::Strict(report)) => {
            print!("{report}");
            eprintln!(
                "strict mode: failing on {} errors ({})",
                report.errors(),
                report.error_breakdown()
            );
            std::process::exit(1);
        }
        Err(e) => Err(e.into()),
    }
}

/// Options of `wyrm soak`.
#[derive(clap::Args)]
struct SoakArgs {
    /// Bots in all (half chat, half arena, over TCP, WebSocket and KCP).
    #[arg(short = 'n', long = "bots", default_value_t = 1000)]
    n: usize,
    /// Minutes the bots play.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Seconds between hot swaps.
    #[arg(long, default_value_t = 5.0)]
    swap_every: f64,
    /// Where data, logs and the report go (emptied first).
    #[arg(long, default_value = "target/soak")]
    dir: PathBuf,
    /// The repository, for the example plugins.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

fn soak(a: SoakArgs) -> anyhow::Result<()> {
    use std::time::Duration;
    if !(a.minutes.is_finite() && a.minutes > 0.0 && a.swap_every.is_finite() && a.swap_every > 0.0)
    {
        anyhow::bail!("--minutes and --swap-every must be positive");
    }
    let duration = Duration::from_secs_f64(a.minutes * 60.0);
    let cfg = wyrm_bots::soak::SoakConfig {
        wyrm: std::env::current_exe().context("cannot find this program")?,
        repo: std::path::absolute(&a.repo)?,
        dir: std::path::absolute(&a.dir)?,
        bots: a.n,
        duration,
        swap_every: Duration::from_secs_f64(a.swap_every),
        kill_at: duration / 2,
    };
    let (report, passed) = wyrm_bots::soak::run(&cfg)?;
    print!("{report}");
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
