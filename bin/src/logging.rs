//! The process's log: a `tracing` subscriber whose lines a background thread writes to stderr.
//!
//! Owns: formatting log lines (ANSI colours only when stderr is a terminal), the queue to the
//! writer thread (tracing-appender's non-blocking writer: bounded and lossy, lines are written
//! as they come), counting the lines it dropped, and flushing it before the process exits or
//! aborts ([`flush`], [`fatal`]).
//!
//! Must never: block a shard thread on a log write (a full queue drops the line and counts
//! it), be touched on the data path beyond queueing a line (its lock is taken only at
//! start-up, exit and abort), or receive a signal (the writer thread blocks them all).

use std::io::Write;
use std::sync::Mutex;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Lines the queue holds at most; past that a line is dropped and counted. A line is a few
/// hundred bytes, so a few MiB at most; per-event warnings are rate-limited
/// (`sluice_engine::log_limit`), so only a burst from many call sites at once fills it.
const BUFFERED_LINES_LIMIT: usize = 16_384;

/// The writer thread's handle: dropping the guard writes every queued line and stops it.
struct Writer {
    guard: WorkerGuard,
    dropped: ErrorCounter,
}

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

fn writer() -> std::sync::MutexGuard<'static, Option<Writer>> {
    // A panic while holding the lock leaves nothing half-done: the Option is set or taken.
    WRITER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the global subscriber (level from `RUST_LOG`, `info` by default) and starts the
/// writer thread. Call once, before any other thread starts.
pub fn init() {
    let (non_blocking, guard) = with_signals_blocked(|| {
        NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(BUFFERED_LINES_LIMIT)
            .thread_name("sluice-log")
            .finish(std::io::stderr())
    });
    let dropped = non_blocking.error_counter();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(non_blocking)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    *writer() = Some(Writer { guard, dropped });
}

/// Runs `spawn` (which starts a thread) with every signal blocked in this thread, so the new
/// thread inherits a full mask: a process-directed signal (the broker's SIGTERM, which it
/// blocks and waits for with `sigwait` after start-up) must never be delivered to the writer
/// thread, where its default action would kill the process.
fn with_signals_blocked<T>(spawn: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data initialised by sigfillset; pthread_sigmask only changes
    // this thread's mask, restored below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        let spawned = spawn();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}

/// Writes every queued line to stderr (waiting up to about a second) and stops the writer
/// thread; says how many lines were dropped, if any. Lines logged afterwards are dropped.
/// Idempotent. `std::process::exit` runs no destructors: call this before it.
pub fn flush() {
    let Some(Writer { guard, dropped }) = writer().take() else { return };
    let dropped_lines = dropped.dropped_lines();
    drop(guard);
    if dropped_lines > 0 {
        let _ = writeln!(std::io::stderr(), "sluice: {dropped_lines} log lines dropped (the log queue was full)");
    }
}

/// The last line of a process about to abort (a panic hook): the queued lines, then
/// `message`, written to stderr directly (the writer thread dies with the process).
pub fn fatal(message: &str) {
    flush();
    let _ = writeln!(std::io::stderr(), "{message}");
}
