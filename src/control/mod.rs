//! The control socket: a Unix socket (mode 0600) speaking versioned JSON lines. Each
//! request becomes a [`ControlMessage`] on the daemon's one control channel — the same
//! channel signals feed — and is answered on its line. A malformed request gets an
//! error reply; nothing a client sends can disturb the daemon.
//!
//! Each connection's peer credentials (`SO_PEERCRED`: uid and gid) are read once and set
//! as every request's [`Caller`](protocol::Caller); the daemon maps them to a scope
//! through `[control]` where it answers ([`access`]), so the scope a client asks for is
//! checked, never trusted.

pub mod access;
pub mod audit;
pub mod client;
pub mod protocol;
pub mod webhooks;
pub mod writes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::protocol::{Caller, MAX_LINE, Reply, Request};

/// Everything that can ask the daemon to act, handled in one place.
#[derive(Debug)]
pub enum ControlMessage {
    /// A control-socket request and where to send the reply.
    Request(Request, oneshot::Sender<Reply>),
    /// SIGHUP.
    Reload,
    /// SIGTERM / SIGINT.
    Drain,
    /// A second SIGTERM / SIGINT during a drain.
    ExitNow,
    /// SIGUSR1: every enabled job now.
    TriggerAll,
    /// Jobs were triggered elsewhere (an inbound webhook, another replica): claim now.
    Wake,
    /// A change queued tenants for reconciliation (another process, on PostgreSQL):
    /// take the queue now, then claim.
    ReconcileQueued,
}

/// Binds the socket: removes a stale file, creates the directory, sets `mode` (0600
/// unless `[control] socket_mode` says otherwise).
pub fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A socket nobody answers on is left over from a crash.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running daemon", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(listener)
}

/// The default socket path: `$RUNTIME_DIRECTORY` (systemd), else `$XDG_RUNTIME_DIR/tributary`,
/// else beside the state.
pub fn default_socket_path(state_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY") {
        return PathBuf::from(dir).join("tributary.sock");
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("tributary").join("tributary.sock");
    }
    state_dir.join("tributary.sock")
}

/// Serves the socket until `shutdown`; requests go to `tx`.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<ControlMessage>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let tx = tx.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move { connection(stream, tx, shutdown).await });
                }
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn connection(stream: UnixStream, tx: mpsc::Sender<ControlMessage>, shutdown: CancellationToken) {
    // Whoever cannot be identified is answered with an error and never reaches the daemon.
    let caller = match stream.peer_cred() {
        Ok(cred) => Ok(Caller::Peer { uid: cred.uid(), gid: cred.gid() }),
        Err(e) => {
            tracing::warn!("control socket: cannot read the peer's credentials ({e}); its requests are refused");
            Err(format!("the daemon cannot read this connection's credentials ({e}); refused"))
        }
    };
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = read_line_limited(&mut lines, &mut line) => n,
        };
        let reply = match n {
            Ok(0) => return,
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => match protocol::parse(line.trim()) {
                Err(e) => Reply::error(e),
                Ok(mut request) => {
                    request.caller = match &caller {
                        Ok(caller) => caller.clone(),
                        Err(e) => {
                            let _ = write_reply(&mut write, &Reply::error(e.clone())).await;
                            return;
                        }
                    };
                    let (reply_tx, reply_rx) = oneshot::channel();
                    if tx.send(ControlMessage::Request(request, reply_tx)).await.is_err() {
                        Reply::error("the daemon is shutting down")
                    } else {
                        match tokio::time::timeout(Duration::from_secs(30), reply_rx).await {
                            Ok(Ok(reply)) => reply,
                            _ => Reply::error("the daemon did not answer in time"),
                        }
                    }
                }
            },
            Err(e) => Reply::error(e),
        };
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn write_reply(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut text =
        serde_json::to_string(reply).unwrap_or_else(|_| r#"{"v":1,"ok":false,"error":"unencodable reply"}"#.into());
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer one is an error (and consumed).
async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, line: &mut String) -> Result<usize, String> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    loop {
        let chunk = r.fill_buf().await.map_err(|e| format!("read failed: {e}"))?;
        if chunk.is_empty() {
            break;
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() < MAX_LINE {
            buf.extend_from_slice(&chunk[..take.min(MAX_LINE + 1 - buf.len())]);
        }
        total += take;
        r.consume(take);
        if done {
            break;
        }
    }
    if total > MAX_LINE {
        return Err(format!("request longer than {MAX_LINE} bytes"));
    }
    *line = String::from_utf8(buf).map_err(|_| "request is not UTF-8".to_owned())?;
    Ok(total)
}
