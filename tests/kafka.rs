//! Distributed mode on a real Kafka-protocol broker (Tansu): connectors and processors as
//! separate processes.

mod common;

use std::time::Duration;

use common::kafka::{fresh_group, Tansu};
use common::process::connect;
use common::token;
use serde_json::json;

const TOPIC: &str = "donations:campaign:1";

#[tokio::test]
async fn two_connectors_and_two_processors_share_donations() {
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let group = fresh_group("e2e");
    let _p1 = tansu.processor(data.path(), &group, "p1");
    let _p2 = tansu.processor(data.path(), &group, "p2");
    let a = tansu.connector(&[]);
    let b = tansu.connector(&[]);

    let mut donor =
        common::Client::connect_url(&format!("{}&token={}", a.url(), token("5", &[]))).await;
    let (jr, reply) = donor.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let mut organizer =
        common::Client::connect_url(&format!("{}&token={}", b.url(), token("1", &[]))).await;
    let (_, reply) = organizer.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok");
    let state = organizer.event(TOPIC, "campaign_state").await;
    let before: f64 = state[4]["campaign"]["total"]
        .as_str()
        .expect("total")
        .parse()
        .expect("number");

    let reply = donor
        .push(
            &jr,
            TOPIC,
            "new_donation",
            json!({"amount": "42.50", "donor_name": "Aisha"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let seen = organizer.event(TOPIC, "donation_created").await;
    assert_eq!(seen[4]["donation"]["donor_name"], "Aisha");
    assert_eq!(seen[4]["new_total"], format!("{:.2}", before + 42.5));
    // The reply went to the donor on A only: the organizer on B never sees a phx_reply for it.
    organizer
        .assert_no_event("phx_reply", Duration::from_millis(500))
        .await;
}

mod log_conformance {
    //! The log conformance suite, run against Kafka (the embedded log runs it in its unit
    //! tests).

    use super::*;
    use eventlog::conformance;
    use eventlog::{KafkaConfig, KafkaLog};

    async fn kafka_log(tansu: &Tansu) -> KafkaLog {
        let mut config = KafkaConfig::new(tansu.brokers.clone());
        config.fetch_wait_max_ms = 1;
        let log = KafkaLog::connect(config).expect("kafka client");
        log.create_topics(&conformance::TOPICS)
            .await
            .expect("create topics");
        log
    }

    #[tokio::test]
    async fn the_brokers_retention_settings_can_be_read_at_start() {
        // What `fawkes processor` checks at start; `topics create` set the commands' 7 days.
        let tansu = Tansu::start();
        let retention = kafka_log(&tansu)
            .await
            .retention()
            .await
            .expect("the brokers describe their configuration");
        assert_eq!(
            retention.commands_ms,
            Some(topics::names::COMMANDS.retention_ms)
        );
    }

    #[tokio::test]
    async fn keyed_order() {
        let tansu = Tansu::start();
        conformance::keyed_order(&kafka_log(&tansu).await).await;
    }

    #[tokio::test]
    async fn latest_skips_history() {
        let tansu = Tansu::start();
        conformance::latest_skips_history(&kafka_log(&tansu).await).await;
    }

    #[tokio::test]
    async fn group_resumes_after_commit() {
        let tansu = Tansu::start();
        conformance::group_resumes_after_commit(&kafka_log(&tansu).await).await;
    }

    #[tokio::test]
    async fn owned_partitions_resume_after_commit() {
        let tansu = Tansu::start();
        conformance::owned_partitions_resume_after_commit(&kafka_log(&tansu).await).await;
    }
}

#[tokio::test]
async fn killed_processors_resume_and_count_every_donation_once() {
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let group = fresh_group("crash");
    // Static assignment: Tansu never expires a member killed without leaving, so a restarted
    // group member can wait long for a rebalance; an owner of fixed partitions resumes them
    // from the committed positions at once.
    let mut p1 = tansu.owner(data.path(), &group, "0-3");
    let mut p2 = tansu.owner(data.path(), &group, "4-7");
    // This test asks every push to be answered `ok` within phoenix.js's 10 s push timeout
    // (the client's patience) across a failover: the connector's reply deadline, which answers
    // `unavailable` before the client gives up (8 s by default), is set to that same 10 s.
    let connector = tansu.connector(&[
        "--channel-rate-limit",
        "0",
        "--outbound-queue",
        "65536",
        "--reply-timeout",
        "10s",
    ]);
    let mut donor = connect(&connector).await;
    // Every reply must come within phoenix.js's 10 s push timeout (the client's patience).
    let (jr, reply) = donor.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let before = donor.event(TOPIC, "campaign_state").await[4]["campaign"]["donation_count"]
        .as_u64()
        .expect("count");
    let mut watcher = connect(&connector).await;
    watcher.join(TOPIC, json!({})).await;

    const DONATIONS: usize = 1000;
    let mut kills = 0;
    let mut longest_wait = Duration::ZERO;
    let mut refs = Vec::with_capacity(DONATIONS);
    let mut acked = 0;
    for i in 0..DONATIONS {
        refs.push(
            donor
                .send(
                    Some(&jr),
                    TOPIC,
                    "new_donation",
                    json!({"amount": "1.00", "donor_name": format!("d{i}")}),
                )
                .await,
        );
        // Kill each processor once while donations stream in (one of them owns the
        // campaign's partition), restarting it as a supervisor would.
        if i == 300 || i == 650 {
            while acked < i - 100 {
                let reply = donor.reply(&refs[acked]).await;
                assert_eq!(reply["status"], "ok", "{reply}");
                acked += 1;
            }
            let (victim, partitions) = if i == 300 {
                (&mut p1, "0-3")
            } else {
                (&mut p2, "4-7")
            };
            kills += 1;
            eprintln!("killing the owner of {partitions} after {acked} acknowledgements");
            victim.kill_9();
            *victim = tansu.owner(data.path(), &group, partitions);
        }
    }
    // Every donation is answered (the test client waits up to 10 s per frame, phoenix.js's
    // push timeout), and every answer is ok.
    while acked < DONATIONS {
        let waited = std::time::Instant::now();
        let reply = donor.reply(&refs[acked]).await;
        longest_wait = longest_wait.max(waited.elapsed());
        assert_eq!(reply["status"], "ok", "{reply}");
        acked += 1;
    }
    eprintln!("failover: {kills} kills; the longest wait for one reply was {longest_wait:?}");
    // The watcher sees each donation once, although some were processed twice.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < DONATIONS {
        let frame = watcher.event(TOPIC, "donation_created").await;
        let id = frame[4]["donation"]["id"].as_str().expect("id").to_owned();
        assert!(seen.insert(id.clone()), "donation {id} delivered twice");
    }
    watcher
        .assert_no_event("donation_created", Duration::from_millis(500))
        .await;
    let mut check = connect(&connector).await;
    let (_, reply) = check.join(TOPIC, json!({})).await;
    assert_eq!(reply["status"], "ok");
    let campaign = check.event(TOPIC, "campaign_state").await[4]["campaign"].clone();
    let count = campaign["donation_count"].as_u64().expect("count") - before;
    assert_eq!(
        count, DONATIONS as u64,
        "every donation exactly once: {campaign}"
    );
    assert_eq!(
        campaign["total"],
        format!("{}.00", before + DONATIONS as u64)
    );
}

#[tokio::test]
async fn two_owners_of_the_same_partitions_count_every_donation_once() {
    // Two processors both given every partition (a rolling deploy with static partitions
    // gone wrong): each reads and decides every command. Campaign fences make the store
    // count each donation once; the connectors drop the repeated broadcasts.
    let tansu = Tansu::start();
    let data = tempfile::tempdir().expect("tempdir");
    let group = fresh_group("owners");
    let _p1 = tansu.owner(data.path(), &group, "0-7");
    let _p2 = tansu.owner(data.path(), &group, "0-7");
    let a = tansu.connector(&["--channel-rate-limit", "0", "--outbound-queue", "65536"]);
    let b = tansu.connector(&["--channel-rate-limit", "0", "--outbound-queue", "65536"]);
    let mut donors = [connect(&a).await, connect(&b).await];
    let mut join_refs = Vec::new();
    for donor in &mut donors {
        let (jr, reply) = donor.join(TOPIC, json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        join_refs.push(jr);
    }
    let before = donors[0].event(TOPIC, "campaign_state").await[4]["campaign"].clone();
    let mut watcher = connect(&b).await;
    watcher.join(TOPIC, json!({})).await;

    const DONATIONS: usize = 2000;
    let mut refs: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0..DONATIONS {
        let side = i % 2;
        let msg_ref = donors[side]
            .send(
                Some(&join_refs[side]),
                TOPIC,
                "new_donation",
                json!({"amount": "1.25", "donor_name": format!("d{i}")}),
            )
            .await;
        refs[side].push(msg_ref);
    }
    let mut acknowledged = std::collections::HashSet::new();
    for (donor, refs) in donors.iter_mut().zip(&refs) {
        for msg_ref in refs {
            let reply = donor.reply(msg_ref).await;
            assert_eq!(reply["status"], "ok", "{reply}");
            let id = reply["response"]["donation_id"]
                .as_str()
                .expect("a donation id")
                .to_owned();
            assert!(acknowledged.insert(id), "one donation per push");
        }
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < DONATIONS {
        let frame = watcher.event(TOPIC, "donation_created").await;
        let id = frame[4]["donation"]["id"].as_str().expect("id").to_owned();
        assert!(seen.insert(id.clone()), "donation {id} delivered twice");
    }
    watcher
        .assert_no_event("donation_created", Duration::from_millis(500))
        .await;
    assert_eq!(seen, acknowledged, "every ok reply has its donation, once");
    let mut check = connect(&a).await;
    check.join(TOPIC, json!({})).await;
    let campaign = check.event(TOPIC, "campaign_state").await[4]["campaign"].clone();
    let count = |c: &serde_json::Value| c["donation_count"].as_u64().expect("count");
    let total = |c: &serde_json::Value| -> f64 {
        c["total"].as_str().expect("total").parse().expect("number")
    };
    assert_eq!(
        count(&campaign) - count(&before),
        DONATIONS as u64,
        "{campaign}"
    );
    let added = total(&campaign) - total(&before);
    assert!(
        (added - 1.25 * DONATIONS as f64).abs() < 0.001,
        "the total grew by {added}"
    );
}
