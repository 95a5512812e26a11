//! `[spool]` and `[queue]`: each key's type, default and bounds.

use super::*;

/// `[spool]`: the write-ahead journal and queue files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Acknowledge from the write-ahead journal (group commit). When false every commit
    /// writes its own queue file (tmp, fsync, rename, directory fsync) before it returns.
    pub journal: bool,
    /// Size at which the journal moves to a new segment file.
    pub journal_segment_size: Size,
    /// Most messages covered by one journal flush.
    pub max_batch: usize,
    /// Largest message the spool takes.
    pub max_message_size: Size,
    /// Free space kept on the spool's file system: below it new mail is refused temporarily
    /// (SMTP 452 4.3.1, SIP 503) while what is queued goes on being delivered; 0 for none.
    pub min_free: Size,
}

/// `[queue]`: message lifetimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// How long an SMS for a handset is kept trying (shortened by its validity period).
    pub sms_lifetime: Dur,
    /// How long mail for an e-mail recipient is kept trying.
    pub mail_lifetime: Dur,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            sms_lifetime: Dur(Duration::from_secs(3 * 86_400)),
            mail_lifetime: Dur(Duration::from_secs(5 * 86_400)),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            journal: true,
            journal_segment_size: Size(16 << 20),
            max_batch: 512,
            max_message_size: Size(10 << 20),
            min_free: Size(64 << 20),
        }
    }
}

impl QueueConfig {
    /// Checks this section's bounds (`all`: the whole file, for bounds across sections).
    /// Returns the key and the reason of the first violation.
    pub(super) fn check(&self, _all: &Config) -> Result<(), (&'static str, String)> {
        let q = self;
        check_bounds(&[
            Bound::secs("queue.sms_lifetime", q.sms_lifetime.0, 60, 30 * 86_400),
            Bound::secs("queue.mail_lifetime", q.mail_lifetime.0, 60, 30 * 86_400),
        ])?;
        Ok(())
    }
}
