//! SIP listeners: UDP and TCP on `[sip] listen`, feeding [`Service::handle`].
//!
//! **Bounded.** Each listener lets at most `[sip] max_in_flight` requests be processed at once;
//! a datagram that arrives when all are busy is answered 503 with Retry-After at once, and a TCP
//! connection beyond `[sip] max_connections` (or `max_connections_per_client` from one
//! address) is closed at once, as is one from outside `[sip] trusted_networks`. TCP frames are
//! cut by Content-Length (RFC 3261 18.3) with a bounded buffer, an idle timeout, and writes that
//! give up after the same timeout.
//!
//! **Shutdown.** The listeners stop reading when the token is cancelled; requests in flight
//! finish (their commits complete) before the tasks end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::limits::{PerClient, write_within};
use crate::metrics::{Door, Reason};
use tracing::{Instrument, debug, warn};

use super::Transport;
use super::message::{self, MAX_HEAD, Parsed};
use super::service::Service;

/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// Runs the UDP listener until `shutdown` is cancelled, then waits for requests in flight.
pub async fn run_udp(
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    max_in_flight: usize,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_overload_warning: Option<tokio::time::Instant> = None;
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep going.
                    debug!("sip udp recv: {e}");
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let data = buf[..n].to_vec();
        match Arc::clone(&limit).try_acquire_owned() {
            Ok(permit) => {
                let (socket, service) = (Arc::clone(&socket), Arc::clone(&service));
                // One span per request: every line logged inside names the peer.
                let span = tracing::info_span!("sip", %peer);
                let busy = crate::metrics::get().in_flight(Door::Sip);
                // Boxed: a request's handling is kilobytes of state, which spawning would
                // otherwise copy, once per datagram.
                tasks.spawn(Box::pin(
                    async move {
                        let _busy = busy;
                        if let Some(resp) = service.handle(&data, peer, Transport::Udp).await
                            && let Err(e) = socket.send_to(&resp, peer).await
                        {
                            debug!(%peer, "sip udp send: {e}");
                        }
                        drop(permit);
                    }
                    .instrument(span),
                ));
            }
            Err(_) => {
                let now = tokio::time::Instant::now();
                if last_overload_warning.is_none_or(|t| now - t > Duration::from_secs(60)) {
                    warn!("sip udp: {max_in_flight} requests in flight; answering 503");
                    last_overload_warning = Some(now);
                }
                if let Some(resp) = service.overloaded(&data) {
                    let _ = socket.try_send_to(&resp, peer);
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs the TCP listener until `shutdown` is cancelled, then waits for its connections.
pub async fn run_tcp(
    listener: TcpListener,
    service: Arc<Service>,
    max_connections: usize,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(max_connections));
    let per_client = PerClient::new(service.max_connections_per_client());
    let mut tasks = JoinSet::new();
    loop {
        let Some((stream, peer)) = crate::limits::accept(&listener, &shutdown, "sip tcp").await
        else {
            break;
        };
        while tasks.try_join_next().is_some() {}
        // No state for strangers: a connection from outside the trusted networks is closed
        // before anything is read.
        if !service.trusts(peer.ip()) {
            debug!(%peer, "sip tcp: closing a connection from outside the trusted networks");
            crate::metrics::get().rejected(Door::Sip, Reason::Trust);
            drop(stream);
            continue;
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            warn!(%peer, "sip tcp: {max_connections} connections open; closing a new one");
            crate::metrics::get().rejected(Door::Sip, Reason::Limit);
            drop(stream);
            continue;
        };
        let Some(slot) = per_client.try_acquire(peer.ip()) else {
            debug!(%peer, "sip tcp: too many connections from this address; closing a new one");
            crate::metrics::get().rejected(Door::Sip, Reason::Limit);
            drop(stream);
            continue;
        };
        let service = Arc::clone(&service);
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("sip", %peer, transport = "tcp");
        let open = crate::metrics::get().connection(Door::Sip);
        tasks.spawn(
            async move {
                let _open = open;
                if let Err(e) = connection(stream, peer, &service, idle, shutdown).await {
                    debug!(%peer, "sip tcp connection: {e}");
                }
                drop(slot);
                drop(permit);
            }
            .instrument(span),
        );
    }
    while tasks.join_next().await.is_some() {}
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: &Service,
    idle: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let max_body = service_max_body(service);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Answer every complete frame already buffered.
        loop {
            match message::parse(&buf, false, max_body) {
                Ok(Parsed::Complete(_, used)) => {
                    let frame: Vec<u8> = buf.drain(..used).collect();
                    if let Some(resp) = service.handle(&frame, peer, Transport::Tcp).await {
                        write_within(&mut stream, &resp, idle).await?;
                    }
                }
                Ok(Parsed::Incomplete) => break,
                Err(e) => {
                    // The stream cannot be re-synchronised: answer if possible, then close.
                    if let Some(resp) = service.handle(&buf, peer, Transport::Tcp).await {
                        write_within(&mut stream, &resp, idle).await?;
                    }
                    warn!(%peer, "sip tcp: {}; closing", e.reason);
                    return Ok(());
                }
            }
        }
        if buf.len() > MAX_HEAD + max_body {
            return Ok(());
        }
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, stream.read(&mut chunk)) => match r {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            },
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn service_max_body(service: &Service) -> usize {
    service.max_body()
}
