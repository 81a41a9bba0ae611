//! Documents and the donation indexes: what moderation, reports and the per-user channels
//! read.

use serde_json::json;

use super::{donation, sample_campaign};
use crate::{Document, DonationStatus, HistoryEntry, Store, Write};

fn document(kind: &str, id: &str, owner: &str, at: &str) -> Document {
    Document {
        kind: kind.into(),
        id: id.into(),
        owner: owner.into(),
        created_at: at.into(),
        body: json!({"id": id, "at": at}),
    }
}

/// A document reads back by kind and id, is listed under its owner newest first, and a
/// second write of the same id replaces it; kinds and owners never mix; the store's own kinds
/// are refused.
pub(crate) async fn documents_round_trip<S: Store>(store: &S, run: &str) {
    let kind = format!("{run}-waqf");
    let owner = format!("{run}-u1");
    let first = document(&kind, "w1", &owner, "2026-01-01T00:00:00Z");
    let second = document(&kind, "w2", &owner, "2026-02-01T00:00:00Z");
    let other_owner = document(&kind, "w3", &format!("{run}-u2"), "2026-03-01T00:00:00Z");
    let other_kind = document(
        &format!("{run}-zakat"),
        "w1",
        &owner,
        "2026-04-01T00:00:00Z",
    );
    for (i, d) in [&first, &second, &other_owner, &other_kind]
        .into_iter()
        .enumerate()
    {
        store
            .apply(
                &format!("{run}-doc-{i}"),
                &[Write::PutDocument(d.clone())],
                &json!({}),
            )
            .await
            .expect("apply");
    }
    assert_eq!(
        store.document(&kind, "w1").await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(store.document(&kind, "nope").await.expect("read"), None);
    let listed = store.documents(&kind, &owner, 10).await.expect("list");
    assert_eq!(listed, vec![second.clone(), first.clone()]);
    assert_eq!(
        store.documents(&kind, &owner, 1).await.expect("list"),
        vec![second]
    );

    let mut changed = first.clone();
    changed.body = json!({"changed": true});
    store
        .apply(
            &format!("{run}-doc-change"),
            &[Write::PutDocument(changed.clone())],
            &json!({}),
        )
        .await
        .expect("apply");
    assert_eq!(
        store.document(&kind, "w1").await.expect("read"),
        Some(changed)
    );

    let reserved = document("fawkes.donation", "x", &owner, "2026-01-01T00:00:00Z");
    assert!(
        store
            .apply(
                &format!("{run}-doc-reserved"),
                &[Write::PutDocument(reserved)],
                &json!({})
            )
            .await
            .is_err(),
        "the store's own kinds are refused"
    );
}

/// A donation reads back by id; an update (moderation) is seen by id, in its campaign's list
/// and in its donor's list of the year, which holds only that user's donations of that year.
pub(crate) async fn donations_by_id_and_by_user<S: Store>(store: &S, run: &str) {
    let campaign_id = format!("{run}-mod");
    let user = format!("{run}-donor");
    let mut campaign = sample_campaign(&campaign_id);
    let mut writes = Vec::new();
    let mut ids = Vec::new();
    for (i, year) in [2025, 2026, 2026].into_iter().enumerate() {
        let mut d = donation(&format!("{run}-m{i}"), &campaign_id, 100);
        d.user_id = Some(user.clone());
        d.inserted_at = format!("{year}-05-0{}T00:00:00Z", i + 1);
        campaign.donation_count += 1;
        campaign.total += d.amount;
        let mut put = campaign.clone();
        put.version = if i == 0 { 0 } else { 1 };
        writes.push(vec![
            Write::PutCampaign(put),
            Write::InsertDonation(d.clone()),
        ]);
        ids.push(d);
        // Each command alone: the campaign is at version i + 1 after the i-th.
        let mut stored = store.campaign(&campaign_id).await.expect("read");
        if let Some(current) = stored.as_mut() {
            let Some(Write::PutCampaign(c)) = writes[i].first_mut() else {
                unreachable!()
            };
            c.version = current.version;
        }
        store
            .apply(&format!("{run}-give-{i}"), &writes[i], &json!({}))
            .await
            .expect("apply");
    }
    let anonymous = donation(&format!("{run}-anon"), &format!("{run}-other"), 5);
    store
        .apply(
            &format!("{run}-give-anon"),
            &[Write::InsertDonation(anonymous.clone())],
            &json!({}),
        )
        .await
        .expect("apply");

    assert_eq!(
        store.donation(&ids[1].id).await.expect("read"),
        Some(ids[1].clone())
    );
    assert_eq!(
        store.donation(&anonymous.id).await.expect("read"),
        Some(anonymous)
    );
    assert_eq!(store.donation("nope").await.expect("read"), None);
    let this_year = store.user_donations(&user, 2026, 10).await.expect("list");
    assert_eq!(this_year, vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(
        store.user_donations(&user, 2025, 10).await.expect("list"),
        vec![ids[0].clone()]
    );
    assert!(store
        .user_donations(&user, 2024, 10)
        .await
        .expect("list")
        .is_empty());

    let mut rejected = ids[1].clone();
    rejected.status = DonationStatus::Rejected;
    store
        .apply(
            &format!("{run}-reject"),
            &[Write::UpdateDonation(rejected.clone())],
            &json!({}),
        )
        .await
        .expect("apply");
    assert_eq!(
        store.donation(&rejected.id).await.expect("read"),
        Some(rejected.clone())
    );
    let listed = store.donations(&campaign_id, 10).await.expect("list");
    assert!(
        listed.contains(&rejected),
        "the campaign's list shows the update: {listed:?}"
    );
    assert_eq!(listed.len(), 3);
    assert_eq!(
        store.user_donations(&user, 2026, 10).await.expect("list"),
        vec![ids[2].clone(), rejected]
    );
}

/// A topic's history reads back oldest first after a given offset, across the backends'
/// partitions (over 1,000 offsets), idempotent by offset; topics never mix.
pub(crate) async fn history_reads_back_in_order_after_an_offset<S: Store>(store: &S, run: &str) {
    let topic = format!("{run}-topic");
    let entry = |offset: u64| HistoryEntry {
        topic: topic.clone(),
        offset,
        epoch: "e".into(),
        at: "2026-01-01T00:00:00Z".into(),
        broadcast: json!({"offset": offset}),
    };
    let offsets: Vec<u64> = (990..=1010).collect();
    let writes: Vec<Write> = offsets
        .iter()
        .map(|o| Write::AppendHistory {
            entry: entry(*o),
            keep: 10_000,
        })
        .collect();
    store
        .apply(&format!("{run}-history"), &writes, &json!({}))
        .await
        .expect("apply");
    // The same entry again changes nothing.
    store
        .apply(
            &format!("{run}-history-again"),
            &[Write::AppendHistory {
                entry: entry(995),
                keep: 10_000,
            }],
            &json!({}),
        )
        .await
        .expect("apply");
    let read = store.history(&topic, 994, 100).await.expect("read");
    let read: Vec<u64> = read.iter().map(|e| e.offset).collect();
    assert_eq!(
        read,
        (995..=1010).collect::<Vec<_>>(),
        "in order across 1000"
    );
    let some = store.history(&topic, 998, 3).await.expect("read");
    assert_eq!(some, vec![entry(999), entry(1000), entry(1001)]);
    assert!(store
        .history(&topic, 1010, 10)
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .history(&format!("{run}-other"), 0, 10)
        .await
        .expect("read")
        .is_empty());
}
