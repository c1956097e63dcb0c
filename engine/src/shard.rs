//! Shards: one glommio executor pinned per core, and the cross-shard call API.
//!
//! Owns: starting the executors ([`ShardPool::start`]) and the mesh of channels between them
//! ([`ShardMesh`]). A call to another shard is a message: a `Send` closure that builds a local
//! future on the target shard, whose result comes back over a oneshot channel. A call to the
//! current shard runs inline without a message.
//!
//! Back-pressure: each shard's inbox holds at most [`INBOX_CAPACITY`] queued calls (flume's
//! bounded MPMC channel, whose async senders wait in FIFO order). A caller on a shard whose
//! target's inbox is full waits (the task, not the thread) until the target takes a call off
//! it. A call leaves the inbox when the target starts running it, so a long-running call (a
//! long-poll wait) does not hold a slot, and two shards calling each other cannot deadlock on
//! full inboxes.
//!
//! Must never: hand a shard's `Rc` state to another thread (closures are `Send`, results are
//! `Send`), or request more pinned CPUs than exist (`Placement::Fixed(n)` fails for a CPU `n`
//! that is not online: extra shards run unpinned).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::channel::oneshot;
use futures::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};

/// glommio's registered-buffer pool per executor. Kept at 4 MiB so it never needs more than
/// the 8 MiB `RLIMIT_MEMLOCK` these machines allow (see DEVELOPERS.md).
pub const IO_MEMORY_BYTES: usize = 4 << 20;

/// Calls queued per shard inbox before callers wait. A call's closure is boxed (tens of bytes
/// plus what it captures), so a full inbox is a few hundred KiB at most.
pub const INBOX_CAPACITY: usize = 4096;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

thread_local! {
    static CURRENT_SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The shard the calling thread runs, if it is a shard thread.
pub fn current_shard() -> Option<usize> {
    CURRENT_SHARD.with(|c| c.get())
}

/// The target shard is gone (shut down or panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardGone(pub usize);

impl std::fmt::Display for ShardGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} is not running", self.0)
    }
}

impl std::error::Error for ShardGone {}

/// A cloneable, `Send` handle to every shard's inbox.
#[derive(Clone)]
pub struct ShardMesh {
    inboxes: Arc<Vec<flume::Sender<Job>>>,
}

impl ShardMesh {
    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// Runs `f` on `shard` and returns its result. `f` is `Send`; the future it builds is local
    /// to the target shard and may use that shard's `Rc` state.
    pub async fn call<R, F, Fut>(&self, shard: usize, f: F) -> Result<R, ShardGone>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if current_shard() == Some(shard) {
            return Ok(f().await);
        }
        let inbox = self.inboxes.get(shard).ok_or(ShardGone(shard))?;
        let (job, rx) = Self::job(f);
        inbox.send_async(job).await.map_err(|_| ShardGone(shard))?;
        rx.await.map_err(|_| ShardGone(shard))
    }

    /// Queues `f` on `shard` and returns the receiver of its result, waiting by blocking the
    /// thread while the inbox is full: for threads that are not shards (the main thread at
    /// shutdown). Shards use [`ShardMesh::call`].
    pub fn send<R, F, Fut>(&self, shard: usize, f: F) -> Result<oneshot::Receiver<R>, ShardGone>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        assert!(current_shard().is_none(), "a shard thread must not block on a full inbox: use call");
        let inbox = self.inboxes.get(shard).ok_or(ShardGone(shard))?;
        let (job, rx) = Self::job(f);
        inbox.send(job).map_err(|_| ShardGone(shard))?;
        Ok(rx)
    }

    fn job<R, F, Fut>(f: F) -> (Job, oneshot::Receiver<R>)
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let result = f().await;
                let _ = tx.send(result);
            })
        });
        (job, rx)
    }

    /// Runs `f` on every shard and collects the results in shard order.
    pub async fn call_all<R, F, Fut>(&self, f: F) -> Vec<Result<R, ShardGone>>
    where
        R: Send + 'static,
        F: Fn() -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let mut out = Vec::with_capacity(self.shard_count());
        for shard in 0..self.shard_count() {
            let f = f.clone();
            out.push(self.call(shard, f).await);
        }
        out
    }
}

/// How to start the shards.
#[derive(Clone, Debug)]
pub struct ShardPoolConfig {
    pub shard_count: usize,
    pub name: String,
    pub io_memory_bytes: usize,
}

impl ShardPoolConfig {
    /// One shard per available CPU.
    pub fn from_available_cpus(name: &str) -> ShardPoolConfig {
        ShardPoolConfig { shard_count: available_cpus(), name: name.to_string(), io_memory_bytes: IO_MEMORY_BYTES }
    }
}

/// CPUs this process may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Running shards: the mesh plus the threads to join.
pub struct ShardPool<T: Send + 'static> {
    pub mesh: ShardMesh,
    threads: Vec<glommio::ExecutorJoinHandle<T>>,
}

impl<T: Send + 'static> ShardPool<T> {
    /// Starts `config.shard_count` executors. Each runs `main(shard_index, mesh)` and serves
    /// cross-shard calls until its `main` returns.
    pub fn start<F, Fut>(config: &ShardPoolConfig, main: F) -> std::io::Result<ShardPool<T>>
    where
        F: Fn(usize, ShardMesh) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        assert!(config.shard_count >= 1, "need at least one shard");
        assert!(config.io_memory_bytes <= IO_MEMORY_BYTES, "io_memory above the memlock-safe 4 MiB");
        let mut senders = Vec::with_capacity(config.shard_count);
        let mut receivers = Vec::with_capacity(config.shard_count);
        for _ in 0..config.shard_count {
            let (tx, rx) = flume::bounded::<Job>(INBOX_CAPACITY);
            senders.push(tx);
            receivers.push(Some(rx));
        }
        let mesh = ShardMesh { inboxes: Arc::new(senders) };
        // Start-up hand-off of each receiver to its shard (not on the data path).
        let receivers = Arc::new(Mutex::new(receivers));
        let online = online_cpus();
        let mut threads = Vec::with_capacity(config.shard_count);
        for shard in 0..config.shard_count {
            let placement =
                if config.shard_count <= online.len() { Placement::Fixed(online[shard]) } else { Placement::Unbound };
            let mesh = mesh.clone();
            let main = main.clone();
            let receivers = receivers.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("{}-{shard}", config.name))
                .io_memory(config.io_memory_bytes)
                .spawn(move || async move {
                    CURRENT_SHARD.with(|c| c.set(Some(shard)));
                    let inbox =
                        receivers.lock().expect("start-up").get_mut(shard).and_then(Option::take).expect("inbox");
                    let server = glommio::spawn_local(serve_inbox(inbox));
                    let result = main(shard, mesh).await;
                    drop(server);
                    result
                })
                .map_err(std::io::Error::from)?;
            threads.push(handle);
        }
        Ok(ShardPool { mesh, threads })
    }

    /// Waits for every shard's `main` to return.
    pub fn join(self) -> Vec<std::thread::Result<T>> {
        self.threads
            .into_iter()
            .map(|h| h.join().map_err(|e| Box::new(e.to_string()) as Box<dyn std::any::Any + Send>))
            .collect()
    }
}

async fn serve_inbox(inbox: flume::Receiver<Job>) {
    let mut jobs = inbox.into_stream();
    while let Some(job) = jobs.next().await {
        glommio::spawn_local(job()).detach();
    }
}

/// CPU ids this process may be pinned to, ascending.
fn online_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the current thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..available_cpus()).collect();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_reach_the_owner_and_return() {
        let config = ShardPoolConfig { shard_count: 2, name: "test-shard".into(), io_memory_bytes: 1 << 20 };
        let pool = ShardPool::start(&config, |shard, mesh: ShardMesh| async move {
            if shard == 0 {
                let other = mesh.call(1, || async { current_shard() }).await.expect("shard 1 answers");
                let itself = mesh.call(0, || async { current_shard() }).await.expect("inline");
                // Tell shard 1 to stop after answering.
                let _ = mesh.call(1, || async { STOP.with(|s| s.set(true)) }).await;
                (other, itself)
            } else {
                while !STOP.with(|s| s.get()) {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                (None, None)
            }
        })
        .expect("start");
        let results = pool.join();
        let (other, itself) = results.into_iter().next().expect("shard 0").expect("no panic");
        assert_eq!(other, Some(1));
        assert_eq!(itself, Some(0));
    }

    /// More concurrent calls than an inbox holds: callers wait for room instead of queueing
    /// without bound, and every call still completes, in the order each caller sent it.
    #[test]
    fn a_full_inbox_makes_callers_wait_and_loses_nothing() {
        let config = ShardPoolConfig { shard_count: 2, name: "test-mesh".into(), io_memory_bytes: 1 << 20 };
        let pool = ShardPool::start(&config, |shard, mesh: ShardMesh| async move {
            if shard != 0 {
                while !STOP.with(|s| s.get()) {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                return 0;
            }
            let calls = (0..INBOX_CAPACITY * 3).map(|i| {
                let mesh = mesh.clone();
                async move { mesh.call(1, move || async move { i }).await.expect("answered") }
            });
            let results = futures::future::join_all(calls).await;
            assert!(results.iter().enumerate().all(|(i, r)| *r == i));
            let _ = mesh.call(1, || async { STOP.with(|s| s.set(true)) }).await;
            results.len()
        })
        .expect("start");
        let results = pool.join();
        assert_eq!(*results[0].as_ref().expect("no panic"), INBOX_CAPACITY * 3);
    }

    thread_local! {
        static STOP: Cell<bool> = const { Cell::new(false) };
    }
}
