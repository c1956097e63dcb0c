//! `sluice tune <experiment.toml>`: runs a sweep — for every configuration, rate and
//! repetition, start a fresh broker (this executable, pinned as the file says), run
//! `sluice bench` against it as a child process, record the bench's results and the broker's
//! CPU time — then write `runs.jsonl`, `runs.csv`, `summary.csv`, `summary.md`, `machine.txt`
//! and SVG plots to `tuning/results/<experiment>/`.
//!
//! Owns: the sweep lifecycle. Must never: hide a failed run (it stays in the results with its
//! error and is excluded from medians), or run a blocked experiment.

pub mod broker_process;
pub mod experiment;
pub mod plots;
pub mod results;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Args;

use self::broker_process::{pinned_command, BrokerProcess};
use self::experiment::{Experiment, RunSpec};
use self::results::{RunRow, SummaryRow};

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The experiment file (tuning/sweeps/<name>.toml).
    pub experiment: PathBuf,
    /// Results go to <results-dir>/<experiment name>/.
    #[arg(long, default_value = "tuning/results")]
    pub results_dir: PathBuf,
    /// Scratch data dirs for the brokers (on a real disk, never tmpfs).
    #[arg(long, default_value = "target/tuning-data")]
    pub data_dir: PathBuf,
    /// Override the file's repetitions.
    #[arg(long)]
    pub reps: Option<usize>,
    /// Only redraw plots and summaries from an existing runs.jsonl.
    #[arg(long)]
    pub replot: bool,
}

fn loadavg() -> (f64, String) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let first = text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (first, text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn run(args: TuneArgs) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice tune: {e}");
            1
        }
    }
}

fn run_inner(args: TuneArgs) -> Result<i32, String> {
    let text = std::fs::read_to_string(&args.experiment).map_err(|e| format!("{}: {e}", args.experiment.display()))?;
    let mut experiment = Experiment::parse(&text)?;
    if let Some(r) = args.reps {
        experiment.reps = r.max(1);
    }
    let out_dir = args.results_dir.join(&experiment.name);
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let knob_names: Vec<String> = experiment.knobs.iter().map(|k| k.name.clone()).collect();
    if let Some(reason) = &experiment.blocked {
        std::fs::write(out_dir.join("BLOCKED.md"), format!("# {} — blocked\n\n{reason}\n", experiment.name))
            .map_err(|e| e.to_string())?;
        eprintln!("sluice tune: {} is blocked: {reason}", experiment.name);
        return Ok(0);
    }
    let rows_path = out_dir.join("runs.jsonl");
    let rows = if args.replot { read_rows(&rows_path)? } else { run_sweep(&experiment, &args, &out_dir, &rows_path)? };
    let summary = results::summarize(&rows);
    std::fs::write(out_dir.join("runs.csv"), results::runs_csv(&rows, &knob_names)).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("summary.csv"), results::summary_csv(&summary, &knob_names))
        .map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("summary.md"), results::summary_markdown(&summary)).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(&summary).expect("serializes"))
        .map_err(|e| e.to_string())?;
    draw(&experiment, &summary, &out_dir)?;
    print!("{}", results::summary_markdown(&summary));
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        eprintln!("sluice tune: {failed} of {} runs failed (see runs.csv)", rows.len());
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn read_rows(path: &Path) -> Result<Vec<RunRow>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| e.to_string())?;
            let mut row = RunRow {
                rep: v["rep"].as_u64().unwrap_or(0) as usize,
                config: v["config"].as_str().unwrap_or("").to_string(),
                knobs: serde_json::from_value(v["knobs"].clone()).unwrap_or_default(),
                target_rate: v["target_rate"].as_f64().unwrap_or(0.0),
                loadavg_1m: v["loadavg_1m"].as_f64().unwrap_or(0.0),
                error: v["error"].as_str().unwrap_or("").to_string(),
                ..Default::default()
            };
            row.fill_from_report(&v["report"], v["broker_cpu_s"].as_f64().unwrap_or(0.0));
            if !row.error.is_empty() && v["report"].is_null() {
                row.ok = false;
            }
            Ok(row)
        })
        .collect()
}

fn run_sweep(
    experiment: &Experiment,
    args: &TuneArgs,
    out_dir: &Path,
    rows_path: &Path,
) -> Result<Vec<RunRow>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let runs = experiment.runs();
    let (_, load_start) = loadavg();
    let machine = format!(
        "experiment: {}\n{}\ndate: {}\ncommit: {}\nnproc: {}\nkernel: {}\ncpu: {}\nloadavg at start: {load_start}\ncommand: {}\nruns: {}\n",
        experiment.name,
        experiment.description.trim(),
        command_output("date", &["-u", "+%FT%TZ"]),
        command_output("git", &["rev-parse", "--short", "HEAD"]),
        command_output("nproc", &[]),
        command_output("uname", &["-r"]),
        command_output("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
        std::env::args().collect::<Vec<_>>().join(" "),
        runs.len(),
    );
    std::fs::write(out_dir.join("machine.txt"), &machine).map_err(|e| e.to_string())?;
    let mut jsonl = std::fs::File::create(rows_path).map_err(|e| e.to_string())?;
    let data_root = args.data_dir.join(&experiment.name);
    let mut rows = Vec::new();
    for (i, spec) in runs.iter().enumerate() {
        let (load, _) = loadavg();
        eprintln!(
            "[{}/{}] rep {} {} rate {} (load {load:.2})",
            i + 1,
            runs.len(),
            spec.rep,
            spec.config_label(),
            spec.rate.map_or("file".to_string(), |r| if r == 0.0 { "max".into() } else { format!("{r:.0}") })
        );
        let mut row = RunRow {
            rep: spec.rep,
            config: spec.config_label(),
            knobs: spec.knob_values.iter().cloned().collect(),
            target_rate: spec.rate.unwrap_or(0.0),
            loadavg_1m: load,
            ..Default::default()
        };
        let (report, cpu) = match run_one(&exe, experiment, spec, &data_root.join(format!("run-{i}")), out_dir) {
            Ok((report, cpu)) => (Some(report), cpu),
            Err(e) => {
                eprintln!("  failed: {e}");
                row.error = e;
                (None, 0.0)
            }
        };
        if let Some(r) = &report {
            row.fill_from_report(r, cpu);
            eprintln!(
                "  produce {:.1} MB/s consume {:.1} MB/s ack p99 {:.2} ms e2e p99 {:.2} ms broker {:.3} CPU-s/GB{}",
                row.produce_mb_per_sec,
                row.consume_mb_per_sec,
                row.ack_p99_ms,
                row.e2e_p99_ms,
                row.broker_cpu_s_per_gb,
                if row.ok { String::new() } else { format!(" — {}", row.error) }
            );
        }
        let mut line = serde_json::to_value(&row).expect("serializes");
        line["report"] = report.unwrap_or(serde_json::Value::Null);
        writeln!(jsonl, "{line}").map_err(|e| e.to_string())?;
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&data_root);
    let (_, load_end) = loadavg();
    let mut m =
        std::fs::OpenOptions::new().append(true).open(out_dir.join("machine.txt")).map_err(|e| e.to_string())?;
    let _ = writeln!(m, "loadavg at end: {load_end}");
    Ok(rows)
}

/// One run: fresh broker, bench child, broker CPU time over the bench.
fn run_one(
    exe: &Path,
    experiment: &Experiment,
    spec: &RunSpec,
    data_dir: &Path,
    out_dir: &Path,
) -> Result<(serde_json::Value, f64), String> {
    let settings: Vec<(String, String)> = spec.broker_settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let broker = BrokerProcess::start(exe, data_dir, spec.broker_cores, &settings, experiment.broker_cpus.as_deref())?;
    let mut workload = spec.workload.clone();
    workload.entry("cores").or_insert(toml::Value::Integer(1));
    if let Some(prefill) = &experiment.prefill {
        let mut prefill = prefill.clone();
        prefill.entry("cores").or_insert(toml::Value::Integer(1));
        let report = run_bench(exe, experiment, &prefill, &broker.bootstrap(), out_dir, "prefill")
            .map_err(|e| format!("prefill: {e}"))?;
        if report.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
            return Err(format!("prefill reported errors: {}", report.get("errors").cloned().unwrap_or_default()));
        }
        let topics = toml::Value::try_from(report["topics"].clone()).map_err(|e| e.to_string())?;
        workload.insert("topic_names".into(), topics);
    }
    let cpu_before = broker.cpu_seconds().unwrap_or(0.0);
    let report = run_bench(exe, experiment, &workload, &broker.bootstrap(), out_dir, "bench");
    let cpu = broker.cpu_seconds().unwrap_or(0.0) - cpu_before;
    let stop = broker.stop();
    let report = report?;
    stop.map_err(|e| format!("broker stop: {e}"))?;
    Ok((report, cpu))
}

/// Runs `sluice bench` with `workload` (pinned as the experiment says); returns its results JSON.
fn run_bench(
    exe: &Path,
    experiment: &Experiment,
    workload: &toml::Table,
    bootstrap: &str,
    out_dir: &Path,
    tag: &str,
) -> Result<serde_json::Value, String> {
    let workload_path = out_dir.join(format!(".{tag}.toml"));
    let json_path = out_dir.join(format!(".{tag}.json"));
    std::fs::write(&workload_path, toml::to_string(workload).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&json_path);
    let output = pinned_command(exe, experiment.bench_cpus.as_deref())
        .arg("bench")
        .arg("--workload")
        .arg(&workload_path)
        .args(["--bootstrap", bootstrap, "--quiet", "--json"])
        .arg(&json_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("run bench: {e}"))?;
    let report = std::fs::read_to_string(&json_path)
        .map_err(|_| format!("bench wrote no results: {}", String::from_utf8_lossy(&output.stderr).trim()));
    let _ = std::fs::remove_file(&json_path);
    let _ = std::fs::remove_file(&workload_path);
    serde_json::from_str(&report?).map_err(|e| format!("bench results: {e}"))
}

fn draw(experiment: &Experiment, summary: &[SummaryRow], out_dir: &Path) -> Result<(), String> {
    let kind = experiment.workload.get("kind").and_then(|k| k.as_str()).unwrap_or("produce");
    let (x, y) = match kind {
        "consume" => ("consume_mb_per_sec", "e2e_p99_ms"),
        "e2e" => ("produce_mb_per_sec", "e2e_p99_ms"),
        _ => ("produce_mb_per_sec", "ack_p99_ms"),
    };
    let throughput = if kind == "consume" { "consume_mb_per_sec" } else { "produce_mb_per_sec" };
    plots::throughput_vs_latency(
        &out_dir.join("throughput_vs_latency.svg"),
        &format!("{}: {x} vs {y}", experiment.name),
        summary,
        x,
        y,
    )?;
    // One bar chart per knob: medians over the max-throughput (or only) runs with each value.
    let max_rate: Vec<&SummaryRow> = summary.iter().filter(|r| r.target_rate == 0.0 && r.runs > 0).collect();
    for knob in &experiment.knobs {
        let mut bars: Vec<(String, f64)> = Vec::new();
        let mut cpu_bars: Vec<(String, f64)> = Vec::new();
        for value in &knob.values {
            let v = experiment::value_text(value);
            let matching: Vec<&&SummaryRow> = max_rate.iter().filter(|r| r.knobs.get(&knob.name) == Some(&v)).collect();
            if matching.is_empty() {
                continue;
            }
            bars.push((v.clone(), results::median(matching.iter().map(|r| r.medians[throughput]).collect())));
            cpu_bars.push((v, results::median(matching.iter().map(|r| r.medians["broker_cpu_s_per_gb"]).collect())));
        }
        let file = knob.name.replace(['.', '/'], "_");
        if !bars.is_empty() {
            plots::bars(
                &out_dir.join(format!("bar_{file}.svg")),
                &format!("{}: {throughput} by {}", experiment.name, knob.name),
                throughput,
                &bars,
            )?;
        }
        if cpu_bars.iter().any(|b| b.1 > 0.0) {
            plots::bars(
                &out_dir.join(format!("bar_{file}_broker_cpu.svg")),
                &format!("{}: broker CPU-s per GB by {}", experiment.name, knob.name),
                "broker CPU-s/GB",
                &cpu_bars,
            )?;
        }
    }
    Ok(())
}
