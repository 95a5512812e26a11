//! What smsmta keeps durably for its upstream SMSCs, in `<spool_dir>/smpp.sqlite` (WAL,
//! synchronous=FULL): the receipts it waits for, the parts of concatenated texts not yet whole,
//! and the deliver_sm recently stored (so that a resent one is not stored twice).
//!
//! - `awaiting`: one row per submit_sm that went out with registered_delivery, keyed by
//!   (upstream, the SMSC's message_id), holding the original queue file (its sender, facts and
//!   text, from which the status report or DSN is made) until the receipt comes or the row
//!   expires. Written before the message leaves the spool.
//! - `parts`: one row per part received, keyed by (upstream, source, destination, reference),
//!   written before the part's deliver_sm_resp.
//! - `seen`: a digest of each deliver_sm stored, kept for the duplicate window. Checked and
//!   recorded in memory (at most [`MAX_SEEN`] digests), written to the table in batches by
//!   [`Store::flush_seen`] and read back at start, as SIP keeps its own: a crash loses at
//!   most the last second's digests, and so lets at most those resends through twice (never
//!   a text lost). A full memory forgets nothing it holds; new digests are then not kept.
//!
//! **Trust.** Keys and values come from SMSCs: they are bound as parameters, never spliced
//! into SQL; a message_id is at most 64 characters (the codec's limit).
//!
//! Every call but [`Store::seen`] and [`Store::mark_seen`] (memory only) blocks: call it from
//! `spawn_blocking`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS awaiting (
    upstream TEXT NOT NULL, message_id TEXT NOT NULL, queue_id TEXT NOT NULL,
    address TEXT NOT NULL, file BLOB NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (upstream, message_id));
CREATE INDEX IF NOT EXISTS awaiting_queue ON awaiting (queue_id);
CREATE TABLE IF NOT EXISTS parts (
    key TEXT NOT NULL, seq INTEGER NOT NULL, total INTEGER NOT NULL, body TEXT NOT NULL,
    first INTEGER NOT NULL, PRIMARY KEY (key, seq));
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, until INTEGER NOT NULL);
";

/// A store error (the caller answers the SMSC with a temporary error, or logs).
#[derive(Debug, thiserror::Error)]
#[error("smpp store: {0}")]
pub struct StoreError(String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// A receipt matched to a message that asked for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The original queue file, encoded.
    pub file: Vec<u8>,
    /// Its queue ID.
    pub queue_id: String,
    /// The recipient address the text went to.
    pub address: String,
    /// Whether this settles the message (every part delivered, or one failed): the report is
    /// owed now. A delivered part while others are still awaited settles nothing yet.
    pub settled: bool,
}

/// A text that never completed: its key, its total, the parts there are (sequence, body).
pub type Stale = (String, u8, Vec<(u8, String)>);

/// Digests of deliver_sm stored, at most, in memory.
pub const MAX_SEEN: usize = 200_000;

/// The SMPP store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    seen: Mutex<Seen>,
}

/// The digests in memory, and those not yet written to the table.
#[derive(Debug, Default)]
struct Seen {
    until: HashMap<String, u64>,
    unwritten: Vec<(String, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Store {
    /// Opens (creates) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be opened in WAL mode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!("{}: cannot use WAL", path.display())));
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(SCHEMA)?;
        let now = crate::clock::now_unix();
        let mut seen = Seen::default();
        {
            let mut q = conn.prepare("SELECT key, until FROM seen WHERE until > ?1 LIMIT ?2")?;
            let rows = q.query_map(params![now as i64, MAX_SEEN as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (k, u) = row?;
                seen.until.insert(k, u.max(0) as u64);
            }
        }
        Ok(Store {
            conn: Mutex::new(conn),
            seen: Mutex::new(seen),
        })
    }

    /// A store in memory, for a server with no upstream and no store on disk: nothing is
    /// awaited from an SMSC, so nothing needs to outlive the process.
    ///
    /// # Errors
    /// [`StoreError`] when sqlite cannot open it.
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
            seen: Mutex::new(Seen::default()),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// Records that the parts `ids` of `queue_id` to `address` went to `upstream` and that a
    /// receipt is owed to its sender; `file` is the encoded queue file.
    ///
    /// # Errors
    /// [`StoreError`] when it is not written.
    pub fn await_receipts(
        &self,
        upstream: &str,
        ids: &[String],
        queue_id: &str,
        address: &str,
        file: &[u8],
        expires: u64,
    ) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for id in ids {
            tx.execute(
                "INSERT OR REPLACE INTO awaiting VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![upstream, id, queue_id, address, file, expires as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Matches a final receipt for `id` from `upstream`; `failed` when it says the message
    /// failed. `None`: nothing waits for it.
    ///
    /// A receipt that settles nothing yet (other parts still awaited) is forgotten here. One
    /// that settles the message leaves its rows in place: the caller commits the report and
    /// then calls [`Store::finish`], so a crash in between makes the SMSC resend the receipt
    /// (a report twice, never none).
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn settle(
        &self,
        upstream: &str,
        id: &str,
        failed: bool,
    ) -> Result<Option<Matched>, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let row: Option<(String, String, Vec<u8>)> = tx
            .query_row(
                "SELECT queue_id, address, file FROM awaiting WHERE upstream = ?1 AND message_id = ?2",
                params![upstream, id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((queue_id, address, file)) = row else {
            return Ok(None);
        };
        let others: i64 = tx.query_row(
            "SELECT count(*) FROM awaiting WHERE queue_id = ?1 AND address = ?2 \
             AND NOT (upstream = ?3 AND message_id = ?4)",
            params![queue_id, address, upstream, id],
            |r| r.get(0),
        )?;
        let settled = failed || others == 0;
        if !settled {
            tx.execute(
                "DELETE FROM awaiting WHERE upstream = ?1 AND message_id = ?2",
                params![upstream, id],
            )?;
            tx.commit()?;
        }
        Ok(Some(Matched {
            file,
            queue_id,
            address,
            settled,
        }))
    }

    /// Forgets every receipt awaited for `queue_id` to `address`: its report is committed.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn finish(&self, queue_id: &str, address: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM awaiting WHERE queue_id = ?1 AND address = ?2",
            params![queue_id, address],
        )?;
        Ok(())
    }

    /// Stores part `seq` of `total` of the message `key` (`body`: its JSON form); when every
    /// part is there, returns them all in order and forgets them.
    ///
    /// # Errors
    /// [`StoreError`] when it is not written.
    pub fn add_part(
        &self,
        key: &str,
        seq: u8,
        total: u8,
        body: &str,
        now: u64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO parts VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, seq, total, body, now as i64],
        )?;
        let parts: Vec<String> = {
            let mut q =
                tx.prepare("SELECT body FROM parts WHERE key = ?1 AND total = ?2 ORDER BY seq")?;
            let rows = q.query_map(params![key, total], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let whole = parts.len() == usize::from(total);
        if whole {
            tx.execute("DELETE FROM parts WHERE key = ?1", params![key])?;
        }
        tx.commit()?;
        Ok(whole.then_some(parts))
    }

    /// Whether the deliver_sm of digest `key` was stored and its window is still open.
    /// Memory only: never blocks.
    pub fn seen(&self, key: &str, now: u64) -> bool {
        lock(&self.seen).until.get(key).is_some_and(|u| *u > now)
    }

    /// Records that the deliver_sm of digest `key` was stored, until `until`: at once in
    /// memory, in the table at the next [`Store::flush_seen`]. Never blocks.
    pub fn mark_seen(&self, key: &str, until: u64) {
        let mut s = lock(&self.seen);
        if s.until.len() >= MAX_SEEN && !s.until.contains_key(key) {
            let now = crate::clock::now_unix();
            s.until.retain(|_, u| *u > now);
            if s.until.len() >= MAX_SEEN {
                return;
            }
        }
        s.until.insert(key.to_string(), until);
        if s.unwritten.len() < MAX_SEEN {
            s.unwritten.push((key.to_string(), until));
        }
    }

    /// Writes the digests recorded since the last call, in one transaction; how many.
    ///
    /// # Errors
    /// [`StoreError`] when they are not written (they are kept for the next call).
    pub fn flush_seen(&self) -> Result<usize, StoreError> {
        let batch = std::mem::take(&mut lock(&self.seen).unwritten);
        if batch.is_empty() {
            return Ok(0);
        }
        let write = || -> Result<(), StoreError> {
            let mut c = self.conn();
            let tx = c.transaction()?;
            {
                let mut q = tx.prepare_cached("INSERT OR REPLACE INTO seen VALUES (?1, ?2)")?;
                for (k, u) in &batch {
                    q.execute(params![k, *u as i64])?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        match write() {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut s = lock(&self.seen);
                let room = MAX_SEEN.saturating_sub(s.unwritten.len());
                s.unwritten.extend(batch.into_iter().take(room));
                Err(e)
            }
        }
    }

    /// Forgets what has expired by `now`: receipts never received and duplicate digests.
    /// Returns how many of each.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn sweep(&self, now: u64) -> Result<(usize, usize), StoreError> {
        let c = self.conn();
        let a = c.execute(
            "DELETE FROM awaiting WHERE expires <= ?1",
            params![now as i64],
        )?;
        let s = c.execute("DELETE FROM seen WHERE until <= ?1", params![now as i64])?;
        lock(&self.seen).until.retain(|_, u| *u > now);
        Ok((a, s))
    }

    /// The texts with a part older than `before` that never completed: key, total, and the
    /// parts there are (sequence number, body). They stay until [`Store::drop_parts`].
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn stale_parts(&self, before: u64) -> Result<Vec<Stale>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare(
            "SELECT key, total, seq, body FROM parts WHERE key IN \
             (SELECT key FROM parts WHERE first <= ?1) ORDER BY key, seq",
        )?;
        let rows = q.query_map(params![before as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u8>(1)?,
                r.get::<_, u8>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out: Vec<Stale> = Vec::new();
        for row in rows {
            let (key, total, seq, body) = row?;
            match out.last_mut() {
                Some((k, _, parts)) if *k == key => parts.push((seq, body)),
                _ => out.push((key, total, vec![(seq, body)])),
            }
        }
        Ok(out)
    }

    /// Forgets the parts of `key` (once their text is stored).
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub fn drop_parts(&self, key: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM parts WHERE key = ?1", params![key])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("smpp.sqlite")).unwrap();
        (d, s)
    }

    #[test]
    fn a_receipt_settles_its_message_once_every_part_is_delivered_or_one_failed() {
        let (_d, s) = store();
        let ids = vec!["a".to_string(), "b".to_string()];
        s.await_receipts("agg", &ids, "Q1", "447@x", b"file", 100)
            .unwrap();
        assert_eq!(s.settle("agg", "zzz", false).unwrap(), None, "unmatched");
        assert_eq!(
            s.settle("other", "a", false).unwrap(),
            None,
            "another upstream's id"
        );
        let m = s.settle("agg", "a", false).unwrap().unwrap();
        assert!(!m.settled, "part b is still on its way");
        let m = s.settle("agg", "b", false).unwrap().unwrap();
        assert!(m.settled);
        assert_eq!(
            (m.file.as_slice(), m.address.as_str(), m.queue_id.as_str()),
            (&b"file"[..], "447@x", "Q1")
        );
        assert_eq!(
            s.settle("agg", "b", false).unwrap(),
            Some(m.clone()),
            "until the report is committed, a resent receipt settles it again"
        );
        s.finish("Q1", "447@x").unwrap();
        assert_eq!(
            s.settle("agg", "b", false).unwrap(),
            None,
            "a receipt resent after the report matches nothing"
        );
        s.await_receipts("agg", &ids, "Q2", "447@x", b"f2", 100)
            .unwrap();
        assert!(
            s.settle("agg", "a", true).unwrap().unwrap().settled,
            "a failed part settles"
        );
        s.finish("Q2", "447@x").unwrap();
        assert_eq!(s.settle("agg", "b", false).unwrap(), None);
    }

    #[test]
    fn parts_come_out_whole_in_order_and_duplicates_change_nothing() {
        let (_d, s) = store();
        assert_eq!(s.add_part("k", 2, 2, "two", 1).unwrap(), None);
        assert_eq!(s.add_part("k", 2, 2, "again", 1).unwrap(), None);
        assert_eq!(
            s.add_part("k", 1, 2, "one", 1).unwrap(),
            Some(vec!["one".to_string(), "two".to_string()])
        );
        assert_eq!(
            s.add_part("k", 1, 2, "one", 1).unwrap(),
            None,
            "a fresh start"
        );
    }

    #[test]
    fn digests_seen_are_kept_across_a_restart_once_flushed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("smpp.sqlite");
        let far = crate::clock::now_unix() + 3600;
        {
            let s = Store::open(&path).unwrap();
            s.mark_seen("flushed", far);
            assert_eq!(s.flush_seen().unwrap(), 1);
            assert_eq!(s.flush_seen().unwrap(), 0, "written once");
            s.mark_seen("lost in the crash", far);
            s.mark_seen("expired", 1);
            assert_eq!(s.flush_seen().unwrap(), 2);
            s.mark_seen("unflushed", far);
        }
        let s = Store::open(&path).unwrap();
        let now = crate::clock::now_unix();
        assert!(s.seen("flushed", now));
        assert!(s.seen("lost in the crash", now));
        assert!(!s.seen("expired", now));
        assert!(
            !s.seen("unflushed", now),
            "a crash loses only what was not flushed"
        );
    }

    #[test]
    fn what_expires_is_swept() {
        let (_d, s) = store();
        s.mark_seen("d", 10);
        assert!(s.seen("d", 9));
        assert!(!s.seen("d", 10));
        assert_eq!(s.flush_seen().unwrap(), 1);
        s.await_receipts("agg", &["a".into()], "Q", "x", b"f", 10)
            .unwrap();
        assert_eq!(s.sweep(10).unwrap(), (1, 1));
        s.add_part("k", 1, 3, "one", 5).unwrap();
        s.add_part("k", 3, 3, "three", 9).unwrap();
        s.add_part("young", 1, 2, "x", 9).unwrap();
        assert_eq!(
            s.stale_parts(5).unwrap(),
            vec![(
                "k".to_string(),
                3,
                vec![(1, "one".to_string()), (3, "three".to_string())]
            )]
        );
        s.drop_parts("k").unwrap();
        assert!(s.stale_parts(5).unwrap().is_empty());
    }
}
