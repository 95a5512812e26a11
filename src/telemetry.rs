//! Logging: tracing to stderr, filtered by `[log] level` (or `RUST_LOG` when set), as text
//! or JSON (`[log] format`).
//!
//! Message state changes are logged one line each, keyed by queue ID, in Postfix's shape
//! (`ID: from=<...>, size=..., nrcpt=...`; `ID: to=<...>, relay=..., status=...`), so that
//! `grep ID` over the log tells a message's whole story. Lines carry their span's fields (the
//! queue ID, the peer) in both formats.
//!
//! The level can change at run time ([`set_level`], on a reload); `RUST_LOG`, when set, wins
//! over the file at start and at every reload.
//!
//! Text has colour only when stderr is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>): a log file or journald gets plain lines.
//!
//! **Batched writes.** A write to a log file or to journald's stream is a system call per
//! line, and at thousands of texts a second (eight lines a round trip through an SMSC) that
//! was a third of the server's CPU (docs/benchmarks.md). So info and debug lines are
//! gathered in memory ([`Spill`]) and written together, at most [`FLUSH_EVERY`] after the
//! first of them (or at once past [`SPILL_MAX`] bytes); warnings and errors are written at
//! once, after whatever waits before them, so the order of lines never changes. A normal
//! exit and a panic write out what waits ([`flush`]); a SIGKILL or a power loss can lose the
//! last [`FLUSH_EVERY`] of info lines, never a message (those are on disk before any reply).

use std::io::{IsTerminal, Write};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

/// The installed subscriber's filter, once [`init`] has run.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter_for(level: &str) -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Info lines wait at most this long in memory before they are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// Lines waiting past this many bytes are written at once by the thread that logs.
pub const SPILL_MAX: usize = 64 << 10;

/// Log lines gathered for one write to `out` (see the module docs). The lock order is `out`,
/// then `buf`; a line is appended holding `buf` only, so logging never waits for a write
/// unless the buffer is full or the line is urgent.
pub struct Spill<W> {
    buf: Mutex<Vec<u8>>,
    ready: Condvar,
    out: Mutex<W>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<W: Write> Spill<W> {
    /// Lines for `out`.
    pub fn new(out: W) -> Spill<W> {
        Spill {
            buf: Mutex::new(Vec::with_capacity(SPILL_MAX)),
            ready: Condvar::new(),
            out: Mutex::new(out),
        }
    }

    /// Adds a line; `urgent` (a warning or an error) writes it, and everything before it, now.
    pub fn push(&self, line: &[u8], urgent: bool) {
        let full = {
            let mut buf = lock(&self.buf);
            let was_empty = buf.is_empty();
            buf.extend_from_slice(line);
            if !urgent && buf.len() < SPILL_MAX {
                if was_empty {
                    self.ready.notify_one();
                }
                return;
            }
            true
        };
        if full {
            self.flush();
        }
    }

    /// Writes out every line waiting.
    pub fn flush(&self) {
        let mut out = lock(&self.out);
        let lines = std::mem::take(&mut *lock(&self.buf));
        if !lines.is_empty() {
            // Nowhere to report a failing log write: the lines are dropped.
            let _ = out.write_all(&lines).and_then(|()| out.flush());
        }
    }

    /// Waits until a line waits, then [`FLUSH_EVERY`], then writes (the writer thread's loop
    /// body).
    pub fn wait_and_flush(&self) {
        {
            let mut buf = lock(&self.buf);
            while buf.is_empty() {
                buf = self
                    .ready
                    .wait(buf)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        std::thread::sleep(FLUSH_EVERY);
        self.flush();
    }
}

/// The process's log lines, for stderr.
static SPILL: OnceLock<Spill<std::io::Stderr>> = OnceLock::new();

fn spill() -> &'static Spill<std::io::Stderr> {
    SPILL.get_or_init(|| {
        // The writer thread; if it cannot start, every line is written at once instead.
        let started = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(|| {
                loop {
                    spill().wait_and_flush();
                }
            });
        if started.is_err() {
            WRITE_THROUGH.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Spill::new(std::io::stderr())
    })
}

static WRITE_THROUGH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes out the log lines waiting in memory (at exit; [`init`] also does it on a panic).
pub fn flush() {
    if let Some(s) = SPILL.get() {
        s.flush();
    }
}

/// The `MakeWriter` of the fmt layer: each event's line goes to the [`Spill`].
#[derive(Debug, Clone, Copy)]
struct Lines;

/// One event's writer: `urgent` for warnings and errors.
#[derive(Debug)]
struct Line {
    urgent: bool,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let urgent = self.urgent || WRITE_THROUGH.load(std::sync::atomic::Ordering::Relaxed);
        spill().push(b, urgent);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(level: &str, format: LogFormat) {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(Lines)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(lines.with_ansi(colour()))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(lines.json().with_current_span(true).with_span_list(false))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
        // A panic's report follows the lines logged before it.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            report(info);
        }));
    }
}

/// Puts `level` (a `[log] level` value) in force, unless `RUST_LOG` is set, which wins.
///
/// # Errors
/// When `level` is not a filter, or no subscriber of ours is installed.
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and wins over [log] level".into());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(h) => h.reload(filter).map_err(|e| e.to_string()),
        None => Err("no log subscriber installed".into()),
    }
}

/// Whether text lines may carry colour: stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A shared Vec as the output.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);

    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(o: &Out) -> String {
        String::from_utf8(lock(&o.0).clone()).unwrap()
    }

    #[test]
    fn info_lines_wait_and_an_error_writes_them_first_in_order() {
        let out = Out::default();
        let s = Spill::new(out.clone());
        s.push(b"one\n", false);
        s.push(b"two\n", false);
        assert_eq!(text(&out), "", "info lines wait for the writer");
        s.push(b"oops\n", true);
        assert_eq!(
            text(&out),
            "one\ntwo\noops\n",
            "an error writes all, in order"
        );
        s.push(b"three\n", false);
        s.flush();
        assert_eq!(text(&out), "one\ntwo\noops\nthree\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_thread_that_logs() {
        let out = Out::default();
        let s = Spill::new(out.clone());
        let line = vec![b'x'; 1024];
        for _ in 0..(SPILL_MAX / 1024) {
            s.push(&line, false);
        }
        assert_eq!(
            lock(&out.0).len(),
            SPILL_MAX,
            "written at the limit, not kept"
        );
    }

    #[test]
    fn the_writer_thread_writes_within_the_flush_interval() {
        let out = Out::default();
        let s = Arc::new(Spill::new(out.clone()));
        let w = Arc::clone(&s);
        let t = std::thread::spawn(move || w.wait_and_flush());
        s.push(b"late\n", false);
        t.join().unwrap();
        assert_eq!(text(&out), "late\n");
    }
}
