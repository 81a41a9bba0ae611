//! Presence join storm, run with `cargo bench --bench presence`.
//!
//! Starts `fawkes dev` (release build) as a child process, then N authenticated clients
//! (default 5,000, `FAWKES_BENCH_SOCKETS`) connect and join one campaign at once. Every client
//! follows presence as phoenix.js would (the `presence_state`, then every `presence_diff`) and
//! is done when its list holds all N users. Reports:
//! - time until every client's list is complete, and until every join was answered;
//! - presence frames per client (mean and max), against the N frames per client that one diff
//!   per join would cost;
//! - presence bytes per client, and the server's memory growth.
//!
//! `FAWKES_BENCH_WINDOW_MS` sets the server's presence window (default: the server's, 25 ms).
//! Figures depend on the machine: report them with it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::env_usize;
use common::process::{connect, rss_kib, Process};
use futures_util::{SinkExt, StreamExt};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::HashMap;
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "donations:campaign:1";

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Users seen, as a bit set over user numbers (keys are `b<number>`): a client's whole
/// presence list in N/8 bytes, so 5,000 clients fit in the benchmark's memory.
struct Seen {
    bits: Vec<u64>,
    count: usize,
}

impl Seen {
    fn new(users: usize) -> Self {
        Self {
            bits: vec![0; users.div_ceil(64)],
            count: 0,
        }
    }

    fn set(&mut self, key: &str, present: bool) {
        let Some(i) = key.strip_prefix('b').and_then(|n| n.parse::<usize>().ok()) else {
            return;
        };
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let Some(slot) = self.bits.get_mut(word) else {
            return;
        };
        if present && *slot & bit == 0 {
            self.count += 1;
            *slot |= bit;
        } else if !present && *slot & bit != 0 {
            self.count -= 1;
            *slot &= !bit;
        }
    }
}

/// A frame's payload keys only: the metas are skipped without being built.
type Keys = HashMap<String, IgnoredAny>;

#[derive(Deserialize)]
struct Diff {
    joins: Keys,
    leaves: Keys,
}

#[derive(Default)]
struct Outcome {
    answered: Duration,
    complete: Duration,
    frames: usize,
    bytes: usize,
}

async fn storm_client(url: String, user: usize, users: usize, started: Instant) -> Outcome {
    let token = common::token(&format!("b{user}"), &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&token={token}"))
        .await
        .expect("connect");
    let join = format!(r#"["1","1","{TOPIC}","phx_join",{{}}]"#);
    ws.send(Message::Text(join.into())).await.expect("join");
    let mut seen = Seen::new(users);
    let mut outcome = Outcome::default();
    while seen.count < users {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("socket closed before the list was complete")
        };
        let text = text.as_str();
        if text.contains(r#""presence_state""#) {
            let (_, _, _, _, state): (IgnoredAny, IgnoredAny, IgnoredAny, IgnoredAny, Keys) =
                serde_json::from_str(text).expect("state frame");
            seen = Seen::new(users);
            for key in state.keys() {
                seen.set(key, true);
            }
        } else if text.contains(r#""presence_diff""#) {
            let (_, _, _, _, diff): (IgnoredAny, IgnoredAny, IgnoredAny, IgnoredAny, Diff) =
                serde_json::from_str(text).expect("diff frame");
            for key in diff.joins.keys() {
                seen.set(key, true);
            }
            for key in diff.leaves.keys() {
                seen.set(key, false);
            }
        } else {
            if text.contains("phx_reply") {
                outcome.answered = started.elapsed();
            }
            continue;
        }
        outcome.frames += 1;
        outcome.bytes += text.len();
    }
    outcome.complete = started.elapsed();
    // Keep the socket open until every client is done, so nobody's leave skews the others.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(ws);
    });
    outcome
}

#[tokio::main]
async fn main() {
    let users = env_usize("FAWKES_BENCH_SOCKETS", 5000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut flags = vec![
        "--outbound-queue".to_owned(),
        "65536".to_owned(),
        "--idle-timeout-secs".to_owned(),
        "3600".to_owned(),
    ];
    if let Ok(window) = std::env::var("FAWKES_BENCH_WINDOW_MS") {
        flags.extend(["--presence-window-ms".to_owned(), window]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Process::start(dir.path(), &flags);
    let pid = server.pid();
    drop(connect(&server).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss = rss_kib(pid);
    let (server_cpu, own_cpu) = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..users {
        tasks.spawn(storm_client(server.url(), user, users, started));
    }
    let mut outcomes = Vec::with_capacity(users);
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.expect("client task"));
    }
    let rss = rss_kib(pid);
    let server_cpu = cpu_seconds(&pid.to_string()) - server_cpu;
    let own_cpu = cpu_seconds("self") - own_cpu;
    let answered = outcomes
        .iter()
        .map(|o| o.answered)
        .max()
        .unwrap_or_default();
    let complete = outcomes
        .iter()
        .map(|o| o.complete)
        .max()
        .unwrap_or_default();
    let frames: usize = outcomes.iter().map(|o| o.frames).sum();
    let max_frames = outcomes.iter().map(|o| o.frames).max().unwrap_or_default();
    let bytes: usize = outcomes.iter().map(|o| o.bytes).sum();
    let mean = frames as f64 / users as f64;
    println!("presence join storm, embedded (`fawkes dev`), {users} authenticated clients on one campaign");
    println!("  every join answered after        {answered:.2?}");
    println!("  every client's list complete at  {complete:.2?}");
    println!(
        "  presence frames per client       mean {mean:.1}, max {max_frames} (one diff per join: {users}; {:.0}x fewer)",
        users as f64 / mean
    );
    println!(
        "  presence bytes per client        mean {:.0} KiB",
        bytes as f64 / users as f64 / 1024.0
    );
    println!(
        "  CPU used                         server {server_cpu:.1} s, benchmark clients {own_cpu:.1} s"
    );
    println!(
        "  server memory growth             {:.1} MiB ({:.1} KiB per joined, tracked socket)",
        rss.saturating_sub(base_rss) as f64 / 1024.0,
        rss.saturating_sub(base_rss) as f64 / users as f64
    );
}
