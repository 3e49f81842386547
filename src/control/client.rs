//! The client side of the control socket (`tributary ctl`).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{Reply, Request};

/// Sends one request and waits for its reply.
pub async fn call(socket: &Path, request: &Request) -> Result<Reply, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {} ({e}); is `tributary run` running?", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    line.push('\n');
    write.write_all(line.as_bytes()).await.map_err(|e| format!("sending the request failed: {e}"))?;
    let mut reader = BufReader::new(read);
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut answer))
        .await
        .map_err(|_| "no reply within 60 s".to_owned())?
        .map_err(|e| format!("reading the reply failed: {e}"))?;
    serde_json::from_str(answer.trim()).map_err(|e| format!("unreadable reply ({e}): {}", answer.trim()))
}
