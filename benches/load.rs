//! Load benchmark of `fawkes dev` (release build), run with `cargo bench --bench load`.
//!
//! Starts the server as a child process (so its memory can be read apart from the clients')
//! and measures:
//! - connection storm: time for N sockets to connect and join one campaign concurrently;
//! - memory per connected socket: the server's RSS growth divided by N;
//! - fan-out: deliveries per second of donation broadcasts to all N subscribers;
//! - donation latency: the donor's acknowledgement, and the time until a second socket
//!   sees `donation_created`, p50 and p99 over sequential donations.
//!
//! - donation throughput: donations per second with 200 in flight from one socket.
//!
//! `FAWKES_BENCH_BACKEND=kafka` runs a connector and a processor as separate processes on a
//! Tansu broker instead of `fawkes dev` (the memory figure is then the connector's).
//! Sizes come from `FAWKES_BENCH_SOCKETS` (default 2000) and `FAWKES_BENCH_DONATIONS`
//! (default 500). Figures depend on the machine: report them with it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::env_usize;
use common::kafka::{fresh_group, Tansu};
use common::process::{connect, rss_kib, Process};
use common::{Client, Connect};
use serde_json::json;

const TOPIC: &str = "donations:campaign:1";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

async fn joined_client(url: &str) -> Client {
    let Connect::Open(client) = Client::try_connect(url, None).await else {
        panic!("connect refused")
    };
    let mut client = *client;
    let (_, reply) = client.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok");
    client
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let sockets = env_usize("FAWKES_BENCH_SOCKETS", 2000);
    let donations = env_usize("FAWKES_BENCH_DONATIONS", 500);
    let backend = std::env::var("FAWKES_BENCH_BACKEND").unwrap_or_else(|_| "embedded".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--channel-rate-limit", "0", "--outbound-queue", "65536"];
    // Kept alive for the whole run in kafka mode.
    let mut _kafka: Option<(Tansu, Process)> = None;
    let server = if backend == "kafka" {
        let tansu = Tansu::start();
        let processor = tansu.processor(dir.path(), &fresh_group("bench"), "bench");
        let connector = tansu.connector(&flags);
        _kafka = Some((tansu, processor));
        connector
    } else {
        Process::start(dir.path(), &flags)
    };
    let pid = server.pid();
    let url = server.url();
    // Warm up: one socket, so the baseline includes the runtime's first allocations.
    let mut donor = connect(&server).await;
    let (donor_jr, _) = donor.join(TOPIC, json!({})).await;
    let mut watcher = joined_client(&url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss = rss_kib(pid);

    // Connection storm.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..sockets {
        let url = url.clone();
        tasks.spawn(async move { joined_client(&url).await });
    }
    let mut clients = Vec::with_capacity(sockets);
    while let Some(client) = tasks.join_next().await {
        clients.push(client.expect("client task"));
    }
    let storm = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(pid);
    let per_socket = (rss.saturating_sub(base_rss)) as f64 * 1024.0 / sockets as f64;

    // Donation latency with every subscriber listening.
    let mut acks = Vec::with_capacity(donations);
    let mut seen = Vec::with_capacity(donations);
    let mut readers = tokio::task::JoinSet::new();
    for mut client in clients.drain(..) {
        readers.spawn(async move {
            for _ in 0..donations {
                client.event(TOPIC, "donation_created").await;
            }
            client
        });
    }
    let fanout_start = Instant::now();
    for i in 0..donations {
        let sent = Instant::now();
        let reply = donor
            .push(
                &donor_jr,
                TOPIC,
                "new_donation",
                json!({"amount": "1.00", "donor_name": format!("b{i}")}),
            )
            .await;
        assert_eq!(reply["status"], "ok");
        acks.push(sent.elapsed());
        watcher.event(TOPIC, "donation_created").await;
        seen.push(sent.elapsed());
    }
    while let Some(reader) = readers.join_next().await {
        clients.push(reader.expect("reader task"));
    }
    let fanout = fanout_start.elapsed();

    // Throughput: many donations in flight from one socket.
    let total = donations * 4;
    let window = 200;
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..total {
        in_flight.push_back(
            donor
                .send(
                    Some(&donor_jr),
                    TOPIC,
                    "new_donation",
                    json!({"amount": "1.00", "donor_name": format!("t{i}")}),
                )
                .await,
        );
        if in_flight.len() >= window {
            let msg_ref = in_flight.pop_front().unwrap_or_default();
            assert_eq!(donor.reply(&msg_ref).await["status"], "ok");
        }
    }
    while let Some(msg_ref) = in_flight.pop_front() {
        assert_eq!(donor.reply(&msg_ref).await["status"], "ok");
    }
    let throughput = total as f64 / started.elapsed().as_secs_f64();
    let deliveries = (sockets * donations) as f64 / fanout.as_secs_f64();
    acks.sort();
    seen.sort();

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
    println!(
        "backend: {backend}; sockets: {sockets}, donations: {donations} (sequential, one donor)"
    );
    println!(
        "connection storm: {sockets} connect+join in {:.2?} ({:.0}/s)",
        storm,
        sockets as f64 / storm.as_secs_f64()
    );
    println!(
        "server memory: {:.1} KiB per connected socket (RSS {base_rss} -> {rss} KiB)",
        per_socket / 1024.0
    );
    println!(
        "fan-out: {deliveries:.0} deliveries/s ({} frames in {:.2?})",
        sockets * donations,
        fanout
    );
    println!(
        "donation ack latency: p50 {:.2?}, p99 {:.2?}",
        percentile(&acks, 0.5),
        percentile(&acks, 0.99)
    );
    println!(
        "donation seen by another socket: p50 {:.2?}, p99 {:.2?}",
        percentile(&seen, 0.5),
        percentile(&seen, 0.99)
    );
    println!("donation throughput: {throughput:.0} donations/s ({total} from one socket, {window} in flight, {sockets} subscribers)");
    drop(clients);
    drop(server);
}
