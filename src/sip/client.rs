//! The SIP client: non-INVITE client transactions (RFC 3261 17.1.2) over UDP and TCP, used by
//! delivery to send MESSAGE to handsets and BTSs.
//!
//! Over UDP the request is retransmitted on Timer E (T1, doubling up to T2; at T2 once a
//! provisional response arrived) until a final response, or Timer F (64*T1 by default, up to
//! 90 s because OpenBTS may page a handset for 40 s) ends it. Responses are matched to the
//! transaction by the branch of the top Via, which the client sets. Over TCP there are no
//! retransmissions; Timer F still bounds the wait.
//!
//! **Trust.** Responses are untrusted input, parsed by the pure parser; a response that does
//! not match a transaction in progress is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::message::{self, Headers, Message, Parsed, Request, Response};
use super::service::Transport;
use super::transaction::ClientTimers;

/// Why a client transaction ended without a final response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Timer F fired.
    #[error("no final response within {0:?} (timer F)")]
    Timeout(Duration),
    /// The socket failed (connection refused, reset, ...).
    #[error("transport error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not SIP.
    #[error("bad response: {0}")]
    BadResponse(&'static str),
}

type Pending = Arc<Mutex<HashMap<String, mpsc::Sender<Response>>>>;

/// A SIP client bound to one local UDP socket.
pub struct SipClient {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    pending: Pending,
    timers: ClientTimers,
    counter: AtomicU64,
    tag: u64,
    receiver: JoinHandle<()>,
}

impl std::fmt::Debug for SipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SipClient({})", self.local)
    }
}

impl Drop for SipClient {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Response>>> {
    match p.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

impl SipClient {
    /// Binds the client's UDP socket (port 0 for any) and starts its receiver.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn bind(local: SocketAddr, timers: ClientTimers) -> std::io::Result<SipClient> {
        let socket = Arc::new(UdpSocket::bind(local).await?);
        let local = socket.local_addr()?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let receiver = {
            let (socket, pending) = (Arc::clone(&socket), Arc::clone(&pending));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    let Ok(Parsed::Complete(Message::Response(resp), _)) =
                        message::parse(&buf[..n], true, 65_535)
                    else {
                        debug!(%peer, "sip client: ignoring a datagram that is not a response");
                        continue;
                    };
                    let branch = response_branch(&resp);
                    let tx = branch.and_then(|b| lock(&pending).get(&b).cloned());
                    match tx {
                        Some(tx) => {
                            let _ = tx.try_send(resp);
                        }
                        None => debug!(%peer, "sip client: response matches no transaction"),
                    }
                }
            })
        };
        let tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        Ok(SipClient {
            socket,
            local,
            pending,
            timers,
            counter: AtomicU64::new(0),
            tag,
            receiver,
        })
    }

    /// The local UDP address (what the Via says).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn branch(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("z9hG4bK{:x}{n:x}", self.tag & 0xFFFF_FFFF)
    }

    /// A fresh Call-ID.
    pub fn call_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{n:x}@{}", self.tag, self.local.ip())
    }

    /// Sends `req` to `dest` and waits for its final response (2xx-6xx). The Via is set here.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when Timer F fires, [`ClientError::Io`] on socket errors.
    pub async fn send(
        &self,
        mut req: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<Response, ClientError> {
        let branch = self.branch();
        let proto = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        req.headers.remove("Via");
        let mut headers = Headers::default();
        headers.push(
            "Via",
            format!("SIP/2.0/{proto} {};branch={branch};rport", self.local),
        );
        headers.0.extend(req.headers.0);
        req.headers = headers;
        if req.headers.get("Max-Forwards").is_none() {
            req.headers.push("Max-Forwards", "70");
        }
        let bytes = req.to_bytes();
        match transport {
            Transport::Udp => self.send_udp(&bytes, &branch, dest).await,
            Transport::Tcp => send_tcp(&bytes, dest, self.timers.timer_f).await,
        }
    }

    async fn send_udp(
        &self,
        bytes: &[u8],
        branch: &str,
        dest: SocketAddr,
    ) -> Result<Response, ClientError> {
        let (tx, mut rx) = mpsc::channel(8);
        lock(&self.pending).insert(branch.to_string(), tx);
        let result = async {
            self.socket.send_to(bytes, dest).await?;
            let deadline = tokio::time::Instant::now() + self.timers.timer_f;
            let mut interval = self.timers.t1;
            let mut provisional = false;
            let mut next = tokio::time::Instant::now() + interval;
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(resp) if resp.status < 200 => provisional = true,
                        Some(resp) => return Ok(resp),
                        None => return Err(ClientError::BadResponse("receiver stopped")),
                    },
                    _ = tokio::time::sleep_until(next) => {
                        self.socket.send_to(bytes, dest).await?;
                        interval = self.timers.next_interval(interval, provisional);
                        next = tokio::time::Instant::now() + interval;
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(ClientError::Timeout(self.timers.timer_f));
                    }
                }
            }
        }
        .await;
        lock(&self.pending).remove(branch);
        result
    }
}

fn response_branch(resp: &Response) -> Option<String> {
    resp.headers
        .get_all("Via")
        .first()
        .and_then(|v| message::Via::parse(v))
        .and_then(|v| v.branch)
}

async fn send_tcp(
    bytes: &[u8],
    dest: SocketAddr,
    timer_f: Duration,
) -> Result<Response, ClientError> {
    let work = async {
        let mut s = TcpStream::connect(dest).await?;
        let _ = s.set_nodelay(true);
        s.write_all(bytes).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match message::parse(&buf, false, 65_535) {
                Ok(Parsed::Complete(Message::Response(r), used)) => {
                    buf.drain(..used);
                    if r.status >= 200 {
                        return Ok(r);
                    }
                    continue;
                }
                Ok(Parsed::Complete(Message::Request(_), used)) => {
                    buf.drain(..used);
                    continue;
                }
                Ok(Parsed::Incomplete) => {}
                Err(e) => return Err(ClientError::BadResponse(e.reason)),
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before a final response",
                )));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timer_f, work)
        .await
        .map_err(|_| ClientError::Timeout(timer_f))?
}

/// A MESSAGE request (without Via, which [`SipClient::send`] adds).
#[allow(clippy::too_many_arguments)]
pub fn message_request(
    request_uri: &str,
    from: &str,
    from_tag: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    content_type: &str,
    body: Vec<u8>,
) -> Request {
    let mut h = Headers::default();
    h.push("From", format!("<{from}>;tag={from_tag}"));
    h.push("To", format!("<{to}>"));
    h.push("Call-ID", call_id);
    h.push("CSeq", format!("{cseq} MESSAGE"));
    h.push("Content-Type", content_type);
    Request {
        method: "MESSAGE".into(),
        uri: request_uri.to_string(),
        headers: h,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that drops the first `ignore` copies of each request, then answers 200.
    async fn flaky_peer(ignore: usize) -> (SocketAddr, JoinHandle<usize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let mut seen = 0;
            loop {
                let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
                seen += 1;
                if seen <= ignore {
                    continue;
                }
                let Ok(Parsed::Complete(Message::Request(r), _)) =
                    message::parse(&buf[..n], true, 65_535)
                else {
                    continue;
                };
                let resp = Response::to(&r, 200, "OK", "peer");
                sock.send_to(&resp.to_bytes(), peer).await.unwrap();
                return seen;
            }
        });
        (addr, h)
    }

    #[tokio::test(start_paused = true)]
    async fn udp_retransmits_on_timer_e_until_answered() {
        let client = SipClient::bind("127.0.0.1:0".parse().unwrap(), ClientTimers::default())
            .await
            .unwrap();
        let (peer, seen) = flaky_peer(2).await;
        let req = message_request(
            "sip:IMSI001@127.0.0.1",
            "sip:101@sms.test",
            "t",
            "sip:1@x",
            &client.call_id(),
            1,
            "text/plain",
            b"hi".to_vec(),
        );
        let resp = client.send(req, peer, Transport::Udp).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(seen.await.unwrap(), 3, "answered on the third copy");
    }

    #[tokio::test(start_paused = true)]
    async fn timer_f_ends_a_transaction_nobody_answers() {
        let timers = ClientTimers {
            timer_f: Duration::from_secs(4),
            ..ClientTimers::default()
        };
        let client = SipClient::bind("127.0.0.1:0".parse().unwrap(), timers)
            .await
            .unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let req = message_request(
            "sip:x@127.0.0.1",
            "sip:a@b",
            "t",
            "sip:x@y",
            "c",
            1,
            "text/plain",
            vec![],
        );
        let e = client
            .send(req, silent.local_addr().unwrap(), Transport::Udp)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
        // 4 s with T1 = 500 ms: sends at 0, 0.5, 1.5, 3.5 s.
        let mut buf = [0u8; 2048];
        let mut copies = 0;
        while silent.try_recv_from(&mut buf).is_ok() {
            copies += 1;
        }
        assert_eq!(copies, 4);
    }

    #[tokio::test]
    async fn tcp_waits_for_the_final_response() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let Ok(Parsed::Complete(Message::Request(r), _)) =
                message::parse(&buf[..n], false, 65_535)
            else {
                panic!()
            };
            s.write_all(&Response::to(&r, 100, "Trying", "").to_bytes())
                .await
                .unwrap();
            s.write_all(&Response::to(&r, 480, "Temporarily Unavailable", "x").to_bytes())
                .await
                .unwrap();
        });
        let client = SipClient::bind("127.0.0.1:0".parse().unwrap(), ClientTimers::default())
            .await
            .unwrap();
        let req = message_request(
            "sip:x@127.0.0.1",
            "sip:a@b",
            "t",
            "sip:x@y",
            "c",
            1,
            "text/plain",
            b"x".to_vec(),
        );
        let r = client.send(req, addr, Transport::Tcp).await.unwrap();
        assert_eq!(r.status, 480);
    }
}
