//! `sluice-raw-write`: the baseline under the engine — sequential direct-I/O writes of fixed-size
//! buffers with glommio's `DmaFile` on one executor, `--qd` writes in flight, no log at all.
//! Prints one JSON line like `sluice-engine-append`. Compare it with fio (same disk, other
//! runtime) and with the engine (same runtime, plus the log).
//!
//! The file is created fresh in `--data-dir` (so writes extend it, as the engine's segment
//! writes do, unless `--preallocate`) and removed afterwards unless `--keep`.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use clap::Parser;
use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};
use sluice_benches::{is_ram_fs, parse_size, IO_MEMORY_BYTES};

#[derive(Parser, Debug)]
#[command(name = "sluice-raw-write", about = "Sequential O_DIRECT writes through glommio, no engine")]
#[command(args_override_self = true)]
struct Args {
    /// Directory for the file (a real disk, not tmpfs).
    #[arg(long, default_value = "sluice-raw-write-data")]
    data_dir: PathBuf,
    /// Bytes to write in total.
    #[arg(long, default_value = "2G", value_parser = parse_size)]
    total_bytes: u64,
    /// Size of one write (a multiple of 4 KiB).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    bs: u64,
    /// Writes in flight.
    #[arg(long, default_value_t = 4)]
    qd: usize,
    /// fallocate the whole file first (size-changing), so writes do not extend it.
    #[arg(long)]
    preallocate: bool,
    /// fdatasync at the end (inside the timing).
    #[arg(long)]
    sync: bool,
    /// glommio io_memory of the executor (at most 4 MiB).
    #[arg(long, default_value = "4M", value_parser = parse_size)]
    io_memory: u64,
    #[arg(long)]
    keep: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("sluice-raw-write: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.bs == 0 || args.bs & 4095 != 0 || args.qd == 0 {
        return Err("--bs must be a positive multiple of 4096 and --qd at least 1".into());
    }
    if args.io_memory > IO_MEMORY_BYTES as u64 {
        return Err(format!("--io-memory must be at most {IO_MEMORY_BYTES} (memlock limit)"));
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("create {}: {e}", args.data_dir.display()))?;
    if is_ram_fs(&args.data_dir) {
        return Err(format!("{} is on tmpfs/ramfs; use a directory on a real disk", args.data_dir.display()));
    }
    let path = args.data_dir.join(format!("raw-write-{}.bin", std::process::id()));
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(args.io_memory as usize)
        .make()
        .map_err(|e| format!("glommio executor: {e}"))?;
    let (bs, qd, total, preallocate, sync) = (args.bs as usize, args.qd, args.total_bytes, args.preallocate, args.sync);
    let dir = args.data_dir.clone();
    let file_path = path.clone();
    let result = executor.run(async move {
        // glommio caches a per-device iopoll probe; prime it with a non-empty file first.
        sluice_engine::iopoll_probe::prime(&dir).await.map_err(|e| format!("iopoll probe: {e}"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&file_path)
            .await
            .map_err(|e| format!("open: {e}"))?;
        let writes = total.div_ceil(bs as u64);
        if preallocate {
            file.pre_allocate(writes * bs as u64, false).await.map_err(|e| format!("fallocate: {e}"))?;
        }
        let file: Rc<DmaFile> = Rc::new(file);
        let next = Rc::new(Cell::new(0u64));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..qd {
            let (file, next) = (file.clone(), next.clone());
            tasks.push(glommio::spawn_local(async move {
                let mut buf = file.alloc_dma_buffer(bs);
                buf.as_bytes_mut().iter_mut().enumerate().for_each(|(i, b)| *b = (i % 251) as u8);
                let buf = Rc::new(buf);
                loop {
                    let i = next.get();
                    if i >= writes {
                        return Ok::<(), String>(());
                    }
                    next.set(i + 1);
                    let n = file.write_rc_at(buf.clone(), i * bs as u64).await.map_err(|e| format!("write: {e}"))?;
                    if n != bs {
                        return Err(format!("short write: {n} of {bs}"));
                    }
                }
            }));
        }
        for task in tasks {
            task.await?;
        }
        if sync {
            file.fdatasync().await.map_err(|e| format!("fdatasync: {e}"))?;
        }
        let seconds = start.elapsed().as_secs_f64();
        file.close_rc().await.map_err(|e| format!("close: {e}"))?;
        Ok::<(u64, f64), String>((writes * bs as u64, seconds))
    });
    drop(executor);
    if !args.keep {
        let _ = std::fs::remove_file(&path);
    }
    let (bytes, seconds) = result?;
    println!(
        "{{\"bytes\":{bytes},\"seconds\":{seconds:.6},\"mb_per_s\":{:.1},\"bs\":{},\"qd\":{},\"preallocate\":{},\"sync\":{}}}",
        bytes as f64 / 1e6 / seconds,
        args.bs,
        args.qd,
        args.preallocate,
        args.sync
    );
    Ok(())
}
