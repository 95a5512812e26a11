//! Recipient policy, pure: which recipients the SMTP listener accepts.
//!
//! A recipient in one of our SMS domains (`domains`, any case, a trailing dot allowed) must
//! have a phone number as its local part: digits with an optional leading `+`, or an
//! international prefix `00`, or a national number with the national prefix, normalised to
//! E.164 digits by the configured country code; else 550 5.1.1. Any other domain is relayed
//! only for trusted networks or authenticated clients; else 554 5.7.1.
//!
//! The classic relay tricks therefore fail: the percent hack (`1555%evil.example@sms.test`),
//! quoted local parts holding `@`, bang paths (`evil.example!bob@sms.test`) all have local
//! parts that are not numbers, and a source route is reduced to its final address by the
//! parser, whose domain is then judged like any other.
//!
//! Standards: RFC 5321 4.1.1.3 (RCPT), 3.6.1 (source routes), 7.1 (relay); RFC 3191 (GSTN
//! numbers in the local part); ITU-T E.164 (at most 15 digits).

/// How local parts are read as phone numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRules {
    /// Country code added to national numbers (`"1"`, `"44"`); empty: national numbers are
    /// taken as they are.
    pub country_code: String,
    /// The national (trunk) prefix that starts national numbers (`"0"`); empty for none.
    pub national_prefix: String,
}

/// What to do with a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A text for a handset: the normalised address (`<digits>@<our domain>`, or
    /// `IMSI<digits>@<our domain>`) and the handset key.
    Local {
        /// The recipient as stored.
        address: String,
        /// The E.164 digits, or `IMSI<digits>` for a handset known only by IMSI.
        msisdn: String,
    },
    /// Mail for another domain, allowed to relay.
    Relay {
        /// The recipient as stored (domain lower-cased, trailing dot removed).
        address: String,
    },
    /// 550 5.1.1: our domain, but not a phone number.
    NotANumber,
    /// 554 5.7.1: another domain, and the client may not relay.
    RelayDenied,
    /// 501 5.1.3: not an address.
    BadAddress,
}

/// Normalises a local part to E.164 digits, if it is a phone number.
pub fn normalize_number(local: &str, rules: &NumberRules) -> Option<String> {
    let (intl, digits) = if let Some(d) = local.strip_prefix('+') {
        (true, d)
    } else if let Some(d) = local.strip_prefix("00") {
        (true, d)
    } else {
        (false, local)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let e164 = if intl {
        digits.to_string()
    } else if !rules.national_prefix.is_empty()
        && !rules.country_code.is_empty()
        && let Some(national) = digits.strip_prefix(rules.national_prefix.as_str())
    {
        format!("{}{national}", rules.country_code)
    } else {
        digits.to_string()
    };
    (e164.len() <= 15).then_some(e164)
}

/// Judges one recipient address (as the RCPT parser returned it).
pub fn judge(address: &str, domains: &[String], may_relay: bool, rules: &NumberRules) -> Verdict {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Verdict::BadAddress;
    };
    if local.is_empty() || domain.is_empty() || address.len() > 254 {
        return Verdict::BadAddress;
    }
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if domain.is_empty()
        || domain.contains(['@', '!', '%', ' ', '[', ']']) && !domain.starts_with('[')
    {
        return Verdict::BadAddress;
    }
    if let Some(ours) = domains.iter().find(|d| d.eq_ignore_ascii_case(&domain)) {
        // A handset known only by its IMSI (a reply to a text from one): its key as the
        // queue writes it, `IMSI<digits>`.
        if let Some(imsi) = crate::identity::Imsi::from_name(local) {
            return Verdict::Local {
                address: format!("{}@{}", imsi.name(), ours.to_ascii_lowercase()),
                msisdn: imsi.name(),
            };
        }
        return match normalize_number(local, rules) {
            Some(msisdn) => Verdict::Local {
                address: format!("{msisdn}@{}", ours.to_ascii_lowercase()),
                msisdn,
            },
            None => Verdict::NotANumber,
        };
    }
    if may_relay {
        Verdict::Relay {
            address: format!("{local}@{domain}"),
        }
    } else {
        Verdict::RelayDenied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> NumberRules {
        NumberRules {
            country_code: "1".into(),
            national_prefix: "0".into(),
        }
    }

    fn ours() -> Vec<String> {
        vec!["sms.test".into()]
    }

    fn local(a: &str) -> String {
        match judge(a, &ours(), false, &rules()) {
            Verdict::Local { address, .. } => address,
            other => panic!("{a}: {other:?}"),
        }
    }

    #[test]
    fn numbers_in_our_domain_are_normalised() {
        assert_eq!(local("15551234567@sms.test"), "15551234567@sms.test");
        assert_eq!(local("+15551234567@SMS.TEST"), "15551234567@sms.test");
        assert_eq!(local("0015551234567@sms.test."), "15551234567@sms.test");
        assert_eq!(local("05551234567@sms.test"), "15551234567@sms.test");
        assert_eq!(local("101@sms.test"), "101@sms.test");
    }

    #[test]
    fn relay_tricks_from_an_untrusted_client_are_refused() {
        let r = rules();
        let d = ours();
        for trick in [
            "1555%evil.example@sms.test",
            "\"evil@other.example\"@sms.test",
            "other.example!bob@sms.test",
            "bob@sms.test",
            "1234567890123456@sms.test",
        ] {
            assert_eq!(judge(trick, &d, false, &r), Verdict::NotANumber, "{trick}");
        }
        for trick in [
            "bob@other.example",
            "bob@other.example.",
            "BOB@OTHER.EXAMPLE",
            "15551234567@sms.test.evil.example",
        ] {
            assert_eq!(judge(trick, &d, false, &r), Verdict::RelayDenied, "{trick}");
        }
        assert_eq!(judge("nobody", &d, false, &r), Verdict::BadAddress);
        assert_eq!(judge("a@b@c%d", &d, false, &r), Verdict::BadAddress);
    }

    #[test]
    fn trusted_clients_may_relay() {
        assert_eq!(
            judge("Bob@Other.Example.", &ours(), true, &rules()),
            Verdict::Relay {
                address: "Bob@other.example".into()
            }
        );
    }
}
