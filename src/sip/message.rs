//! SIP messages (RFC 3261 7, 20, 25): parse and print requests and responses.
//!
//! Pure and total: [`parse`] takes any bytes and returns a message, "need more data" (for TCP
//! framing), or an error that carries the request's head when enough was parsed to answer with
//! 400. Tolerant where real peers are sloppy (shared/vectors): bare LF line ends, LWS around
//! the colon, folded header lines, compact header names, several Via values in one line.
//!
//! **Limits.** Header section at most [`MAX_HEAD`] octets and [`MAX_HEADERS`] lines; the body
//! length is bounded by the caller's `max_body`.
//!
//! Standards: RFC 3261 7.3 (header syntax, compact forms), 18.3 (Content-Length framing),
//! 20 (header fields), 25 (grammar, loosely); RFC 3428 (MESSAGE).

use std::fmt::Write as _;

/// Largest header section accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 128;

/// The parse error of a request whose SIP version is not 2.0 (answered 505).
pub const UNSUPPORTED_VERSION: &str = "SIP version not supported";

/// A header field: canonical name (compact forms expanded) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name, with compact forms expanded (`v` -> `Via`).
    pub name: String,
    /// The value, trimmed, folded lines joined by a space.
    pub value: String,
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The first value of `name` (case-insensitive; compact forms match too).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = expand(name);
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`, with comma-separated lists split (outside quotes and <>).
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let name = expand(name);
        self.0
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| split_list(&h.value))
            .collect()
    }

    /// How many header fields named `name` there are (compact forms match too).
    pub fn count(&self, name: &str) -> usize {
        let name = expand(name);
        self.0
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    }

    /// Appends a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }

    /// Replaces every `name` with one value (or appends it).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.push(name, value);
    }

    /// Removes every `name`.
    pub fn remove(&mut self, name: &str) {
        let name = expand(name);
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method (`MESSAGE`, `REGISTER`, ...), as sent (methods are case-sensitive).
    pub method: String,
    /// The Request-URI.
    pub uri: String,
    /// Header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code (100-699).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// What [`parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole message, and how many octets of the input it took.
    Complete(Message, usize),
    /// The input ends inside the message (stream transports: read more).
    Incomplete,
}

/// Why input is not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// What is wrong, fit for a 400 reason phrase.
    pub reason: &'static str,
    /// The request without its body, when the start line and headers parsed: enough to answer.
    pub head: Option<Box<Request>>,
}

fn err(reason: &'static str) -> ParseError {
    ParseError { reason, head: None }
}

/// Expands a compact header name (RFC 3261 7.3.3) and fixes the case of the common ones.
pub fn expand(name: &str) -> &str {
    const NAMES: [(&str, &str); 16] = [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("call-id", "Call-ID"),
        ("cseq", "CSeq"),
        ("content-length", "Content-Length"),
        ("content-type", "Content-Type"),
        ("via", "Via"),
        ("max-forwards", "Max-Forwards"),
    ];
    NAMES
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map(|(_, long)| *long)
        .unwrap_or(name)
}

/// Splits a header value at commas outside quoted strings and angle brackets.
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Finds the end of the header section: returns (head length without the blank line, offset
/// of the body).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // "\n\n" or "\n\r\n"
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Parses one message from the start of `buf`.
///
/// `datagram`: the input is one whole UDP datagram (a missing Content-Length means "the rest
/// of the datagram", RFC 3261 18.3); otherwise it is a stream and Content-Length is required.
/// Leading CRLFs (keep-alives) are skipped.
///
/// # Errors
/// [`ParseError`]; `head` is set when a 400 can be sent.
pub fn parse(buf: &[u8], datagram: bool, max_body: usize) -> Result<Parsed, ParseError> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let buf = &buf[skip..];
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    let Some((head_len, body_at)) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD {
            return Err(err("header section too large"));
        }
        return if datagram {
            Err(err("no end of header section"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if head_len > MAX_HEAD {
        return Err(err("header section too large"));
    }
    let head =
        std::str::from_utf8(&buf[..head_len]).map_err(|_| err("header section is not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().ok_or(err("empty message"))?;
    let mut headers = Headers::default();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers
                .0
                .last_mut()
                .ok_or(err("continuation line before any header"))?;
            last.value.push(' ');
            last.value.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(err("header line without a colon"))?;
        let name = name.trim();
        if !is_token(name) {
            return Err(err("bad header name"));
        }
        if headers.0.len() == MAX_HEADERS {
            return Err(err("too many header fields"));
        }
        headers.push(expand(name), value.trim());
    }

    // The printer adds a Content-Length when there is none: keep room for it, so that what
    // parses prints as something that parses again.
    if headers.0.len() >= MAX_HEADERS && headers.get("Content-Length").is_none() {
        return Err(err("too many header fields"));
    }
    // Two different lengths are how requests get smuggled on streams (RFC 3261 20.14: one
    // value): refused, not guessed.
    let lengths = headers.get_all("Content-Length");
    let conflicting = lengths.iter().any(|v| v.trim() != lengths[0].trim());
    let content_length = headers
        .get("Content-Length")
        .map(|v| v.trim().parse::<usize>().map_err(|_| "bad Content-Length"));
    let rest = &buf[body_at..];

    if let Some(status_line) = start.strip_prefix("SIP/2.0 ") {
        if conflicting {
            return Err(err("conflicting Content-Length values"));
        }
        let (code, reason) = status_line.split_once(' ').unwrap_or((status_line, ""));
        let status: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or(err("bad status code"))?;
        return match take_body(rest, content_length, datagram, max_body) {
            Err(reason) => Err(err(reason)),
            Ok(None) if datagram => Err(err("body shorter than Content-Length")),
            Ok(None) => Ok(Parsed::Incomplete),
            Ok(Some((body, used))) => Ok(Parsed::Complete(
                Message::Response(Response {
                    status,
                    reason: reason.to_string(),
                    headers,
                    body,
                }),
                skip + body_at + used,
            )),
        };
    }

    if start.starts_with("SIP/") {
        // A response, but not of SIP 2.0 (or with two lengths): never answered.
        return Err(err(if conflicting {
            "conflicting Content-Length values"
        } else {
            "unsupported response version"
        }));
    }
    let with_head = |reason: &'static str, req: &Request| ParseError {
        reason,
        head: Some(Box::new(req.clone())),
    };
    let mut parts = start.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        // Answerable when the headers are: 400 rather than silence.
        let head = Request {
            method: String::new(),
            uri: String::new(),
            headers,
            body: Vec::new(),
        };
        return Err(with_head("bad request line", &head));
    };
    let req_head = Request {
        method: if is_token(method) {
            method.to_string()
        } else {
            String::new()
        },
        uri: uri.to_string(),
        headers,
        body: Vec::new(),
    };
    if !is_token(method) || uri.is_empty() {
        return Err(with_head("bad request line", &req_head));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let looks_sip = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
        let reason = if looks_sip {
            UNSUPPORTED_VERSION
        } else {
            "bad request line"
        };
        return Err(with_head(reason, &req_head));
    }
    if conflicting {
        return Err(with_head("conflicting Content-Length values", &req_head));
    }
    match take_body(rest, content_length, datagram, max_body) {
        Err(reason) => Err(with_head(reason, &req_head)),
        Ok(None) => {
            if datagram {
                Err(with_head("body shorter than Content-Length", &req_head))
            } else {
                Ok(Parsed::Incomplete)
            }
        }
        Ok(Some((body, used))) => Ok(Parsed::Complete(
            Message::Request(Request { body, ..req_head }),
            skip + body_at + used,
        )),
    }
}

/// The body per Content-Length: `Ok(None)` when more data is needed.
fn take_body(
    rest: &[u8],
    content_length: Option<Result<usize, &'static str>>,
    datagram: bool,
    max_body: usize,
) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    let n = match content_length {
        Some(Ok(n)) => n,
        Some(Err(e)) => return Err(e),
        None if datagram => rest.len(),
        None => return Err("Content-Length is required on stream transports"),
    };
    if n > max_body {
        return Err("body too large");
    }
    Ok(rest.get(..n).map(|b| (b.to_vec(), n)))
}

fn print_head(out: &mut String, headers: &Headers, body_len: usize) {
    for h in &headers.0 {
        if h.name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        let _ = write!(out, "{}: {}\r\n", h.name, h.value);
    }
    let _ = write!(out, "Content-Length: {body_len}\r\n\r\n");
}

impl Request {
    /// The request on the wire (Content-Length set from the body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        print_head(&mut s, &self.headers, self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

impl Response {
    /// The response on the wire (Content-Length set from the body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("SIP/2.0 {} {}\r\n", self.status, self.reason);
        print_head(&mut s, &self.headers, self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// A response to `req` (RFC 3261 8.2.6.2): Via, From, To, Call-ID and CSeq copied; a
    /// To tag added when the request's To has none and the status is not 100.
    pub fn to(req: &Request, status: u16, reason: &str, to_tag: &str) -> Response {
        let mut headers = Headers::default();
        for h in &req.headers.0 {
            match h.name.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" => headers.push(&h.name, h.value.clone()),
                "To" => {
                    let has_tag = NameAddr::parse(&h.value)
                        .map(|n| n.param("tag").is_some())
                        .unwrap_or(true);
                    if has_tag || status == 100 || to_tag.is_empty() {
                        headers.push("To", h.value.clone());
                    } else {
                        headers.push("To", format!("{};tag={to_tag}", h.value));
                    }
                }
                _ => {}
            }
        }
        Response {
            status,
            reason: reason.to_string(),
            headers,
            body: Vec::new(),
        }
    }
}

/// A name-addr or addr-spec with header parameters: `"Bob" <sip:bob@host>;tag=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display: String,
    /// The URI.
    pub uri: String,
    /// Header parameters (`tag`, `expires`, ...), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parses one name-addr / addr-spec; `None` when there is no URI, a quoted string is not
    /// closed, or an addr-spec holds what only a name-addr may (`<`, `>`, `"`, spaces).
    /// Quoted-pairs (`\"`, `\\`) in the display name are honoured (RFC 3261 25.1).
    pub fn parse(v: &str) -> Option<NameAddr> {
        let v = v.trim();
        let (display, uri, rest) = match find_unquoted(v, b'<')? {
            Some(lt) => {
                let gt = v.get(lt..)?.find('>')? + lt;
                let display = unquote(v.get(..lt)?.trim());
                (
                    display,
                    v.get(lt + 1..gt)?.trim().to_string(),
                    v.get(gt + 1..)?,
                )
            }
            None => {
                // addr-spec: parameters after the URI belong to the header (RFC 3261 20.10).
                let (u, r) = match v.find(';') {
                    Some(i) => (v.get(..i)?, v.get(i..)?),
                    None => (v, ""),
                };
                let u = u.trim();
                if u.contains(['<', '>', '"', ' ', '\t']) {
                    return None;
                }
                (String::new(), u.to_string(), r)
            }
        };
        if uri.is_empty() {
            return None;
        }
        Some(NameAddr {
            display,
            uri,
            params: parse_params(rest),
        })
    }

    /// A header parameter's value (`Some("")` for a flag parameter).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// The first `c` outside quoted strings: `Some(None)` when there is none, `None` when a
/// quoted string is not closed.
fn find_unquoted(v: &str, c: u8) -> Option<Option<usize>> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in v.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            x if x == c && !quoted => return Some(Some(i)),
            _ => {}
        }
    }
    (!quoted).then_some(None)
}

/// A display name without its quotes, quoted-pairs resolved.
fn unquote(d: &str) -> String {
    let Some(inner) = d.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return d.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => out.extend(chars.next()),
            _ => out.push(ch),
        }
    }
    out
}

/// Parses `;a=1;b;c="x"` into pairs (names lower-cased).
pub fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (
                n.trim().to_ascii_lowercase(),
                Some(v.trim().trim_matches('"').to_string()),
            ),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect()
}

/// The parts of a SIP URI that smsmta uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `sip`, `sips` or `tel`.
    pub scheme: String,
    /// The user part (may be empty).
    pub user: String,
    /// The host.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

impl Uri {
    /// Parses `sip:user@host:port;params?headers` (and `tel:+1555...`).
    pub fn parse(s: &str) -> Option<Uri> {
        let (scheme, rest) = s.trim().split_once(':')?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "tel" {
            let user = rest.split(';').next()?.to_string();
            return Some(Uri {
                scheme,
                user,
                host: String::new(),
                port: None,
            });
        }
        if scheme != "sip" && scheme != "sips" {
            return None;
        }
        let rest = rest.split(['?', ';']).next()?;
        let (user, hostport) = match rest.rfind('@') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => ("", rest),
        };
        // A user part may carry a password (user:pass); keep the user.
        let user = user.split(':').next().unwrap_or("").to_string();
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let end = h.find(']')?;
            let port = h[end + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
            (format!("[{}]", &h[..end]), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(Uri {
            scheme,
            user,
            host,
            port,
        })
    }
}

/// The top Via's facts used for transaction matching and responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, ...
    pub transport: String,
    /// `host[:port]`
    pub sent_by: String,
    /// The branch parameter, if any.
    pub branch: Option<String>,
}

impl Via {
    /// Parses one Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...`.
    pub fn parse(v: &str) -> Option<Via> {
        let (proto, rest) = v.trim().split_once(char::is_whitespace)?;
        let transport = proto.rsplit('/').next()?.to_ascii_uppercase();
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let branch = parse_params(params)
            .into_iter()
            .find(|(n, _)| n == "branch")
            .and_then(|(_, v)| v);
        Some(Via {
            transport,
            sent_by: sent_by.trim().to_string(),
            branch,
        })
    }
}

impl Request {
    /// The top Via.
    pub fn top_via(&self) -> Option<Via> {
        self.headers
            .get_all("Via")
            .first()
            .and_then(|v| Via::parse(v))
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.headers.get("CSeq")?;
        let (n, m) = v.trim().split_once(char::is_whitespace)?;
        Some((n.parse().ok()?, m.trim()))
    }

    /// The From header as a name-addr.
    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get("From")?)
    }

    /// The To header as a name-addr.
    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get("To")?)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get("Call-ID")
    }

    /// Checks the mandatory headers of RFC 3261 8.1.1 that smsmta relies on.
    ///
    /// # Errors
    /// A reason phrase for 400.
    pub fn check_mandatory(&self) -> Result<(), &'static str> {
        // Header fields that may appear once: two of them leave the request ambiguous
        // (RFC 3261 7.3.1; RFC 4475 3.1.2.18).
        for (name, reason) in [
            ("From", "More than one From"),
            ("To", "More than one To"),
            ("Call-ID", "More than one Call-ID"),
            ("CSeq", "More than one CSeq"),
            ("Max-Forwards", "More than one Max-Forwards"),
            ("Content-Type", "More than one Content-Type"),
        ] {
            if self.headers.count(name) > 1 {
                return Err(reason);
            }
        }
        if self.top_via().is_none() {
            return Err("Missing or bad Via");
        }
        if self.from().is_none() {
            return Err("Missing or bad From");
        }
        if self.to().is_none() {
            return Err("Missing or bad To");
        }
        if self.call_id().is_none_or(|c| c.trim().is_empty()) {
            return Err("Missing Call-ID");
        }
        match self.cseq() {
            Some((_, m)) if m == self.method => Ok(()),
            Some(_) => Err("CSeq method does not match"),
            None => Err("Missing or bad CSeq"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPENBTS: &str = "MESSAGE sip:smsc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\nFrom: IMSI460010018073482 <sip:IMSI460010018073482@127.0.0.1>;tag=42\r\nTo: smsc <sip:smsc@127.0.0.1>\r\nCall-ID: 478788539@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContent-Type: application/vnd.3gpp.sms\r\nContent-Length:   54\r\n\r\n0054000891683110901105f00e1154038155f50000ff04d4f29c0e";

    fn req(s: &str) -> Request {
        match parse(s.as_bytes(), true, 65536).unwrap() {
            Parsed::Complete(Message::Request(r), _) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn name_addrs_honour_quoted_pairs_and_refuse_open_quotes() {
        let n = NameAddr::parse(r#""J User \\\"" <sip:IMSI001@h> ;  tag = 98"#).unwrap();
        assert_eq!(n.display, r#"J User \""#);
        assert_eq!(n.uri, "sip:IMSI001@h");
        assert_eq!(n.param("tag"), Some("98"));
        assert_eq!(
            NameAddr::parse("caller<sip:c@example.com>;tag=3")
                .unwrap()
                .uri,
            "sip:c@example.com"
        );
        assert_eq!(NameAddr::parse("sip:c@h;tag=1").unwrap().uri, "sip:c@h");
        for bad in [
            r#""Bob <sip:b@h>;tag=1"#,
            "Bell, Alexander sip:a@h",
            "\"x\" sip:a@h",
            "<>",
            "",
        ] {
            assert_eq!(NameAddr::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn duplicate_single_headers_are_refused() {
        let two_froms = OPENBTS.replace(
            "To: smsc",
            "From: <sip:IMSI001010000000009@127.0.0.1>;tag=9\r\nTo: smsc",
        );
        assert_eq!(req(&two_froms).check_mandatory(), Err("More than one From"));
        assert_eq!(req(OPENBTS).check_mandatory(), Ok(()));
    }

    #[test]
    fn openbts_mo_message_parses() {
        let r = req(OPENBTS);
        assert_eq!(r.method, "MESSAGE");
        assert_eq!(Uri::parse(&r.uri).unwrap().user, "smsc");
        assert_eq!(r.from().unwrap().param("tag"), Some("42"));
        assert_eq!(
            Uri::parse(&r.from().unwrap().uri).unwrap().user,
            "IMSI460010018073482"
        );
        assert_eq!(r.body.len(), 54);
        assert_eq!(r.cseq(), Some((1, "MESSAGE")));
        assert_eq!(r.top_via().unwrap().branch.as_deref(), Some("z9hG4bK1"));
        r.check_mandatory().unwrap();
    }

    #[test]
    fn bare_lf_compact_forms_and_folding() {
        let s = "MESSAGE sip:smsc@10.0.0.1 SIP/2.0\nv: SIP/2.0/UDP 10.0.0.2;branch=abc\nf: <sip:1@x>;tag=1\nt: sip:555@10.0.0.1\ni: c1\nCSeq: 1\n  MESSAGE\nc: text/plain\nl: 5\n\nhello\n";
        let r = req(s);
        assert_eq!(r.headers.get("Content-Type"), Some("text/plain"));
        assert_eq!(r.headers.get("call-id"), Some("c1"));
        assert_eq!(r.cseq(), Some((1, "MESSAGE")));
        assert_eq!(r.body, b"hello");
        assert_eq!(Uri::parse(&r.to().unwrap().uri).unwrap().user, "555");
    }

    #[test]
    fn several_via_values_and_stream_framing() {
        let s = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKx, SIP/2.0/TCP b:2;branch=y\r\nVia: SIP/2.0/UDP c\r\nContent-Length: 0\r\n\r\nSIP/2.0";
        let Parsed::Complete(Message::Response(r), used) = parse(s.as_bytes(), false, 10).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.headers.get_all("Via").len(), 3);
        assert_eq!(&s[used..], "SIP/2.0");
        assert_eq!(
            parse(&s.as_bytes()[..20], false, 10).unwrap(),
            Parsed::Incomplete
        );
        assert_eq!(parse(b"\r\n\r\n", false, 10).unwrap(), Parsed::Incomplete);
    }

    #[test]
    fn errors_carry_the_head_when_it_parsed() {
        let s = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK2\r\nContent-Length: 99\r\n\r\nshort";
        let e = parse(s.as_bytes(), true, 1000).unwrap_err();
        assert!(e.head.is_some());
        // A bad request line keeps its headers, so it can be answered 400 when they allow.
        let e = parse(b"GARBAGE\r\n\r\n", true, 1000).unwrap_err();
        assert!(e.head.is_some_and(|h| h.top_via().is_none()));
        let s = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n";
        assert_eq!(
            parse(s.as_bytes(), true, 100).unwrap_err().reason,
            "body too large"
        );
    }

    #[test]
    fn what_rfc_3261_refuses_is_refused_not_guessed() {
        let via = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n";
        // Two different Content-Length values: 400 (request smuggling on streams).
        let s = format!(
            "MESSAGE sip:a@b SIP/2.0\r\n{via}Content-Length: 2\r\nContent-Length: 40\r\n\r\nhi"
        );
        let e = parse(s.as_bytes(), false, 1000).unwrap_err();
        assert_eq!(e.reason, "conflicting Content-Length values");
        assert!(e.head.is_some());
        // The same value twice is one length.
        let s = format!("MESSAGE sip:a@b SIP/2.0\r\n{via}Content-Length: 2\r\nl: 2\r\n\r\nhi");
        assert!(matches!(
            parse(s.as_bytes(), false, 1000),
            Ok(Parsed::Complete(..))
        ));
        // Another SIP version: answerable, 505.
        let s = format!("MESSAGE sip:a@b SIP/3.0\r\n{via}\r\n");
        let e = parse(s.as_bytes(), true, 1000).unwrap_err();
        assert_eq!(e.reason, UNSUPPORTED_VERSION);
        assert!(e.head.and_then(|h| h.top_via()).is_some());
        // A response of another version is never answered.
        let e = parse(
            format!("SIP/3.0 200 OK\r\n{via}\r\n").as_bytes(),
            true,
            1000,
        )
        .unwrap_err();
        assert!(e.head.is_none());
        // 128 fields without Content-Length would print as 129: refused at the parser.
        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\n")).collect();
        let s = format!("MESSAGE sip:a@b SIP/2.0\n{many}\n");
        assert!(parse(s.as_bytes(), true, 1000).is_err());
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_a_to_tag() {
        let r = req(OPENBTS);
        let resp = Response::to(&r, 202, "Accepted", "srv1");
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(text.starts_with(
            "SIP/2.0 202 Accepted\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        ));
        assert!(text.contains("To: smsc <sip:smsc@127.0.0.1>;tag=srv1\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn uris() {
        let u = Uri::parse("sip:IMSI001690000000002@127.0.0.1:5062;transport=udp").unwrap();
        assert_eq!(
            (u.user.as_str(), u.host.as_str(), u.port),
            ("IMSI001690000000002", "127.0.0.1", Some(5062))
        );
        let u = Uri::parse("sip:[::1]:5063").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", Some(5063)));
        assert_eq!(Uri::parse("tel:+15551234567").unwrap().user, "+15551234567");
        assert!(Uri::parse("http://x").is_none());
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9-]{0,10}"
    }

    fn value() -> impl Strategy<Value = String> {
        "[!-~]([ -~]{0,30}[!-~])?"
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600), dgram in any::<bool>()) {
            let _ = parse(&b, dgram, 1000);
        }

        #[test]
        fn parse_of_print_is_identity(
            method in "[A-Z]{3,9}",
            user in "[a-z0-9]{1,10}",
            headers in proptest::collection::vec((token(), value()), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            status in 100u16..700,
        ) {
            let mut h = Headers::default();
            for (n, v) in &headers {
                if n.eq_ignore_ascii_case("content-length") || n.len() == 1 { continue; }
                h.push(expand(n), v.clone());
            }
            let r = Request { method, uri: format!("sip:{user}@example.org"), headers: h.clone(), body: body.clone() };
            let bytes = r.to_bytes();
            for dgram in [true, false] {
                let Parsed::Complete(Message::Request(back), used) = parse(&bytes, dgram, 1000).unwrap() else { panic!() };
                let mut want = r.clone();
                want.headers.push("Content-Length", body.len().to_string());
                prop_assert_eq!(&back, &want);
                prop_assert_eq!(used, bytes.len());
            }
            let resp = Response { status, reason: "Some Reason".into(), headers: h, body };
            let bytes = resp.to_bytes();
            let Parsed::Complete(Message::Response(back), _) = parse(&bytes, false, 1000).unwrap() else { panic!() };
            prop_assert_eq!(back.status, resp.status);
            prop_assert_eq!(back.body, resp.body);
        }
    }
}
