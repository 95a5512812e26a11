//! The handle to the registry thread ([`Registry`]): jobs run on the one sqlite connection
//! in order, over a bounded queue; and the cache of enabled subscribers in front of it.

use super::*;

pub(super) type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// How long an enabled subscriber found by [`Registry::subscriber`] is believed.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Most subscribers kept by that cache; when it is full it is emptied.
pub const CACHE_MAX: usize = 65_536;

/// Enabled subscribers recently found, by handset name, with when they were found.
pub(super) type Cache = Arc<Mutex<HashMap<HandsetKey, (Subscriber, Instant)>>>;

/// A handle to the registry thread. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    tx: std::sync::mpsc::SyncSender<Job>,
    cache: Cache,
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
        })
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
