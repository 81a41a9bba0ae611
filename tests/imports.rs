//! `imports:user:<id>` `batch_import` through real sockets: the reply, progress every hundred
//! rows, completion with per-row errors, each row a real donation with its broadcast; and an
//! import cut by `kill -9` of the processor counts every row exactly once after the restart.

mod common;

use std::time::Duration;

use common::process::Process;
use common::{token, Client, TestServer};
use serde_json::{json, Value};

const CAMPAIGN: &str = "donations:campaign:1";

fn rows(n: usize, campaign: &str, amount: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"campaign_id": campaign, "amount": amount, "donor_name": format!("Donor {i}")}))
        .collect()
}

async fn campaign_of(client: &mut Client, topic: &str) -> Value {
    let (_, reply) = client.join(topic, json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let state = client.event(topic, "campaign_state").await;
    state[4]["campaign"].clone()
}

#[tokio::test]
async fn an_import_streams_progress_and_completes_with_each_row_a_donation() {
    let server = TestServer::start().await;
    let mut watcher = Client::connect(&server, Some(&token("1", &[]))).await;
    let before = campaign_of(&mut watcher, CAMPAIGN).await;

    let mut importer = Client::connect(&server, Some(&token("7", &[]))).await;
    let topic = "imports:user:7";
    let (join_ref, reply) = importer.join(topic, json!({})).await;
    assert_eq!(reply["status"], "ok");
    // 230 good rows into campaign 1, 10 with a bad amount, 5 into the private campaign 2
    // (user 7 may not give there), 5 without a campaign.
    let mut donations = rows(230, "1", "1.50");
    donations.extend(rows(10, "1", "-1"));
    donations.extend(rows(5, "2", "1.00"));
    donations.extend((0..5).map(|_| json!({"amount": "1.00", "donor_name": "x"})));
    let reply = importer
        .push(
            &join_ref,
            topic,
            "batch_import",
            json!({ "donations": donations }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["response"]["total"], 250);
    let reference = reply["response"]["ref"].clone();

    let mut progress = Vec::new();
    let complete = loop {
        let frame = importer.recv().await;
        match frame[3].as_str() {
            Some("batch_progress") => progress.push(frame[4].clone()),
            Some("batch_complete") => break frame[4].clone(),
            _ => {}
        }
    };
    let processed: Vec<u64> = progress
        .iter()
        .filter_map(|p| p["processed"].as_u64())
        .collect();
    assert_eq!(
        processed,
        [100, 200, 250],
        "one progress per hundred rows, then the last"
    );
    assert_eq!(progress[2]["batch"], 3);
    assert_eq!(complete["ref"], reference);
    assert_eq!(complete["successful"], 230);
    assert_eq!(complete["failed"], 20);
    let errors = complete["errors"].as_array().expect("per-row errors");
    assert_eq!(errors.len(), 20);
    assert!(errors
        .iter()
        .any(|e| e["row"] == 230 && e["errors"]["amount"].is_array()));
    assert!(errors
        .iter()
        .any(|e| e["row"] == 240 && e["errors"]["campaign_id"] == json!(["is not open to you"])));
    assert!(errors
        .iter()
        .any(|e| e["row"] == 249 && e["errors"]["campaign_id"] == json!(["is invalid"])));

    // Every good row was broadcast as a new donation would be, redaction included (user 1
    // organizes campaign 1, so sees names).
    let mut broadcasts = 0;
    while broadcasts < 230 {
        let frame = watcher.event(CAMPAIGN, "donation_created").await;
        assert!(frame[4]["donation"]["donor_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Donor ")));
        broadcasts += 1;
    }
    let mut again = Client::connect(&server, None).await;
    let after = campaign_of(&mut again, CAMPAIGN).await;
    assert_eq!(
        after["donation_count"].as_u64(),
        before["donation_count"].as_u64().map(|c| c + 230)
    );
    server.stop().await;
}

#[tokio::test]
async fn an_import_cut_by_kill_9_counts_every_row_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = Process::start(dir.path(), &[]);
    let url = |p: &Process, user: &str| format!("{}&token={}", p.url(), token(user, &[]));
    let mut importer = Client::connect_url(&url(&first, "7")).await;
    let topic = "imports:user:7";
    let (join_ref, _) = importer.join(topic, json!({})).await;
    let reply = importer
        .push(
            &join_ref,
            topic,
            "batch_import",
            json!({ "donations": rows(3000, "1", "1.00") }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    // Kill the processor (all in one process here) once the first rows were counted: the
    // import is stored, some rows applied, many in flight.
    loop {
        let frame = importer.recv().await;
        if frame[3] == "batch_progress" {
            break;
        }
    }
    first.kill_9();
    drop(importer);

    let second = Process::start(dir.path(), &[]);
    let mut last = Value::Null;
    for _ in 0..150 {
        let mut fresh = Client::connect_url(&url(&second, "1")).await;
        let campaign = campaign_of(&mut fresh, CAMPAIGN).await;
        if campaign["donation_count"].as_u64() >= Some(3000) && campaign == last {
            break;
        }
        last = campaign;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last["donation_count"], 3000, "every row once: {last}");
    assert_eq!(last["total"], "3000.00");
    drop(second);

    // A second restart changes nothing: every row was applied once.
    let third = Process::start(dir.path(), &[]);
    let mut fresh = Client::connect_url(&url(&third, "1")).await;
    let campaign = campaign_of(&mut fresh, CAMPAIGN).await;
    assert_eq!(campaign["donation_count"], 3000);
    assert_eq!(campaign["total"], "3000.00");
}
