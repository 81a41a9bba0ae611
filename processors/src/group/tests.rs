use super::*;
use crate::channels::test_support::{claims, event};
use crate::testing::{from_start, next, seeded};
use bytes::Bytes;
use serde_json::json;
use topics::names::{BROADCASTS, COMMANDS, DELIVERIES};
use topics::{Broadcast, Delivery};

/// The record `command` would be read as, at `offset` of its partition.
fn record(command: &Command, offset: u64) -> Record {
    Record {
        partition: topics::names::partition_for(command.topic.as_bytes(), COMMANDS.partitions),
        offset,
        key: Bytes::copy_from_slice(command.topic.as_bytes()),
        value: command.encode().expect("encodes"),
    }
}

fn donation(amount: &str, id: &str) -> Command {
    let mut command = event(
        "donations:campaign:1",
        claims(Some("4"), &[]),
        "new_donation",
        json!({"amount": amount, "donor_name": "Sam"}),
    );
    command.id = id.to_owned();
    command
}

/// Processes `commands` (at offsets from `first`) as one group and waits for their outputs.
async fn group_of(log: &dyn Log, store: &dyn Store, commands: &[Command], first: u64) {
    let records: Vec<Record> = commands
        .iter()
        .zip(first..)
        .map(|(c, offset)| record(c, offset))
        .collect();
    let group: Vec<(Command, &Record)> = commands.iter().cloned().zip(records.iter()).collect();
    let (_, pending) = process(log, store, &PriceFeed::none(), &group)
        .await
        .expect("processed");
    pending.await.expect("sent");
}

#[tokio::test]
async fn a_command_processed_twice_is_counted_once_and_answered_alike() {
    let (_dir, log, store) = seeded().await;
    let mut deliveries = from_start(&*log, DELIVERIES).await;
    let mut broadcasts = from_start(&*log, BROADCASTS).await;
    let cmd = donation("10", "twice");
    group_of(&*log, &store, std::slice::from_ref(&cmd), 0).await;
    group_of(&*log, &store, std::slice::from_ref(&cmd), 0).await;

    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.total, rust_decimal::Decimal::new(1000, 2));
    assert_eq!(campaign.donation_count, 1);
    let first: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
    let second: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
    assert_eq!(first, second);
    let b1: Broadcast = next(&mut broadcasts, |b| Broadcast::decode(b).ok()).await;
    let b2: Broadcast = next(&mut broadcasts, |b| Broadcast::decode(b).ok()).await;
    assert_eq!(b1.id, b2.id, "a re-emitted broadcast keeps its id");
}

#[tokio::test]
async fn a_group_is_decided_in_order_on_folded_state_and_answered_in_order() {
    let (_dir, log, store) = seeded().await;
    let mut deliveries = from_start(&*log, DELIVERIES).await;
    let commands: Vec<Command> = (1..=5)
        .map(|n| donation(&n.to_string(), &format!("g{n}")))
        .collect();
    group_of(&*log, &store, &commands, 0).await;
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.total, rust_decimal::Decimal::new(1500, 2));
    assert_eq!(campaign.donation_count, 5);
    assert_eq!(campaign.version, 2, "one write for the whole group");
    let partition = record(&commands[0], 0).partition;
    assert_eq!(campaign.applied.get(&partition), Some(&4));
    for command in &commands {
        let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        assert_eq!(delivery.socket.msg_ref, command.socket.msg_ref);
        assert_eq!(
            delivery.reply.expect("a reply").status,
            topics::ReplyStatus::Ok
        );
    }
    // The group again, and a group that overlaps it: nothing counted twice.
    group_of(&*log, &store, &commands, 0).await;
    let mut more = commands[3..].to_vec();
    more.push(donation("100", "g6"));
    group_of(&*log, &store, &more, 3).await;
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.total, rust_decimal::Decimal::new(11500, 2));
    assert_eq!(campaign.donation_count, 6);
}

#[tokio::test]
async fn a_command_under_the_fence_is_answered_not_applied() {
    // As a second owner sees it: the campaign already carries the command's position.
    let (_dir, log, store) = seeded().await;
    let cmd = donation("7", "fenced");
    group_of(&*log, &store, std::slice::from_ref(&cmd), 12).await;
    let mut again = cmd.clone();
    again.id = "fenced-but-renamed".into();
    // Same position, another id: only the fence can tell it was applied; its outcome is not
    // stored under this id, so it is a lost outcome, not a second donation.
    let records = [record(&again, 12)];
    let group = [(again, &records[0])];
    let result = process(&*log, &store, &PriceFeed::none(), &group).await;
    assert!(matches!(result, Err(AttemptError::LostOutcome(_))));
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.donation_count, 1);
}

#[tokio::test]
async fn a_retried_request_with_its_idempotency_key_counts_once_and_gets_the_same_answer() {
    let (_dir, log, store) = seeded().await;
    let mut deliveries = from_start(&*log, DELIVERIES).await;
    let keyed = |id: &str, msg_ref: &str| {
        let mut command = donation("9", id);
        if let topics::CommandKind::Event { payload, .. } = &mut command.kind {
            payload["idempotency_key"] = json!("order-77");
        }
        command.socket.msg_ref = Some(msg_ref.to_owned());
        command
    };
    // The first attempt and a retry in one group, then a later retry alone.
    group_of(&*log, &store, &[keyed("try1", "1"), keyed("try2", "2")], 0).await;
    group_of(&*log, &store, &[keyed("try3", "3")], 2).await;
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(
        campaign.donation_count, 1,
        "one donation for three attempts"
    );
    assert_eq!(campaign.total, rust_decimal::Decimal::new(900, 2));
    let mut ids = Vec::new();
    for msg_ref in ["1", "2", "3"] {
        let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        assert_eq!(
            delivery.socket.msg_ref.as_deref(),
            Some(msg_ref),
            "to each attempt"
        );
        ids.push(delivery.reply.expect("a reply").response["donation_id"].clone());
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same donation: {ids:?}"
    );
}

#[tokio::test]
async fn a_command_under_the_fence_that_wrote_no_campaign_is_decided_again() {
    // A second owner ahead of this one moved the fence past a join (which writes presence,
    // not the campaign) before this owner answered it: the join is decided, not lost.
    let (_dir, log, store) = seeded().await;
    group_of(&*log, &store, &[donation("3", "ahead")], 5).await;
    let join = crate::channels::test_support::command(
        "donations:campaign:1",
        claims(Some("8"), &[]),
        topics::CommandKind::Join {
            params: json!({}),
            presence_known: false,
        },
    );
    let records = [record(&join, 0)];
    let group = [(join, &records[0])];
    let (results, pending) = process(&*log, &store, &PriceFeed::none(), &group)
        .await
        .expect("decided");
    pending.await.expect("sent");
    assert_eq!(results, ["applied"], "its presence is tracked");
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.donation_count, 1);
}
