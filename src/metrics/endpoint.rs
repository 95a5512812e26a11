//! The metrics endpoint on `[metrics] listen`: a minimal HTTP/1.1 server with two pages.
//!
//! - `GET /metrics`: every metric (see the parent module), after measuring the queues: for each
//!   queue directory, the number of messages and the age of the oldest (from its queue ID,
//!   which holds the arrival time: no file is read). OpenMetrics text when the client's
//!   `Accept` asks for it (Prometheus does), else the Prometheus text format 0.0.4 (what
//!   promtool and older scrapers read: counters named with their `_total`, no `# EOF`);
//! - `GET /healthz`: `200 ok` when the spool takes a file (a file created and removed in
//!   `tmp/`), has its `min_free` space and the journal's last flush worked; else `503` with
//!   the reason on one line.
//!
//! **Trust.** Whoever can reach the port (loopback by default): a request is read for at most
//! 5 s and 8 KiB, one request a connection (`Connection: close`), at most 16 connections at
//! once (more wait in the backlog); anything but those two GETs is 404 or 405. Nothing in a
//! request reaches the spool.
//!
//! Standards: RFC 9112 (HTTP/1.1 message syntax), the Prometheus / OpenMetrics text format.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::spool::{Queue, Writer};

/// A request is read within this long.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A request's head is at most this long.
const MAX_REQUEST: usize = 8192;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, writer: Writer, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    debug!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let writer = writer.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, &writer).await {
                debug!("metrics connection: {e}");
            }
            drop(permit);
        });
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Metrics,
    Health,
    NotFound,
    BadMethod,
    Bad,
}

/// The page a request head names (pure).
fn route(head: &[u8]) -> Page {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut f = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (f.next(), f.next(), f.next()) else {
        return Page::Bad;
    };
    if !version.starts_with("HTTP/1.") || f.next().is_some() {
        return Page::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Page::Metrics,
        ("GET" | "HEAD", "/healthz") => Page::Health,
        ("GET" | "HEAD", _) => Page::NotFound,
        _ => Page::BadMethod,
    }
}

/// Whether the request's `Accept` names OpenMetrics.
fn wants_openmetrics(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    })
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter's HELP and TYPE name its
/// samples' `_total` name, and the `# EOF` line goes (pure).
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(r) => out.push_str(&r),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

async fn serve(mut s: TcpStream, writer: &Writer) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            if head.len() >= MAX_REQUEST {
                return false;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
        true
    };
    let whole = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or(false);
    let page = if whole { route(&head) } else { Page::Bad };
    let (status, ctype, body) = match page {
        Page::Metrics => {
            let w = writer.clone();
            let body = tokio::task::spawn_blocking(move || {
                measure_queues(&w);
                super::get().encode()
            })
            .await
            .unwrap_or_default();
            if wants_openmetrics(&head) {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                )
            } else {
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    prometheus_text(&body),
                )
            }
        }
        Page::Health => {
            let w = writer.clone();
            let verdict = tokio::task::spawn_blocking(move || health(&w))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match verdict {
                Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
                Err(why) => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("{why}\n"),
                ),
            }
        }
        Page::NotFound => ("404 Not Found", "text/plain", "not found\n".into()),
        Page::BadMethod => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        Page::Bad => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let head_only = head.starts_with(b"HEAD ");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    tokio::time::timeout(READ_TIMEOUT, s.write_all(&out))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
    let _ = s.shutdown().await;
    Ok(())
}

/// Sets the queue gauges from the spool's directories, and the materializer's backlog.
fn measure_queues(writer: &Writer) {
    let spool = writer.spool();
    let now_micros = crate::clock::now_unix().saturating_mul(1_000_000);
    for (i, q) in Queue::MESSAGE_QUEUES.iter().enumerate() {
        let ids = spool.list(*q).unwrap_or_default();
        let oldest = ids.iter().map(|id| id.micros()).min();
        let age = oldest.map_or(0, |m| now_micros.saturating_sub(m) / 1_000_000);
        super::get().set_queue(i, ids.len() as u64, age);
    }
    super::get().set_unmaterialized(writer.journal_backlog());
}

/// Whether the spool takes files and the journal flushes; the reason when not.
fn health(writer: &Writer) -> Result<(), String> {
    let spool = writer.spool();
    if writer.journal_failing() {
        return Err("journal: the last flush failed".into());
    }
    if spool.low_on_space() {
        return Err("spool: below min_free".into());
    }
    let probe = spool.root().join("tmp").join(format!(
        "healthz.{}.{}",
        std::process::id(),
        crate::random::u64()
    ));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("spool: cannot write {}: {e}", probe.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_prometheus_text_with_counters_named_by_their_total() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"y\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"y\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
        assert!(wants_openmetrics(
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
        ));
        assert!(!wants_openmetrics(
            b"GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n"
        ));
    }

    #[test]
    fn requests_are_routed_by_method_and_path_and_anything_else_is_refused() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Page::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Page::Metrics);
        assert_eq!(route(b"HEAD /healthz HTTP/1.1\r\n\r\n"), Page::Health);
        assert_eq!(route(b"GET /etc/passwd HTTP/1.1\r\n\r\n"), Page::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Page::BadMethod);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Page::Bad);
        assert_eq!(route(b"GET /metrics SMTP/1.1\r\n\r\n"), Page::Bad);
        assert_eq!(route(b"GET  /metrics HTTP/1.1\r\n\r\n"), Page::Bad);
        assert_eq!(route(b"\xff\xfe\r\n\r\n"), Page::Bad);
        assert_eq!(route(b""), Page::Bad);
    }
}
