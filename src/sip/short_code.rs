//! Short codes (smqueue's 101, 411, 2337): which code a handset texted, what number it
//! claims, what the reply says. Pure; [`super::service`] does the registry and spool work.
//!
//! **Trust.** The text and the sender come from a handset: the claimed number is parsed into
//! an [`Msisdn`] with the code's digit bounds, and replies are built from the operator's
//! templates with the values substituted once (a value holding `{imsi}` is not expanded
//! again).

use crate::config::{ShortCode, ShortService};
use crate::identity::Msisdn;

/// The enabled short code `dest` names, if any.
pub fn find<'a>(codes: &'a [ShortCode], dest: &str) -> Option<&'a ShortCode> {
    let d = Msisdn::parse(dest).ok()?;
    codes.iter().find(|c| c.enabled && c.code == d.digits())
}

/// The number a registration text asks for: digits with an optional `+`; spaces, dashes,
/// dots and parentheses ignored; `min..=max` digits.
pub fn claimed_number(text: &str, min: usize, max: usize) -> Option<Msisdn> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let m = Msisdn::parse(&cleaned).ok()?;
    (min..=max).contains(&m.digits().len()).then_some(m)
}

/// What a registration comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The number is now the sender's.
    Welcome(Msisdn),
    /// The sender already has this number.
    Already(String),
    /// Another subscriber has the number.
    Taken(Msisdn),
    /// The text is not an acceptable number, or the sender has no IMSI.
    Error,
}

/// Decides a registration: `claimed` is the parsed text, `current` the sender's number if it
/// has one, `owner_is_other` whether the claimed number belongs to another subscriber.
pub fn decide(claimed: Option<Msisdn>, current: Option<String>, owner_is_other: bool) -> Claim {
    match (claimed, current) {
        (_, Some(n)) => Claim::Already(n),
        (None, None) => Claim::Error,
        (Some(m), None) if owner_is_other => Claim::Taken(m),
        (Some(m), None) => Claim::Welcome(m),
    }
}

/// The template for a reply (the operator's, or the built-in one).
pub fn template<'a>(code: &'a ShortCode, claim: Option<&Claim>) -> &'a str {
    let (own, builtin) = match (code.service, claim) {
        (ShortService::Register, Some(Claim::Welcome(_))) => (
            code.reply.as_str(),
            "Hello {number}! Your phone is registered. Text anything to 411 for system status.",
        ),
        (ShortService::Register, Some(Claim::Already(_))) => (
            code.already.as_str(),
            "Your phone is already registered as {number}.",
        ),
        (ShortService::Register, Some(Claim::Taken(_))) => (
            code.taken.as_str(),
            "The number {number} is already taken. Text another number to register.",
        ),
        (ShortService::Register, _) => (
            code.error.as_str(),
            "To register, text the number you want (7 to 10 digits) to this code.",
        ),
        (ShortService::Info, _) => (
            code.reply.as_str(),
            "{queued} queued, IMSI {imsi}, number {number}, at {time}, '{text}'",
        ),
        (ShortService::Queued, _) => (code.reply.as_str(), "{queued} queued."),
    };
    if own.is_empty() { builtin } else { own }
}

/// Fills `{name}` placeholders from `vars` in one pass; unknown names stay as written.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match vars.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_short_codes;
    use proptest::prelude::*;

    #[test]
    fn codes_are_found_only_when_enabled() {
        let mut codes = default_short_codes();
        assert_eq!(
            find(&codes, "101").map(|c| c.service),
            Some(ShortService::Register)
        );
        assert_eq!(
            find(&codes, "+411").map(|c| c.service),
            Some(ShortService::Info)
        );
        assert!(find(&codes, "15551234567").is_none());
        codes[1].enabled = false;
        assert!(find(&codes, "411").is_none());
    }

    #[test]
    fn claimed_numbers_are_digits_within_bounds() {
        assert_eq!(
            claimed_number(" (555) 123-4567 ", 7, 10).unwrap().digits(),
            "5551234567"
        );
        assert_eq!(
            claimed_number("+5551234", 7, 10).unwrap().digits(),
            "5551234"
        );
        assert_eq!(claimed_number("123", 7, 10), None);
        assert_eq!(claimed_number("55512345678", 7, 10), None);
        assert_eq!(claimed_number("call me", 7, 10), None);
        assert_eq!(claimed_number("５５５１２３４", 7, 10), None);
    }

    #[test]
    fn registrations_decide_in_order() {
        let m = Msisdn::parse("5551234").unwrap();
        assert_eq!(
            decide(Some(m.clone()), Some("5550000".into()), true),
            Claim::Already("5550000".into())
        );
        assert_eq!(decide(Some(m.clone()), None, true), Claim::Taken(m.clone()));
        assert_eq!(decide(Some(m.clone()), None, false), Claim::Welcome(m));
        assert_eq!(decide(None, None, false), Claim::Error);
    }

    #[test]
    fn replies_substitute_once() {
        let t = render(
            "{queued} queued for {imsi}; {unknown} {",
            &[("queued", "3"), ("imsi", "{queued}")],
        );
        assert_eq!(t, "3 queued for {queued}; {unknown} {");
    }

    proptest! {
        #[test]
        fn rendering_and_claims_never_panic(t in "\\PC{0,60}", v in "\\PC{0,10}") {
            let _ = render(&t, &[("number", &v), ("text", &t)]);
            let _ = claimed_number(&t, 1, 15);
            let _ = find(&default_short_codes(), &t);
        }
    }
}
