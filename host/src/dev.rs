//! `wyrm dev`: watch each Rust plugin's source, rebuild on change, and swap
//! the new build into the running server. Polls modification times, which
//! needs no platform watcher and is plenty for a person saving files.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wyrm::{Config, Swapper};
use wyrm_toolchains::{build_plugin, BuildOptions};

const POLL: Duration = Duration::from_millis(500);

struct Watched {
    name: String,
    dir: PathBuf,
    features: Vec<String>,
    stamp: Stamp,
}

/// Newest modification time and file count: a save, an added or a removed
/// file all change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<SystemTime>, usize);

fn stamp(dir: &Path) -> Stamp {
    let mut newest = None;
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let skip = name == "target" || name.to_string_lossy().starts_with('.');
            match e.file_type() {
                Ok(t) if t.is_dir() && !skip => stack.push(path),
                Ok(t) if t.is_file() && !skip => {
                    count += 1;
                    let m = e.metadata().and_then(|m| m.modified()).ok();
                    newest = newest.max(m);
                }
                _ => {}
            }
        }
    }
    Stamp(newest, count)
}

/// Watches until the task is dropped.
pub async fn watch(cfg: &Config, swapper: Swapper) {
    let mut watched: Vec<Watched> = cfg
        .plugins
        .iter()
        .filter(|p| p.source.is_dir())
        .map(|p| Watched {
            name: p.name.clone(),
            dir: p.source.clone(),
            features: p.features.clone(),
            stamp: stamp(&p.source),
        })
        .collect();
    if watched.is_empty() {
        println!("wyrm dev: no plugin is built from source in this config; nothing to watch.");
        std::future::pending::<()>().await;
    }
    for w in &watched {
        println!(
            "wyrm dev: watching {} for plugin {}; save to swap it in.",
            w.dir.display(),
            w.name
        );
    }
    loop {
        tokio::time::sleep(POLL).await;
        for w in &mut watched {
            let now = stamp(&w.dir);
            if now == w.stamp {
                continue;
            }
            w.stamp = now;
            // Let an editor finish writing before building.
            tokio::time::sleep(Duration::from_millis(200)).await;
            w.stamp = stamp(&w.dir);
            println!("wyrm dev: {} changed, rebuilding…", w.dir.display());
            let (dir, features) = (w.dir.clone(), w.features.clone());
            let built = tokio::task::spawn_blocking(move || {
                build_plugin(
                    &dir,
                    &BuildOptions {
                        features,
                        debug: false,
                    },
                )
            })
            .await;
            let wasm = match built {
                Ok(Ok(path)) => match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        println!("wyrm dev: cannot read {}: {e}", path.display());
                        continue;
                    }
                },
                Ok(Err(e)) => {
                    println!("wyrm dev: build failed, the running version stays: {e:#}");
                    continue;
                }
                Err(e) => {
                    println!("wyrm dev: build task failed: {e}");
                    continue;
                }
            };
            let report = swapper.swap(&w.name, wasm, false).await;
            println!("wyrm dev: {report}");
        }
    }
}
