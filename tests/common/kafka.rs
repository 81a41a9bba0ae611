//! A Tansu broker (a Kafka-protocol broker) on a free loopback port, for tests that need Kafka.
//!
//! Tansu comes from `cargo install tansu --locked --features dynostore` (the test command
//! installs it); `FAWKES_TANSU_BIN` points elsewhere. A test that needs Kafka and cannot start
//! it fails: it never skips silently.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::Process;

/// A running Tansu broker, stopped on drop.
pub struct Tansu {
    child: Child,
    pub brokers: String,
}

fn tansu_bin() -> String {
    if let Ok(bin) = std::env::var("FAWKES_TANSU_BIN") {
        return bin;
    }
    let cargo_bin = std::env::var("HOME")
        .map(|home| format!("{home}/.cargo/bin/tansu"))
        .unwrap_or_default();
    if std::path::Path::new(&cargo_bin).exists() {
        cargo_bin
    } else {
        "tansu".to_owned()
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Tansu {
    /// Starts a broker with memory storage and creates the Fawkes topics on it.
    pub fn start() -> Self {
        let port = free_port();
        Self::start_advertising(port, port)
    }

    /// Starts a broker behind a [`Proxy`](super::proxy::Proxy): it listens on a free port the
    /// proxy forwards to, and tells clients to connect to the proxy (every connection then
    /// goes through it).
    pub fn behind_proxy() -> (Self, super::proxy::Proxy) {
        let port = free_port();
        let proxy = super::proxy::Proxy::start(port);
        (Self::start_advertising(port, proxy.port), proxy)
    }

    /// The broker's process id (to pause it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the broker.
    pub fn signal(&self, signal: &str) {
        super::process::send_signal(self.pid(), signal);
    }

    fn start_advertising(port: u16, advertised: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let mut child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised_url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start Tansu ({e}); install it with `cargo install tansu --locked --features dynostore`")
            });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("ready") => break,
                Some(Ok(_)) => continue,
                _ => panic!("Tansu exited before it was ready"),
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let tansu = Self {
            child,
            brokers: format!("127.0.0.1:{advertised}"),
        };
        let output = Command::new(env!("CARGO_BIN_EXE_fawkes"))
            .args(["topics", "create"])
            .env("FAWKES_KAFKA_BROKERS", &tansu.brokers)
            .output()
            .expect("run fawkes topics create");
        assert!(output.status.success(), "topics create failed: {output:?}");
        tansu
    }

    /// A processor in consumer group `group`, on the store in `data_dir`, with the stable
    /// identity `instance` (a restart with the same one takes over its partitions).
    pub fn processor(&self, data_dir: &std::path::Path, group: &str, instance: &str) -> Process {
        self.spawn_processor(
            data_dir,
            group,
            &[],
            &[("FAWKES_PROCESSOR_INSTANCE_ID", instance)],
        )
    }

    /// A processor owning `partitions` (static assignment, e.g. "0-3") under `group`.
    pub fn owner(&self, data_dir: &std::path::Path, group: &str, partitions: &str) -> Process {
        self.spawn_processor(data_dir, group, &["--partitions", partitions], &[])
    }

    fn spawn_processor(
        &self,
        data_dir: &std::path::Path,
        group: &str,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Process {
        let dir = data_dir.display().to_string();
        let mut args = vec![
            "processor",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir,
        ];
        args.extend_from_slice(extra_args);
        let mut env = vec![
            ("FAWKES_KAFKA_BROKERS", self.brokers.as_str()),
            ("FAWKES_PROCESSOR_GROUP", group),
            // The tests use the demo campaigns; processors create them only when asked.
            ("FAWKES_SEED", "true"),
            ("FAWKES_KAFKA_FETCH_WAIT_MAX_MS", "1"),
        ];
        env.extend_from_slice(extra_env);
        Process::spawn(&args, &env)
    }

    /// A connector on a free port.
    pub fn connector(&self, extra: &[&str]) -> Process {
        let mut args = vec!["connector", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Process::spawn(
            &args,
            &[
                ("FAWKES_KAFKA_BROKERS", &self.brokers),
                ("FAWKES_KAFKA_FETCH_WAIT_MAX_MS", "1"),
            ],
        )
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // A paused broker does not die of SIGKILL until it is continued on some systems.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh consumer group name: Tansu keeps dead members of a group around, so every test
/// uses its own.
pub fn fresh_group(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{name}-{nanos}")
}

/// How long to wait for a distributed round trip in tests.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How many command partitions a processor owns, from its `/metrics`.
pub async fn partitions_of(processor: &Process) -> u64 {
    let addr = processor.addr.parse().expect("metrics address");
    let (_, body) = super::http(addr, "GET", "/metrics", None, None).await;
    body.lines()
        .find_map(|l| l.strip_prefix("fawkes_partitions_assigned "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `processors` own `total` partitions between them, each at least one: the
/// group is stable. Tansu never expires a member killed without leaving, so tests that kill
/// processors wait for this before and after each kill.
pub async fn wait_for_stable_group(processors: &[&Process], total: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut counts = Vec::new();
        for p in processors {
            counts.push(partitions_of(p).await);
        }
        if counts.iter().sum::<u64>() == total && counts.iter().all(|c| *c > 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group did not settle: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
