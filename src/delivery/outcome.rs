//! Every delivery result, classified once: delivered, retry, or bounce.
//!
//! Pure. One exhaustive match per protocol, no `_ =>` on the result kinds: a SIP final
//! response, an SMTP reply, or a transport failure. Unknown codes are temporary: retry, never
//! drop (maddy's rule), bounded by the message's lifetime.
//!
//! Standards: RFC 3261 21 (SIP response classes), RFC 3428 (MESSAGE), RFC 5321 4.2.1 (reply
//! classes), RFC 3463 (enhanced status codes for notices).

use std::time::Duration;

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop took responsibility (SIP 2xx, SMTP 250).
    Delivered,
    /// Try again later; `retry_after` when the peer said when (SIP Retry-After).
    Retry {
        /// Why, for the log and `queue list`.
        reason: String,
        /// The peer's own hint.
        retry_after: Option<Duration>,
    },
    /// Give up now and tell the sender.
    Bounce {
        /// Why, for the log and the notice.
        reason: String,
        /// RFC 3463 status for the DSN (`5.1.1`, ...).
        status: &'static str,
    },
}

/// A failure below the protocol: nothing was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// No final response before the timeout (SIP Timer F, SMTP timeouts).
    Timeout,
    /// Connection refused, reset, unreachable, DNS failure.
    Unreachable,
    /// The peer answered something that is not the protocol.
    ProtocolError,
}

/// The RFC 3463 status of a message that outlived its lifetime.
pub const EXPIRED: &str = "4.4.7";

/// A failure found here, before or instead of asking a peer. Agents and the job report these;
/// [`local`] is their one classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// The recipient address cannot be used (5.1.3).
    BadAddress(String),
    /// The SMTP envelope cannot be built from the addresses (5.1.3); the text says why.
    BadEnvelope(String),
    /// The message outlived its lifetime (4.4.7).
    Expired,
    /// The registry could not be read (temporary).
    Registry(String),
    /// The route decision found no route ([`crate::delivery::route::NoRoute`]).
    NoRoute(super::route::NoRoute),
    /// A copy or notice could not be queued (temporary).
    Spool(String),
    /// The text cannot be encoded as SMS (5.6.0).
    Unencodable(String),
    /// The domain has no mail host: NXDOMAIN or null MX (5.1.2).
    NoMailHost(String),
}

/// The class of a local failure.
pub fn local(failure: Local) -> Outcome {
    let retry = |reason| Outcome::Retry {
        reason,
        retry_after: None,
    };
    let bounce = |reason, status| Outcome::Bounce { reason, status };
    match failure {
        Local::BadAddress(a) => bounce(format!("bad address <{a}>"), "5.1.3"),
        Local::BadEnvelope(why) => bounce(why, "5.1.3"),
        Local::Expired => bounce(
            "message expired: not delivered within its lifetime".into(),
            EXPIRED,
        ),
        Local::Registry(e) => retry(format!("registry: {e}")),
        Local::NoRoute(r @ super::route::NoRoute::Unknown(_)) => bounce(r.to_string(), "5.1.1"),
        Local::NoRoute(r @ super::route::NoRoute::Disabled(_)) => bounce(r.to_string(), "5.2.1"),
        Local::Spool(e) => retry(e),
        Local::Unencodable(e) => bounce(format!("cannot encode the SMS: {e}"), "5.6.0"),
        Local::NoMailHost(e) => bounce(e, "5.1.2"),
    }
}

/// The class of a SIP final response to a MESSAGE (RFC 3261 21, RFC 3428 7).
pub fn sip(status: u16, reason: &str, retry_after: Option<Duration>) -> Outcome {
    let why = || format!("{status} {reason}");
    let retry = |reason| Outcome::Retry {
        reason,
        retry_after,
    };
    let bounce = |status| Outcome::Bounce {
        reason: why(),
        status,
    };
    match status {
        200..=299 => Outcome::Delivered,
        // Temporary: request timeout, handset not reachable (OpenBTS answers 480 when paging
        // fails), busy, server errors that say "later".
        408 | 480 | 486 | 500 | 503 | 504 => retry(why()),
        404 | 604 => bounce("5.1.1"),
        403 | 603 => bounce("5.7.1"),
        484 | 485 => bounce("5.1.3"),
        413 | 513 => bounce("5.3.4"),
        // Any other client or global failure is permanent.
        400..=499 | 600..=699 => bounce("5.0.0"),
        // Other server failures (501 not implemented, 502, 505...): temporary, the next hop
        // may be mended; the lifetime bounds the retries.
        500..=599 => retry(why()),
        // A provisional or nonsense code as a "final" response: unknown, so retry.
        0..=199 | 300..=399 | 700..=u16::MAX => {
            retry(format!("unexpected final response {}", why()))
        }
    }
}

/// The class of an SMTP reply to a transaction (RFC 5321 4.2.1).
pub fn smtp(code: u16, text: &str) -> Outcome {
    let why = || format!("{code} {text}");
    match code {
        200..=299 => Outcome::Delivered,
        400..=499 => Outcome::Retry {
            reason: why(),
            retry_after: None,
        },
        500..=599 => Outcome::Bounce {
            reason: why(),
            status: enhanced(text).unwrap_or("5.0.0"),
        },
        0..=199 | 300..=399 | 600..=u16::MAX => Outcome::Retry {
            reason: format!("unexpected reply {}", why()),
            retry_after: None,
        },
    }
}

/// The answer to a deliver_sm (SMPP 3.4 5.1.3 command_status), or why there was none.
/// ESMEs use few codes: 0 is delivered; the queue-full, throttling, system and "temporary
/// application" errors, and every code not listed, are temporary; an ESME that says the
/// destination or the source is wrong, or rejects the message for good, bounces it.
pub fn smpp(answer: Result<u32, crate::smpp::agent::AgentError>) -> Outcome {
    let status = match smpp_status(answer) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let why = || format!("deliver_sm_resp 0x{status:08X}");
    let bounce = |status| Outcome::Bounce {
        reason: why(),
        status,
    };
    match status {
        0x0000_0000 => Outcome::Delivered,
        // ESME_RINVDSTADR, ESME_RINVSRCADR.
        0x0000_000B => bounce("5.1.1"),
        0x0000_000A => bounce("5.1.7"),
        // ESME_RX_P_APPN (permanent application error), ESME_RX_R_APPN (reject message).
        0x0000_0065 | 0x0000_0066 => bounce("5.0.0"),
        // ESME_RMSGQFUL, ESME_RTHROTTLED, ESME_RSYSERR, ESME_RX_T_APPN, and any other.
        _ => Outcome::Retry {
            reason: why(),
            retry_after: None,
        },
    }
}

/// The answer of an upstream SMSC to a submit_sm (SMPP 3.4 5.1.3), or why there was none.
/// Classified once, exhaustively by kind: 0 is sent; an address the SMSC refuses, or content
/// it can never take, bounces; throttling (0x58) is retried at the shortest backoff, while the upstream's pace
/// halves; queue full, system errors, no bind, no answer and every code not listed are
/// temporary (retry, never drop).
pub fn upstream(answer: Result<u32, crate::smpp::agent::AgentError>) -> Outcome {
    let status = match smpp_status(answer) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let why = || format!("submit_sm_resp 0x{status:08X}");
    let bounce = |status| Outcome::Bounce {
        reason: why(),
        status,
    };
    match status {
        0x0000_0000 => Outcome::Delivered,
        // INVDSTADR, INVDSTTON, INVDSTNPI, INVNUMDESTS: the destination.
        0x0000_000B | 0x0000_0050 | 0x0000_0051 | 0x0000_0033 => bounce("5.1.1"),
        // INVSRCADR, INVSRCTON, INVSRCNPI: our source, which the SMSC will never take.
        0x0000_000A | 0x0000_0048 | 0x0000_0049 => bounce("5.1.7"),
        // INVMSGLEN, INVESMCLASS, INVDCS, INVOPTPARAMVAL...: the content.
        0x0000_0001 | 0x0000_0043 | 0x0000_0104 | 0x0000_00C4 => bounce("5.6.0"),
        // RX_P_APPN, RX_R_APPN: rejected for good.
        0x0000_0065 | 0x0000_0066 => bounce("5.0.0"),
        // THROTTLED: at the shortest backoff, while the upstream's pace is halved.
        0x0000_0058 => Outcome::Retry {
            reason: why(),
            retry_after: Some(Duration::from_secs(5)),
        },
        // MSGQFUL, SYSERR, SUBMITFAIL, INVBNDSTS, and any other.
        _ => Outcome::Retry {
            reason: why(),
            retry_after: None,
        },
    }
}

/// An SMPP peer's command_status, or the temporary outcome of getting none (no bind, a full
/// queue, a closed link: unreachable; no answer in time: timeout).
fn smpp_status(answer: Result<u32, crate::smpp::agent::AgentError>) -> Result<u32, Outcome> {
    use crate::smpp::agent::AgentError;
    match answer {
        Ok(s) => Ok(s),
        Err(e @ (AgentError::NotBound | AgentError::Busy | AgentError::Closed)) => {
            Err(transport(TransportFailure::Unreachable, &e.to_string()))
        }
        Err(e @ AgentError::Timeout) => Err(transport(TransportFailure::Timeout, &e.to_string())),
    }
}

/// A transport failure: always temporary.
pub fn transport(failure: TransportFailure, detail: &str) -> Outcome {
    let reason = match failure {
        TransportFailure::Timeout => format!("timeout: {detail}"),
        TransportFailure::Unreachable => format!("unreachable: {detail}"),
        TransportFailure::ProtocolError => format!("protocol error: {detail}"),
    };
    Outcome::Retry {
        reason,
        retry_after: None,
    }
}

/// The common permanent enhanced codes when the reply text starts with one.
fn enhanced(text: &str) -> Option<&'static str> {
    const KNOWN: [&str; 10] = [
        "5.1.1", "5.1.2", "5.1.3", "5.2.1", "5.2.2", "5.3.4", "5.4.6", "5.7.1", "5.7.0", "5.6.0",
    ];
    let first = text.split_whitespace().next()?;
    KNOWN.iter().copied().find(|k| *k == first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_smsc_answer_bounces_only_for_what_can_never_go_and_retries_the_rest() {
        use crate::smpp::agent::AgentError;
        let status = |o: Outcome| match o {
            Outcome::Bounce { status, .. } => status.to_string(),
            Outcome::Retry { retry_after, .. } => format!("retry {retry_after:?}"),
            Outcome::Delivered => "sent".into(),
        };
        assert_eq!(status(upstream(Ok(0))), "sent");
        assert_eq!(status(upstream(Ok(0x0B))), "5.1.1");
        assert_eq!(status(upstream(Ok(0x0A))), "5.1.7");
        assert_eq!(status(upstream(Ok(0x58))), "retry Some(5s)");
        for temporary in [0x14, 0x08, 0x45, 0x04, 0xDEAD] {
            assert_eq!(
                status(upstream(Ok(temporary))),
                "retry None",
                "{temporary:#x}"
            );
        }
        for e in [
            AgentError::NotBound,
            AgentError::Busy,
            AgentError::Closed,
            AgentError::Timeout,
        ] {
            assert_eq!(status(upstream(Err(e))), "retry None");
        }
    }

    #[test]
    fn local_failures_are_temporary_only_when_they_can_heal() {
        use super::super::route::NoRoute;
        let temp = |o: Outcome| matches!(o, Outcome::Retry { .. });
        assert!(temp(local(Local::Registry("busy".into()))));
        assert!(temp(local(Local::Spool("disk".into()))));
        let status = |o: Outcome| match o {
            Outcome::Bounce { status, .. } => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(local(Local::BadAddress("x".into()))), "5.1.3");
        assert_eq!(status(local(Local::BadEnvelope("x".into()))), "5.1.3");
        assert_eq!(status(local(Local::Expired)), "4.4.7");
        assert_eq!(
            status(local(Local::NoRoute(NoRoute::Unknown("1".into())))),
            "5.1.1"
        );
        assert_eq!(
            status(local(Local::NoRoute(NoRoute::Disabled("1".into())))),
            "5.2.1"
        );
        assert_eq!(status(local(Local::Unencodable("x".into()))), "5.6.0");
        assert_eq!(status(local(Local::NoMailHost("nx".into()))), "5.1.2");
    }

    #[test]
    fn sip_classes_follow_the_table() {
        assert_eq!(sip(200, "OK", None), Outcome::Delivered);
        assert_eq!(sip(202, "Accepted", None), Outcome::Delivered);
        for t in [408, 480, 486, 500, 503, 504, 501, 580] {
            assert!(matches!(sip(t, "x", None), Outcome::Retry { .. }), "{t}");
        }
        for p in [404, 604, 403, 484, 400, 415, 488, 600, 606] {
            assert!(matches!(sip(p, "x", None), Outcome::Bounce { .. }), "{p}");
        }
        assert!(matches!(
            sip(404, "Not Found", None),
            Outcome::Bounce {
                status: "5.1.1",
                ..
            }
        ));
        let ra = Some(Duration::from_secs(120));
        assert_eq!(
            sip(503, "Service Unavailable", ra),
            Outcome::Retry {
                reason: "503 Service Unavailable".into(),
                retry_after: ra
            }
        );
        // Unknown is temporary.
        assert!(matches!(sip(180, "Ringing", None), Outcome::Retry { .. }));
        assert!(matches!(sip(999, "?", None), Outcome::Retry { .. }));
    }

    #[test]
    fn smtp_classes() {
        assert_eq!(smtp(250, "2.0.0 Ok"), Outcome::Delivered);
        assert!(matches!(
            smtp(451, "4.3.0 try later"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            smtp(550, "5.1.1 no such user"),
            Outcome::Bounce {
                status: "5.1.1",
                ..
            }
        ));
        assert!(matches!(
            smtp(554, "denied"),
            Outcome::Bounce {
                status: "5.0.0",
                ..
            }
        ));
        assert!(matches!(smtp(354, "?"), Outcome::Retry { .. }));
    }

    #[test]
    fn transport_failures_are_temporary() {
        for f in [
            TransportFailure::Timeout,
            TransportFailure::Unreachable,
            TransportFailure::ProtocolError,
        ] {
            assert!(matches!(transport(f, "x"), Outcome::Retry { .. }));
        }
    }
}
