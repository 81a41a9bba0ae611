use super::*;
use crate::channels::test_support::{claims, event};
use crate::streams::HistoryLimits;
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
    let (_, pending) = process(
        log,
        store,
        &PriceFeed::none(),
        &HistoryLimits::default(),
        &group,
    )
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
    let result = process(
        &*log,
        &store,
        &PriceFeed::none(),
        &HistoryLimits::default(),
        &group,
    )
    .await;
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
    let (results, pending) = process(
        &*log,
        &store,
        &PriceFeed::none(),
        &HistoryLimits::default(),
        &group,
    )
    .await
    .expect("decided");
    pending.await.expect("sent");
    assert_eq!(results, ["applied"], "its presence is tracked");
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.donation_count, 1);
}

/// A `moderate_donation` command on `topic` by a super admin.
fn moderation(topic: &str, id: &str, donation_id: &str, action: &str) -> Command {
    let mut command = event(
        topic,
        claims(Some("99"), &["super_admin"]),
        "moderate_donation",
        json!({"donation_id": donation_id, "action": action}),
    );
    command.id = id.to_owned();
    command
}

/// The first topic `<prefix><n>` whose commands share a partition with `topic`'s.
fn topic_beside(topic: &str, prefix: &str) -> String {
    let partition = |t: &str| topics::names::partition_for(t.as_bytes(), COMMANDS.partitions);
    (0..10_000)
        .map(|n| format!("{prefix}{n}"))
        .find(|t| partition(t) == partition(topic))
        .expect("a topic on the same partition")
}

async fn campaign_one(store: &dyn Store) -> Campaign {
    store.campaign("1").await.expect("read").expect("exists")
}

#[tokio::test]
async fn a_rejection_leaves_the_total_once_however_often_it_is_asked_for() {
    let (_dir, log, store) = seeded().await;
    let mut deliveries = from_start(&*log, DELIVERIES).await;
    group_of(
        &*log,
        &store,
        &[donation("10", "d1"), donation("5", "d2")],
        0,
    )
    .await;
    // The admin topic's partition is not the campaign's: the fence is kept per partition.
    let admin = "admin:moderators";
    let reject = moderation(admin, "m1", "d1", "reject");
    let partition = record(&reject, 0).partition;
    assert_ne!(partition, record(&donation("1", "x"), 0).partition);
    // Asked twice in one group, then the same command again (a redelivery), then again.
    let twice = [reject.clone(), moderation(admin, "m2", "d1", "reject")];
    group_of(&*log, &store, &twice, 0).await;
    group_of(&*log, &store, std::slice::from_ref(&reject), 0).await;
    group_of(&*log, &store, &[moderation(admin, "m3", "d1", "reject")], 2).await;
    let campaign = campaign_one(&store).await;
    assert_eq!(campaign.total, rust_decimal::Decimal::new(500, 2));
    assert_eq!(campaign.donation_count, 1);
    assert_eq!(
        campaign.applied.get(&partition),
        Some(&0),
        "fenced on its partition"
    );
    let stored = store.donation("d1").await.expect("read").expect("exists");
    assert_eq!(stored.status, store::DonationStatus::Rejected);
    for _ in 0..2 {
        next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
    }
    let mut totals = Vec::new();
    for _ in 0..4 {
        let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        totals.push(delivery.reply.expect("a reply").response["new_total"].clone());
    }
    assert_eq!(
        totals,
        vec![json!("5.00"); 4],
        "every answer the same total"
    );
    // Approving it afterwards is refused; the total stays.
    group_of(
        &*log,
        &store,
        &[moderation(admin, "m4", "d1", "approve")],
        3,
    )
    .await;
    let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
    assert_eq!(
        delivery.reply.expect("a reply").response,
        json!({"reason": "donation already rejected"})
    );
    assert_eq!(
        campaign_one(&store).await.total,
        rust_decimal::Decimal::new(500, 2)
    );
}

#[tokio::test]
async fn a_moderation_sees_the_donation_its_group_wrote() {
    let (_dir, log, store) = seeded().await;
    let mut deliveries = from_start(&*log, DELIVERIES).await;
    let admin = topic_beside("donations:campaign:1", "admin:");
    // A donation, flagged then rejected, all in one group.
    let commands = [
        donation("8", "fresh"),
        moderation(&admin, "flag", "fresh", "flag"),
        moderation(&admin, "reject", "fresh", "reject"),
    ];
    group_of(&*log, &store, &commands, 0).await;
    let campaign = campaign_one(&store).await;
    assert_eq!(campaign.total, rust_decimal::Decimal::new(0, 2));
    assert_eq!(campaign.donation_count, 0);
    assert_eq!(campaign.version, 2, "one write for the group");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
        let response = delivery.reply.expect("a reply").response;
        statuses.push(response["donation"]["status"].clone());
    }
    assert_eq!(statuses, [json!(null), json!("flagged"), json!("rejected")]);
    let stored = store
        .donation("fresh")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.status, store::DonationStatus::Rejected);
}

#[tokio::test]
async fn a_report_sees_the_donations_its_group_wrote() {
    let (_dir, log, store) = seeded().await;
    let mut deliveries = from_start(&*log, DELIVERIES).await;
    let reports = topic_beside("donations:campaign:1", "reports:user:");
    let user = reports.trim_start_matches("reports:user:").to_owned();
    let mut given = donation("12", "mine");
    given.claims = claims(Some(&user), &[]);
    let year: i32 = topics::timestamp::now()[..4].parse().expect("a year");
    let report = event(
        &reports,
        claims(Some(&user), &[]),
        "generate_report",
        json!({"type": "donations", "year": year}),
    );
    group_of(&*log, &store, &[given, report], 0).await;
    next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
    let delivery: Delivery = next(&mut deliveries, |b| Delivery::decode(b).ok()).await;
    let ready = delivery.pushes.last().expect("pushes");
    assert_eq!(ready.event, "report_ready");
    assert_eq!(ready.payload["report"]["donations"][0]["id"], "mine");
    assert_eq!(
        ready.payload["report"]["donation_totals"],
        json!({"USD": "12.00"})
    );
}

/// The embedded store, with donation writes seen late as on Scylla: a group's donations are
/// written after its campaign's compare-and-set, and are readable only once the group
/// finished, or once [`Store::settle`] finished it for the partition it came from.
#[derive(Debug)]
struct DonationsLate {
    inner: store::EmbeddedStore,
    /// Donation id → (the partition that wrote it, what reads still return meanwhile).
    unfinished: std::sync::Mutex<HashMap<String, (u32, Option<store::Donation>)>>,
}

#[async_trait::async_trait]
impl Store for DonationsLate {
    async fn campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        self.inner.campaign(id).await
    }
    async fn donations(&self, id: &str, limit: usize) -> Result<Vec<store::Donation>, StoreError> {
        self.inner.donations(id, limit).await
    }
    async fn donation(&self, id: &str) -> Result<Option<store::Donation>, StoreError> {
        let late = self.unfinished.lock().expect("lock").get(id).cloned();
        match late {
            Some((_, before)) => Ok(before),
            None => self.inner.donation(id).await,
        }
    }
    async fn user_donations(
        &self,
        user: &str,
        year: i32,
        limit: usize,
    ) -> Result<Vec<store::Donation>, StoreError> {
        self.inner.user_donations(user, year, limit).await
    }
    async fn document(&self, kind: &str, id: &str) -> Result<Option<store::Document>, StoreError> {
        self.inner.document(kind, id).await
    }
    async fn documents(
        &self,
        kind: &str,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<store::Document>, StoreError> {
        self.inner.documents(kind, owner, limit).await
    }
    async fn outcome(&self, id: &str) -> Result<Option<Value>, StoreError> {
        self.inner.outcome(id).await
    }
    async fn history(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<store::HistoryEntry>, StoreError> {
        self.inner.history(topic, after, limit).await
    }
    async fn settle(&self, _campaign: &str, partition: u32) -> Result<(), StoreError> {
        self.unfinished
            .lock()
            .expect("lock")
            .retain(|_, (p, _)| *p != partition);
        Ok(())
    }
    async fn claim_id(&self, sequence: &str, claimant: &str) -> Result<u64, StoreError> {
        self.inner.claim_id(sequence, claimant).await
    }
    async fn presences(
        &self,
        topic: &str,
        filter: &store::PresenceFilter,
    ) -> Result<Vec<store::Presence>, StoreError> {
        self.inner.presences(topic, filter).await
    }
    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        self.inner.presence_connectors().await
    }
    async fn presence_topics(&self, connector: &str) -> Result<Vec<String>, StoreError> {
        self.inner.presence_topics(connector).await
    }
    async fn forget_connector(&self, connector: &str) -> Result<(), StoreError> {
        self.inner.forget_connector(connector).await
    }
    async fn apply_batch(&self, batch: &[Decided<'_>]) -> Result<Vec<Applied>, StoreError> {
        let mut late = Vec::new();
        for decided in batch {
            let partition = decided.position.map_or(0, |p| p.partition);
            for write in decided.writes {
                if let Write::UpdateDonation(d) = write {
                    late.push((d.id.clone(), partition, self.inner.donation(&d.id).await?));
                }
            }
        }
        let applied = self.inner.apply_batch(batch).await?;
        let mut unfinished = self.unfinished.lock().expect("lock");
        for (id, partition, before) in late {
            unfinished.entry(id).or_insert((partition, before));
        }
        Ok(applied)
    }
}

#[tokio::test]
async fn moderations_from_two_partitions_take_a_rejected_donation_out_once() {
    // On Scylla a rejection's donation row lands after its campaign's compare-and-set; a
    // second moderator on another admin topic (another partition) must not read the
    // donation as still accepted while the campaign already has it taken out.
    let (dir, log, seeded) = seeded().await;
    drop(seeded);
    let store = DonationsLate {
        inner: crate::testing::seeded_store(dir.path()).await,
        unfinished: std::sync::Mutex::default(),
    };
    group_of(
        &*log,
        &store,
        &[donation("10", "d1"), donation("5", "d2")],
        0,
    )
    .await;
    let first = moderation("admin:a", "m1", "d1", "reject");
    let second = moderation(
        &topic_beside_not("admin:a", "admin:b"),
        "m2",
        "d1",
        "reject",
    );
    assert_ne!(record(&first, 0).partition, record(&second, 0).partition);
    group_of(&*log, &store, &[first], 0).await;
    assert_eq!(
        store.donation("d1").await.expect("read").map(|d| d.status),
        Some(store::DonationStatus::Accepted),
        "the rejection is not readable yet"
    );
    group_of(&*log, &store, &[second], 0).await;
    let campaign = store.campaign("1").await.expect("read").expect("exists");
    assert_eq!(campaign.total, rust_decimal::Decimal::new(500, 2));
    assert_eq!(campaign.donation_count, 1);
}

/// The first topic `<prefix><n>` whose commands are on another partition than `topic`'s.
fn topic_beside_not(topic: &str, prefix: &str) -> String {
    let partition = |t: &str| topics::names::partition_for(t.as_bytes(), COMMANDS.partitions);
    (0..10_000)
        .map(|n| format!("{prefix}{n}"))
        .find(|t| partition(t) != partition(topic))
        .expect("a topic on another partition")
}
