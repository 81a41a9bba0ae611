//! Graceful shutdown of a connector, through real processes: two connectors and a processor on
//! a Kafka-protocol broker (Tansu). SIGTERM one connector with many sockets: it stops being
//! ready and refuses handshakes, refuses joins (retryably) while serving its sockets otherwise,
//! closes them in batches spread over its drain window, each after a `shutdown_notice` and with
//! 1012, delivers the replies it owes, and exits 0 within its deadline, even when the broker
//! stalls. The sockets' next home, the other connector, sees what they did during the drain.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{fresh_group, Tansu, PATIENCE};
use common::process::Process;
use common::{token, Client, Connect, Received};
use serde_json::{json, Value};

const LOBBY: &str = "donations:lobby";
const CAMPAIGN: &str = "donations:campaign:1";
/// Sockets on the connector that is stopped, besides the donor.
const SOCKETS: usize = 30;
/// The stopped connector's drain window and deadline (`--drain-window`, `--drain-timeout`).
const WINDOW: Duration = Duration::from_secs(3);
const DEADLINE: Duration = Duration::from_secs(6);
/// What a process may take beyond its deadline to be reaped (exit, scheduling on a busy host).
const EXIT_SLACK: Duration = Duration::from_secs(2);

/// What one socket saw from the shutdown signal on.
struct Seen {
    /// Frames until the close, in order.
    frames: Vec<Value>,
    /// The close code.
    code: Option<u16>,
    /// When the close arrived.
    closed_at: Instant,
}

/// Reads `client` until the server closes it.
async fn until_closed(mut client: Client) -> Seen {
    client.patience = DEADLINE + EXIT_SLACK;
    let mut frames = Vec::new();
    loop {
        match client.next_or_close().await {
            Received::Frame(frame) => frames.push(frame),
            Received::Closed(code) => {
                return Seen {
                    frames,
                    code,
                    closed_at: Instant::now(),
                }
            }
        }
    }
}

/// Waits until `process` exits, at most `within`; returns how it ended.
async fn exit_of(process: &mut Process, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = process.exited() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the connector did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The campaign as a new socket on `process` sees it after joining.
async fn campaign_on(process: &Process) -> Value {
    let url = format!("{}&token={}", process.url(), token("6", &[]));
    let mut client = Client::connect_url(&url).await;
    client.patience = PATIENCE;
    let (_, reply) = client.join(CAMPAIGN, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    client.event(CAMPAIGN, "campaign_state").await[4]["campaign"].clone()
}

/// Cents of a decimal amount string such as "12.50".
fn cents(amount: &Value) -> u64 {
    let text = amount.as_str().expect("a decimal string");
    let (units, fraction) = text.split_once('.').unwrap_or((text, "0"));
    units.parse::<u64>().expect("units") * 100
        + format!("{fraction:0<2}")[..2]
            .parse::<u64>()
            .expect("cents")
}

#[tokio::test]
async fn a_terminated_connector_closes_its_sockets_in_batches_and_exits_within_its_deadline() {
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _processor = tansu.owner(data.path(), &fresh_group("drain"), "0-7");
    let window = format!("{}s", WINDOW.as_secs());
    let deadline = format!("{}s", DEADLINE.as_secs());
    let mut a = tansu.connector(&["--drain-window", &window, "--drain-timeout", &deadline]);
    let b = tansu.connector(&[]);
    let before = cents(&campaign_on(&b).await["total"]);

    let mut clients = Vec::new();
    for _ in 0..SOCKETS {
        let mut client = Client::connect_url(&a.url()).await;
        client.patience = PATIENCE;
        let (join_ref, reply) = client.join(LOBBY, json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        clients.push((client, join_ref));
    }
    // The donor connects last, so it is closed last: the drain closes the oldest sockets first.
    let donor_url = format!("{}&token={}", a.url(), token("5", &[]));
    let mut donor = Client::connect_url(&donor_url).await;
    donor.patience = PATIENCE;
    let (donor_jr, reply) = donor.join(CAMPAIGN, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    donor.event(CAMPAIGN, "campaign_state").await;

    let signalled = Instant::now();
    a.signal("TERM");
    let addr = a.addr.parse().expect("address");
    loop {
        let (status, body) = common::http(addr, "GET", "/readyz", None, None).await;
        if status == 503 {
            assert_eq!(body, "draining");
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "/readyz still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match Client::try_connect(&a.url(), None).await {
        Connect::Refused(status) => assert_eq!(status, 503, "a handshake during the drain"),
        Connect::Open(_) => panic!("a socket was accepted during the drain"),
    }

    // Every socket asks for another channel; the donor gives while its socket is served.
    // (The oldest sockets may be closed already: the first batch goes at once.)
    let mut joins = Vec::new();
    for (client, _) in &mut clients {
        let msg_ref = client
            .try_send(Some("late"), CAMPAIGN, "phx_join", json!({}))
            .await;
        joins.push(msg_ref);
    }
    let donation_ref = donor
        .send(
            Some(&donor_jr),
            CAMPAIGN,
            "new_donation",
            json!({"amount": "7.25", "donor_name": "During the drain"}),
        )
        .await;

    let mut readers = tokio::task::JoinSet::new();
    for (i, (client, join_ref)) in clients.into_iter().enumerate() {
        readers.spawn(async move { (i, join_ref, until_closed(client).await) });
    }
    let donor_seen = until_closed(donor).await;
    let mut seen: Vec<(usize, String, Seen)> = readers.join_all().await;
    seen.sort_by_key(|(i, _, _)| *i);

    let mut refused = 0;
    for ((i, join_ref, socket), msg_ref) in seen.iter().zip(&joins) {
        assert_eq!(socket.code, Some(1012), "socket {i} closed with 1012");
        let notice: Vec<&Value> = socket
            .frames
            .iter()
            .filter(|f| f[3] == "shutdown_notice")
            .collect();
        assert_eq!(notice.len(), 1, "socket {i}: one notice per joined channel");
        assert_eq!(notice[0][0], json!(join_ref), "on the channel's join_ref");
        assert_eq!(notice[0][2], LOBBY);
        assert_eq!(notice[0][4]["reason"], "server shutting down");
        assert!(notice[0][4]["reconnect_delay"].is_u64(), "{}", notice[0]);
        let reply = socket
            .frames
            .iter()
            .find(|f| msg_ref.is_some() && f[1] == json!(msg_ref) && f[3] == "phx_reply");
        if let Some(reply) = reply {
            assert_eq!(
                reply[4],
                json!({"status": "error", "response": {"reason": "shutting down"}}),
                "socket {i}: a join during the drain is refused, retryably"
            );
            refused += 1;
        }
    }
    assert!(
        refused >= SOCKETS / 2,
        "the sockets still open answered their joins: {refused} of {SOCKETS}"
    );

    // The donor's push was taken and answered before its socket's turn, then the notice and
    // the close came.
    assert_eq!(donor_seen.code, Some(1012));
    let position = |event: &str| {
        donor_seen
            .frames
            .iter()
            .position(|f| f[3] == event && (event != "phx_reply" || f[1] == json!(donation_ref)))
    };
    let (Some(reply), Some(notice)) = (position("phx_reply"), position("shutdown_notice")) else {
        panic!(
            "the donor saw its reply and the notice: {:?}",
            donor_seen.frames
        )
    };
    assert!(reply < notice, "{:?}", donor_seen.frames);
    assert_eq!(
        donor_seen.frames[reply][4]["status"], "ok",
        "{:?}",
        donor_seen.frames
    );

    // Closes are spread over the window, not all at once.
    let mut closes: Vec<Instant> = seen.iter().map(|(_, _, s)| s.closed_at).collect();
    closes.push(donor_seen.closed_at);
    closes.sort();
    let (first, last) = (closes[0], closes[closes.len() - 1]);
    assert!(
        last - first >= WINDOW / 2,
        "closes spread over the window: {:?} from first to last",
        last - first
    );
    let busiest = closes
        .iter()
        .map(|start| {
            closes
                .iter()
                .filter(|t| **t >= *start && **t - *start < Duration::from_millis(250))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= closes.len() / 3,
        "{busiest} of {} sockets closed within 250 ms",
        closes.len()
    );

    let status = exit_of(
        &mut a,
        (DEADLINE + EXIT_SLACK).saturating_sub(signalled.elapsed()),
    )
    .await;
    assert!(status.success(), "the drained connector exits 0: {status}");
    println!(
        "closes {:?} apart, exit {:?} after the signal (window {WINDOW:?}, deadline {DEADLINE:?})",
        last - first,
        signalled.elapsed()
    );

    // The sockets' next home has what they did during the drain: the donation was appended.
    let after = cents(&campaign_on(&b).await["total"]);
    assert_eq!(
        after,
        before + 725,
        "the donation taken during the drain is counted"
    );
}

#[tokio::test]
async fn a_connector_exits_within_its_deadline_while_the_broker_stalls() {
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _processor = tansu.owner(data.path(), &fresh_group("drain-stall"), "0-7");
    let mut a = tansu.connector(&["--drain-window", "1s", "--drain-timeout", "4s"]);
    let deadline = Duration::from_secs(4);
    let url = format!("{}&token={}", a.url(), token("5", &[]));
    let mut donors = Vec::new();
    for _ in 0..4 {
        let mut donor = Client::connect_url(&url).await;
        donor.patience = PATIENCE;
        let (join_ref, reply) = donor.join(CAMPAIGN, json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        donors.push((donor, join_ref));
    }

    // The broker stops answering: the donations below wait on the log (for the append
    // timeout, 5 s, longer than the deadline), and so do the sockets' leaves.
    tansu.signal("STOP");
    for (donor, join_ref) in &mut donors {
        donor
            .send(
                Some(join_ref),
                CAMPAIGN,
                "new_donation",
                json!({"amount": "1.00", "donor_name": "Stalled"}),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    a.signal("TERM");
    let status = exit_of(&mut a, deadline + EXIT_SLACK).await;
    let took = signalled.elapsed();
    tansu.signal("CONT");
    assert!(status.success(), "exit 0 after a drain cut short: {status}");
    println!("exited {took:?} after the signal with the broker stopped (deadline {deadline:?})");
}
