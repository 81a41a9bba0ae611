//! The protocol on the model of Scylla's tables: the conformance suite, two owners
//! interleaving between every two statements, and a crash after every possible write.

use super::*;
use crate::conformance;
use crate::scylla::model::Model;

fn on_model() -> Protocol<Model> {
    Protocol {
        tables: Model::default(),
    }
}

#[tokio::test]
async fn conformance_suite_on_the_model() {
    conformance::run_all(&on_model()).await;
}

#[tokio::test]
async fn two_owners_on_the_model_apply_every_command_once() {
    let store = on_model();
    conformance::two_owners_apply_every_command_once(&store, &store).await;
}

#[tokio::test]
async fn a_crash_after_any_write_is_finished_by_the_next_owner() {
    // A group of five donations, the process dying after 0, 1, 2, ... of its writes; a new
    // process then works through the same commands.
    let mut crashed_mid_group = 0;
    for writes in 0..20 {
        let store = on_model();
        let id = format!("crash{writes}");
        let commands = conformance::owner_scenario(&store, &id, 5).await;
        store.tables.crash_after(writes);
        if conformance::owner_step(&store, &id, &commands, 0, 5)
            .await
            .is_err()
        {
            crashed_mid_group += 1;
        }
        store.tables.restart();
        conformance::owner(&store, &id, &commands, 2).await;
        conformance::assert_counted_once(&store, &id, &commands).await;
    }
    assert!(
        crashed_mid_group >= 10,
        "the crash points cover the group's writes"
    );
}

#[tokio::test]
async fn a_second_owner_that_meets_the_fence_settles_instead_of_deciding() {
    // The first owner's group stops right after its compare-and-set: the fence covers its
    // commands but no donation or outcome is stored yet.
    let store = on_model();
    let commands = conformance::owner_scenario(&store, "fenced", 3).await;
    store.tables.crash_after(1);
    assert!(conformance::owner_step(&store, "fenced", &commands, 0, 3)
        .await
        .is_err());
    store.tables.restart();
    let campaign = store
        .campaign("fenced")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        campaign.applied.get(&0),
        Some(&2),
        "the fence moved with the campaign"
    );
    assert!(store.outcome("fenced-cmd0").await.expect("read").is_none());
    conformance::owner(&store, "fenced", &commands, 3).await;
    conformance::assert_counted_once(&store, "fenced", &commands).await;
}

#[tokio::test]
async fn a_meta_update_overwrites_the_join_row_without_a_tombstone() {
    let store = on_model();
    let meta = |phx_ref: &str, typing: bool| crate::Presence {
        topic: "collab:document:1".into(),
        key: "7".into(),
        phx_ref: phx_ref.into(),
        meta: serde_json::json!({"phx_ref": phx_ref, "typing": typing}),
        connector_id: "c".into(),
        socket_id: 3,
        join_id: "1".into(),
    };
    let outcome = serde_json::json!({});
    store
        .apply("join", &[Write::Track(meta("r1", false))], &outcome)
        .await
        .expect("track");
    for (n, typing) in [true, false, true].into_iter().enumerate() {
        let old = meta(&format!("r{}", n + 1), !typing);
        let new = meta(&format!("r{}", n + 2), typing);
        store
            .apply(
                &format!("typing{n}"),
                &[Write::Untrack(old), Write::Track(new)],
                &outcome,
            )
            .await
            .expect("update");
    }
    let listed = store
        .presences("collab:document:1", &PresenceFilter::All)
        .await
        .expect("read");
    assert_eq!(listed, vec![meta("r4", true)], "the last meta, once");
    assert_eq!(
        store.tables.presence_deletes(),
        0,
        "no tombstone per update"
    );
    store
        .apply("leave", &[Write::Untrack(meta("r4", true))], &outcome)
        .await
        .expect("leave");
    assert_eq!(
        store.tables.presence_deletes(),
        1,
        "a leave deletes its row"
    );
}
