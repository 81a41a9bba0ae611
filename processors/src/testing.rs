//! Test helpers for the runner and group-commit tests: a seeded embedded log and store, and
//! readers of the log's output topics.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Consumer, EmbeddedLog, Log, StartAt, Subscription};
use serde_json::json;
use store::conformance::sample_campaign;
use store::{EmbeddedStore, Store, Write};
use topics::names::TopicSpec;

/// The next record of `consumer` (within 5 s), decoded with `decode`.
pub(crate) async fn next<T>(consumer: &mut Box<dyn Consumer>, decode: fn(&[u8]) -> Option<T>) -> T {
    let record = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a record in time")
        .expect("read");
    decode(&record.value).expect("decodes")
}

/// The embedded store in `dir`, with campaign 1.
pub(crate) async fn seeded_store(dir: &Path) -> EmbeddedStore {
    let store = EmbeddedStore::open(dir).expect("store");
    store
        .apply(
            "seed",
            &[Write::PutCampaign(sample_campaign("1"))],
            &json!({}),
        )
        .await
        .expect("seed");
    store
}

/// A log and a store in a fresh directory, with campaign 1.
pub(crate) async fn seeded() -> (tempfile::TempDir, Arc<dyn Log>, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).expect("log"));
    let store = seeded_store(dir.path()).await;
    (dir, log, store)
}

/// Reads every partition of `topic` from the first record.
pub(crate) async fn from_start(log: &dyn Log, topic: TopicSpec) -> Box<dyn Consumer> {
    let partitions = (0..topic.partitions).collect();
    let start = StartAt::Earliest;
    log.subscribe(topic, Subscription::Partitions { partitions, start })
        .await
        .expect("subscribe")
}
