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
