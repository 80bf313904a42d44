//! Running the real `wyrm` binary from tests.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `wyrm` process, killed when dropped.
pub struct Wyrm {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Wyrm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints each line of `from` (as the test's output) and sends it on.
fn forward(from: impl std::io::Read, tag: &str, to: mpsc::Sender<String>) {
    // Read to the end even once no one listens, so the process never
    // blocks on a full pipe.
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        println!("{tag}: {line}");
        let _ = to.send(line);
    }
}

impl Wyrm {
    /// Runs `wyrm <args>`, collecting its standard output and its log
    /// (standard error, warnings and up) line by line.
    pub fn start(args: &[&str], config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wyrm"))
            .args(args)
            .arg(config)
            .env("WYRM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wyrm");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let err_tx = tx.clone();
        std::thread::spawn(move || forward(stdout, "wyrm", tx));
        std::thread::spawn(move || forward(stderr, "wyrm log", err_tx));
        Self { child, lines }
    }

    /// Waits for an output line containing `needle`.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("no output line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// The TCP address the server printed.
    pub fn tcp_addr(&self) -> String {
        let line = self.wait_line("TCP clients:", Duration::from_secs(600));
        line.rsplit(' ').next().expect("address").to_string()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}
