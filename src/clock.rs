//! The clock and the calendar, in one room: seconds since the Unix epoch, the civil date of a
//! day number (proleptic Gregorian, UTC), and the two ways dates are printed (RFC 5322 in
//! mail, `YYYY-MM-DD HH:MM:SS` in the queue listing). The SMS time stamp
//! ([`crate::sms::Timestamp`]) uses the same calendar.
//!
//! Pure except [`now_unix`], which reads the system clock (a clock before 1970 reads as 0).
//!
//! Standards: RFC 5322 3.3 (date-time); the day algorithms are Howard Hinnant's civil-from-days
//! and days-from-civil.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The day number (days since 1970-01-01) of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day number.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A UTC instant split into its calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month 1-12.
    pub month: u8,
    /// Day 1-31.
    pub day: u8,
    /// Hour 0-23.
    pub hour: u8,
    /// Minute 0-59.
    pub minute: u8,
    /// Second 0-59.
    pub second: u8,
    /// Day of the week, 0 = Sunday.
    pub weekday: u8,
}

impl Civil {
    /// The calendar fields of `secs` since the epoch (UTC).
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let s = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        Civil {
            year: y,
            month: m as u8,
            day: d as u8,
            hour: (s / 3600) as u8,
            minute: (s / 60 % 60) as u8,
            second: (s % 60) as u8,
            // 1970-01-01 was a Thursday (4).
            weekday: (days + 4).rem_euclid(7) as u8,
        }
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn secs(unix: u64) -> i64 {
    i64::try_from(unix).unwrap_or(i64::MAX / 2)
}

/// An RFC 5322 date-time in UTC: `Wed, 25 Nov 2026 17:24:14 +0000`.
pub fn rfc5322_date(unix: u64) -> String {
    let t = Civil::from_unix(secs(unix));
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[usize::from(t.weekday % 7)],
        t.day,
        MONTHS[usize::from(t.month.clamp(1, 12)) - 1],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (the queue listing's form).
pub fn format_time(unix: u64) -> String {
    let t = Civil::from_unix(secs(unix));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates_print_as_mail_and_the_queue_listing_want_them() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_764_091_454),
            "Tue, 25 Nov 2025 17:24:14 +0000"
        );
        assert_eq!(format_time(1_764_091_454), "2025-11-25 17:24:14");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
    }

    proptest! {
        #[test]
        fn civil_dates_round_trip(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
    }
}
