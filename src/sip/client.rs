//! The SIP client: non-INVITE client transactions (RFC 3261 17.1.2) over UDP and TCP, used by
//! delivery to send MESSAGE to handsets and BTSs.
//!
//! Over UDP the request is retransmitted on Timer E (T1, doubling up to T2; at T2 once a
//! provisional response arrived) until a final response, or Timer F (64*T1 by default, up to
//! 90 s because OpenBTS may page a handset for 40 s) ends it. Responses are matched to the
//! transaction by the branch of the top Via, which the client sets. Over TCP there are no
//! retransmissions; Timer F still bounds the wait.
//!
//! **Via.** The Via (and the Contact) name the address the peer can answer to: the bound
//! address, or on a wildcard listener (`0.0.0.0`, `::`) `[sip] advertise` when set, else the
//! source address the kernel picks towards that peer (OpenBTS answers to the Via host as
//! written, so `0.0.0.0` there would lose every answer).
//!
//! **Trust.** Responses are untrusted input, parsed by the pure parser; a response is taken
//! only from the address its request was sent to and only with the transaction's branch
//! (64 random bits and a counter, as are the Call-ID and the From tag: an off-path host can
//! neither guess nor forge them). Anything else is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::Transport;
use super::message::{self, Headers, Message, Parsed, Request, Response};
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

/// Transactions in progress: branch -> (where the request went, who waits for the answer).
type Pending = Arc<Mutex<HashMap<String, (SocketAddr, mpsc::Sender<Response>)>>>;

/// A SIP client bound to one local UDP socket.
pub struct SipClient {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    advertise: Option<IpAddr>,
    sources: Mutex<HashMap<IpAddr, IpAddr>>,
    pending: Pending,
    timers: ClientTimers,
    counter: AtomicU64,
    tag: u64,
    receiver: JoinHandle<()>,
}

/// 64 bits from the operating system's random source: [`crate::random::u64`].
pub fn random_u64() -> u64 {
    crate::random::u64()
}

/// The source address the kernel would use towards `dest` (a connected UDP socket sends
/// nothing).
fn route_source(dest: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match dest {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(dest).ok()?;
    s.local_addr().ok().map(|a| a.ip())
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

fn lock<T>(p: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        SipClient::bind_advertising(local, timers, None).await
    }

    /// As [`SipClient::bind`]; on a wildcard address, Via and Contact name `advertise` when
    /// given.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn bind_advertising(
        local: SocketAddr,
        timers: ClientTimers,
        advertise: Option<IpAddr>,
    ) -> std::io::Result<SipClient> {
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
                        Some((to, tx)) if to == peer => {
                            let _ = tx.try_send(resp);
                        }
                        Some((to, _)) => {
                            debug!(%peer, "sip client: response for a request to {to} came from elsewhere; dropped")
                        }
                        None => debug!(%peer, "sip client: response matches no transaction"),
                    }
                }
            })
        };
        let tag = random_u64();
        Ok(SipClient {
            socket,
            local,
            advertise,
            sources: Mutex::new(HashMap::new()),
            pending,
            timers,
            counter: AtomicU64::new(0),
            tag,
            receiver,
        })
    }

    /// The local UDP address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address a peer at `dest` can answer to: the bound address, or on a wildcard
    /// listener `advertise`, else the kernel's source address towards `dest`.
    pub fn sent_by(&self, dest: SocketAddr) -> SocketAddr {
        if !self.local.ip().is_unspecified() {
            return self.local;
        }
        if let Some(ip) = self.advertise {
            return SocketAddr::new(ip, self.local.port());
        }
        let cached = lock(&self.sources).get(&dest.ip()).copied();
        let ip = match cached {
            Some(ip) => ip,
            None => {
                let ip = route_source(dest).unwrap_or(match dest {
                    SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                    SocketAddr::V6(_) => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
                });
                let mut m = lock(&self.sources);
                if m.len() >= 4096 {
                    m.clear();
                }
                m.insert(dest.ip(), ip);
                ip
            }
        };
        SocketAddr::new(ip, self.local.port())
    }

    /// 64 random bits and a counter, in hex: unique and unguessable.
    fn token(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:x}", random_u64() ^ self.tag, n)
    }

    fn branch(&self) -> String {
        format!("z9hG4bK{}", self.token())
    }

    /// A fresh From tag.
    pub fn from_tag(&self) -> String {
        self.token()
    }

    /// A fresh Call-ID.
    pub fn call_id(&self) -> String {
        format!("{}@{}", self.token(), host(self.sent_by_host()))
    }

    fn sent_by_host(&self) -> IpAddr {
        match (self.local.ip().is_unspecified(), self.advertise) {
            (false, _) => self.local.ip(),
            (true, Some(ip)) => ip,
            (true, None) => self.local.ip(),
        }
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
        let proto = transport.name();
        req.headers.remove("Via");
        req.headers.remove("Contact");
        let sent_by = self.sent_by(dest);
        let mut headers = Headers::default();
        headers.push(
            "Via",
            format!(
                "SIP/2.0/{proto} {};branch={branch};rport",
                host_port(sent_by)
            ),
        );
        let user = req
            .from()
            .and_then(|f| message::Uri::parse(&f.uri))
            .map(|u| u.user)
            .filter(|u| !u.is_empty());
        let contact = match user {
            Some(u) => format!("<sip:{u}@{}>", host_port(sent_by)),
            None => format!("<sip:{}>", host_port(sent_by)),
        };
        headers.0.extend(req.headers.0);
        headers.push("Contact", contact);
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
        lock(&self.pending).insert(branch.to_string(), (dest, tx));
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

/// An IP address as a URI host (IPv6 in brackets).
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// An address as a URI host:port.
fn host_port(a: SocketAddr) -> String {
    format!("{}:{}", host(a.ip()), a.port())
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
