//! The hot-campaign benchmark (`cargo bench --bench hot_campaign`): a telethon's hot minute.
//!
//! `FAWKES_BENCH_DONORS` sockets (default 20) join one campaign and donate into it as fast as
//! acknowledgements come back (each with `FAWKES_BENCH_WINDOW` pushes in flight, default 64),
//! for `FAWKES_BENCH_SECONDS` (default 10); every socket also receives every broadcast of the
//! campaign, so the server delivers donors × donations broadcasts too. Then the same load at
//! half the measured rate, paced, for the acknowledgement latency a donor feels when the
//! server is not saturated.
//!
//! Prints acknowledged donations per second, acknowledgement p50/p99, broadcasts delivered,
//! and the server processes' CPU time and peak RSS. `FAWKES_BENCH_BACKEND=kafka` runs two
//! processors (static partitions 0-3 and 4-7) and one connector on a Tansu broker instead of
//! `fawkes dev`. Figures depend on the machine: report them with it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_usize;
use common::kafka::{fresh_group, Tansu};
use common::process::Process;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "donations:campaign:1";

/// What one donor saw.
#[derive(Default)]
struct Tally {
    acks: Vec<Duration>,
    errors: usize,
    broadcasts: usize,
}

/// Server CPU seconds (user + system) of `pid`, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Peak resident memory of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or_default()
        / 1024.0
}

/// One donor: joins, then donates for `duration`, at most `window` in flight, each push at
/// least `every` after the previous one (zero: as fast as acknowledgements allow).
async fn donor(url: String, n: usize, duration: Duration, window: usize, every: Duration) -> Tally {
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let (mut sink, mut stream) = ws.split();
    let join = json!(["j", "0", TOPIC, "phx_join", {}]);
    sink.send(Message::Text(join.to_string().into()))
        .await
        .expect("join");
    loop {
        let Some(Ok(Message::Text(text))) = stream.next().await else {
            panic!("socket closed before the join reply")
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("json");
        if frame[1] == "0" && frame[3] == "phx_reply" {
            assert_eq!(frame[4]["status"], "ok", "{frame}");
            break;
        }
    }
    let permits = Arc::new(Semaphore::new(window));
    let sent_at = Arc::new(Mutex::new(std::collections::HashMap::<u64, Instant>::new()));
    let stop_sending = Instant::now() + duration;
    let writer = {
        let permits = permits.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut next_ref = 1u64;
            let mut tick = tokio::time::interval(every.max(Duration::from_micros(1)));
            while Instant::now() < stop_sending {
                if !every.is_zero() {
                    tick.tick().await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                next_ref += 1;
                let push = json!(["j", next_ref.to_string(), TOPIC, "new_donation",
                    {"amount": "1.00", "donor_name": format!("donor {n}")}]);
                sent_at.lock().await.insert(next_ref, Instant::now());
                if sink
                    .send(Message::Text(push.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            sink
        })
    };
    let mut tally = Tally::default();
    let drain_until = stop_sending + Duration::from_secs(15);
    loop {
        let pending = sent_at.lock().await.len();
        if writer.is_finished() && pending == 0 {
            break;
        }
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout_at(drain_until.into(), stream.next()).await
        else {
            break;
        };
        // Broadcasts are most frames: count them without parsing, so the load generator
        // (on the same cores) spends its CPU on sending, not on reading.
        if text.as_str().contains("\"donation_created\"") {
            tally.broadcasts += 1;
            continue;
        }
        let frame: Value = serde_json::from_str(text.as_str()).expect("json");
        if frame[3] != "phx_reply" {
            continue;
        }
        let Some(msg_ref) = frame[1].as_str().and_then(|r| r.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(sent) = sent_at.lock().await.remove(&msg_ref) {
            if frame[4]["status"] == "ok" {
                tally.acks.push(sent.elapsed());
            } else {
                tally.errors += 1;
            }
            permits.add_permits(1);
        }
    }
    drop(writer.await);
    tally
}

/// Runs `donors` donors at once; returns their tallies merged and the wall time.
async fn round(
    url: &str,
    donors: usize,
    duration: Duration,
    window: usize,
    every: Duration,
) -> (Tally, Duration) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..donors {
        tasks.spawn(donor(url.to_owned(), n, duration, window, every));
    }
    let mut all = Tally::default();
    while let Some(tally) = tasks.join_next().await {
        let tally = tally.expect("donor task");
        all.acks.extend(tally.acks);
        all.errors += tally.errors;
        all.broadcasts += tally.broadcasts;
    }
    all.acks.sort();
    (
        all,
        started.elapsed().min(duration + Duration::from_secs(15)),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn report(label: &str, tally: &Tally, duration: Duration, pids: &[u32], cpu_before: f64) {
    let cpu: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
    let acked = tally.acks.len();
    println!(
        "{label}: {acked} acknowledged in {:.1?} = {:.0}/s, {} errors; ack p50 {:.1?}, p99 {:.1?}; {} broadcasts delivered; server CPU {cpu:.1} s ({:.0} µs per donation)",
        duration,
        acked as f64 / duration.as_secs_f64(),
        tally.errors,
        percentile(&tally.acks, 0.5),
        percentile(&tally.acks, 0.99),
        tally.broadcasts,
        cpu * 1e6 / acked.max(1) as f64,
    );
}

#[tokio::main]
async fn main() {
    let donors = env_usize("FAWKES_BENCH_DONORS", 20);
    let window = env_usize("FAWKES_BENCH_WINDOW", 64);
    let seconds = env_usize("FAWKES_BENCH_SECONDS", 10) as u64;
    let backend = std::env::var("FAWKES_BENCH_BACKEND").unwrap_or_else(|_| "embedded".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--channel-rate-limit", "0", "--outbound-queue", "65536"];
    let mut processes: Vec<Process> = Vec::new();
    let _tansu;
    let url = if backend == "kafka" {
        let tansu = Tansu::start();
        let group = fresh_group("hot");
        processes.push(tansu.owner(dir.path(), &group, "0-3"));
        processes.push(tansu.owner(dir.path(), &group, "4-7"));
        let connector = tansu.connector(&flags);
        let url = connector.url();
        processes.push(connector);
        _tansu = Some(tansu);
        url
    } else {
        let server = Process::start(dir.path(), &flags);
        let url = server.url();
        processes.push(server);
        _tansu = None;
        url
    };
    let pids: Vec<u32> = processes.iter().map(Process::pid).collect();
    // Warm up (joins, first allocations, the campaign's partition assigned).
    round(&url, 2, Duration::from_secs(1), 8, Duration::ZERO).await;

    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let duration = Duration::from_secs(seconds);
    let (flat_out, took) = round(&url, donors, duration, window, Duration::ZERO).await;
    let rate = flat_out.acks.len() as f64 / took.as_secs_f64();
    println!(
        "machine: {} cores; backend: {backend}; {donors} donors into one campaign, {window} in flight each",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    report("flat out", &flat_out, took, &pids, cpu_before);

    let half = (rate / 2.0).max(1.0);
    let every = Duration::from_secs_f64(donors as f64 / half);
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let (paced, took) = round(&url, donors, duration, window, every).await;
    report(
        &format!("at half that rate ({half:.0}/s offered)"),
        &paced,
        took,
        &pids,
        cpu_before,
    );
    let rss: Vec<String> = pids
        .iter()
        .map(|p| format!("{:.0} MiB", peak_rss_mib(*p)))
        .collect();
    println!("server peak RSS: {}", rss.join(", "));
    let store = std::fs::metadata(dir.path().join("store.sqlite")).map(|m| m.len());
    let wal = std::fs::metadata(dir.path().join("store.sqlite-wal")).map(|m| m.len());
    if let Ok(bytes) = store {
        let donations = flat_out.acks.len() + paced.acks.len();
        println!(
            "store: {:.1} MiB (+ {:.1} MiB WAL) for {donations} donations: {:.0} bytes each, outcomes included",
            bytes as f64 / 1048576.0,
            wal.unwrap_or_default() as f64 / 1048576.0,
            bytes as f64 / donations.max(1) as f64
        );
    }
}
