//! The subscriber registry: subscribers (MSISDN, IMSI, optional e-mail address), registrar
//! bindings, and the parts of concatenated SMS waiting for the rest. SQLite (bundled), WAL,
//! `synchronous=FULL` (a part's SIP 202 waits for its commit), on one dedicated thread.
//!
//! Optionally reads an OpenBTS subscriber registry (tables `sip_buddies` and `dialdata_table`)
//! read-only, so smsmta can replace smqueue beside an existing OpenBTS: lookups try our table
//! first, then OpenBTS's.
//!
//! [`Registry::subscriber`] keeps enabled subscribers it found for [`CACHE_TTL`] (at most
//! [`CACHE_MAX`] of them), so that an SMTP session's RCPT for a known number does not wait for
//! the registry thread; an unknown or disabled number is always looked up again, so a
//! subscriber added (by any process) is known at once, and one removed or disabled is refused
//! within `CACHE_TTL`.
//!
//! [`Registry::whereabouts`] keeps, for delivery, what a handset's lookup found (subscriber,
//! bindings, OpenBTS location) for `CACHE_TTL` too, unknown numbers included (a text to a
//! foreign number is looked up once, not for every text); any write through this registry
//! (a REGISTER, a short code) and every "handset attached" event drops all of it at once, so
//! a new binding is used by the next delivery; a change made by another process is seen
//! within `CACHE_TTL`.
//!
//! This file holds the database ([`Db`]); `handle.rs` the thread's handle and the cache;
//! `openbts.rs` what is read from OpenBTS's registry and the watcher.
//!
//! **Trust.** Values come from SIP requests and the command line; every query is parameterised.
//!
//! Standards: RFC 3261 10.3 (registrar behaviour: bindings, expiry, `*`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::identity::{HandsetKey, Imsi, Msisdn};

mod handle;
mod openbts;

pub use handle::*;
pub use openbts::*;

const SCHEMA: &str = include_str!("schema.sql");

/// A registry error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// SQLite failed.
    #[error("registry {path}: {source}")]
    Sqlite {
        /// The database.
        path: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// The registry thread has stopped.
    #[error("registry thread is not running")]
    Closed,
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// A subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Phone number, digits only.
    pub msisdn: String,
    /// IMSI (15 digits), if known.
    pub imsi: Option<String>,
    /// E-mail address that receives this subscriber's texts, if any.
    pub email: Option<String>,
    /// Whether the subscriber may send and receive.
    pub enabled: bool,
}

/// "Subscriber X is reachable": published after each REGISTER that binds a contact, and when
/// the OpenBTS registry shows that a handset attached ([`Watcher`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachable {
    /// The address-of-record user (`IMSI001010000000001` or digits).
    pub aor: String,
    /// The subscriber's MSISDN, when the registry knows it.
    pub msisdn: Option<String>,
    /// The contacts now bound.
    pub contacts: Vec<String>,
}

/// A registrar binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The Contact URI.
    pub contact: String,
    /// Expiry, seconds since the epoch.
    pub expires: u64,
}

/// What the registry knows of where a handset is: what delivery needs to route a text to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// The subscriber behind the handset's key (ours first, then OpenBTS's), if any.
    pub subscriber: Option<Subscriber>,
    /// The live bindings of its addresses of record (`IMSI<imsi>`, the number, the key),
    /// newest expiry first.
    pub bindings: Vec<Binding>,
    /// The BTS it last registered at (OpenBTS registry), if known.
    pub location: Option<SocketAddr>,
}

impl Whereabouts {
    /// The same, without the bindings that have expired by `now` (a cached answer ages).
    #[must_use]
    pub fn at(mut self, now: u64) -> Whereabouts {
        self.bindings.retain(|b| b.expires > now);
        self
    }
}

/// Checks an MSISDN (1-15 digits, optional '+', which is dropped): [`Msisdn::parse`].
///
/// # Errors
/// [`RegistryError::Invalid`].
pub fn normalize_msisdn(s: &str) -> Result<String, RegistryError> {
    Msisdn::parse(s)
        .map(|m| m.digits().to_string())
        .map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// Checks an IMSI (6-15 digits; an `IMSI` prefix is dropped): [`Imsi::parse`].
///
/// # Errors
/// [`RegistryError::Invalid`].
pub fn normalize_imsi(s: &str) -> Result<String, RegistryError> {
    Imsi::parse(s)
        .map(|i| i.digits().to_string())
        .map_err(|e| RegistryError::Invalid(e.to_string()))
}

/// Whether an SQLite error means "this OpenBTS database has no such table or column" (their
/// schemas differ): not found, where anything else (busy, locked, I/O) is an error.
fn is_schema_miss(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(_, Some(m)) if m.starts_with("no such "))
}

/// The database, used on one thread.
pub struct Db {
    conn: Connection,
    openbts: Option<Connection>,
    path: String,
    /// Counts this connection's writes to subscribers and bindings: a cached answer read
    /// before a change is not kept ([`Registry::whereabouts`]).
    changes: Arc<AtomicU64>,
}

fn sql_err(path: &str) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
    move |source| RegistryError::Sqlite {
        path: path.to_string(),
        source,
    }
}

impl Db {
    /// Opens (creating it and its schema) the registry at `path`, and the OpenBTS database at
    /// `openbts` read-only when given.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn open(path: &Path, openbts: Option<&Path>) -> Result<Db, RegistryError> {
        Db::open_with(path, openbts, OPENBTS_BUSY_TIMEOUT)
    }

    /// As [`Db::open`], waiting at most `busy` for a lock on the OpenBTS database (sipauthserve
    /// writes it while handsets register); past that a lookup is a temporary error.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn open_with(
        path: &Path,
        openbts: Option<&Path>,
        busy: Duration,
    ) -> Result<Db, RegistryError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| RegistryError::Invalid(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(sql_err(&p))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql_err(&p))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql_err(&p))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(RegistryError::Invalid(format!(
                "{p}: cannot use WAL (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(sql_err(&p))?;
        conn.execute_batch(SCHEMA).map_err(sql_err(&p))?;
        let openbts = match openbts {
            Some(o) => Some(open_openbts(o, busy)?),
            None => None,
        };
        Ok(Db {
            conn,
            openbts,
            path: p,
            changes: Arc::default(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
        sql_err(&self.path)
    }

    /// Notes a write to subscribers or bindings (before it is made, so that a lookup that
    /// races it is never cached).
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The count of this connection's writes to subscribers and bindings.
    pub(crate) fn changes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.changes)
    }

    /// Where the handset `key` is: its subscriber, the live bindings of its addresses of
    /// record (`IMSI<imsi>` and the number), newest first, and the BTS it last registered at
    /// (OpenBTS registry, `bts_port` when it names none).
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn whereabouts(
        &self,
        key: &HandsetKey,
        bts_port: u16,
        now: u64,
    ) -> Result<Whereabouts, RegistryError> {
        let subscriber = match key {
            HandsetKey::Imsi(imsi) => self.by_imsi(imsi.digits())?,
            HandsetKey::Number(n) => self.by_msisdn(n.digits())?,
        };
        let imsi = match (key, &subscriber) {
            (HandsetKey::Imsi(i), _) => Some(i.clone()),
            (_, Some(s)) => s.imsi.as_deref().and_then(|i| Imsi::parse(i).ok()),
            _ => None,
        };
        let location = match &imsi {
            Some(i) => self.openbts_location(i, bts_port)?,
            None => None,
        };
        let mut aors = vec![key.to_string()];
        if let Some(s) = &subscriber {
            aors.push(s.msisdn.clone());
            if let Some(i) = &s.imsi {
                aors.push(format!("IMSI{i}"));
            }
        }
        aors.sort_unstable();
        aors.dedup();
        let bindings = self.bindings_of(&aors, now)?;
        Ok(Whereabouts {
            subscriber,
            bindings,
            location,
        })
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscriber> {
        Ok(Subscriber {
            msisdn: r.get(0)?,
            imsi: r.get(1)?,
            email: r.get(2)?,
            enabled: r.get::<_, i64>(3)? != 0,
        })
    }

    /// Our subscriber whose `column` (msisdn or imsi) is `value`.
    fn ours(&self, column: &'static str, value: &str) -> Result<Option<Subscriber>, RegistryError> {
        let sql =
            format!("SELECT msisdn, imsi, email, enabled FROM subscribers WHERE {column} = ?1");
        // Statements are kept prepared (rusqlite's cache): every text looks subscribers up.
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut st| st.query_row([value], Self::row))
            .optional()
            .map_err(self.err())
    }

    /// One text value from the OpenBTS database. OpenBTS databases differ (some lack
    /// `dialdata_table`), so a missing table or column means "not found"; a busy or locked
    /// database, or any other failure, is an error (temporary: the caller retries).
    fn openbts_text(&self, sql: &str, key: &str) -> Result<Option<String>, RegistryError> {
        let Some(c) = self.openbts.as_ref() else {
            return Ok(None);
        };
        let row = c
            .prepare_cached(sql)
            .and_then(|mut st| st.query_row([key], |r| Ok(text_column(r.get_ref(0)?))));
        match row {
            Ok(v) => Ok(v.filter(|v| !v.trim().is_empty())),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) if is_schema_miss(&e) => Ok(None),
            Err(source) => Err(RegistryError::Sqlite {
                path: "OpenBTS registry".into(),
                source,
            }),
        }
    }

    /// The BTS the handset with this IMSI last registered at, from the OpenBTS registry
    /// (`sip_buddies.ipaddr`, `port`); `None` without an OpenBTS registry or an address.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`] when the OpenBTS database cannot be read (busy, locked).
    pub fn openbts_location(
        &self,
        imsi: &Imsi,
        default_port: u16,
    ) -> Result<Option<SocketAddr>, RegistryError> {
        let Some(c) = self.openbts.as_ref() else {
            return Ok(None);
        };
        let row = c
            .prepare_cached("SELECT ipaddr, port FROM sip_buddies WHERE name = ?1")
            .and_then(|mut st| {
                st.query_row([imsi.name()], |r| {
                    Ok((text_column(r.get_ref(0)?), int_column(r.get_ref(1)?)))
                })
            });
        match row {
            Ok((ip, port)) => Ok(bts_location(ip.as_deref(), port, default_port)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) if is_schema_miss(&e) => Ok(None),
            Err(source) => Err(RegistryError::Sqlite {
                path: "OpenBTS registry".into(),
                source,
            }),
        }
    }

    /// The subscriber with this IMSI (ours first, then OpenBTS's).
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn by_imsi(&self, imsi: &str) -> Result<Option<Subscriber>, RegistryError> {
        if let Some(s) = self.ours("imsi", imsi)? {
            return Ok(Some(s));
        }
        let name = format!("IMSI{imsi}");
        let msisdn = match self
            .openbts_text("SELECT callerid FROM sip_buddies WHERE name = ?1", &name)?
        {
            Some(m) => Some(m),
            None => self.openbts_text("SELECT exten FROM dialdata_table WHERE dial = ?1", &name)?,
        };
        // A caller ID that is not a number is no subscriber number.
        Ok(msisdn
            .and_then(|m| Msisdn::parse(&m).ok())
            .map(|m| Subscriber {
                msisdn: m.digits().to_string(),
                imsi: Some(imsi.to_string()),
                email: None,
                enabled: true,
            }))
    }

    /// The subscriber with this MSISDN (ours first, then OpenBTS's).
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn by_msisdn(&self, msisdn: &str) -> Result<Option<Subscriber>, RegistryError> {
        if let Some(s) = self.ours("msisdn", msisdn)? {
            return Ok(Some(s));
        }
        let dial =
            match self.openbts_text("SELECT dial FROM dialdata_table WHERE exten = ?1", msisdn)? {
                Some(d) => Some(d),
                None => {
                    self.openbts_text("SELECT name FROM sip_buddies WHERE callerid = ?1", msisdn)?
                }
            };
        // OpenBTS's dial column holds IMSI<digits>; anything else routes nowhere.
        Ok(dial.and_then(|d| Imsi::from_name(&d)).map(|i| Subscriber {
            msisdn: msisdn.to_string(),
            imsi: Some(i.digits().to_string()),
            email: None,
            enabled: true,
        }))
    }

    /// Adds or replaces a subscriber.
    ///
    /// # Errors
    /// [`RegistryError`] (e.g. an IMSI that belongs to another MSISDN).
    pub fn upsert(&self, s: &Subscriber) -> Result<(), RegistryError> {
        self.changed();
        self.conn
            .execute(
                "INSERT INTO subscribers (msisdn, imsi, email, enabled) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(msisdn) DO UPDATE SET imsi = ?2, email = ?3, enabled = ?4",
                params![s.msisdn, s.imsi, s.email, i64::from(s.enabled)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes a subscriber; false when there was none.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn remove(&self, msisdn: &str) -> Result<bool, RegistryError> {
        self.changed();
        Ok(self
            .conn
            .execute("DELETE FROM subscribers WHERE msisdn = ?1", [msisdn])
            .map_err(self.err())?
            > 0)
    }

    /// Every subscriber in our table, by MSISDN.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn subscribers(&self) -> Result<Vec<Subscriber>, RegistryError> {
        let mut st = self
            .conn
            .prepare("SELECT msisdn, imsi, email, enabled FROM subscribers ORDER BY msisdn")
            .map_err(self.err())?;
        let rows = st.query_map([], Self::row).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Applies a REGISTER: each (contact, expires-in-seconds) is bound, refreshed, or removed
    /// (0); `remove_all` (Contact `*`) drops every binding first. Returns the current bindings.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn register(
        &mut self,
        aor: &str,
        contacts: &[(String, u64)],
        remove_all: bool,
        source: &str,
        now: u64,
    ) -> Result<Vec<Binding>, RegistryError> {
        self.changed();
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sql_err(&path))?;
        if remove_all {
            tx.execute("DELETE FROM registrations WHERE aor = ?1", [aor])
                .map_err(sql_err(&path))?;
        }
        for (contact, expires) in contacts {
            if *expires == 0 {
                tx.execute(
                    "DELETE FROM registrations WHERE aor = ?1 AND contact = ?2",
                    params![aor, contact],
                )
                .map_err(sql_err(&path))?;
            } else {
                tx.execute(
                    "INSERT INTO registrations (aor, contact, expires, source) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(aor, contact) DO UPDATE SET expires = ?3, source = ?4",
                    params![aor, contact, (now + expires) as i64, source],
                )
                .map_err(sql_err(&path))?;
            }
        }
        tx.execute(
            "DELETE FROM registrations WHERE expires <= ?1",
            [now as i64],
        )
        .map_err(sql_err(&path))?;
        tx.commit().map_err(sql_err(&path))?;
        self.bindings(aor, now)
    }

    /// The live bindings of `aor`, newest expiry first.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn bindings(&self, aor: &str, now: u64) -> Result<Vec<Binding>, RegistryError> {
        self.bindings_of(&[aor.to_string()], now)
    }

    /// The live bindings of any of `aors` (a handset's IMSI, number and key), newest expiry
    /// first: one query for up to three.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn bindings_of(&self, aors: &[String], now: u64) -> Result<Vec<Binding>, RegistryError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT contact, expires FROM registrations WHERE aor IN (?1, ?2, ?3) AND expires > ?4",
            )
            .map_err(self.err())?;
        let mut all = Vec::new();
        for chunk in aors.chunks(3) {
            // A chunk of fewer than three repeats its first name in the free places.
            let pick = |i: usize| chunk.get(i).or(chunk.first()).map_or("", String::as_str);
            let rows = st
                .query_map(params![pick(0), pick(1), pick(2), now as i64], |r| {
                    Ok(Binding {
                        contact: r.get(0)?,
                        expires: r.get::<_, i64>(1)? as u64,
                    })
                })
                .map_err(self.err())?;
            for row in rows {
                all.push(row.map_err(self.err())?);
            }
        }
        all.sort_by_key(|b| std::cmp::Reverse(b.expires));
        Ok(all)
    }

    /// Records MESSAGEs answered 2xx (Call-ID, CSeq, From tag, end of the duplicate window)
    /// and forgets those whose window has ended, in one transaction.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn save_seen(
        &mut self,
        seen: &[(String, u32, String, u64)],
        now: u64,
    ) -> Result<(), RegistryError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sql_err(&path))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO seen_messages (call_id, cseq, from_tag, expires) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql_err(&path))?;
            for (c, n, t, e) in seen {
                st.execute(params![c, n, t, *e as i64])
                    .map_err(sql_err(&path))?;
            }
        }
        tx.execute(
            "DELETE FROM seen_messages WHERE expires <= ?1",
            [now as i64],
        )
        .map_err(sql_err(&path))?;
        tx.commit().map_err(sql_err(&path))
    }

    /// The MESSAGEs whose duplicate window is still open at `now`.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn seen(&self, now: u64) -> Result<Vec<(String, u32, String, u64)>, RegistryError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT call_id, cseq, from_tag, expires FROM seen_messages WHERE expires > ?1",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([now as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Stores one part of a concatenated SMS (durably); returns every part of that message
    /// stored so far, by sequence number. A part already stored is left as it was.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn save_part(
        &mut self,
        key: &str,
        seq: u8,
        total: u8,
        part: &str,
        now: u64,
    ) -> Result<Vec<(u8, String)>, RegistryError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO sms_parts (key, seq, total, first_seen, part) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, seq, total, now as i64, part],
            )
            .map_err(self.err())?;
        self.parts(key)
    }

    /// The parts stored for `key`.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn parts(&self, key: &str) -> Result<Vec<(u8, String)>, RegistryError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, part FROM sms_parts WHERE key = ?1 ORDER BY seq")
            .map_err(self.err())?;
        let rows = st
            .query_map([key], |r| Ok((r.get::<_, u8>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Forgets the parts of `key` (after the whole message was committed to the spool).
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn delete_parts(&self, key: &str) -> Result<(), RegistryError> {
        self.conn
            .execute("DELETE FROM sms_parts WHERE key = ?1", [key])
            .map_err(self.err())?;
        Ok(())
    }

    /// Keys whose first part arrived at or before `cutoff`.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`].
    pub fn stale_part_keys(&self, cutoff: u64) -> Result<Vec<String>, RegistryError> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT key FROM sms_parts WHERE first_seen <= ?1")
            .map_err(self.err())?;
        let rows = st
            .query_map([cutoff as i64], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(&d.path().join("r.sqlite"), None).unwrap();
        (d, db)
    }

    #[test]
    fn subscribers_are_found_by_imsi_and_msisdn() {
        let (_d, db) = db();
        let s = Subscriber {
            msisdn: "15551234567".into(),
            imsi: Some("001010000000001".into()),
            email: Some("alice@example.org".into()),
            enabled: true,
        };
        db.upsert(&s).unwrap();
        assert_eq!(db.by_imsi("001010000000001").unwrap(), Some(s.clone()));
        assert_eq!(db.by_msisdn("15551234567").unwrap(), Some(s.clone()));
        assert_eq!(db.subscribers().unwrap(), vec![s]);
        assert!(db.remove("15551234567").unwrap());
        assert!(!db.remove("15551234567").unwrap());
        assert_eq!(db.by_imsi("001010000000001").unwrap(), None);
    }

    #[test]
    fn registrar_binds_refreshes_expires_and_removes() {
        let (_d, mut db) = db();
        let b = db
            .register(
                "IMSI001010000000001",
                &[("sip:a@1.2.3.4:5062".into(), 60)],
                false,
                "x",
                1000,
            )
            .unwrap();
        assert_eq!(
            b,
            vec![Binding {
                contact: "sip:a@1.2.3.4:5062".into(),
                expires: 1060
            }]
        );
        db.register(
            "IMSI001010000000001",
            &[("sip:b@h".into(), 120)],
            false,
            "x",
            1000,
        )
        .unwrap();
        assert_eq!(db.bindings("IMSI001010000000001", 1000).unwrap().len(), 2);
        assert_eq!(db.bindings("IMSI001010000000001", 1061).unwrap().len(), 1);
        db.register(
            "IMSI001010000000001",
            &[("sip:b@h".into(), 0)],
            false,
            "x",
            1000,
        )
        .unwrap();
        assert_eq!(db.bindings("IMSI001010000000001", 1000).unwrap().len(), 1);
        let b = db
            .register("IMSI001010000000001", &[], true, "x", 1000)
            .unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn parts_are_kept_until_deleted_and_duplicates_ignored() {
        let (_d, mut db) = db();
        db.save_part("k", 2, 3, "two", 10).unwrap();
        db.save_part("k", 2, 3, "two again", 11).unwrap();
        let p = db.save_part("k", 1, 3, "one", 12).unwrap();
        assert_eq!(p, vec![(1, "one".into()), (2, "two".into())]);
        assert_eq!(db.stale_part_keys(10).unwrap(), vec!["k".to_string()]);
        assert!(db.stale_part_keys(9).unwrap().is_empty());
        db.delete_parts("k").unwrap();
        assert!(db.parts("k").unwrap().is_empty());
    }

    #[test]
    fn openbts_registry_is_read_only_fallback() {
        let d = tempfile::tempdir().unwrap();
        let obts = d.path().join("sipauthserve.db");
        {
            let c = Connection::open(&obts).unwrap();
            c.execute_batch(
                "CREATE TABLE sip_buddies (name TEXT, callerid TEXT, ipaddr TEXT, port TEXT);
                 CREATE TABLE dialdata_table (exten TEXT, dial TEXT);
                 INSERT INTO sip_buddies VALUES ('IMSI001690000000002', '2222222', '127.0.0.1', '5062');
                 INSERT INTO dialdata_table VALUES ('2222222', 'IMSI001690000000002');",
            )
            .unwrap();
        }
        let db = Db::open(&d.path().join("r.sqlite"), Some(&obts)).unwrap();
        assert_eq!(
            db.by_imsi("001690000000002").unwrap().unwrap().msisdn,
            "2222222"
        );
        assert_eq!(
            db.by_msisdn("2222222").unwrap().unwrap().imsi.as_deref(),
            Some("001690000000002")
        );
        assert_eq!(db.by_imsi("001690000000009").unwrap(), None);
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(normalize_msisdn("+15551234567").unwrap(), "15551234567");
        assert!(normalize_msisdn("12ab").is_err());
        assert_eq!(
            normalize_imsi("IMSI001010000000001").unwrap(),
            "001010000000001"
        );
        assert!(normalize_imsi("123").is_err());
    }

    #[tokio::test]
    async fn the_cache_answers_known_subscribers_and_never_unknown_ones() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("r.sqlite");
        let r = Registry::open(path.clone(), None).unwrap();
        let key = HandsetKey::parse("15551234567").unwrap();
        assert_eq!(r.subscriber(&key).await.unwrap(), None);
        // Added by another process (the CLI): known at once, not cached as unknown.
        let other = Db::open(&path, None).unwrap();
        let s = Subscriber {
            msisdn: "15551234567".into(),
            imsi: Some("001010000000001".into()),
            email: None,
            enabled: true,
        };
        other.upsert(&s).unwrap();
        assert_eq!(r.subscriber(&key).await.unwrap(), Some(s.clone()));
        let by_imsi = HandsetKey::parse("IMSI001010000000001").unwrap();
        assert_eq!(r.subscriber(&by_imsi).await.unwrap(), Some(s.clone()));
        // Removed: still answered from the cache within its lifetime.
        other.remove("15551234567").unwrap();
        assert_eq!(r.subscriber(&key).await.unwrap(), Some(s));
        let fresh = Registry::open(path, None).unwrap();
        assert_eq!(fresh.subscriber(&key).await.unwrap(), None);
    }

    #[tokio::test]
    async fn whereabouts_are_cached_until_a_register_or_a_forget() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("r.sqlite");
        let r = Registry::open(path.clone(), None).unwrap();
        let s = Subscriber {
            msisdn: "15551234567".into(),
            imsi: Some("001010000000001".into()),
            email: None,
            enabled: true,
        };
        let sub = s.clone();
        r.call(move |db| db.upsert(&sub)).await.unwrap();
        let key = HandsetKey::parse("15551234567").unwrap();
        let w = r.whereabouts(&key, 5062).await.unwrap();
        assert_eq!(w.subscriber, Some(s.clone()));
        assert!(w.bindings.is_empty());
        // A change by another process is not seen while the answer is fresh...
        let other = Db::open(&path, None).unwrap();
        other.remove("15551234567").unwrap();
        assert_eq!(r.whereabouts(&key, 5062).await.unwrap(), w);
        // ...but forget_whereabouts (a handset attached) drops every answer.
        r.forget_whereabouts();
        assert_eq!(r.whereabouts(&key, 5062).await.unwrap().subscriber, None);
        other.upsert(&s).unwrap();
        r.forget_whereabouts();
        assert!(
            r.whereabouts(&key, 5062)
                .await
                .unwrap()
                .subscriber
                .is_some()
        );
        // A REGISTER through this registry is seen by the next lookup: no stale empty bindings.
        let now = crate::clock::now_unix();
        r.call(move |db| {
            db.register(
                "IMSI001010000000001",
                &[("sip:IMSI001010000000001@127.0.0.1:5062".into(), 3600)],
                false,
                "test",
                now,
            )
        })
        .await
        .unwrap();
        let w = r.whereabouts(&key, 5062).await.unwrap();
        assert_eq!(w.bindings.len(), 1, "{w:?}");
        // A cached answer drops bindings that have expired since.
        assert!(w.clone().at(now + 3600).bindings.is_empty());
        assert_eq!(w.clone().at(now + 3599).bindings.len(), 1);
    }

    #[tokio::test]
    async fn calls_run_on_the_registry_thread() {
        let d = tempfile::tempdir().unwrap();
        let r = Registry::open(d.path().join("r.sqlite"), None).unwrap();
        r.call(|db| {
            db.upsert(&Subscriber {
                msisdn: "1".into(),
                imsi: None,
                email: None,
                enabled: true,
            })
        })
        .await
        .unwrap();
        let n = r
            .call(|db| db.subscribers().map(|v| v.len()))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
