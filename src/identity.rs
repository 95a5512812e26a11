//! Subscriber identities, parsed once at the edge: IMSI, MSISDN (an E.164 number or a short
//! code), the handset key that names a handset in the queue and the registry, and the SMS
//! originator (numeric or alphanumeric).
//!
//! Every constructor takes untrusted text (a SIP user part, a mail local part, a command-line
//! argument) and either returns a value that is known to be well formed or an
//! [`IdentityError`]. Nothing here slices a string at a byte offset that might not be a
//! character boundary, and nothing panics (property-tested with arbitrary Unicode). Code
//! downstream holds these types and never re-parses the text.
//!
//! Pure: no I/O.
//!
//! Standards: ITU-T E.212 (IMSI: at most 15 digits), ITU-T E.164 (numbers: at most 15
//! digits), TS 23.040 9.1.2.5 (an alphanumeric originator is at most 11 GSM characters).

use std::fmt;

/// Why a text is not the identity it was meant to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not an IMSI.
    #[error("{0:?} is not an IMSI (6-15 digits)")]
    Imsi(String),
    /// Not a phone number.
    #[error("{0:?} is not a phone number (1-15 digits)")]
    Msisdn(String),
    /// Not a handset name.
    #[error("{0:?} names no handset (a number, or IMSI and 6-15 digits)")]
    Handset(String),
    /// Not an SMS originator.
    #[error("{0:?} is not an SMS originator (a number, or 1-11 letters and digits)")]
    Originator(String),
}

/// Shortens untrusted text for an error message (at most 40 characters).
fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `s` without an ASCII-case-insensitive `prefix`, when it has it. Safe on any Unicode.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn all_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// An IMSI: 6 to 15 decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Imsi(String);

impl Imsi {
    /// Parses `001010000000001` or `IMSI001010000000001` (prefix in any case), trimmed.
    ///
    /// # Errors
    /// [`IdentityError::Imsi`].
    pub fn parse(s: &str) -> Result<Imsi, IdentityError> {
        let t = s.trim();
        let d = strip_prefix_ignore_case(t, "IMSI").unwrap_or(t);
        if all_digits(d, 6, 15) {
            Ok(Imsi(d.to_string()))
        } else {
            Err(IdentityError::Imsi(shown(s)))
        }
    }

    /// Parses an `IMSI<digits>` name (the prefix is required), as OpenBTS writes it.
    pub fn from_name(s: &str) -> Option<Imsi> {
        strip_prefix_ignore_case(s.trim(), "IMSI").and_then(|d| Imsi::parse(d).ok())
    }

    /// The digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `IMSI<digits>`: the SIP user and registry name OpenBTS uses.
    pub fn name(&self) -> String {
        format!("IMSI{}", self.0)
    }
}

impl fmt::Display for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscriber number: an E.164 number without `+`, or a short code; 1 to 15 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

impl Msisdn {
    /// Parses digits with an optional leading `+` (dropped), trimmed.
    ///
    /// # Errors
    /// [`IdentityError::Msisdn`].
    pub fn parse(s: &str) -> Result<Msisdn, IdentityError> {
        let t = s.trim();
        let d = t.strip_prefix('+').unwrap_or(t);
        if all_digits(d, 1, 15) {
            Ok(Msisdn(d.to_string()))
        } else {
            Err(IdentityError::Msisdn(shown(s)))
        }
    }

    /// The number an address names in one of our SMS domains (`+15551234567@sms.example.org`,
    /// the domain's case and a trailing dot ignored); `None` for any other address.
    pub fn in_address(address: &str, local_domains: &[String]) -> Option<Msisdn> {
        let (local, domain) = address.rsplit_once('@')?;
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if !local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return None;
        }
        // No trimming inside an address: ` 1555@domain` is not a number.
        if local.trim() != local {
            return None;
        }
        Msisdn::parse(local).ok()
    }

    /// The digits.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a handset: its number, or `IMSI<digits>` for a subscriber known only by IMSI.
/// Its text form (Display) is the queue's serialisation key and the registrar's address of
/// record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandsetKey {
    /// By IMSI.
    Imsi(Imsi),
    /// By number.
    Number(Msisdn),
}

impl HandsetKey {
    /// Parses the local part of an address in an SMS domain (or a SIP user):
    /// `IMSI<digits>` (prefix in any case) or a number with an optional `+`.
    ///
    /// # Errors
    /// [`IdentityError::Handset`].
    pub fn parse(local: &str) -> Result<HandsetKey, IdentityError> {
        if let Some(i) = Imsi::from_name(local) {
            return Ok(HandsetKey::Imsi(i));
        }
        Msisdn::parse(local)
            .map(HandsetKey::Number)
            .map_err(|_| IdentityError::Handset(shown(local)))
    }

    /// The IMSI, when the handset is named by it.
    pub fn imsi(&self) -> Option<&Imsi> {
        match self {
            HandsetKey::Imsi(i) => Some(i),
            HandsetKey::Number(_) => None,
        }
    }
}

impl fmt::Display for HandsetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandsetKey::Imsi(i) => write!(f, "IMSI{i}"),
            HandsetKey::Number(n) => f.write_str(n.digits()),
        }
    }
}

impl From<Msisdn> for HandsetKey {
    fn from(m: Msisdn) -> Self {
        HandsetKey::Number(m)
    }
}

/// The originator of an SMS as the handset shows it (TP-OA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Originator {
    /// A number (digits, no `+`).
    Numeric(Msisdn),
    /// Up to 11 ASCII letters, digits and spaces, starting with a letter (TS 23.040
    /// 9.1.2.5, "alphanumeric, GSM 7-bit").
    Alphanumeric(String),
}

impl Originator {
    /// Parses a number or an alphanumeric name.
    ///
    /// # Errors
    /// [`IdentityError::Originator`].
    pub fn parse(s: &str) -> Result<Originator, IdentityError> {
        if let Ok(n) = Msisdn::parse(s) {
            return Ok(Originator::Numeric(n));
        }
        let t = s.trim();
        let ok = (1..=11).contains(&t.len())
            && t.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
        if ok {
            Ok(Originator::Alphanumeric(t.to_string()))
        } else {
            Err(IdentityError::Originator(shown(s)))
        }
    }
}

impl fmt::Display for Originator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Originator::Numeric(n) => f.write_str(n.digits()),
            Originator::Alphanumeric(a) => f.write_str(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn imsis_parse_with_or_without_prefix() {
        assert_eq!(
            Imsi::parse("IMSI001010000000001").unwrap().digits(),
            "001010000000001"
        );
        assert_eq!(Imsi::parse("imsi001010").unwrap().name(), "IMSI001010");
        assert_eq!(
            Imsi::parse(" 001010000000001 ").unwrap().digits(),
            "001010000000001"
        );
        for bad in [
            "",
            "IMSI",
            "12345",
            "0010100000000011",
            "IMSI00101a",
            "IMSé001010",
            "é",
        ] {
            assert!(Imsi::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Imsi::from_name("001010000000001"), None);
    }

    #[test]
    fn numbers_drop_the_plus_and_reject_letters() {
        assert_eq!(
            Msisdn::parse("+15551234567").unwrap().digits(),
            "15551234567"
        );
        assert_eq!(Msisdn::parse("101").unwrap().digits(), "101");
        for bad in ["", "+", "12ab", "1234567890123456", "١٢٣", "abcé"] {
            assert!(Msisdn::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_in_addresses_only_in_local_domains() {
        let d = vec!["sms.example.org".to_string()];
        let n = |a: &str| Msisdn::in_address(a, &d).map(|m| m.digits().to_string());
        assert_eq!(n("+1555@SMS.example.org"), Some("1555".into()));
        assert_eq!(n("101@sms.example.org."), Some("101".into()));
        for bad in [
            "bob@sms.example.org",
            "1555@example.org",
            "1555",
            " 1555@sms.example.org",
            "abcé@sms.example.org",
            "@sms.example.org",
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn handset_keys_print_as_the_queue_knows_them() {
        assert_eq!(
            HandsetKey::parse("+15551234567").unwrap().to_string(),
            "15551234567"
        );
        assert_eq!(
            HandsetKey::parse("imsi001010000000001")
                .unwrap()
                .to_string(),
            "IMSI001010000000001"
        );
        // The text that stopped the queue manager: a multi-byte character at byte 4.
        assert!(HandsetKey::parse("abcé").is_err());
        assert!(HandsetKey::parse("IMSé").is_err());
    }

    #[test]
    fn originators_are_numbers_or_short_names() {
        assert_eq!(
            Originator::parse("15551234567").unwrap(),
            Originator::Numeric(Msisdn::parse("15551234567").unwrap())
        );
        assert_eq!(
            Originator::parse("Email").unwrap(),
            Originator::Alphanumeric("Email".into())
        );
        for bad in ["", "TwelveLetter", "1abc", "é-mail", "a\r\nb"] {
            assert!(Originator::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn constructors_never_panic_on_arbitrary_unicode(s in "\\PC{0,40}", prefix in "(IMSI|imsi|IMS|\\+|)") {
            let t = format!("{prefix}{s}");
            let _ = Imsi::parse(&t);
            let _ = Imsi::from_name(&t);
            let _ = Msisdn::parse(&t);
            let _ = Originator::parse(&t);
            let _ = Msisdn::in_address(&format!("{t}@x"), &["x".to_string()]);
            if let Ok(k) = HandsetKey::parse(&t) {
                // A key round-trips through its text form.
                prop_assert_eq!(HandsetKey::parse(&k.to_string()).unwrap(), k);
            }
        }
    }
}
