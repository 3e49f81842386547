//! The HTTP side of the core: a listener whose connections can be dropped on
//! purpose, and the middleware that counts requests and injects faults
//! (throttles, 503s, resets, truncated bodies, delays) on data endpoints.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, to_bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::AmbiguousWrite;
use super::core::{Sim, WriteApplied};
use super::util::{empty, json};

/// A TCP stream the server can cut off mid-request.
pub(crate) struct KillStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "simulated connection reset")
}

impl AsyncRead for KillStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The per-connection switch a handler flips to drop its connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnControl(Arc<AtomicBool>);

impl ConnControl {
    fn kill(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnControl {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener producing [`KillStream`]s.
pub(crate) struct SimListener(TcpListener);

impl Listener for SimListener {
    type Io = KillStream;
    type Addr = ConnControl;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let killed = Arc::new(AtomicBool::new(false));
                    let io = KillStream { inner: stream, killed: killed.clone() };
                    return (io, ConnControl(killed));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(|_| ConnControl(Arc::new(AtomicBool::new(false))))
    }
}

/// Serves `sim` on `listener` until `cancel` fires.
pub(crate) fn spawn(sim: Arc<Sim>, listener: TcpListener, cancel: CancellationToken) {
    let app = (sim.spec.router)()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), gate))
        .with_state(sim);
    let service = app.into_make_service_with_connect_info::<ConnControl>();
    tokio::spawn(async move {
        let _ = axum::serve(SimListener(listener), service).with_graceful_shutdown(cancel.cancelled_owned()).await;
    });
}

/// The local address of a listener, with an unspecified IP shown as
/// loopback so the URL is usable.
pub(crate) fn display_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr }
}

async fn not_found() -> Response {
    json(StatusCode::NOT_FOUND, &json!({"error": "not_found", "message": "No such endpoint in this simulator"}))
}

fn every(n: u64, period: Option<u64>) -> bool {
    period.is_some_and(|k| k > 0 && n.is_multiple_of(k))
}

/// Counts every request; on data endpoints applies the delay and, on the
/// request numbers the fault periods pick, replaces or spoils the response.
async fn gate(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    sim.count_request(&path);
    let exempt = sim.spec.token_paths.iter().any(|p| path == *p);
    let mut response = if exempt {
        next.run(req).await
    } else {
        let n = sim.count_data_request();
        let target = req.uri().path_and_query().map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
        sim.log_request(format!("{} {target}", req.method()));
        let faults = sim.faults();
        if let Some(delay) = faults.delay.filter(|_| faults.delay_every.is_none_or(|d| every(n, Some(d)))) {
            tokio::time::sleep(delay).await;
        }
        if every(n, faults.reset_every) {
            match req.extensions().get::<ConnectInfo<ConnControl>>() {
                Some(ConnectInfo(control)) => control.kill(),
                None => return empty(StatusCode::SERVICE_UNAVAILABLE),
            }
            return empty(StatusCode::OK);
        }
        if every(n, faults.rate_limit_every) {
            (sim.spec.throttle)(&sim, &path)
        } else if every(n, faults.server_error_every) {
            (sim.spec.unavailable)(&sim)
        } else {
            let control = req.extensions().get::<ConnectInfo<ConnControl>>().map(|c| c.0.clone());
            let response = next.run(req).await;
            if response.extensions().get::<WriteApplied>().is_some()
                && let Some(fault) = sim.write_fault()
            {
                return withhold(fault, control).await;
            }
            if every(n, faults.truncate_every) { truncate(response).await } else { response }
        }
    };
    if let Some(decorate) = sim.spec.decorate {
        decorate(&sim, &path, &mut response);
    }
    response
}

/// The answer of an applied write that never reaches the client.
async fn withhold(fault: AmbiguousWrite, control: Option<ConnControl>) -> Response {
    match (fault, control) {
        (AmbiguousWrite::Drop, Some(control)) => {
            control.kill();
            empty(StatusCode::OK)
        }
        // Without a connection to kill, or when told to hang: never answer (the client
        // times out).
        _ => std::future::pending().await,
    }
}

/// Keeps the status and headers but only the first half of the body.
async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(half))
}
