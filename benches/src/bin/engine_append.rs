//! `sluice-engine-append`: appends a fixed volume of 1 KiB records to partition logs on one
//! shard (one glommio executor) and prints one JSON line with the throughput.
//!
//! The batch is built once before the clock starts and appended again and again (the log
//! stamps offsets into its own copy of the header), so the measurement is the engine —
//! validation, offset assignment, the write-behind, the tail cache and the disk — not batch
//! building. Each task appends like a broker connection: `append_buffered` in order, with up
//! to `--pipeline` appends awaiting `wait_durable` (written to the file, and fsynced when the
//! flush policy says so) — `--pipeline 1` is plain `append()`. The clock stops after a final
//! `flush()` of every partition (every byte written and fdatasynced), so even `--flush never`
//! reports bytes that reached the disk.
//!
//! Data goes to `--data-dir`: a directory this run creates is removed afterwards; an existing
//! one gets a fresh `engine-append-<pid>` subdirectory, and only that is removed (`--keep`
//! keeps either).

use std::cell::Cell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_benches::{batch_of, bench_config, is_ram_fs, parse_size, records_in, IO_MEMORY_BYTES};
use sluice_engine::log_config::FlushMode;
use sluice_engine::segment_writer::WriterOptions;
use sluice_engine::{LogOptions, PartitionLog};

#[derive(Parser, Debug)]
#[command(name = "sluice-engine-append", about = "Append throughput of the sluice storage engine on one shard")]
#[command(args_override_self = true)]
struct Args {
    /// Where the partition logs go (must be on a real disk, not tmpfs).
    #[arg(long, default_value = "sluice-engine-append-data")]
    data_dir: PathBuf,
    /// Total bytes to append (suffixes K, M, G are binary).
    #[arg(long, default_value = "2G", value_parser = parse_size)]
    total_bytes: u64,
    /// Size of one record batch; as many 1 KiB records as fit.
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    batch_bytes: u64,
    /// Encoded size of one record.
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    record_bytes: u64,
    /// Partitions of one topic, all on this shard; batches go to them round-robin.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Appending tasks (each takes the next batch in turn). Appends to one partition are
    /// serialized by the log, so this matters across partitions.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Appends each task keeps unacknowledged, as a connection pipelines produce requests:
    /// `append_buffered` in order, then up to this many `wait_durable`s outstanding (the
    /// broker's connection allows 32). 1 = plain `append()`, one at a time.
    #[arg(long, default_value_t = 32)]
    pipeline: u32,
    /// never | always | interval:MS (flush.messages / flush.ms of the topic).
    #[arg(long, default_value = "never")]
    flush: String,
    /// Write-behind chunk size (WriterOptions::chunk_bytes, a multiple of 4 KiB).
    #[arg(long, value_parser = parse_size)]
    chunk_bytes: Option<u64>,
    /// Chunk writes in flight per partition (WriterOptions::max_in_flight).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Bytes of each partition's tail kept in memory for tailing readers
    /// (LogOptions::tail_cache_bytes; default: the engine's; 0 = off).
    #[arg(long, value_parser = parse_size)]
    tail_cache_bytes: Option<u64>,
    /// segment.bytes of the topic (Kafka's default 1 GiB).
    #[arg(long, value_parser = parse_size)]
    segment_bytes: Option<u64>,
    /// Pin the shard to this CPU (default: unpinned).
    #[arg(long)]
    cpu: Option<usize>,
    /// glommio io_memory of the executor (at most 4 MiB: `ulimit -l` is 8 MiB).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    io_memory: u64,
    /// Keep the data afterwards.
    #[arg(long)]
    keep: bool,
}

struct Outcome {
    bytes: u64,
    batches: u64,
    records: u64,
    seconds: f64,
    append_seconds: f64,
    syncs: u64,
    batch_len: usize,
    segments: usize,
    cpu_user_seconds: f64,
    cpu_sys_seconds: f64,
}

/// CPU time of the whole process so far (every thread: the shard and glommio's helpers).
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("sluice-engine-append: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let flush = FlushMode::parse(&args.flush).map_err(|e| format!("--flush: {e}"))?;
    if args.partitions == 0 || args.concurrency == 0 || args.pipeline == 0 {
        return Err("--partitions, --concurrency and --pipeline must be at least 1".into());
    }
    if args.io_memory > IO_MEMORY_BYTES as u64 {
        return Err(format!("--io-memory must be at most {IO_MEMORY_BYTES} (memlock limit)"));
    }
    let mut writer = WriterOptions::default();
    if let Some(c) = args.chunk_bytes {
        if c == 0 || c & 4095 != 0 {
            return Err("--chunk-bytes must be a positive multiple of 4096".into());
        }
        writer.chunk_bytes = c as usize;
    }
    if let Some(m) = args.max_in_flight {
        if m == 0 {
            return Err("--max-in-flight must be at least 1".into());
        }
        writer.max_in_flight = m;
    }

    let created = !args.data_dir.exists();
    let run_dir = if created {
        args.data_dir.clone()
    } else {
        args.data_dir.join(format!("engine-append-{}", std::process::id()))
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("create {}: {e}", run_dir.display()))?;
    if is_ram_fs(&run_dir) {
        let _ = std::fs::remove_dir_all(&run_dir);
        return Err(format!("{} is on tmpfs/ramfs; use a directory on a real disk", run_dir.display()));
    }

    let batch = Rc::new(batch_of(args.batch_bytes as usize, args.record_bytes as usize));
    let mut config = bench_config(flush, batch.len());
    if let Some(s) = args.segment_bytes {
        config.segment_bytes = i32::try_from(s).map_err(|_| "--segment-bytes must fit an INT".to_string())?;
    }
    let placement = args.cpu.map_or(Placement::Unbound, Placement::Fixed);
    let executor = LocalExecutorBuilder::new(placement)
        .name("engine-append")
        .io_memory(args.io_memory as usize)
        .make()
        .map_err(|e| format!("glommio executor: {e}"))?;

    let mut log_options = LogOptions { writer, ..LogOptions::default() };
    if let Some(t) = args.tail_cache_bytes {
        log_options.tail_cache_bytes = t as usize;
    }
    let flush_check = match flush {
        FlushMode::IntervalMs(ms) => Some(Duration::from_millis(ms.clamp(1, 100))),
        _ => None,
    };
    let partitions = args.partitions;
    let concurrency = args.concurrency;
    let pipeline = args.pipeline as usize;
    let total_bytes = args.total_bytes;
    let dir = run_dir.clone();
    let outcome = executor.run(async move {
        let mut logs: Vec<Rc<PartitionLog>> = Vec::new();
        for p in 0..partitions as i32 {
            let log = PartitionLog::open(&dir, "bench", p, config.clone(), log_options, true)
                .await
                .map_err(|e| format!("open partition {p}: {e}"))?;
            logs.push(log);
        }
        let logs = Rc::new(logs);
        // flush.ms syncs come from a timer, as the shard's housekeeping task does it.
        let stop = Rc::new(Cell::new(false));
        if let Some(every) = flush_check {
            let (logs, stop) = (logs.clone(), stop.clone());
            glommio::spawn_local(async move {
                while !stop.get() {
                    glommio::timer::sleep(every).await;
                    for log in logs.iter() {
                        if !stop.get() {
                            let _ = log.flush_if_due(sluice_engine::clock::now_ms()).await;
                        }
                    }
                }
            })
            .detach();
        }
        let total_batches = total_bytes.div_ceil(batch.len() as u64).max(1);
        let next = Rc::new(Cell::new(0u64));

        let (user0, sys0) = cpu_seconds();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (next, logs, batch) = (next.clone(), logs.clone(), batch.clone());
            tasks.push(glommio::spawn_local(async move {
                // Acknowledgements outstanding, oldest first.
                let mut acks: VecDeque<glommio::task::JoinHandle<Result<(), String>>> = VecDeque::new();
                loop {
                    let i = next.get();
                    if i >= total_batches {
                        break;
                    }
                    next.set(i + 1);
                    let log = logs[(i % logs.len() as u64) as usize].clone();
                    if pipeline == 1 {
                        log.append(&batch, 0).await.map_err(|e| format!("append: {e}"))?;
                        continue;
                    }
                    let (_, target) = log.append_buffered(&batch, 0).await.map_err(|e| format!("append: {e}"))?;
                    let ack = glommio::spawn_local(async move {
                        log.wait_durable(target).await.map_err(|e| format!("wait_durable: {e}"))
                    });
                    acks.push_back(ack.detach());
                    if acks.len() >= pipeline {
                        let oldest = acks.pop_front().expect("non-empty");
                        oldest.await.ok_or("ack task cancelled")??;
                    }
                }
                while let Some(ack) = acks.pop_front() {
                    ack.await.ok_or("ack task cancelled")??;
                }
                Ok::<(), String>(())
            }));
        }
        for task in tasks {
            task.await?;
        }
        let append_seconds = start.elapsed().as_secs_f64();
        for log in logs.iter() {
            log.flush().await.map_err(|e| format!("flush: {e}"))?;
        }
        let seconds = start.elapsed().as_secs_f64();
        let (user1, sys1) = cpu_seconds();
        let syncs = logs.iter().map(|l| l.sync_count()).sum();
        let segments = logs.iter().map(|l| l.segment_count()).sum();
        stop.set(true);
        for log in logs.iter() {
            log.close().await.map_err(|e| format!("close: {e}"))?;
        }
        Ok::<Outcome, String>(Outcome {
            bytes: total_batches * batch.len() as u64,
            batches: total_batches,
            records: total_batches * records_in(&batch) as u64,
            seconds,
            append_seconds,
            syncs,
            batch_len: batch.len(),
            segments,
            cpu_user_seconds: user1 - user0,
            cpu_sys_seconds: sys1 - sys0,
        })
    });
    drop(executor);
    if !args.keep {
        if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            eprintln!("warning: could not remove {}: {e}", run_dir.display());
        }
    }
    let o = outcome?;
    println!(
        "{{\"bytes\":{},\"seconds\":{:.6},\"mb_per_s\":{:.1},\"batch_bytes\":{},\"flush\":\"{}\",\
         \"batch_len\":{},\"record_bytes\":{},\"batches\":{},\"records\":{},\"append_seconds\":{:.6},\
         \"partitions\":{},\"concurrency\":{},\"pipeline\":{},\"chunk_bytes\":{},\"max_in_flight\":{},\"tail_cache_bytes\":{},\"syncs\":{},\"segments\":{},\
         \"cpu_user_seconds\":{:.3},\"cpu_sys_seconds\":{:.3}}}",
        o.bytes,
        o.seconds,
        o.bytes as f64 / 1e6 / o.seconds,
        args.batch_bytes,
        args.flush.trim(),
        o.batch_len,
        args.record_bytes,
        o.batches,
        o.records,
        o.append_seconds,
        args.partitions,
        args.concurrency,
        args.pipeline,
        writer.chunk_bytes,
        writer.max_in_flight,
        log_options.tail_cache_bytes,
        o.syncs,
        o.segments,
        o.cpu_user_seconds,
        o.cpu_sys_seconds,
    );
    Ok(())
}
