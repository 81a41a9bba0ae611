//! A `fawkes` binary as a child process, for tests that kill it or run its subcommands.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Client, Connect, SECRET};

/// A `fawkes` server child process (dev, connector or processor) on port 0.
pub struct Process {
    child: Child,
    pub addr: String,
}

impl Process {
    /// `fawkes dev` on `data_dir`, with extra flags.
    pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        let dir = data_dir.display().to_string();
        let mut args = vec!["dev", "--listen", "127.0.0.1:0", "--data-dir", &dir];
        args.extend_from_slice(extra);
        Self::spawn(&args, &[])
    }

    /// `fawkes <args>` with extra environment; waits for its "listening" line.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fawkes"))
            .args(args)
            .env("FAWKES_JWT_SECRET", SECRET)
            .env(
                "FAWKES_LOG",
                std::env::var("FAWKES_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fawkes");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("fawkes listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.addr)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("query the child")
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the child.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    pub fn kill_9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (e.g. `STOP`, `CONT`) to process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Resident memory of process `pid`, in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn connect(process: &Process) -> Client {
    // Wait until the socket endpoint answers (the listening line comes right after bind).
    for _ in 0..50 {
        if let Connect::Open(client) = Client::try_connect(&process.url(), None).await {
            return *client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fawkes did not accept sockets")
}

/// Runs `fawkes token` with `args` and the test secret; returns the token it printed.
pub fn mint_with_cli(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fawkes"))
        .arg("token")
        .args(args)
        .env("FAWKES_JWT_SECRET", SECRET)
        .output()
        .expect("run fawkes token");
    assert!(output.status.success(), "fawkes token failed: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}
