//! TLS for TCP and WebSocket clients (rustls, on ring): the certificate and
//! key from PEM files, swapped in for new connections when the files change
//! (connections already open keep theirs), or a self-signed one made for
//! development.
//!
//! A TLS connection is written by its own task, as a KCP one is: the
//! stream's encryption state has one owner, so a flush wakes the task,
//! which writes everything queued through it in one go.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::link::{CloseReason, Framing, Link};
use super::{Deframer, FrameConn, NetError, Piece, ReadEnd};

/// Bytes read from the TLS stream at a time.
const READ_CHUNK: usize = 4096;

/// How long a closing connection may take to send its last frames.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds no PEM certificate (a file beginning `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the private key in {path} cannot sign: {source}")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the certificate in {cert} is not for the key in {key}: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot make a development certificate: {0}")]
    SelfSigned(String),
}

/// The certificate a server presents, reloaded from its files.
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
    /// The files' modification times when last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// The certificate and key handed to each new connection.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads the chain in `cert` and the key in `key`, checked to belong
/// together.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.to_owned(),
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|source| {
        TlsError::BadKey {
            path: key.to_owned(),
            source,
        }
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|source| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    Ok(certified)
}

impl Tls {
    /// The certificate chain in `cert` and its private key in `key` (PEM).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamps = (modified(cert), modified(key));
        let current = Arc::new(Current(RwLock::new(Arc::new(load(cert, key)?))));
        // The process's crypto provider: ring, the only one built in.
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Mutex::new(stamps),
        })
    }

    /// Loads the files again if either changed since they were last
    /// loaded: new connections get the new certificate. `Ok(true)` if it
    /// was replaced; an error leaves the old one in use (a half-written
    /// pair is tried again at the next check).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == stamps {
            return Ok(false);
        }
        let fresh = load(&self.cert, &self.key)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        *loaded = stamps;
        Ok(true)
    }

    /// Checks the files every `every` until the task is aborted, logging
    /// each reload and each pair it cannot use.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut failing = false;
            loop {
                tick.tick().await;
                match tls.reload_if_changed() {
                    Ok(true) => {
                        failing = false;
                        tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded: new connections get it");
                    }
                    Ok(false) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(
                            "TLS certificate not reloaded, the old one stays in use: {e}"
                        );
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// Runs the TLS handshake on an accepted stream, within `timeout`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> io::Result<TlsStream<TcpStream>> {
        let _ = stream.set_nodelay(true);
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// A certificate for development, for `localhost`, `127.0.0.1` and `::1`,
/// issued by a certificate authority made for it alone.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The authority's certificate: what a client (or a system's trust
    /// store) is given to trust the server.
    pub ca: PathBuf,
    /// The SHA-256 of the certificate's public key, base64: what
    /// Chromium's `--ignore-certificate-errors-spki-list` takes.
    pub spki_sha256: String,
}

/// The development certificate in `dir` (`dev-ca.pem`, `dev-cert.pem`,
/// `dev-key.pem`), made there first if it is not, so that a client told
/// to trust it once keeps trusting it across restarts.
pub fn self_signed(dir: &Path) -> Result<SelfSigned, TlsError> {
    let cert = dir.join("dev-cert.pem");
    let key = dir.join("dev-key.pem");
    let ca = dir.join("dev-ca.pem");
    let fail = |e: &dyn std::fmt::Display| TlsError::SelfSigned(e.to_string());
    if !(cert.is_file() && key.is_file() && ca.is_file()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(&format!("{}: {e}", dir.display())))?;
        let made = make_development_certificate().map_err(|e| fail(&e))?;
        // The key first: a certificate without its key is no use.
        for (path, pem) in [(&key, &made.key), (&ca, &made.ca), (&cert, &made.cert)] {
            std::fs::write(path, pem).map_err(|e| fail(&format!("{}: {e}", path.display())))?;
        }
    }
    let key_pem = std::fs::read_to_string(&key).map_err(|source| TlsError::Read {
        path: key.clone(),
        source,
    })?;
    let pair = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| fail(&e))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
    use base64::Engine as _;
    let spki_sha256 = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    Ok(SelfSigned {
        cert,
        key,
        ca,
        spki_sha256,
    })
}

struct DevelopmentPems {
    ca: String,
    cert: String,
    key: String,
}

fn make_development_certificate() -> Result<DevelopmentPems, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut authority = CertificateParams::new(Vec::<String>::new())?;
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority.distinguished_name.push(
        DnType::CommonName,
        "Wyrm development CA (this machine only)",
    );
    authority.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let authority = CertifiedIssuer::self_signed(authority, KeyPair::generate()?)?;
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &authority)?;
    Ok(DevelopmentPems {
        ca: authority.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A client connection over TLS: raw TCP framing, or WebSocket (with the
/// WebSocket deframer, a close frame and a ping).
pub struct TlsConn<D> {
    stream: TlsStream<TcpStream>,
    deframer: D,
    name: &'static str,
    buf: Vec<u8>,
    out: Vec<u8>,
    goodbye: Option<Vec<u8>>,
    probe: Option<Vec<u8>>,
    early: Vec<u8>,
}

impl<D: Deframer> TlsConn<D> {
    /// Wraps an accepted TLS stream; returns the connection and its link
    /// (written by the connection's task), which holds up to `queue`
    /// bytes.
    pub(crate) fn new(
        stream: TlsStream<TcpStream>,
        deframer: D,
        framing: Framing,
        name: &'static str,
        queue: usize,
    ) -> (Self, Arc<Link>) {
        let conn = Self {
            stream,
            deframer,
            name,
            buf: vec![0; READ_CHUNK],
            out: Vec::new(),
            goodbye: None,
            probe: None,
            early: Vec::new(),
        };
        (conn, Link::new(framing, None, queue))
    }

    /// Bytes to send last when the server closes the connection.
    pub(crate) fn set_goodbye(&mut self, bytes: Vec<u8>) {
        self.goodbye = Some(bytes);
    }

    /// Bytes that draw an answer from a quiet client.
    pub(crate) fn set_probe(&mut self, bytes: Vec<u8>) {
        self.probe = Some(bytes);
    }

    /// Bytes already read from the stream, to be read before it.
    pub(crate) fn push_early(&mut self, bytes: Vec<u8>) {
        self.early = bytes;
    }
}

impl<D: Deframer + 'static> FrameConn for TlsConn<D> {
    async fn read(
        &mut self,
        on: &mut (dyn FnMut(Piece<'_>) -> ControlFlow<()> + Send),
    ) -> Result<ReadEnd, NetError> {
        if !self.early.is_empty() {
            let mut early = std::mem::take(&mut self.early);
            return Ok(self.deframer.feed(&mut early, on)?.into());
        }
        // Cancel-safe: rustls keeps what it decrypted until it is read.
        let n = self.stream.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(ReadEnd::PeerClosed);
        }
        Ok(self.deframer.feed(&mut self.buf[..n], on)?.into())
    }

    async fn write_queued(&mut self, link: &Link) -> io::Result<()> {
        while link.take_queued(&mut self.out) {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.out.clear();
        }
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new(); // do not pin a burst's buffer
        }
        Ok(())
    }

    async fn close(&mut self, link: &Link) {
        let slow = matches!(link.closed(), Some(CloseReason::SlowReader { .. }));
        link.close(CloseReason::Released);
        let mut last = if slow {
            Vec::new()
        } else {
            link.drain_for_close()
        };
        if let Some(bye) = self.goodbye.take() {
            last.extend_from_slice(&bye);
        }
        let finish = async {
            self.stream.write_all(&last).await?;
            // close_notify, then the TCP shutdown.
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    }

    fn transport(&self) -> &'static str {
        self.name
    }

    fn mid_frame(&self) -> bool {
        self.deframer.mid_frame()
    }

    fn probe(&self) -> Option<&[u8]> {
        self.probe.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_loads_with_its_own_key_only() {
        let dir = std::env::temp_dir().join(format!("wyrm-tls-{}", std::process::id()));
        let a = self_signed(&dir.join("a")).expect("a");
        let b = self_signed(&dir.join("b")).expect("b");
        assert!(Tls::from_files(&a.cert, &a.key).is_ok());
        // Made once: the same files (and key hash) the second time.
        let again = self_signed(&dir.join("a")).expect("a again");
        assert_eq!(again.spki_sha256, a.spki_sha256);
        assert_ne!(a.spki_sha256, b.spki_sha256);
        let err = |r: Result<Tls, TlsError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(Tls::from_files(&a.cert, &b.key)).contains("is not for the key"));
        assert!(err(Tls::from_files(&a.key, &a.key)).contains("holds no PEM certificate"));
        assert!(err(Tls::from_files(&a.cert, &a.cert)).contains("holds no PEM private key"));
        assert!(err(Tls::from_files(&dir.join("none.pem"), &a.key)).contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
