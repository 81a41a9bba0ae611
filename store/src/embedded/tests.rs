//! The embedded store against the conformance suite, and what only it does (outcome ages).

use super::schema::OUTCOME_RETENTION_MS;
use super::*;
use crate::conformance;
use rusqlite::Connection;

async fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    (dir, store)
}

#[tokio::test]
async fn conformance_suite() {
    let (_dir, store) = fresh().await;
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn two_handles_on_one_directory_share_data() {
    // Stands in for two processes: separate connections on the same file.
    let (dir, first) = fresh().await;
    let second = EmbeddedStore::open(dir.path()).expect("second open");
    conformance::shared_between_handles(&first, &second).await;
}

#[tokio::test]
async fn two_owners_on_one_directory_apply_every_command_once() {
    // Two processes that both believe they own a partition: two connections on one file.
    let (dir, first) = fresh().await;
    let second = EmbeddedStore::open(dir.path()).expect("second open");
    conformance::two_owners_apply_every_command_once(&first, &second).await;
}

#[tokio::test]
async fn outcomes_older_than_the_command_retention_are_pruned() {
    let (dir, store) = fresh().await;
    store
        .apply("fresh", &[], &serde_json::json!({"n": 1}))
        .await
        .expect("apply");
    {
        let conn = Connection::open(dir.path().join("store.sqlite")).expect("open");
        conn.execute(
            "INSERT INTO processed_commands (command_id, outcome, stored_at)
             VALUES ('ancient', '{}', ?1)",
            [now_ms() - OUTCOME_RETENTION_MS - 1],
        )
        .expect("insert");
    }
    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(reopened.outcome("ancient").await.expect("read"), None);
    assert!(reopened.outcome("fresh").await.expect("read").is_some());
}

#[tokio::test]
async fn a_store_from_before_outcome_ages_opens_and_keeps_its_outcomes() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = Connection::open(dir.path().join("store.sqlite")).expect("open");
        conn.execute_batch(
            "CREATE TABLE processed_commands (command_id TEXT PRIMARY KEY, outcome TEXT NOT NULL);
             INSERT INTO processed_commands VALUES ('old', '{\"kept\": true}');",
        )
        .expect("old schema");
    }
    let store = EmbeddedStore::open(dir.path()).expect("open");
    assert_eq!(
        store.outcome("old").await.expect("read"),
        Some(serde_json::json!({"kept": true}))
    );
}

#[tokio::test]
async fn a_topics_history_keeps_its_newest_entries_only() {
    let (_dir, store) = fresh().await;
    for offset in 1..=128u64 {
        let entry = crate::HistoryEntry {
            topic: "t".into(),
            offset,
            epoch: "e".into(),
            at: "2026-01-01T00:00:00Z".into(),
            broadcast: serde_json::json!({}),
        };
        store
            .apply(
                &format!("h{offset}"),
                &[Write::AppendHistory { entry, keep: 5 }],
                &serde_json::json!({}),
            )
            .await
            .expect("apply");
    }
    let kept: Vec<u64> = store
        .history("t", 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.offset)
        .collect();
    assert_eq!(
        kept,
        vec![124, 125, 126, 127, 128],
        "cut back at 128, a multiple of 64"
    );
}
