//! Every PostgreSQL connection over TCP sets `TCP_NODELAY`: without it each page's
//! small writes wait on Nagle's algorithm and the peer's delayed ACK (~40 ms a round
//! trip on loopback), which made PostgreSQL syncs 20× slower than the same writes
//! from `psql`.

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use socket2::SockRef;

use crate::support::postgres_store;

/// The TCP sockets of this process whose peer listens on `port`, with their
/// `TCP_NODELAY` setting.
fn sockets_to(port: u16) -> Vec<(RawFd, bool)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return found };
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        // Only sockets: the link reads `socket:[inode]`.
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only queried (getpeername, getsockopt) while this
        // test runs; a descriptor closed meanwhile makes the calls fail, nothing else.
        let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd_ref);
        let peer_port = socket.peer_addr().ok().and_then(|a| a.as_socket()).map(|a| a.port());
        if peer_port == Some(port)
            && let Ok(nodelay) = socket.tcp_nodelay()
        {
            found.push((fd, nodelay));
        }
    }
    found
}

#[tokio::test]
async fn postgres_store_connections_set_tcp_nodelay() {
    let db = postgres_store().await;
    assert!(db.url.contains("127.0.0.1") || db.url.contains("localhost"), "the test server is reached over TCP");
    let port: u16 = db
        .url
        .rsplit_once("@")
        .and_then(|(_, host)| host.split('/').next())
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5432);
    // Open several pooled connections at once.
    let (a, b, c) = tokio::join!(db.store.ping(), db.store.ping(), db.store.ping());
    for result in [a, b, c] {
        result.expect("ping the store");
    }
    // A control: a plain socket to the same port without the option must be seen as
    // lacking it, or the check below could not fail.
    let control = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect a control socket");
    let control_fd = std::os::fd::AsRawFd::as_raw_fd(&control);
    let sockets = sockets_to(port);
    assert_eq!(
        sockets.iter().find(|(fd, _)| *fd == control_fd),
        Some(&(control_fd, false)),
        "the check sees the control socket without TCP_NODELAY"
    );
    drop(control);
    let sockets: Vec<(RawFd, bool)> = sockets.into_iter().filter(|(fd, _)| *fd != control_fd).collect();
    assert!(!sockets.is_empty(), "no TCP socket to the PostgreSQL port {port} found in /proc/self/fd");
    // Other tests open connections concurrently: a socket caught between connect() and
    // the option being set gets another look before it counts as lacking it.
    let lacking: Vec<RawFd> = sockets.iter().filter(|(_, on)| !on).map(|(fd, _)| *fd).collect();
    if !lacking.is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let still: Vec<(RawFd, bool)> =
            sockets_to(port).into_iter().filter(|(fd, on)| lacking.contains(fd) && !on).collect();
        assert!(still.is_empty(), "PostgreSQL sockets without TCP_NODELAY: {still:?}");
    }
    db.drop_db().await;
}
