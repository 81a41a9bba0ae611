//! Behaviour every log backend must show, written once and run per backend: the embedded
//! log in its unit tests, Kafka in `tests/kafka.rs` against a real broker.

use std::time::Duration;

use bytes::Bytes;

use crate::{Log, StartAt, Subscription};
use topics::names::TopicSpec;

/// The topics the scenarios use; a backend that needs topics created creates these first.
pub const TOPICS: [TopicSpec; 2] = [TOPIC, PAUSING];

const TOPIC: TopicSpec = TopicSpec {
    name: "conformance",
    partitions: 4,
    retention_ms: 3_600_000,
};

async fn next_value(consumer: &mut Box<dyn crate::Consumer>) -> (u32, u64, String) {
    let record = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a record within 5 s")
        .expect("read ok");
    (
        record.partition,
        record.offset,
        String::from_utf8_lossy(&record.value).into_owned(),
    )
}

/// Same key, same partition, append order kept.
pub async fn keyed_order<L: Log>(log: &L) {
    let mut first_partition = None;
    for i in 0..20 {
        let (p, _) = log
            .append(TOPIC, b"key-a", Bytes::from(format!("a{i}")))
            .await
            .expect("append");
        assert_eq!(*first_partition.get_or_insert(p), p);
    }
    let p = first_partition.expect("appended");
    let mut consumer = log
        .subscribe(
            TOPIC,
            Subscription::Partitions {
                partitions: vec![p],
                start: StartAt::Earliest,
            },
        )
        .await
        .expect("subscribe");
    for i in 0..20 {
        let (_, _, v) = next_value(&mut consumer).await;
        assert_eq!(v, format!("a{i}"));
    }
}

/// A consumer at the live end sees only later records.
pub async fn latest_skips_history<L: Log>(log: &L) {
    log.append(TOPIC, b"k", Bytes::from_static(b"old"))
        .await
        .expect("append");
    let mut consumer = log
        .subscribe(
            TOPIC,
            Subscription::Partitions {
                partitions: (0..TOPIC.partitions).collect(),
                start: StartAt::Latest,
            },
        )
        .await
        .expect("subscribe");
    log.append(TOPIC, b"k", Bytes::from_static(b"new"))
        .await
        .expect("append");
    assert_eq!(next_value(&mut consumer).await.2, "new");
}

/// A group resumes after its last commit and re-reads uncommitted records.
pub async fn group_resumes_after_commit<L: Log>(log: &L) {
    for i in 0..6 {
        log.append(
            TOPIC,
            format!("k{i}").as_bytes(),
            Bytes::from(format!("v{i}")),
        )
        .await
        .expect("append");
    }
    let mut consumer = log
        .subscribe(TOPIC, Subscription::Group("g1".into()))
        .await
        .expect("subscribe");
    let mut seen = Vec::new();
    for _ in 0..6 {
        let record = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("record")
            .expect("ok");
        seen.push(record);
    }
    // Commit the first three records read; the rest must come back.
    for record in &seen[..3] {
        consumer.commit(record).await.expect("commit");
    }
    drop(consumer);
    let mut again = log
        .subscribe(TOPIC, Subscription::Group("g1".into()))
        .await
        .expect("subscribe");
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(next_value(&mut again).await.2);
    }
    replayed.sort();
    let mut expected: Vec<String> = seen[3..]
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    expected.sort();
    assert_eq!(replayed, expected);
}

const PAUSING: TopicSpec = TopicSpec {
    name: "pausing",
    partitions: 2,
    retention_ms: 3_600_000,
};

/// Owned partitions resume after their last commit, under the group name, with no
/// membership; partitions not owned are not read.
pub async fn owned_partitions_resume_after_commit<L: Log>(log: &L) {
    let spec = PAUSING;
    let key0 = (0..100)
        .map(|i| format!("o{i}"))
        .find(|k| topics::names::partition_for(k.as_bytes(), 2) == 0)
        .expect("a key for partition 0");
    let key1 = (0..100)
        .map(|i| format!("o{i}"))
        .find(|k| topics::names::partition_for(k.as_bytes(), 2) == 1)
        .expect("a key for partition 1");
    for value in ["a", "b", "c"] {
        log.append(spec, key0.as_bytes(), Bytes::from(value))
            .await
            .expect("append");
    }
    log.append(spec, key1.as_bytes(), Bytes::from_static(b"other"))
        .await
        .expect("append");
    let owned = || Subscription::Owned {
        group: "owner".into(),
        partitions: vec![0],
    };
    let mut consumer = log.subscribe(spec, owned()).await.expect("subscribe");
    let first = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("record")
        .expect("read");
    assert_eq!(&first.value[..], b"a");
    consumer.commit(&first).await.expect("commit");
    assert_eq!(next_value(&mut consumer).await.2, "b");
    drop(consumer);
    // Give an asynchronous commit time to land before resuming.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = log.subscribe(spec, owned()).await.expect("subscribe");
    assert_eq!(
        next_value(&mut again).await.2,
        "b",
        "resumes after the commit"
    );
    assert_eq!(next_value(&mut again).await.2, "c");
    let nothing = tokio::time::timeout(Duration::from_millis(300), again.next()).await;
    assert!(nothing.is_err(), "partition 1 is not owned");
}
