//! The handle to the registry thread ([`Registry`]): jobs run on the one sqlite connection
//! in order, over a bounded queue; and two caches in front of it: enabled subscribers (for the
//! doors) and handsets' whereabouts (for delivery).

use super::*;

pub(super) type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// How long an enabled subscriber found by [`Registry::subscriber`] is believed.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Most subscribers kept by that cache; when it is full it is emptied.
pub const CACHE_MAX: usize = 65_536;

/// Enabled subscribers recently found, by handset name, with when they were found.
pub(super) type Cache = Arc<Mutex<HashMap<HandsetKey, (Subscriber, Instant)>>>;

/// Recent [`Whereabouts`], by handset, with when they were read and the count of changes
/// at the time.
type Places = Arc<Mutex<HashMap<HandsetKey, (Whereabouts, Instant, u64)>>>;

/// A handle to the registry thread. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    tx: std::sync::mpsc::SyncSender<Job>,
    cache: Cache,
    places: Places,
    /// Writes to subscribers and bindings made through this handle ([`Db::changes`]), and
    /// [`Registry::forget_whereabouts`].
    changes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    /// Opens the database and starts its thread.
    ///
    /// # Errors
    /// [`RegistryError`] when the database cannot be opened.
    pub fn open(path: PathBuf, openbts: Option<PathBuf>) -> Result<Registry, RegistryError> {
        Registry::open_with(path, openbts, OPENBTS_BUSY_TIMEOUT)
    }

    /// As [`Registry::open`], with the OpenBTS database's busy timeout.
    ///
    /// # Errors
    /// [`RegistryError`] when the database cannot be opened.
    pub fn open_with(
        path: PathBuf,
        openbts: Option<PathBuf>,
        busy: Duration,
    ) -> Result<Registry, RegistryError> {
        let mut db = Db::open_with(&path, openbts.as_deref(), busy)?;
        let changes = db.changes();
        // Bounded: a burst of requests waits for the thread instead of growing memory.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(4096);
        std::thread::Builder::new()
            .name("registry".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut db);
                }
            })
            .map_err(|e| {
                RegistryError::Invalid(format!("cannot start the registry thread: {e}"))
            })?;
        Ok(Registry {
            tx,
            cache: Cache::default(),
            places: Places::default(),
            changes,
        })
    }

    /// Where the handset `key` is ([`Db::whereabouts`]), for delivery. An answer is kept for
    /// [`CACHE_TTL`] unless a subscriber or a binding changes meanwhile (a REGISTER, a short
    /// code, [`Registry::forget_whereabouts`]): a delivery job then does not wait for the
    /// registry thread. A change made by another process (`smsmta subscriber`) is seen within
    /// `CACHE_TTL`; bindings that expire meanwhile are dropped from the answer.
    ///
    /// # Errors
    /// [`RegistryError`] from the lookup (temporary: the delivery is retried).
    pub async fn whereabouts(
        &self,
        key: &HandsetKey,
        bts_port: u16,
    ) -> Result<Whereabouts, RegistryError> {
        let (now, unix) = (Instant::now(), crate::clock::now_unix());
        let before = self.changes.load(Ordering::SeqCst);
        if let Some((w, _, _)) = self
            .places
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .filter(|(_, at, seen)| *seen == before && now.duration_since(*at) < CACHE_TTL)
        {
            return Ok(w.clone().at(unix));
        }
        let k = key.clone();
        let found = self
            .call(move |db| db.whereabouts(&k, bts_port, unix))
            .await?;
        let mut places = self
            .places
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Kept only when nothing changed while it was read.
        if self.changes.load(Ordering::SeqCst) == before {
            if places.len() >= CACHE_MAX {
                places.clear();
            }
            places.insert(key.clone(), (found.clone(), now, before));
        }
        Ok(found)
    }

    /// Forgets every cached [`Whereabouts`]: a handset attached somewhere (the OpenBTS
    /// registry changed, an ESME bound).
    pub fn forget_whereabouts(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The subscriber a handset name belongs to (by IMSI or by number; ours, then OpenBTS's).
    /// Enabled subscribers are answered from the cache for [`CACHE_TTL`].
    ///
    /// # Errors
    /// [`RegistryError`] from the lookup (temporary: the caller refuses with 4xx).
    pub async fn subscriber(&self, key: &HandsetKey) -> Result<Option<Subscriber>, RegistryError> {
        let now = Instant::now();
        if let Some((s, _)) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .filter(|(_, at)| now.duration_since(*at) < CACHE_TTL)
        {
            return Ok(Some(s.clone()));
        }
        let k = key.clone();
        let found = self
            .call(move |db| match &k {
                HandsetKey::Imsi(i) => db.by_imsi(i.digits()),
                HandsetKey::Number(n) => db.by_msisdn(n.digits()),
            })
            .await?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &found {
            Some(s) if s.enabled => {
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key.clone(), (s.clone(), now));
            }
            _ => {
                cache.remove(key);
            }
        }
        Ok(found)
    }

    /// Runs `f` on the registry thread and returns its result.
    ///
    /// # Errors
    /// What `f` returns, or [`RegistryError::Closed`].
    pub async fn call<R, F>(&self, f: F) -> Result<R, RegistryError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> Result<R, RegistryError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = reply.send(f(db));
        });
        let tx = self.tx.clone();
        // A full queue blocks; do that off the async worker threads.
        match tx.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || tx.send(job))
                    .await
                    .map_err(|_| RegistryError::Closed)?
                    .map_err(|_| RegistryError::Closed)?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(RegistryError::Closed);
            }
        }
        rx.await.map_err(|_| RegistryError::Closed)?
    }
}
