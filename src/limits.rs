//! Limits shared by the doors: connections per client address, writes that cannot hang, and
//! an accept loop that outlives a failing accept.
//!
//! A [`PerClient`] counts the open connections of each address; a connection holds a
//! [`ClientSlot`] that gives its place back when dropped. The map holds only addresses with a
//! connection open, so it is bounded by the listener's own connection limit. Postfix's
//! `smtpd_client_connection_count_limit` (50) is the model, with its exemption of the trusted
//! networks left to the caller.
//!
//! Trust: the address is the kernel's; nothing here reads peer data.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The next connection, or `None` once `shutdown` is cancelled. An accept error (EMFILE and
/// the like) is logged and waited out for 100 ms: it never ends the listener.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    door: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    warn!("{door} accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Open connections per client address, at most `max` each.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in a [`PerClient`]; released on drop.
#[derive(Debug)]
pub struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// A table allowing `max` connections per address (0: no limit).
    pub fn new(max: usize) -> Arc<PerClient> {
        Arc::new(PerClient {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A slot for `ip`, or `None` when it has `max` connections open already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut m = self.map();
        let n = m.entry(ip).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: Arc::clone(self),
            ip,
        })
    }

    /// Connections open for `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.map().get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with a connection open.
    pub fn clients(&self) -> usize {
        self.map().len()
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self.table.map();
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Writes all of `data` within `limit` (a client that stops reading cannot hold the
/// connection's task for ever).
///
/// # Errors
/// The write's error, or `TimedOut`.
pub async fn write_within<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, stream.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_allowance_and_gives_it_back() {
        let t = PerClient::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = t.try_acquire(a).unwrap();
        let _s2 = t.try_acquire(a).unwrap();
        assert!(t.try_acquire(a).is_none());
        assert!(t.try_acquire(b).is_some());
        drop(s1);
        assert_eq!(t.open(a), 1);
        assert!(t.try_acquire(a).is_some());
        let unlimited = PerClient::new(0);
        let slots: Vec<_> = (0..100).filter_map(|_| unlimited.try_acquire(a)).collect();
        assert_eq!(slots.len(), 100);
        drop(slots);
        assert_eq!(unlimited.clients(), 0, "no entry is left behind");
    }

    #[tokio::test]
    async fn a_write_nobody_reads_times_out() {
        let (mut a, _b) = tokio::io::duplex(16);
        let e = write_within(&mut a, &[0u8; 1024], Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }
}
