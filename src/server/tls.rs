//! TLS on the daemon's own listener (`[server] tls_cert` / `tls_key`): rustls with the
//! aws-lc-rs provider (the one reqwest and sqlx already use). The certificate and key are
//! read again on reload (SIGHUP, `ctl reload`); connections accepted afterwards use the
//! new pair, the listener stays open, and a pair that does not load leaves the old one in
//! force. Handshakes run in their own tasks, so a slow client does not hold up others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::ServerSettings;

/// A handshake not done within this is dropped.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// The certificate in force, replaced on reload.
pub struct ReloadableTls {
    config: RwLock<(Arc<ServerConfig>, PathBuf, PathBuf)>,
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self.files();
        f.debug_struct("ReloadableTls").field("cert", &files.0).field("key", &files.1).finish()
    }
}

impl ReloadableTls {
    /// The TLS of `[server]`, `None` when it names no certificate; an error names the
    /// file that does not load and why.
    pub fn from_settings(settings: &ServerSettings) -> Result<Option<Arc<Self>>, String> {
        match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let config = server_config(cert, key)?;
                Ok(Some(Arc::new(Self { config: RwLock::new((Arc::new(config), cert.clone(), key.clone())) })))
            }
            _ => Ok(None),
        }
    }

    /// Loads the certificate and key `settings` names again; on an error the pair in
    /// force stays.
    pub fn reload(&self, settings: &ServerSettings) -> Result<(), String> {
        let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
            return Err("[server] no longer names tls_cert and tls_key; TLS stays on until the daemon restarts".into());
        };
        let config = server_config(cert, key)?;
        *self.config.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            (Arc::new(config), cert.clone(), key.clone());
        Ok(())
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.config.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }

    fn files(&self) -> (PathBuf, PathBuf) {
        let c = self.config.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (c.1.clone(), c.2.clone())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| format!("server.tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("server.tls_cert {}: no PEM certificate in it", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| format!("server.tls_cert {} with server.tls_key {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepted connections after their handshake, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `shutdown`, each handshake with the certificate in force.
    pub fn new(tcp: TcpListener, tls: Arc<ReloadableTls>, shutdown: CancellationToken) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("HTTPS accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = TlsAcceptor::from(tls.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(client = %peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
