//! Readiness for a service manager: systemd's `sd_notify` protocol, without libsystemd. When
//! `NOTIFY_SOCKET` is set (systemd sets it for `Type=notify` units), one datagram goes to that
//! Unix socket: `READY=1` once every listener is bound and the queue manager runs, `STOPPING=1`
//! when shutdown begins, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a
//! reload. Without `NOTIFY_SOCKET` nothing is sent.
//!
//! **Trust.** The socket path comes from the environment the service manager made; only
//! fixed strings are written to it. A failure to send is logged and otherwise ignored (the
//! service manager then times the start out, which says more than a crash would).
//!
//! Standard: sd_notify(3) (a path, or `@` for the abstract namespace).

use std::os::unix::net::UnixDatagram;

use tracing::warn;

/// Tells the service manager `state` (`"READY=1"`, `"STOPPING=1"`), if there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        warn!("cannot tell the service manager {state}: {e}");
    }
}

/// Tells the service manager a reload has begun (`RELOADING=1` with the monotonic time
/// sd_notify(3) asks for); [`notify`] `READY=1` ends it.
pub fn reloading() {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some((b'/', _)) => {
            sock.send_to(state.as_bytes(), std::path::Path::new(path))?;
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket_and_a_bad_address_is_an_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap_or_else(|e| panic!("{e}"));
        send(p.as_os_str(), "READY=1").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"READY=1");
        assert!(send(std::ffi::OsStr::new("relative"), "READY=1").is_err());
    }
}
