//! The `wyrm` command line: a thin layer over the `wyrm` library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
    /// Build a Rust plugin crate into a component and print its path.
    Build {
        /// The plugin crate's folder.
        dir: PathBuf,
        /// Cargo features to enable.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
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
        Command::Serve { config } => serve(config),
        Command::Build { dir, features } => {
            let opts = wyrm::plugin::BuildOptions {
                features,
                debug: false,
            };
            let wasm = wyrm::plugin::build_rust_plugin(&dir, &opts)?;
            println!("{}", wasm.display());
            Ok(())
        }
    }
}

fn serve(config: PathBuf) -> anyhow::Result<()> {
    let cfg = wyrm::Config::load(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wyrm-net")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let server = wyrm::Server::start(cfg).await?;
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
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        anyhow::Ok(())
    })
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
