//! A broker the tuner starts for one run: `sluice broker` (this same executable) on a free
//! port with a fresh data dir, optionally pinned with `taskset`, its CPU time read from
//! /proc, stopped with SIGTERM.
//!
//! Owns: the child process and its data dir. Must never: leave a broker running (dropped =
//! killed) or reuse a data dir between runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct BrokerProcess {
    child: Child,
    pub port: u16,
    data_dir: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `taskset -c cpus exe` or `exe`.
pub fn pinned_command(exe: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

impl BrokerProcess {
    pub fn start(
        exe: &Path,
        data_dir: &Path,
        cores: usize,
        settings: &[(String, String)],
        cpus: Option<&str>,
    ) -> Result<BrokerProcess, String> {
        let _ = std::fs::remove_dir_all(data_dir);
        std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let mut cmd = pinned_command(exe, cpus);
        cmd.arg("broker").arg("--data-dir").arg(data_dir).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cores",
            &cores.to_string(),
        ]);
        for (k, v) in settings {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .env("RUST_LOG", "warn,sluice=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start broker: {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut broker = BrokerProcess { child, port, data_dir: data_dir.to_path_buf() };
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("sluice broker started") => break,
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
                Err(_) => {
                    broker.kill();
                    return Err(format!("broker did not start:\n{}", seen.join("\n")));
                }
            }
        }
        // Keep draining the log so the broker never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Ok(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// User + system CPU seconds the broker has used.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(ticks as f64 / hz)
    }

    /// SIGTERM, wait up to 30 s, then remove the data dir.
    pub fn stop(mut self) -> Result<(), String> {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                let _ = std::fs::remove_dir_all(&self.data_dir);
                return if status.success() { Ok(()) } else { Err(format!("broker exited with {status}")) };
            }
            if std::time::Instant::now() >= deadline {
                self.kill();
                return Err("broker did not stop within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
