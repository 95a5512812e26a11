//! The SMTP agent: mail for e-mail recipients to the smarthost or the domain's MX hosts, with
//! lettre's async SMTP client.
//!
//! Connections are made here (TCP_NODELAY set: lettre leaves Nagle on, which costs about
//! 40 ms a mail) and handed to lettre; after a clean transaction the connection goes back to
//! a small pool per host and is reused for 10 s (Postfix's connection cache). At most
//! `[delivery] max_smtp` transactions run at once. One transaction per recipient, so that each
//! gets its own result. The message goes out unchanged but for a Received header; MAIL FROM
//! is the original sender (`<>` for notices).
//!
//! **TLS.** STARTTLS when the peer offers it (`[delivery] mx_tls`, `smarthost_tls`): `may`
//! takes any certificate and falls back to a plain connection when the handshake fails
//! (Postfix's `may`); `encrypt` requires TLS; `verify` requires a certificate for the
//! smarthost's name from the system's roots or `smarthost_ca`. A connection that cannot have
//! the TLS it requires is a temporary failure: the mail waits, it never goes in the clear.
//!
//! **Trust.** Replies are parsed by lettre; only their code and text are used, classified by
//! [`crate::delivery::outcome::smtp`]. Connection failures try the next MX host, then retry later.
//!
//! Standards: RFC 5321 (3.3 transactions, 4.4 Received, 5.1 MX), RFC 3463.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::dns;
use crate::config::{Config, SmtpTls, split_host_port};
use crate::delivery::outcome::{self, Local, Outcome, TransportFailure};

const REUSE: Duration = Duration::from_secs(10);
const IDLE_PER_HOST: usize = 16;

type Pool = HashMap<SocketAddr, Vec<(Instant, AsyncSmtpConnection)>>;

/// The SMTP agent.
pub struct SmtpAgent {
    limit: Semaphore,
    pool: Mutex<Pool>,
    hello: ClientId,
    timeout: Duration,
    smarthost: Option<(String, u16)>,
    nameservers: Vec<SocketAddr>,
    mx_tls: SmtpTls,
    smarthost_tls: SmtpTls,
    smarthost_ca: Option<Certificate>,
}

impl std::fmt::Debug for SmtpAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpAgent(smarthost {:?})", self.smarthost)
    }
}

/// The result of one mail: what happened and which host said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The classified result.
    pub outcome: Outcome,
    /// `host[ip]:port`, or `none`.
    pub relay: String,
}

impl SmtpAgent {
    /// An agent from the configuration.
    pub fn new(cfg: &Config) -> SmtpAgent {
        let d = &cfg.delivery;
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        SmtpAgent {
            limit: Semaphore::new(d.max_smtp),
            pool: Mutex::new(HashMap::new()),
            hello: ClientId::Domain(cfg.hostname.clone()),
            timeout: d.smtp_timeout.0,
            smarthost: split_host_port(&d.smarthost),
            nameservers: dns::nameservers(&resolv),
            mx_tls: d.mx_tls,
            smarthost_tls: d.smarthost_tls,
            smarthost_ca: std::fs::read(&d.smarthost_ca)
                .ok()
                .and_then(|pem| Certificate::from_pem(&pem).ok()),
        }
    }

    /// The TLS parameters for `host` under `policy`.
    fn tls_parameters(&self, host: &str, policy: SmtpTls) -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_string());
        if policy == SmtpTls::Verify {
            if let Some(ca) = &self.smarthost_ca {
                b = b.add_root_certificate(ca.clone());
            }
        } else {
            b = b
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        b.build_rustls().map_err(|e| e.to_string())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        match self.pool.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    /// Sends `message` from `sender` to `rcpt` (in `domain`).
    pub async fn send(&self, sender: &str, rcpt: &str, domain: &str, message: &[u8]) -> Sent {
        let none = |outcome| Sent {
            outcome,
            relay: "none".into(),
        };
        let envelope = match envelope(sender, rcpt) {
            Ok(e) => e,
            Err(reason) => {
                return none(outcome::local(Local::BadEnvelope(reason)));
            }
        };
        let hosts = match self.hosts(domain).await {
            Ok(h) => h,
            Err(outcome) => return none(outcome),
        };
        let Ok(_permit) = self.limit.acquire().await else {
            return none(outcome::transport(
                TransportFailure::Unreachable,
                "SMTP agent stopped",
            ));
        };
        let mut last = none(outcome::transport(
            TransportFailure::Unreachable,
            "no mail host",
        ));
        let policy = if self.smarthost.is_some() {
            self.smarthost_tls
        } else {
            self.mx_tls
        };
        for (host, port) in hosts {
            let addrs: Vec<SocketAddr> = match tokio::time::timeout(
                self.timeout,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => {
                    last = none(outcome::transport(
                        TransportFailure::Unreachable,
                        &format!("{host}: {e}"),
                    ));
                    continue;
                }
                Err(_) => {
                    last = none(outcome::transport(
                        TransportFailure::Timeout,
                        &format!("resolving {host}"),
                    ));
                    continue;
                }
            };
            for addr in addrs {
                let relay = format!("{host}[{}]:{}", addr.ip(), addr.port());
                match self
                    .transaction(addr, &host, policy, &envelope, message)
                    .await
                {
                    Ok(outcome) => return Sent { outcome, relay },
                    Err(failure) => {
                        last = Sent {
                            outcome: failure,
                            relay,
                        }
                    }
                }
            }
        }
        last
    }

    /// The hosts to try: the smarthost, or the domain's MX hosts (RFC 5321 5.1) on port 25.
    async fn hosts(&self, domain: &str) -> Result<Vec<(String, u16)>, Outcome> {
        match &self.smarthost {
            Some(h) => Ok(vec![h.clone()]),
            None => match dns::mail_hosts(domain, &self.nameservers).await {
                Ok(h) => Ok(h.into_iter().map(|h| (h, 25)).collect()),
                Err(e) if e.is_temporary() => Err(outcome::transport(
                    TransportFailure::Unreachable,
                    &e.to_string(),
                )),
                Err(e) => Err(outcome::local(Local::NoMailHost(e.to_string()))),
            },
        }
    }

    /// One transaction on a pooled or new connection. `Err` is a connection-level failure
    /// (the next host may be tried); `Ok` is the server's verdict.
    async fn transaction(
        &self,
        addr: SocketAddr,
        host: &str,
        policy: SmtpTls,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Outcome, Outcome> {
        let pooled = {
            let mut p = self.pool();
            let list = p.entry(addr).or_default();
            list.retain(|(t, _)| t.elapsed() < REUSE);
            list.pop()
        };
        let mut conn = match pooled {
            Some((_, c)) => c,
            None => self.connect(addr, host, policy).await?,
        };
        match tokio::time::timeout(self.timeout, conn.send(envelope, message)).await {
            Ok(Ok(resp)) => {
                if !conn.has_broken() {
                    let mut p = self.pool();
                    let list = p.entry(addr).or_default();
                    if list.len() < IDLE_PER_HOST {
                        list.push((Instant::now(), conn));
                    }
                }
                let code = u16::from(resp.code());
                let text = resp.message().collect::<Vec<_>>().join(" ");
                Ok(outcome::smtp(code, &text))
            }
            Ok(Err(e)) => match e.status() {
                Some(code) => {
                    let text = e.to_string();
                    Ok(outcome::smtp(
                        u16::from(code),
                        reply_text(&text).unwrap_or(&text),
                    ))
                }
                None if e.is_timeout() => Err(outcome::transport(
                    TransportFailure::Timeout,
                    &format!("{addr}: {e}"),
                )),
                None => Err(outcome::transport(
                    TransportFailure::Unreachable,
                    &format!("{addr}: {e}"),
                )),
            },
            Err(_) => Err(outcome::transport(
                TransportFailure::Timeout,
                &format!("{addr}: no reply within {:?}", self.timeout),
            )),
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        host: &str,
        policy: SmtpTls,
    ) -> Result<AsyncSmtpConnection, Outcome> {
        let plain = || async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(|e| e.to_string())
        };
        let work = async {
            let mut c = plain().await?;
            if policy == SmtpTls::None {
                return Ok(c);
            }
            if !c.can_starttls() {
                return match policy {
                    SmtpTls::May | SmtpTls::None => Ok(c),
                    SmtpTls::Encrypt | SmtpTls::Verify => {
                        Err("TLS is required and the server offers no STARTTLS".to_string())
                    }
                };
            }
            let params = self.tls_parameters(host, policy)?;
            match c.starttls(params, &self.hello).await {
                Ok(()) => Ok(c),
                // `may`: as Postfix, the mail goes in the clear on a new connection.
                Err(e) if policy == SmtpTls::May => {
                    tracing::debug!("{addr}: STARTTLS failed ({e}); sending without TLS");
                    plain().await
                }
                Err(e) => Err(format!("STARTTLS: {e}")),
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(outcome::transport(
                TransportFailure::Unreachable,
                &format!("connect to {addr}: {e}"),
            )),
            Err(_) => Err(outcome::transport(
                TransportFailure::Timeout,
                &format!("connect to {addr}"),
            )),
        }
    }
}

/// The reply text inside lettre's error text ("permanent error (550): 5.1.1 no such user").
fn reply_text(e: &str) -> Option<&str> {
    e.split_once("): ").map(|(_, t)| t.trim())
}

/// The lettre envelope for one recipient; the null sender stays null.
fn envelope(sender: &str, rcpt: &str) -> Result<Envelope, String> {
    let from = if sender.is_empty() {
        None
    } else {
        Some(
            sender
                .parse::<Address>()
                .map_err(|e| format!("bad sender address <{sender}>: {e}"))?,
        )
    };
    let to = rcpt
        .parse::<Address>()
        .map_err(|e| format!("bad recipient address <{rcpt}>: {e}"))?;
    Envelope::new(from, vec![to]).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_sender_stays_null_and_bad_addresses_are_refused() {
        let e = envelope("", "bob@example.org").unwrap();
        assert_eq!(e.from(), None);
        assert!(envelope("a@b", "not an address").is_err());
    }

    #[test]
    fn reply_text_is_taken_from_lettre_errors() {
        assert_eq!(
            reply_text("permanent error (550): 5.1.1 no such user"),
            Some("5.1.1 no such user")
        );
    }
}
