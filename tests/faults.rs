//! Keep running through faults: connectors and processors on Tansu while the broker is paused
//! (SIGSTOP, as a stalled broker looks) and while every connection to it is cut (a TCP proxy
//! resets them and refuses new ones, as a broker restart looks). No process exits, no socket
//! closes, every push is answered (`ok`, or the retryable `unavailable`) within a bound, and
//! with the clients retrying `unavailable` pushes under their idempotency keys the campaign
//! total is exactly the sum of the `ok` replies.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{fresh_group, Tansu};
use common::process::{connect, Process};
use common::token;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "donations:campaign:1";
/// Sockets pushing donations, half on each connector.
const DONORS: usize = 10;
/// Each outage lasts this long.
const OUTAGE: Duration = Duration::from_secs(5);
/// The longest a push may wait for its reply: the append timeout (5 s) when the command is
/// not confirmed, else the outage plus the clients' reconnect and the processor's catch-up.
const REPLY_BOUND: Duration = Duration::from_secs(20);
/// How long the system may take to answer `ok` again after an outage ends.
const RECOVERY: Duration = Duration::from_secs(40);
/// The connectors' append timeout and the producers' `message.timeout.ms` (10 s): after the
/// last `unavailable` reply plus this, no command still queued can land any more.
const UNKNOWN_SETTLES: Duration = Duration::from_secs(12);

/// One answered push.
#[derive(Debug, Clone)]
struct Answer {
    cents: u64,
    ok: bool,
    waited: Duration,
    at: Instant,
}

type Answers = Arc<Mutex<Vec<Answer>>>;

fn cents(text: &str) -> u64 {
    let (units, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let units: u64 = units.parse().expect("units");
    let fraction: u64 = format!("{fraction:0<2}")[..2].parse().expect("cents");
    units * 100 + fraction
}

/// Joins the campaign and pushes donations one after another until `stop`, recording every
/// reply. A closed socket, a reply other than `ok`/`unavailable`, or no frame within the
/// bound panics the task (the test then fails).
async fn donor(url: String, id: usize, answers: Answers, stop: CancellationToken) -> usize {
    let mut client = common::Client::connect_url(&url).await;
    client.patience = REPLY_BOUND;
    let (jr, reply) = client.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let mut pushes = 0;
    while !stop.is_cancelled() {
        let amount = format!("{}.{:02}", 1 + pushes % 9, id);
        // As an app does it: the key names the donation, so retrying an `unavailable` push
        // (which may still land) cannot count it twice.
        let key = format!("d{id}-{pushes}");
        let payload = json!({"amount": amount, "donor_name": key.clone(), "idempotency_key": key});
        loop {
            let started = Instant::now();
            let reply = client
                .push(&jr, TOPIC, "new_donation", payload.clone())
                .await;
            let waited = started.elapsed();
            let ok = match reply["status"].as_str() {
                Some("ok") => true,
                Some("error") if reply["response"]["reason"] == "unavailable" => false,
                _ => panic!("unexpected reply {reply}"),
            };
            answers.lock().expect("lock").push(Answer {
                cents: cents(&amount),
                ok,
                waited,
                at: Instant::now(),
            });
            pushes += 1;
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The socket is still open and answering.
    client.heartbeat().await;
    pushes
}

/// Waits until some push started after `since` was answered `ok`.
async fn wait_for_ok_after(answers: &Answers, since: Instant, what: &str) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let recovered = answers
            .lock()
            .expect("lock")
            .iter()
            .any(|a| a.ok && a.at - a.waited > since);
        if recovered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no ok reply within {RECOVERY:?} after {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The campaign total, in cents, from a fresh join's `campaign_state`.
async fn total(connector: &Process) -> u64 {
    let mut client = connect(connector).await;
    client.patience = REPLY_BOUND;
    let (_, reply) = client.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let state = client.event(TOPIC, "campaign_state").await;
    cents(state[4]["campaign"]["total"].as_str().expect("total"))
}

async fn readyz(process: &Process) -> u16 {
    let addr: SocketAddr = process.addr.parse().expect("address");
    common::http(addr, "GET", "/readyz", None, None).await.0
}

/// Waits until `/readyz` says 200 again (the log probe runs every second while it is down).
async fn wait_until_ready(process: &Process) {
    let deadline = Instant::now() + RECOVERY;
    while readyz(process).await != 200 {
        assert!(
            Instant::now() < deadline,
            "{} is not ready again",
            process.addr
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_all_running(processes: &mut [&mut Process]) {
    for (i, process) in processes.iter_mut().enumerate() {
        assert_eq!(process.exited(), None, "process {i} exited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_answered_and_counted_through_a_paused_broker_and_cut_connections() {
    let (tansu, proxy) = Tansu::behind_proxy();
    let data = tempfile::tempdir().expect("tempdir");
    let group = fresh_group("faults");
    let mut p1 = tansu.owner(data.path(), &group, "0-3");
    let mut p2 = tansu.owner(data.path(), &group, "4-7");
    let unlimited = ["--channel-rate-limit", "0"];
    let mut a = tansu.connector(&unlimited);
    let mut b = tansu.connector(&unlimited);
    let before = total(&a).await;

    let answers: Answers = Arc::default();
    let stop = CancellationToken::new();
    let mut donors = Vec::new();
    for id in 0..DONORS {
        let connector = if id % 2 == 0 { &a } else { &b };
        let url = format!(
            "{}&token={}",
            connector.url(),
            token(&format!("{}", 100 + id), &[])
        );
        donors.push(tokio::spawn(donor(url, id, answers.clone(), stop.clone())));
    }
    let started = Instant::now();
    wait_for_ok_after(&answers, started, "starting").await;

    // 1. The broker stalls: SIGSTOP for 5 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paused = Instant::now();
    tansu.signal("STOP");
    tokio::time::sleep(OUTAGE).await;
    tansu.signal("CONT");
    let resumed = Instant::now();
    wait_for_ok_after(&answers, resumed, "SIGCONT").await;
    assert_all_running(&mut [&mut p1, &mut p2, &mut a, &mut b]);

    // 2. Every connection to the broker is reset, and new ones refused, for 5 s.
    let cut = Instant::now();
    proxy.cut(OUTAGE);
    let mut saw_unready = false;
    while cut.elapsed() < OUTAGE + Duration::from_secs(5) && !saw_unready {
        saw_unready = readyz(&a).await == 503;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reopened = cut + OUTAGE;
    wait_for_ok_after(&answers, reopened, "the proxy reopened").await;
    assert_all_running(&mut [&mut p1, &mut p2, &mut a, &mut b]);

    // Keep the load on a little longer, then stop the donors.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let mut pushed = 0;
    for donor in donors {
        pushed += donor
            .await
            .expect("a donor failed: a socket closed or a reply was late");
    }
    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), pushed, "every push answered");
    let ok: u64 = answers.iter().filter(|a| a.ok).map(|a| a.cents).sum();
    let unavailable: Vec<&Answer> = answers.iter().filter(|a| !a.ok).collect();
    let unknown: u64 = unavailable.iter().map(|a| a.cents).sum();
    let slowest = answers.iter().map(|a| a.waited).max().unwrap_or_default();
    assert!(slowest <= REPLY_BOUND, "a push waited {slowest:?}");

    // An `unavailable` push is unknown, not failed: it may land until the producer gives it
    // up, but it was retried with its key until `ok`, so once nothing can land any more the
    // total holds every donation exactly once: the sum of the `ok`s.
    let last_unknown = unavailable.iter().map(|a| a.at).max().unwrap_or(started);
    let settled = last_unknown + UNKNOWN_SETTLES;
    let deadline = Instant::now() + RECOVERY + UNKNOWN_SETTLES;
    let mut previous = None;
    let total = loop {
        let now_total = total(&a).await - before;
        if Instant::now() >= settled && now_total >= ok && previous == Some(now_total) {
            break now_total;
        }
        assert!(
            Instant::now() < deadline,
            "the total did not settle: {now_total} cents, {ok} acknowledged"
        );
        previous = Some(now_total);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "faults: {pushed} pushes, {} ok ({ok} cents), {} unavailable ({unknown} cents, each \
         retried with its key until ok); the total grew by {total}; slowest reply \
         {slowest:?}; readyz 503 seen during the cut: {saw_unready}; SIGSTOP at {:?}, cut at \
         {:?}",
        answers.len() - unavailable.len(),
        unavailable.len(),
        paused - started,
        cut - started,
    );
    assert_eq!(total, ok, "the total is the sum of the ok replies");
    assert!(
        saw_unready,
        "/readyz never said 503 while the log was cut off"
    );
    for process in [&a, &b, &p1, &p2] {
        wait_until_ready(process).await;
    }
    assert_all_running(&mut [&mut p1, &mut p2, &mut a, &mut b]);
}

#[tokio::test]
async fn a_push_stored_but_unanswered_gets_unavailable_in_time_and_its_retry_counts_once() {
    // The processors stall (SIGSTOP) after a push's command is on the log: the connector
    // answers `unavailable` at its reply timeout instead of leaving the client to its own
    // timeout, drops the late reply, and a retry with the same key counts the donation once.
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let group = fresh_group("overdue");
    let processor = tansu.owner(data.path(), &group, "0-7");
    let connector = tansu.connector(&["--reply-timeout", "2s", "--append-timeout", "1s"]);
    let before = total(&connector).await;
    let mut client = connect(&connector).await;
    let (jr, reply) = client.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");

    processor.signal("STOP");
    let donation = json!({"amount": "3.00", "donor_name": "Sam", "idempotency_key": "k-1"});
    let started = Instant::now();
    let reply = client
        .push(&jr, TOPIC, "new_donation", donation.clone())
        .await;
    let waited = started.elapsed();
    assert_eq!(reply["response"]["reason"], "unavailable", "{reply}");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "answered after {waited:?}"
    );
    processor.signal("CONT");
    // The stored command is processed now; its late reply is dropped, not delivered.
    client
        .assert_no_event("phx_reply", Duration::from_secs(2))
        .await;
    let retry = client.push(&jr, TOPIC, "new_donation", donation).await;
    assert_eq!(retry["status"], "ok", "{retry}");
    assert_eq!(total(&connector).await - before, 300, "counted once");
}
