//! MX lookup for mail without a smarthost: a small DNS client (pure codec + UDP exchange).
//!
//! The codec builds one MX query and reads the answer section of the response, following
//! name compression with a bound on pointer hops. The exchange sends the query over UDP to the
//! name servers of `/etc/resolv.conf` in turn (5 s each) with a random query ID, and takes
//! only a response with that ID, one question equal to ours (name, MX, IN), and answers whose
//! owner is the domain asked about (anything else is ignored: a spoofed or confused answer
//! cannot name another domain's mail hosts). A truncated response is asked again over TCP. A domain without MX records is its own mail host (RFC 5321 5.1, implicit MX); a
//! "null MX" (RFC 7505) means the domain takes no mail: a permanent failure. Host addresses
//! are then resolved by the system resolver.
//!
//! **Trust.** Responses are untrusted: every length and pointer is checked; the decoder never
//! panics (property test and fuzz target `dns_response`).
//!
//! **Limits.** No DNSSEC; responses over TCP of at most 64 KiB.
//!
//! Standards: RFC 1035 4.1 (message format), RFC 5321 5.1, RFC 7505.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

const TYPE_MX: u16 = 15;
const CLASS_IN: u16 = 1;

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The domain does not exist (NXDOMAIN): permanent.
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// The domain publishes a null MX (RFC 7505): permanent.
    #[error("domain {0} does not accept mail (null MX)")]
    NullMx(String),
    /// No answer, a server failure, or a malformed response: temporary.
    #[error("DNS lookup for {domain} failed: {reason}")]
    Temporary {
        /// The domain.
        domain: String,
        /// Why.
        reason: String,
    },
}

impl DnsError {
    /// Whether retrying later may help.
    pub fn is_temporary(&self) -> bool {
        match self {
            DnsError::Temporary { .. } => true,
            DnsError::NoSuchDomain(_) | DnsError::NullMx(_) => false,
        }
    }
}

/// An MX query for `domain` with ID `id`.
///
/// # Errors
/// When `domain` has an empty or over-long label.
pub fn mx_query(id: u16, domain: &str) -> Result<Vec<u8>, &'static str> {
    let mut q = Vec::with_capacity(32 + domain.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in domain.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("bad label");
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_MX.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// What a response said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// MX records: (preference, host), sorted by preference.
    Hosts(Vec<(u16, String)>),
    /// The name exists but has no MX records.
    NoRecords,
    /// NXDOMAIN.
    NoSuchDomain,
    /// Another response code (SERVFAIL, REFUSED...).
    Failure(u8),
    /// The TC bit: the answer did not fit; ask again over TCP.
    Truncated,
}

/// Whether two domain names are the same (ASCII case, a trailing dot ignored).
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        match len & 0xC0 {
            0xC0 => {
                let ptr = ((len & 0x3F) << 8) | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                if ptr >= msg.len() {
                    return None;
                }
                pos = ptr;
            }
            0x00 => {
                if len == 0 {
                    return Some((name, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + len)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                pos += 1 + len;
            }
            _ => return None,
        }
    }
    None
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]))
}

/// Reads the response to our MX query for `domain` with ID `id`; `None` when it is not one
/// (wrong ID, not a response, not exactly our question, malformed).
pub fn parse_mx_response(msg: &[u8], id: u16, domain: &str) -> Option<MxAnswer> {
    if u16_at(msg, 0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = msg.get(3)? & 0x0F;
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    if qd != 1 {
        return None;
    }
    let (qname, p) = read_name(msg, 12)?;
    if !same_name(&qname, domain) || u16_at(msg, p)? != TYPE_MX || u16_at(msg, p + 2)? != CLASS_IN {
        return None;
    }
    let mut pos = p + 4;
    if msg.get(2)? & 0x02 != 0 {
        return Some(MxAnswer::Truncated);
    }
    match rcode {
        0 => {}
        3 => return Some(MxAnswer::NoSuchDomain),
        r => return Some(MxAnswer::Failure(r)),
    }
    let mut hosts = Vec::new();
    for _ in 0..an {
        let Some((owner, p)) = read_name(msg, pos) else {
            break;
        };
        let (Some(rtype), Some(rdlen)) = (u16_at(msg, p), u16_at(msg, p + 8)) else {
            break;
        };
        let rdata = p + 10;
        if rdata + rdlen as usize > msg.len() {
            break;
        }
        if rtype == TYPE_MX
            && same_name(&owner, domain)
            && let (Some(pref), Some((host, _))) = (u16_at(msg, rdata), read_name(msg, rdata + 2))
        {
            hosts.push((pref, host.to_ascii_lowercase()));
        }
        pos = rdata + rdlen as usize;
    }
    if hosts.is_empty() {
        return Some(MxAnswer::NoRecords);
    }
    hosts.sort();
    Some(MxAnswer::Hosts(hosts))
}

/// The name servers of a resolv.conf text (port 53); loopback when none is listed.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().split('%').next()?.parse().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    out
}

/// The mail hosts of `domain`, best first: its MX hosts, or the domain itself when it has
/// none.
///
/// # Errors
/// [`DnsError`]: permanent for NXDOMAIN and null MX, else temporary.
pub async fn mail_hosts(domain: &str, servers: &[SocketAddr]) -> Result<Vec<String>, DnsError> {
    let temp = |reason: String| DnsError::Temporary {
        domain: domain.to_string(),
        reason,
    };
    let id = crate::random::u64() as u16;
    let query = mx_query(id, domain).map_err(|e| temp(e.to_string()))?;
    let mut last = "no name server".to_string();
    for server in servers {
        let bind: SocketAddr = if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let exchange = async {
            let sock = UdpSocket::bind(bind).await?;
            sock.connect(server).await?;
            sock.send(&query).await?;
            let mut buf = vec![0u8; 4096];
            loop {
                let n = sock.recv(&mut buf).await?;
                match parse_mx_response(&buf[..n], id, domain) {
                    Some(MxAnswer::Truncated) => {
                        return tcp_exchange(*server, &query, id, domain).await;
                    }
                    Some(a) => return Ok::<_, std::io::Error>(a),
                    None => {}
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Ok(MxAnswer::Hosts(h))) => {
                if h.len() == 1 && h[0].1.is_empty() {
                    return Err(DnsError::NullMx(domain.to_string()));
                }
                return Ok(h.into_iter().map(|(_, host)| host).collect());
            }
            Ok(Ok(MxAnswer::NoRecords)) => return Ok(vec![domain.to_string()]),
            Ok(Ok(MxAnswer::NoSuchDomain)) => {
                return Err(DnsError::NoSuchDomain(domain.to_string()));
            }
            Ok(Ok(MxAnswer::Failure(r))) => last = format!("{server}: response code {r}"),
            Ok(Ok(MxAnswer::Truncated)) => last = format!("{server}: truncated over TCP too"),
            Ok(Err(e)) => last = format!("{server}: {e}"),
            Err(_) => last = format!("{server}: timeout"),
        }
    }
    Err(temp(last))
}

/// The same query over TCP (RFC 1035 4.2.2: two length octets before each message), after a
/// truncated UDP answer.
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    domain: &str,
) -> std::io::Result<MxAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not our DNS answer");
    let mut s = tokio::net::TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| bad())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await?;
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb).await?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut msg).await?;
    match parse_mx_response(&msg, id, domain) {
        Some(a) => Ok(a),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A response to `query` with the given MX records, using compression for the owner.
    pub(crate) fn mx_response(query: &[u8], rcode: u8, records: &[(u16, &str)]) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2] = 0x81;
        r[3] = 0x80 | rcode;
        r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (pref, host) in records {
            r.extend_from_slice(&[0xC0, 12]);
            r.extend_from_slice(&TYPE_MX.to_be_bytes());
            r.extend_from_slice(&CLASS_IN.to_be_bytes());
            r.extend_from_slice(&300u32.to_be_bytes());
            let mut rdata = pref.to_be_bytes().to_vec();
            if !host.is_empty() {
                for l in host.split('.') {
                    rdata.push(l.len() as u8);
                    rdata.extend_from_slice(l.as_bytes());
                }
            }
            rdata.push(0);
            r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            r.extend_from_slice(&rdata);
        }
        r
    }

    #[test]
    fn mx_records_are_read_and_sorted_by_preference() {
        let q = mx_query(0x1234, "example.org").unwrap();
        let r = mx_response(&q, 0, &[(20, "mx2.example.org"), (10, "MX1.example.org")]);
        assert_eq!(
            parse_mx_response(&r, 0x1234, "example.org"),
            Some(MxAnswer::Hosts(vec![
                (10, "mx1.example.org".into()),
                (20, "mx2.example.org".into())
            ]))
        );
        assert_eq!(
            parse_mx_response(&r, 0x9999, "example.org"),
            None,
            "wrong ID"
        );
        assert_eq!(
            parse_mx_response(&q, 0x1234, "example.org"),
            None,
            "a query is not a response"
        );
    }

    #[test]
    fn response_codes_and_empty_answers() {
        let q = mx_query(1, "example.org").unwrap();
        assert_eq!(
            parse_mx_response(&mx_response(&q, 3, &[]), 1, "example.org"),
            Some(MxAnswer::NoSuchDomain)
        );
        assert_eq!(
            parse_mx_response(&mx_response(&q, 2, &[]), 1, "example.org"),
            Some(MxAnswer::Failure(2))
        );
        assert_eq!(
            parse_mx_response(&mx_response(&q, 0, &[]), 1, "example.org"),
            Some(MxAnswer::NoRecords)
        );
    }

    #[test]
    fn compression_loops_are_refused() {
        let q = mx_query(1, "example.org").unwrap();
        let mut r = mx_response(&q, 0, &[(10, "mx.example.org")]);
        // Point the answer's owner name at itself.
        let owner = q.len();
        r[owner] = 0xC0;
        r[owner + 1] = owner as u8;
        assert_eq!(
            parse_mx_response(&r, 1, "example.org"),
            Some(MxAnswer::NoRecords)
        );
    }

    #[test]
    fn answers_for_another_question_or_owner_are_not_believed() {
        let q = mx_query(7, "example.org").unwrap();
        let r = mx_response(&q, 0, &[(10, "mx.evil.example")]);
        // Our ID, but the question is for another domain.
        assert_eq!(parse_mx_response(&r, 7, "bank.example"), None);
        // Our question, but the record's owner is another name.
        let other = mx_query(7, "evil.example").unwrap();
        let mut r = mx_response(&q, 0, &[]);
        r[6..8].copy_from_slice(&1u16.to_be_bytes());
        let owner_at = r.len();
        r.extend_from_slice(&other[12..other.len() - 4]);
        r.extend_from_slice(&TYPE_MX.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&300u32.to_be_bytes());
        r.extend_from_slice(&[0, 4, 0, 10, 0xC0, owner_at as u8]);
        assert_eq!(
            parse_mx_response(&r, 7, "example.org"),
            Some(MxAnswer::NoRecords)
        );
        // Two questions: not our response.
        let mut r = mx_response(&q, 0, &[(10, "mx.example.org")]);
        r[4..6].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(parse_mx_response(&r, 7, "example.org"), None);
        // TC set: ask again over TCP.
        let mut r = mx_response(&q, 0, &[(10, "mx.example.org")]);
        r[2] |= 0x02;
        assert_eq!(
            parse_mx_response(&r, 7, "example.org"),
            Some(MxAnswer::Truncated)
        );
    }

    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let h = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 512];
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            let mut r = mx_response(&buf[..n], 0, &[]);
            r[2] |= 0x02;
            udp.send_to(&r, peer).await.unwrap();
            let (mut s, _) = tcp.accept().await.unwrap();
            let mut lb = [0u8; 2];
            s.read_exact(&mut lb).await.unwrap();
            let mut q = vec![0u8; u16::from_be_bytes(lb) as usize];
            s.read_exact(&mut q).await.unwrap();
            let r = mx_response(&q, 0, &[(5, "big.example.org")]);
            let mut out = (r.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&r);
            s.write_all(&out).await.unwrap();
        });
        assert_eq!(
            mail_hosts("example.org", &[addr]).await.unwrap(),
            vec!["big.example.org".to_string()]
        );
        h.await.unwrap();
    }

    #[test]
    fn resolv_conf_nameservers() {
        let ns = nameservers("# x\nnameserver 10.0.0.1\nnameserver ::1\nsearch a\n");
        assert_eq!(
            ns,
            vec![
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(nameservers(""), vec!["127.0.0.1:53".parse().unwrap()]);
    }

    #[tokio::test]
    async fn lookup_against_a_loopback_name_server() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for answer in [vec![(10u16, "mx.example.org")], vec![], vec![(0, "")]] {
                let (n, peer) = server.recv_from(&mut buf).await.unwrap();
                let r = mx_response(&buf[..n], 0, &answer);
                server.send_to(&r, peer).await.unwrap();
            }
        });
        assert_eq!(
            mail_hosts("example.org", &[addr]).await.unwrap(),
            vec!["mx.example.org".to_string()]
        );
        assert_eq!(
            mail_hosts("example.net", &[addr]).await.unwrap(),
            vec!["example.net".to_string()],
            "implicit MX"
        );
        assert_eq!(
            mail_hosts("example.com", &[addr]).await,
            Err(DnsError::NullMx("example.com".into()))
        );
        h.await.unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_responses_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), id in any::<u16>()) {
            let _ = parse_mx_response(&bytes, id, "example.org");
        }
    }
}
