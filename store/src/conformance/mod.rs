//! Behaviour every [`Store`] backend must show, written once and run per backend.
//!
//! The embedded store runs it in its unit tests; a networked backend runs it against a real
//! server when one is configured.

use rust_decimal::Decimal;
use serde_json::json;

use crate::{Applied, Campaign, Donation, Presence, PresenceFilter, Store, Visibility, Write};

/// A campaign for tests.
pub fn sample_campaign(id: &str) -> Campaign {
    Campaign {
        id: id.to_owned(),
        name: format!("Campaign {id}"),
        goal: Decimal::new(1_000_000, 2),
        currency: "USD".into(),
        visibility: Visibility::Public,
        organizer_ids: vec!["1".into()],
        member_ids: vec![],
        total: Decimal::new(0, 2),
        donation_count: 0,
        milestones_reached: vec![],
        created_at: "2026-01-01T00:00:00Z".into(),
        version: 0,
        applied: Default::default(),
    }
}

mod records;

fn donation(id: &str, campaign_id: &str, cents: i64) -> Donation {
    Donation {
        id: id.to_owned(),
        campaign_id: campaign_id.to_owned(),
        amount: Decimal::new(cents, 2),
        currency: "USD".into(),
        donor_name: "Donor".into(),
        user_id: None,
        inserted_at: "2026-01-01T00:00:00Z".into(),
        status: Default::default(),
    }
}

/// Runs every scenario on one store, with ids unique per run so a shared server can be reused.
pub async fn run_all<S: Store>(store: &S) {
    let run = unique_prefix();
    campaign_round_trip(store, &run).await;
    apply_is_idempotent(store, &run).await;
    sequences_are_unique(store).await;
    stale_campaign_writes_conflict(store, &run).await;
    concurrent_writers_on_different_campaigns(store, &run).await;
    presences_track_filter_and_untrack(store, &run).await;
    two_owners_apply_every_command_once(store, store).await;
    outcome_aliases_answer_retries(store, &run).await;
    records::documents_round_trip(store, &run).await;
    records::donations_by_id_and_by_user(store, &run).await;
    records::history_reads_back_in_order_after_an_offset(store, &run).await;
}

/// An outcome stored under an alias (a client's idempotency key) reads back under it.
pub async fn outcome_aliases_answer_retries<S: Store>(store: &S, run: &str) {
    let alias = format!("{run}-alias");
    let first = json!({"first": true});
    store
        .apply(
            &format!("{run}-aliased"),
            &[Write::OutcomeAlias(alias.clone())],
            &first,
        )
        .await
        .expect("apply");
    assert_eq!(store.outcome(&alias).await.expect("read"), Some(first));
}

fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("t{nanos}")
}

/// A stored campaign reads back equal, exact decimals included; a missing one is `None`.
pub async fn campaign_round_trip<S: Store>(store: &S, run: &str) {
    let mut campaign = sample_campaign(&format!("{run}-c1"));
    campaign.total = "1234.50".parse().expect("decimal");
    let applied = store
        .apply(
            &format!("{run}-cmd-1"),
            &[Write::PutCampaign(campaign.clone())],
            &json!({}),
        )
        .await
        .expect("apply");
    assert_eq!(applied, Applied::Stored);
    let back = store
        .campaign(&campaign.id)
        .await
        .expect("read")
        .expect("exists");
    campaign.version = 1;
    assert_eq!(back, campaign);
    assert_eq!(back.total.to_string(), "1234.50");
    assert_eq!(
        store
            .campaign(&format!("{run}-missing"))
            .await
            .expect("read"),
        None
    );
}

/// The same command applied twice stores its writes once and returns the first outcome.
pub async fn apply_is_idempotent<S: Store>(store: &S, run: &str) {
    let id = format!("{run}-c2");
    let mut campaign = sample_campaign(&id);
    store
        .apply(
            &format!("{run}-create"),
            &[Write::PutCampaign(campaign.clone())],
            &json!({}),
        )
        .await
        .expect("create");
    campaign.version = 1;
    campaign.total = Decimal::new(1000, 2);
    campaign.donation_count = 1;
    let writes = [
        Write::PutCampaign(campaign.clone()),
        Write::InsertDonation(donation(&format!("{run}-d1"), &id, 1000)),
    ];
    let command = format!("{run}-donate");
    let first = json!({"reply": {"donation_id": format!("{run}-d1")}});
    assert_eq!(
        store.apply(&command, &writes, &first).await.expect("apply"),
        Applied::Stored
    );
    assert_eq!(
        store.outcome(&command).await.expect("outcome"),
        Some(first.clone())
    );

    // A replay computed from newer state must not change anything.
    let mut replay = campaign.clone();
    replay.total = Decimal::new(2000, 2);
    replay.donation_count = 2;
    let second = store
        .apply(
            &command,
            &[
                Write::PutCampaign(replay),
                Write::InsertDonation(donation(&format!("{run}-d2"), &id, 1000)),
            ],
            &json!({"other": true}),
        )
        .await
        .expect("apply again");
    assert_eq!(second, Applied::Duplicate(first));
    let stored = store.campaign(&id).await.expect("read").expect("exists");
    assert_eq!(stored.total, Decimal::new(1000, 2));
    assert_eq!(stored.donation_count, 1);
    let donations = store.donations(&id, 10).await.expect("donations");
    assert_eq!(donations.len(), 1);
    assert_eq!(
        store
            .outcome(&format!("{run}-never"))
            .await
            .expect("outcome"),
        None
    );
}

/// Claimed ids are distinct and increasing, and a claimant always gets the id it claimed.
pub async fn sequences_are_unique<S: Store>(store: &S) {
    let run = unique_prefix();
    let a = store
        .claim_id("conformance", &format!("{run}-a"))
        .await
        .expect("id");
    let b = store
        .claim_id("conformance", &format!("{run}-b"))
        .await
        .expect("id");
    assert!(b > a, "{b} should follow {a}");
    let again = store
        .claim_id("conformance", &format!("{run}-a"))
        .await
        .expect("id");
    assert_eq!(again, a, "the same claimant, the same id");
}

/// One attempt of one processor at the group `commands[next..end]` (donations of `cents`
/// each to `campaign_id`, read at offsets 0.. of partition 0), as the runner does it: skip
/// what is applied (by outcome, or by the campaign's fence after settling), decide the rest
/// in order on folded state, store them together.
pub async fn owner_step<S: Store>(
    store: &S,
    campaign_id: &str,
    commands: &[(String, i64)],
    next: usize,
    end: usize,
) -> Result<(), crate::StoreError> {
    let mut campaign = store
        .campaign(campaign_id)
        .await?
        .expect("the campaign exists");
    let base = campaign.clone();
    let mut decided: Vec<(usize, Vec<Write>, serde_json::Value)> = Vec::new();
    for (offset, (command_id, cents)) in commands.iter().enumerate().take(end).skip(next) {
        let position = crate::Position {
            partition: 0,
            offset: offset as u64,
        };
        if store.outcome(command_id).await?.is_some() {
            continue;
        }
        if base.has_applied(position) {
            store.settle(campaign_id, 0).await?;
            assert!(
                store.outcome(command_id).await?.is_some(),
                "a fenced command has its outcome after settling"
            );
            continue;
        }
        campaign.total += Decimal::new(*cents, 2);
        campaign.donation_count += 1;
        let writes = vec![
            Write::PutCampaign(campaign.clone()),
            Write::InsertDonation(donation(&format!("{command_id}-d"), campaign_id, *cents)),
        ];
        let outcome = json!({"total": campaign.total.to_string()});
        decided.push((offset, writes, outcome));
    }
    let batch: Vec<crate::Decided<'_>> = decided
        .iter()
        .map(|(offset, writes, outcome)| crate::Decided {
            command_id: &commands[*offset].0,
            position: Some(crate::Position {
                partition: 0,
                offset: *offset as u64,
            }),
            writes,
            outcome,
        })
        .collect();
    if !batch.is_empty() {
        store.apply_batch(&batch).await?;
    }
    Ok(())
}

/// One processor's loop over `commands` in groups of `group`: each group attempted until it
/// goes through, read and decided again after a conflict.
pub async fn owner<S: Store>(
    store: &S,
    campaign_id: &str,
    commands: &[(String, i64)],
    group: usize,
) {
    let mut next = 0;
    while next < commands.len() {
        let end = (next + group).min(commands.len());
        match owner_step(store, campaign_id, commands, next, end).await {
            Ok(()) => next = end,
            Err(error) if error.is_retryable() => tokio::task::yield_now().await,
            Err(error) => panic!("apply failed: {error}"),
        }
    }
}

/// Checks that `campaign_id` counted each of `commands` exactly once.
pub async fn assert_counted_once<S: Store>(
    store: &S,
    campaign_id: &str,
    commands: &[(String, i64)],
) {
    let stored = store
        .campaign(campaign_id)
        .await
        .expect("read")
        .expect("exists");
    let expected: i64 = commands.iter().map(|(_, cents)| cents).sum();
    assert_eq!(stored.total, Decimal::new(expected, 2), "{campaign_id}");
    assert_eq!(stored.donation_count, commands.len() as u64);
    assert_eq!(stored.applied.get(&0), Some(&(commands.len() as u64 - 1)));
    let donations = store.donations(campaign_id, 1000).await.expect("donations");
    assert_eq!(donations.len(), commands.len(), "each donation stored once");
    for (command_id, _) in commands {
        assert!(store.outcome(command_id).await.expect("outcome").is_some());
    }
}

/// A campaign for the owner scenarios and the commands that donate to it.
pub async fn owner_scenario<S: Store>(store: &S, id: &str, count: i64) -> Vec<(String, i64)> {
    store
        .apply(
            &format!("{id}-create"),
            &[Write::PutCampaign(sample_campaign(id))],
            &json!({}),
        )
        .await
        .expect("create");
    (0..count)
        .map(|n| (format!("{id}-cmd{n}"), 100 + n))
        .collect()
}

/// Two processors that both believe they own a partition run the same commands at once, one
/// by one and in groups: every donation is counted exactly once.
pub async fn two_owners_apply_every_command_once<S: Store>(first: &S, second: &S) {
    let run = unique_prefix();
    for (a_group, b_group) in [(1, 1), (3, 1), (4, 7)] {
        let id = format!("{run}-owners-{a_group}-{b_group}");
        let commands = owner_scenario(first, &id, 40).await;
        tokio::join!(
            owner(first, &id, &commands, a_group),
            owner(second, &id, &commands, b_group),
        );
        assert_counted_once(first, &id, &commands).await;
    }
}

/// Writers on different campaigns at the same time do not lose each other's updates, and
/// donations come back newest first.
pub async fn concurrent_writers_on_different_campaigns<S: Store>(store: &S, run: &str) {
    let ids: Vec<String> = (0..4).map(|i| format!("{run}-par{i}")).collect();
    let futures: Vec<_> = ids
        .iter()
        .map(|id| {
            let id = id.clone();
            async move {
                let mut campaign = sample_campaign(&id);
                for n in 1..=10i64 {
                    campaign.version = (n - 1) as u64;
                    campaign.total = Decimal::new(n * 100, 2);
                    campaign.donation_count = n as u64;
                    let writes = [
                        Write::PutCampaign(campaign.clone()),
                        Write::InsertDonation(donation(&format!("{id}-d{n}"), &id, 100)),
                    ];
                    store
                        .apply(&format!("{id}-cmd{n}"), &writes, &json!({ "n": n }))
                        .await
                        .expect("apply");
                }
            }
        })
        .collect();
    futures_util::future::join_all(futures).await;
    for id in &ids {
        let campaign = store.campaign(id).await.expect("read").expect("exists");
        assert_eq!(campaign.total, Decimal::new(1000, 2));
        assert_eq!(campaign.donation_count, 10);
        let donations = store.donations(id, 3).await.expect("donations");
        let names: Vec<&str> = donations.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            names,
            [format!("{id}-d10"), format!("{id}-d9"), format!("{id}-d8")]
        );
    }
}

/// Writes through one handle are visible through another on the same storage.
pub async fn shared_between_handles<S: Store>(first: &S, second: &S) {
    let run = unique_prefix();
    let campaign = sample_campaign(&format!("{run}-shared"));
    first
        .apply(
            &format!("{run}-s1"),
            &[Write::PutCampaign(campaign.clone())],
            &json!({}),
        )
        .await
        .expect("apply");
    let mut stored = campaign.clone();
    stored.version = 1;
    assert_eq!(
        second.campaign(&campaign.id).await.expect("read"),
        Some(stored)
    );
    let dup = second
        .apply(&format!("{run}-s1"), &[], &json!({"x": 1}))
        .await
        .expect("apply");
    assert_eq!(dup, Applied::Duplicate(json!({})));
}

/// A campaign write based on a stale read fails and leaves nothing behind, not even the other
/// writes of the same command; creating an existing campaign fails the same way.
pub async fn stale_campaign_writes_conflict<S: Store>(store: &S, run: &str) {
    let id = format!("{run}-cas");
    let mut campaign = sample_campaign(&id);
    store
        .apply(
            &format!("{run}-cas-create"),
            &[Write::PutCampaign(campaign.clone())],
            &json!({}),
        )
        .await
        .expect("create");
    let again = store
        .apply(
            &format!("{run}-cas-recreate"),
            &[Write::PutCampaign(campaign.clone())],
            &json!({}),
        )
        .await;
    assert!(
        matches!(again, Err(crate::StoreError::Conflict(_))),
        "{again:?}"
    );

    let read = store.campaign(&id).await.expect("read").expect("exists");
    assert_eq!(read.version, 1);
    let mut first = read.clone();
    first.total = Decimal::new(500, 2);
    store
        .apply(
            &format!("{run}-cas-a"),
            &[Write::PutCampaign(first)],
            &json!({}),
        )
        .await
        .expect("first writer wins");
    campaign = read;
    campaign.total = Decimal::new(700, 2);
    let stale = store
        .apply(
            &format!("{run}-cas-b"),
            &[
                Write::InsertDonation(donation(&format!("{run}-cas-d"), &id, 700)),
                Write::PutCampaign(campaign),
            ],
            &json!({}),
        )
        .await;
    assert!(matches!(&stale, Err(e) if e.is_retryable()), "{stale:?}");
    let stored = store.campaign(&id).await.expect("read").expect("exists");
    assert_eq!((stored.total, stored.version), (Decimal::new(500, 2), 2));
    assert!(store
        .donations(&id, 10)
        .await
        .expect("donations")
        .is_empty());
    assert_eq!(
        store
            .outcome(&format!("{run}-cas-b"))
            .await
            .expect("outcome"),
        None
    );
}

fn presence(topic: &str, connector: &str, socket: u64, phx_ref: &str) -> Presence {
    Presence {
        topic: topic.to_owned(),
        key: format!("user{socket}"),
        phx_ref: phx_ref.to_owned(),
        meta: json!({"name": "n", "phx_ref": phx_ref}),
        connector_id: connector.to_owned(),
        socket_id: socket,
        join_id: "1".into(),
    }
}

async fn apply_writes<S: Store>(store: &S, id: &str, writes: Vec<Write>) {
    let applied = store.apply(id, &writes, &json!({})).await.expect("apply");
    assert_eq!(applied, Applied::Stored, "{id}");
}

/// Presences read back per topic, per socket and per connector; untracked ones are gone; a
/// connector's topics are listed until forgotten.
pub async fn presences_track_filter_and_untrack<S: Store>(store: &S, run: &str) {
    let topic = format!("collab:document:{run}");
    let (a, b) = (format!("{run}-a"), format!("{run}-b"));
    let a1 = presence(&topic, &a, 1, "r1");
    let a2 = presence(&topic, &a, 2, "r2");
    let b1 = presence(&topic, &b, 1, "r3");
    apply_writes(
        store,
        &format!("{run}-track"),
        vec![
            Write::Track(a1.clone()),
            Write::Track(a2.clone()),
            Write::Track(b1.clone()),
        ],
    )
    .await;
    let mut all = store
        .presences(&topic, &PresenceFilter::All)
        .await
        .expect("all");
    all.sort_by(|x, y| x.phx_ref.cmp(&y.phx_ref));
    assert_eq!(all, vec![a1.clone(), a2.clone(), b1.clone()]);
    let socket = PresenceFilter::Socket {
        connector_id: a.clone(),
        socket_id: 2,
    };
    assert_eq!(
        store.presences(&topic, &socket).await.expect("socket"),
        vec![a2.clone()]
    );
    let mut of_a = store
        .presences(&topic, &PresenceFilter::Connector(a.clone()))
        .await
        .expect("connector");
    of_a.sort_by(|x, y| x.phx_ref.cmp(&y.phx_ref));
    assert_eq!(of_a, vec![a1.clone(), a2.clone()]);
    assert!(store
        .presence_connectors()
        .await
        .expect("connectors")
        .contains(&a));
    assert_eq!(
        store.presence_topics(&a).await.expect("topics"),
        vec![topic.clone()]
    );

    apply_writes(
        store,
        &format!("{run}-expire"),
        vec![
            Write::Untrack(a1),
            Write::Untrack(a2),
            Write::ForgetPresenceTopic {
                connector_id: a.clone(),
                topic: topic.clone(),
            },
        ],
    )
    .await;
    assert_eq!(
        store
            .presences(&topic, &PresenceFilter::All)
            .await
            .expect("after"),
        vec![b1]
    );
    assert!(store.presence_topics(&a).await.expect("topics").is_empty());
    store.forget_connector(&a).await.expect("forget");
    let connectors = store.presence_connectors().await.expect("connectors");
    assert!(!connectors.contains(&a) && connectors.contains(&b));
}
