//! Long-poll benchmark of `fawkes dev` (release build), run with `cargo bench --bench longpoll`.
//!
//! N long-poll clients (default 1,000, `FAWKES_BENCH_CLIENTS`) open a session each, join one
//! campaign, and poll it as phoenix.js does (one GET after another on a kept-alive
//! connection). A WebSocket donor then donates into the campaign, each donation a
//! `donation_created` for every client:
//! - paced: `FAWKES_BENCH_RATE` donations a second (default 5) for 10 s: the delivery latency a
//!   long-poll subscriber feels (from the donor's send to the poll answer that carries it),
//!   p50 and p99 over every (client, donation);
//! - flat out: `FAWKES_BENCH_DONATIONS` (default 400) with 32 in flight: messages delivered to
//!   long-poll clients per second.
//!
//! The server runs as a child process, so its CPU time (user + system, from /proc) and RSS are
//! its own; the clients share the machine's cores with it. Figures depend on the machine:
//! report them with it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_usize;
use common::process::{connect, rss_kib, Process};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TOPIC: &str = "donations:campaign:1";

/// One kept-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// Sends a request and reads the answer's JSON body (the server always sends a length).
    async fn request(&mut self, method: &str, target: &str, body: &str) -> Value {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(head.as_bytes())
            .await
            .expect("write");
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("read");
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
        serde_json::from_slice(&body).expect("json")
    }
}

/// The donation index an amount encodes (`1.00` is donation 0).
fn index_of(amount: &str) -> Option<usize> {
    let (units, cents) = amount.split_once('.')?;
    let cents: usize = units.parse::<usize>().ok()? * 100 + cents.parse::<usize>().ok()?;
    cents.checked_sub(100)
}

fn amount_of(index: usize) -> String {
    let cents = index + 100;
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What the clients saw: per donation index, when it was sent (ns since start; 0 = not yet).
struct Tally {
    start: Instant,
    sent: Vec<AtomicU64>,
    latencies: std::sync::Mutex<Vec<Duration>>,
    delivered: AtomicUsize,
}

/// One long-poll client: opens a session, joins, then polls until `stop`.
async fn client(
    addr: String,
    tally: Arc<Tally>,
    ready: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut conn = Conn::open(&addr).await;
    let opened = conn.request("GET", "/socket/longpoll?vsn=2.0.0", "").await;
    let token = opened["token"].as_str().expect("token").to_owned();
    let target = format!("/socket/longpoll?vsn=2.0.0&token={token}");
    let join = json!(["1", "1", TOPIC, "phx_join", {}]).to_string();
    let posted = conn.request("POST", &target, &join).await;
    assert_eq!(posted["status"], 200);
    let mut joined = false;
    while !stop.is_cancelled() {
        let body = tokio::select! {
            () = stop.cancelled() => break,
            body = conn.request("GET", &target, "") => body,
        };
        if body["status"] != 200 {
            continue;
        }
        let now = tally.start.elapsed();
        let mut seen = Vec::new();
        for message in body["messages"].as_array().into_iter().flatten() {
            let Some(text) = message.as_str() else {
                continue;
            };
            let frame: Value = serde_json::from_str(text).expect("frame");
            if frame[3] == "campaign_state" && !joined {
                joined = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            if frame[3] == "donation_created" {
                if let Some(i) = frame[4]["donation"]["amount"].as_str().and_then(index_of) {
                    let sent = tally.sent.get(i).map_or(0, |s| s.load(Ordering::Relaxed));
                    if sent > 0 {
                        seen.push(now.saturating_sub(Duration::from_nanos(sent)));
                    }
                }
            }
        }
        if !seen.is_empty() {
            tally.delivered.fetch_add(seen.len(), Ordering::Relaxed);
            tally
                .latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(seen);
        }
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let clients = env_usize("FAWKES_BENCH_CLIENTS", 1000);
    let rate = env_usize("FAWKES_BENCH_RATE", 5);
    let flat = env_usize("FAWKES_BENCH_DONATIONS", 400);
    let paced = rate * 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(
        dir.path(),
        &["--channel-rate-limit", "0", "--outbound-queue", "65536"],
    );
    let pid = server.pid();
    let mut donor = connect(&server).await;
    donor.patience = Duration::from_secs(60);
    let (donor_jr, _) = donor.join(TOPIC, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss = rss_kib(pid);

    let tally = Arc::new(Tally {
        start: Instant::now(),
        sent: (0..paced + flat).map(|_| AtomicU64::new(0)).collect(),
        latencies: std::sync::Mutex::new(Vec::new()),
        delivered: AtomicUsize::new(0),
    });
    let ready = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(client(
            server.addr.clone(),
            tally.clone(),
            ready.clone(),
            stop.clone(),
        ));
    }
    while ready.load(Ordering::Relaxed) < clients {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "clients did not all join"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined_in = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(pid);

    // Paced: the latency a subscriber feels.
    let cpu_before = cpu_seconds(pid);
    let round = Instant::now();
    for i in 0..paced {
        let due = round + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        tally.sent[i].store(tally.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let reply = donor
            .push(
                &donor_jr,
                TOPIC,
                "new_donation",
                json!({"amount": amount_of(i), "donor_name": "bench"}),
            )
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    let expected = paced * clients;
    let waited = Instant::now();
    while tally.delivered.load(Ordering::Relaxed) < expected
        && waited.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paced_took = round.elapsed();
    let paced_cpu = cpu_seconds(pid) - cpu_before;
    let mut latencies = std::mem::take(
        &mut *tally
            .latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let paced_delivered = tally.delivered.swap(0, Ordering::Relaxed);
    latencies.sort();

    // Flat out: messages per second.
    let cpu_before = cpu_seconds(pid);
    let round = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in paced..paced + flat {
        tally.sent[i].store(tally.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let msg_ref = donor
            .send(
                Some(&donor_jr),
                TOPIC,
                "new_donation",
                json!({"amount": amount_of(i), "donor_name": "bench"}),
            )
            .await;
        in_flight.push_back(msg_ref);
        if in_flight.len() >= 32 {
            let msg_ref = in_flight.pop_front().unwrap_or_default();
            assert_eq!(donor.reply(&msg_ref).await["status"], "ok");
        }
    }
    while let Some(msg_ref) = in_flight.pop_front() {
        assert_eq!(donor.reply(&msg_ref).await["status"], "ok");
    }
    let expected = flat * clients;
    let waited = Instant::now();
    while tally.delivered.load(Ordering::Relaxed) < expected
        && waited.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flat_took = round.elapsed();
    let flat_cpu = cpu_seconds(pid) - cpu_before;
    let flat_delivered = tally.delivered.load(Ordering::Relaxed);
    let mut flat_latencies = std::mem::take(
        &mut *tally
            .latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    flat_latencies.sort();
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    stop.cancel();
    while tasks.join_next().await.is_some() {}

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "machine: {} cores, {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("long-poll clients: {clients} on {TOPIC}, all joined in {joined_in:.2?}");
    println!(
        "server memory: RSS {base_rss} -> {rss} KiB with the clients joined ({:.1} KiB per session); peak {peak} KiB",
        (rss.saturating_sub(base_rss)) as f64 / clients as f64
    );
    println!(
        "paced, {rate} donations/s for {paced} donations: {paced_delivered} of {} delivered in {paced_took:.2?} ({:.0} messages/s); delivery latency p50 {:.1?}, p99 {:.1?}, max {:.1?}; server CPU {paced_cpu:.1} s",
        paced * clients,
        paced_delivered as f64 / paced_took.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    println!(
        "flat out, {flat} donations (32 in flight): {flat_delivered} of {} delivered in {flat_took:.2?} = {:.0} messages/s; delivery latency p50 {:.1?}, p99 {:.1?}; server CPU {flat_cpu:.1} s ({:.1} µs per message)",
        flat * clients,
        flat_delivered as f64 / flat_took.as_secs_f64(),
        percentile(&flat_latencies, 0.5),
        percentile(&flat_latencies, 0.99),
        flat_cpu * 1e6 / flat_delivered.max(1) as f64,
    );
    drop(server);
}
