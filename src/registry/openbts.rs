//! The OpenBTS subscriber registry (sipauthserve's sqlite: `sip_buddies`, `dialdata_table`),
//! read only: each handset's BTS (`ipaddr`, `port`), and the [`Watcher`] that notices a handset
//! attach (its row rewritten) by polling `PRAGMA data_version`.
//!
//! **Trust.** The file is another program's: every column is read as what it may be (text or
//! integer, or missing); a busy or locked database is a temporary error, never "unknown".

use super::*;

/// The BTS address in a `sip_buddies` row: `ipaddr` (an IP literal) and `port` (text or
/// integer; empty, 0 or missing means `default_port`, OpenBTS's `SIP.Default.BTSPort`).
pub fn bts_location(
    ipaddr: Option<&str>,
    port: Option<i64>,
    default_port: u16,
) -> Option<SocketAddr> {
    let ip: IpAddr = ipaddr?.trim().parse().ok()?;
    if ip.is_unspecified() {
        return None;
    }
    let port = port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(default_port);
    Some(SocketAddr::new(ip, port))
}

/// A `sip_buddies` column that may hold an integer or its text.
pub(super) fn int_column(v: rusqlite::types::ValueRef<'_>) -> Option<i64> {
    match v {
        rusqlite::types::ValueRef::Integer(i) => Some(i),
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A `sip_buddies` column that may hold text (or NULL).
pub(super) fn text_column(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    match v {
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
        rusqlite::types::ValueRef::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// How long a lookup waits for a lock on the OpenBTS database by default.
pub const OPENBTS_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens the OpenBTS database read-only, waiting at most `busy` for its locks.
pub(super) fn open_openbts(path: &Path, busy: Duration) -> Result<Connection, RegistryError> {
    let p = path.display().to_string();
    let c =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err(&p))?;
    c.busy_timeout(busy).map_err(sql_err(&p))?;
    Ok(c)
}

/// One `sip_buddies` row as the watcher compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuddyState {
    ipaddr: Option<String>,
    port: Option<i64>,
    reg_time: Option<i64>,
}

/// A handset the OpenBTS registry shows as having just registered (its row changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The IMSI.
    pub imsi: Imsi,
    /// Its caller ID, when it is a number.
    pub msisdn: Option<Msisdn>,
}

/// Watches the OpenBTS registry for registrations. sipauthserve rewrites a handset's
/// `sip_buddies` row (`ipaddr`, `port`, `regTime`) each time OpenBTS registers it; smsmta is
/// never told, so it looks: `PRAGMA data_version` (one page read, no table scan) every poll,
/// and only when another connection has committed, one scan of the rows, compared with the
/// last. Read-only; busy or missing databases are skipped until the next poll.
pub struct Watcher {
    conn: Connection,
    version: Option<i64>,
    rows: HashMap<String, BuddyState>,
}

impl Watcher {
    /// Opens the OpenBTS database read-only and takes the first snapshot (no changes are
    /// reported for what is already there).
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`] when it cannot be opened.
    pub fn open(path: &Path) -> Result<Watcher, RegistryError> {
        let conn = open_openbts(path, Duration::from_millis(100))?;
        let mut w = Watcher {
            conn,
            version: None,
            rows: HashMap::new(),
        };
        let _ = w.poll();
        Ok(w)
    }

    /// The handsets whose row changed (or appeared) since the last poll.
    ///
    /// # Errors
    /// [`RegistryError::Sqlite`] when the database is busy or unreadable now.
    pub fn poll(&mut self) -> Result<Vec<Attached>, RegistryError> {
        let err = |source| RegistryError::Sqlite {
            path: "OpenBTS registry".into(),
            source,
        };
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(err)?;
        let first = self.version.is_none();
        if self.version == Some(version) {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare("SELECT name, callerid, ipaddr, port, regTime FROM sip_buddies")
            .map_err(err)?;
        let mut now: HashMap<String, BuddyState> = HashMap::new();
        let mut callerids: HashMap<String, Option<String>> = HashMap::new();
        let mut q = st.query([]).map_err(err)?;
        while let Some(r) = q.next().map_err(err)? {
            let Some(name) = text_column(r.get_ref(0).map_err(err)?) else {
                continue;
            };
            let state = BuddyState {
                ipaddr: text_column(r.get_ref(2).map_err(err)?),
                port: int_column(r.get_ref(3).map_err(err)?),
                reg_time: int_column(r.get_ref(4).map_err(err)?),
            };
            callerids.insert(name.clone(), text_column(r.get_ref(1).map_err(err)?));
            now.insert(name, state);
        }
        drop(q);
        drop(st);
        let mut changed = Vec::new();
        if !first {
            for (name, state) in &now {
                if self.rows.get(name) == Some(state) {
                    continue;
                }
                let Some(imsi) = Imsi::from_name(name) else {
                    continue;
                };
                let msisdn = callerids
                    .get(name)
                    .cloned()
                    .flatten()
                    .and_then(|c| Msisdn::parse(&c).ok());
                changed.push(Attached { imsi, msisdn });
            }
        }
        self.rows = now;
        self.version = Some(version);
        Ok(changed)
    }
}
