//! Routing: where each recipient goes. Pure and table-tested.
//!
//! A recipient in a local SMS domain is a handset, named by its number (or `IMSI<digits>` for
//! a subscriber accepted by IMSI only). Its text goes to the newest registration contact when
//! the handset registered with us, else to the BTS as `sip:IMSI<imsi>@<bts>` (OpenBTS's
//! convention). A subscriber with an e-mail address also or instead gets the text by mail
//! (`[delivery] email_mode`). Any other recipient is mail for the SMTP agent: to the smarthost,
//! or to the domain's MX hosts.
//!
//! **Trust.** Addresses come from the spool (checked at acceptance); contacts from the
//! registry (checked at REGISTER). A contact whose host is not an IP literal is not used: the
//! BTS route is taken instead (no DNS on the handset path).
//!
//! Standards: RFC 3261 19.1 (SIP URIs), RFC 5321 5.1 (mail routing).

use std::net::{IpAddr, SocketAddr};

use crate::config::EmailMode;
use crate::identity::HandsetKey;
use crate::registry::{Binding, Subscriber};
use crate::sip::Transport;

/// The kind of a recipient address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A handset in one of our SMS domains: the number or the IMSI.
    Handset(HandsetKey),
    /// Mail for another domain (lower-case, no trailing dot).
    Mail {
        /// The domain.
        domain: String,
    },
    /// A delivery receipt for an ESME (`esme=<system_id>@<an SMS domain>`, an address only
    /// smsmta makes: `=` is in no handset's name).
    Esme {
        /// Its system_id.
        system_id: String,
    },
}

/// The recipient address of a receipt for ESME `system_id`.
pub fn esme_address(system_id: &str, sms_domain: &str) -> String {
    format!("esme={system_id}@{sms_domain}")
}

/// Classifies a recipient address; `None` when it has no usable domain, or names no handset
/// in one of our SMS domains (a bad address: the caller bounces it, 5.1.3).
pub fn classify(address: &str, local_domains: &[String]) -> Option<Dest> {
    let (local, domain) = address.rsplit_once('@')?;
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if domain.is_empty() || local.is_empty() {
        return None;
    }
    if local_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain))
    {
        if let Some(system_id) = local.strip_prefix("esme=").filter(|s| !s.is_empty()) {
            return Some(Dest::Esme {
                system_id: system_id.to_string(),
            });
        }
        return HandsetKey::parse(local).ok().map(Dest::Handset);
    }
    Some(Dest::Mail { domain })
}

/// The ESME whose service number `key` is (`[[smpp.esme]] service_numbers`): a text to it
/// goes out as deliver_sm to that ESME instead of to a handset.
pub fn esme_service<'a>(
    key: &HandsetKey,
    esmes: &'a [crate::config::EsmeAccount],
) -> Option<&'a crate::config::EsmeAccount> {
    let HandsetKey::Number(n) = key else {
        return None;
    };
    esmes
        .iter()
        .find(|e| e.service_numbers.iter().any(|s| s == n.digits()))
}

/// The upstream SMSC that takes a text for `number`, which is none of our handsets: the
/// `[[smpp.route]]` with the longest prefix of it (an empty prefix matches every number).
pub fn upstream<'a>(number: &str, routes: &'a [crate::config::SmppRoute]) -> Option<&'a str> {
    routes
        .iter()
        .filter(|r| number.starts_with(&r.prefix))
        .max_by_key(|r| r.prefix.len())
        .map(|r| r.upstream.as_str())
}

/// The key that serialises deliveries to one handset (one MESSAGE outstanding at a time).
pub fn serial_key(address: &str, local_domains: &[String]) -> Option<String> {
    match classify(address, local_domains)? {
        Dest::Handset(k) => Some(k.to_string()),
        Dest::Mail { .. } | Dest::Esme { .. } => None,
    }
}

/// A SIP destination for a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// The Request-URI.
    pub uri: String,
    /// Where the request is sent.
    pub addr: SocketAddr,
    /// How.
    pub transport: Transport,
}

/// Where a text for a handset goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandsetRoute {
    /// The handset, when the text goes to it.
    pub sip: Option<SipTarget>,
    /// The mailbox that also (copy) or only (forward) gets it.
    pub email: Option<String>,
}

/// Why a handset cannot be routed: a permanent failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// No subscriber with this number.
    #[error("unknown subscriber {0}")]
    Unknown(String),
    /// The subscriber is disabled.
    #[error("subscriber {0} is disabled")]
    Disabled(String),
}

/// The BTS route from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bts {
    /// Its address.
    pub addr: SocketAddr,
    /// Its transport.
    pub transport: Transport,
}

/// Routes a text for handset `key`, given what the registry says: the subscriber (by number,
/// or none), the live bindings of its address of record, newest first, and the BTS the
/// handset last registered at (the OpenBTS registry's `sip_buddies.ipaddr` / `port`), if
/// known. The newest IP binding wins, then that BTS, then `[delivery] bts`.
///
/// # Errors
/// [`NoRoute`] for an unknown or disabled subscriber (a number must be provisioned; an
/// `IMSI<digits>` handset needs no subscriber: the BTS knows it by IMSI).
pub fn handset(
    key: &HandsetKey,
    subscriber: Option<&Subscriber>,
    bindings: &[Binding],
    location: Option<SocketAddr>,
    bts: Bts,
    email_mode: EmailMode,
) -> Result<HandsetRoute, NoRoute> {
    let imsi = match (subscriber, key) {
        (Some(s), _) if !s.enabled => return Err(NoRoute::Disabled(key.to_string())),
        (Some(s), _) => s.imsi.clone(),
        (None, HandsetKey::Imsi(i)) => Some(i.digits().to_string()),
        (None, HandsetKey::Number(_)) => return Err(NoRoute::Unknown(key.to_string())),
    };
    let email = subscriber.and_then(|s| s.email.clone());
    let forward = email.is_some() && email_mode == EmailMode::Forward;
    let sip = (!forward).then(|| {
        bindings
            .iter()
            .find_map(|b| contact_target(&b.contact))
            .unwrap_or_else(|| {
                let user = match &imsi {
                    Some(i) => format!("IMSI{i}"),
                    None => key.to_string(),
                };
                let addr = location.unwrap_or(bts.addr);
                SipTarget {
                    uri: format!("sip:{user}@{}", host_port(addr)),
                    addr,
                    transport: bts.transport,
                }
            })
    });
    Ok(HandsetRoute { sip, email })
}

fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// A registration contact as a target, when its host is an IP literal.
pub fn contact_target(contact: &str) -> Option<SipTarget> {
    let c = contact.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = c.strip_prefix("sip:")?;
    let (hostpart, params) = match rest.split_once(';') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    let hostport = hostpart.rsplit_once('@').map_or(hostpart, |(_, h)| h);
    let (ip, port): (IpAddr, u16) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, port) = v6.split_once(']')?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 5060,
        };
        (ip.parse().ok()?, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.parse().ok()?, p.parse().ok()?),
            None => (hostport.parse().ok()?, 5060),
        }
    };
    let tcp = params
        .split(';')
        .any(|p| p.eq_ignore_ascii_case("transport=tcp"));
    Some(SipTarget {
        uri: c.to_string(),
        addr: SocketAddr::new(ip, port),
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_picks_the_upstream_and_an_empty_one_is_the_default() {
        let r = |prefix: &str, upstream: &str| crate::config::SmppRoute {
            prefix: prefix.into(),
            upstream: upstream.into(),
        };
        let routes = vec![r("44", "uk"), r("", "world"), r("447", "uk-mobile")];
        assert_eq!(upstream("447700900123", &routes), Some("uk-mobile"));
        assert_eq!(upstream("442071234567", &routes), Some("uk"));
        assert_eq!(upstream("15551234567", &routes), Some("world"));
        assert_eq!(upstream("15551234567", &routes[..1]), None);
    }

    fn key(s: &str) -> HandsetKey {
        HandsetKey::parse(s).unwrap()
    }

    fn domains() -> Vec<String> {
        vec!["sms.example.org".into(), "sms.localhost".into()]
    }

    fn bts() -> Bts {
        Bts {
            addr: "127.0.0.1:5062".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    fn sub(email: Option<&str>, enabled: bool) -> Subscriber {
        Subscriber {
            msisdn: "15551234567".into(),
            imsi: Some("001010000000001".into()),
            email: email.map(str::to_string),
            enabled,
        }
    }

    #[test]
    fn addresses_classify_by_domain() {
        let table: &[(&str, Option<Dest>)] = &[
            (
                "15551234567@sms.example.org",
                Some(Dest::Handset(key("15551234567"))),
            ),
            (
                "+15551234567@SMS.Example.ORG.",
                Some(Dest::Handset(key("15551234567"))),
            ),
            (
                "imsi001010000000001@sms.localhost",
                Some(Dest::Handset(key("IMSI001010000000001"))),
            ),
            ("abc\u{e9}@sms.example.org", None),
            ("IMS\u{e9}1@sms.example.org", None),
            ("alice@sms.example.org", None),
            (
                "alice@Example.org",
                Some(Dest::Mail {
                    domain: "example.org".into(),
                }),
            ),
            ("no-domain", None),
            ("@sms.example.org", None),
            ("x@", None),
        ];
        for (addr, want) in table {
            assert_eq!(&classify(addr, &domains()), want, "{addr}");
        }
        assert_eq!(serial_key("alice@example.org", &domains()), None);
    }

    #[test]
    fn handset_without_registration_goes_to_the_bts_by_imsi() {
        let r = handset(
            &key("15551234567"),
            Some(&sub(None, true)),
            &[],
            None,
            bts(),
            EmailMode::Copy,
        )
        .unwrap();
        assert_eq!(
            r.sip,
            Some(SipTarget {
                uri: "sip:IMSI001010000000001@127.0.0.1:5062".into(),
                addr: "127.0.0.1:5062".parse().unwrap(),
                transport: Transport::Udp,
            })
        );
        assert_eq!(r.email, None);
    }

    #[test]
    fn registered_handset_gets_its_newest_ip_contact() {
        let b = vec![
            Binding {
                contact: "sip:phone@handset.example:5070".into(),
                expires: 9,
            },
            Binding {
                contact: "<sip:IMSI001@127.0.0.2:5070;transport=TCP>".into(),
                expires: 8,
            },
        ];
        let r = handset(
            &key("15551234567"),
            Some(&sub(None, true)),
            &b,
            None,
            bts(),
            EmailMode::Copy,
        )
        .unwrap();
        let t = r.sip.unwrap();
        assert_eq!(t.addr, "127.0.0.2:5070".parse().unwrap());
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.uri, "sip:IMSI001@127.0.0.2:5070;transport=TCP");
    }

    #[test]
    fn email_copy_and_forward() {
        let s = sub(Some("bob@example.org"), true);
        let copy = handset(
            &key("15551234567"),
            Some(&s),
            &[],
            None,
            bts(),
            EmailMode::Copy,
        )
        .unwrap();
        assert!(copy.sip.is_some());
        assert_eq!(copy.email.as_deref(), Some("bob@example.org"));
        let fwd = handset(
            &key("15551234567"),
            Some(&s),
            &[],
            None,
            bts(),
            EmailMode::Forward,
        )
        .unwrap();
        assert_eq!(fwd.sip, None);
        assert_eq!(fwd.email.as_deref(), Some("bob@example.org"));
    }

    #[test]
    fn unknown_and_disabled_subscribers_are_permanent_failures() {
        let e = handset(&key("15550000000"), None, &[], None, bts(), EmailMode::Copy).unwrap_err();
        assert!(matches!(
            crate::delivery::outcome::local(crate::delivery::outcome::Local::NoRoute(e.clone())),
            crate::delivery::outcome::Outcome::Bounce {
                status: "5.1.1",
                ..
            }
        ));
        let e = handset(
            &key("15551234567"),
            Some(&sub(None, false)),
            &[],
            None,
            bts(),
            EmailMode::Copy,
        )
        .unwrap_err();
        assert!(matches!(
            crate::delivery::outcome::local(crate::delivery::outcome::Local::NoRoute(e.clone())),
            crate::delivery::outcome::Outcome::Bounce {
                status: "5.2.1",
                ..
            }
        ));
    }

    #[test]
    fn imsi_handset_needs_no_subscriber() {
        let r = handset(
            &key("IMSI001010000000009"),
            None,
            &[],
            None,
            bts(),
            EmailMode::Copy,
        )
        .unwrap();
        assert_eq!(r.sip.unwrap().uri, "sip:IMSI001010000000009@127.0.0.1:5062");
    }

    #[test]
    fn handset_goes_to_the_bts_it_last_registered_at() {
        let at: SocketAddr = "127.0.0.3:5062".parse().unwrap();
        let r = handset(
            &key("15551234567"),
            Some(&sub(None, true)),
            &[],
            Some(at),
            bts(),
            EmailMode::Copy,
        )
        .unwrap();
        let t = r.sip.unwrap();
        assert_eq!(t.addr, at);
        assert_eq!(t.uri, "sip:IMSI001010000000001@127.0.0.3:5062");
    }

    proptest::proptest! {
        #[test]
        fn routing_never_panics_on_arbitrary_unicode(local in "\\PC{0,24}", domain in "(sms\\.example\\.org|example\\.com|\\PC{0,8})") {
            let addr = format!("{local}@{domain}");
            if let Some(Dest::Handset(k)) = classify(&addr, &domains()) {
                let _ = handset(&k, None, &[], None, bts(), EmailMode::Copy);
            }
            let _ = serial_key(&addr, &domains());
            let _ = contact_target(&local);
        }
    }

    #[test]
    fn contacts_parse_or_are_skipped() {
        let table: &[(&str, Option<(&str, bool)>)] = &[
            ("sip:1@127.0.0.1", Some(("127.0.0.1:5060", false))),
            ("sip:127.0.0.1:5999", Some(("127.0.0.1:5999", false))),
            ("sip:u@[::1]:5070;transport=tcp", Some(("[::1]:5070", true))),
            ("sip:u@[::1]", Some(("[::1]:5060", false))),
            ("sip:u@host.example", None),
            ("tel:+1555", None),
            ("sip:u@127.0.0.1:notaport", None),
        ];
        for (c, want) in table {
            let got = contact_target(c).map(|t| (t.addr, t.transport == Transport::Tcp));
            let want = want.map(|(a, tcp)| (a.parse::<SocketAddr>().unwrap(), tcp));
            assert_eq!(got, want, "{c}");
        }
    }
}
