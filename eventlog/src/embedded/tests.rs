use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::{conformance, Record};

/// One partition, kept an hour.
const T: TopicSpec = TopicSpec {
    name: "t",
    partitions: 1,
    retention_ms: 3_600_000,
};
/// A record of `T` with key `k` and a four-byte value takes 17 bytes: five fit in 100.
const SMALL_SEGMENT: u64 = 100;
const HOUR: Duration = Duration::from_secs(3600);

fn fresh() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path().join("log")).expect("open");
    (dir, log)
}

/// A hand-set clock starting at the real time (segment files carry real modification times).
fn manual_clock() -> (Arc<AtomicU64>, Clock) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let ms = Arc::new(AtomicU64::new(now));
    (ms.clone(), Clock::Manual(ms))
}

fn advance(ms: &AtomicU64, by: Duration) {
    ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
}

/// The segment files of partition 0 of `T`, by base offset.
fn segments(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = fs::read_dir(dir.join("t").join("0"))
        .expect("partition folder")
        .filter_map(|e| segment::base_of(e.expect("entry").file_name().to_str()?))
        .collect();
    bases.sort_unstable();
    bases
}

/// Deletes expired segments of every open topic, as the periodic check does.
fn expire(log: &EmbeddedLog) -> usize {
    let topics = log.topics.lock().expect("topics");
    topics
        .values()
        .map(|t| t.expire(log.clock.now()).expect("expire"))
        .sum()
}

async fn append(log: &EmbeddedLog, values: std::ops::Range<u32>) -> Vec<u64> {
    let mut offsets = Vec::new();
    for i in values {
        let (_, offset) = log
            .append(T, b"k", Bytes::from(format!("v{i:03}")))
            .await
            .expect("append");
        offsets.push(offset);
    }
    offsets
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Record {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a record within 5 s")
        .expect("read ok")
}

async fn earliest(log: &EmbeddedLog) -> Box<dyn Consumer> {
    log.subscribe(
        T,
        Subscription::Partitions {
            partitions: vec![0],
            start: StartAt::Earliest,
        },
    )
    .await
    .expect("subscribe")
}

#[tokio::test]
async fn conformance_keyed_order() {
    let (_dir, log) = fresh();
    conformance::keyed_order(&log).await;
}

#[tokio::test]
async fn conformance_keyed_order_across_tiny_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open_with(dir.path().to_owned(), 32, Clock::System).expect("open");
    conformance::keyed_order(&log).await;
}

#[tokio::test]
async fn conformance_latest_skips_history() {
    let (_dir, log) = fresh();
    conformance::latest_skips_history(&log).await;
}

#[tokio::test]
async fn conformance_group_resumes_after_commit() {
    let (_dir, log) = fresh();
    conformance::group_resumes_after_commit(&log).await;
}

#[tokio::test]
async fn conformance_owned_partitions_resume_after_commit() {
    let (_dir, log) = fresh();
    conformance::owned_partitions_resume_after_commit(&log).await;
}

#[test]
fn segments_roll_at_most_daily_and_expire_by_the_topic_retention() {
    let hourly = partition::Policy::new(3_600_000, SEGMENT_BYTES);
    assert_eq!(hourly.roll_age, HOUR);
    assert_eq!(hourly.retention, Some(HOUR));
    let weekly = partition::Policy::new(7 * 24 * 3_600_000, SEGMENT_BYTES);
    assert_eq!(weekly.roll_age, 24 * HOUR);
    let forever = partition::Policy::new(-1, SEGMENT_BYTES);
    assert_eq!(forever.retention, None);
}

#[tokio::test]
async fn reopens_with_records_and_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || EmbeddedLog::open_with(dir.path().to_owned(), 4096, Clock::System);
    {
        let log = open().expect("open");
        for i in 0..5000u32 {
            log.append(T, b"k", Bytes::from(i.to_string()))
                .await
                .expect("append");
        }
    }
    // Simulate a write cut short by a crash, in the newest segment.
    let newest = *segments(dir.path()).last().expect("segments");
    assert!(newest > 0, "5000 records fill several 4 KiB segments");
    let path = dir.path().join("t/0").join(segment::file_name(newest));
    let mut file = OpenOptions::new().append(true).open(&path).expect("file");
    file.write_all(&[9, 0, 0, 0, 1]).expect("torn write");
    drop(file);

    let log = open().expect("reopen");
    let (_, offset) = log
        .append(T, b"k", Bytes::from_static(b"after"))
        .await
        .expect("append");
    assert_eq!(offset, 5000);
    let mut consumer = earliest(&log).await;
    // The first records are older than the memory tail and come from the files.
    for i in 0..5000u32 {
        let record = next(&mut consumer).await;
        assert_eq!(
            (record.offset, record.value),
            (u64::from(i), Bytes::from(i.to_string()))
        );
    }
    assert_eq!(next(&mut consumer).await.value, "after");
}

#[tokio::test]
async fn segments_roll_by_size_and_offsets_run_on_across_them_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || EmbeddedLog::open_with(dir.path().to_owned(), SMALL_SEGMENT, Clock::System);
    {
        let log = open().expect("open");
        assert_eq!(append(&log, 0..12).await, (0..12).collect::<Vec<u64>>());
    }
    assert_eq!(segments(dir.path()), [0, 5, 10]);
    let log = open().expect("reopen");
    assert_eq!(append(&log, 12..13).await, [12]);
    let mut consumer = earliest(&log).await;
    for i in 0..13u32 {
        let record = next(&mut consumer).await;
        assert_eq!(record.offset, u64::from(i));
        assert_eq!(record.value, format!("v{i:03}"));
    }
}

#[tokio::test]
async fn segments_roll_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ms, clock) = manual_clock();
    let log = EmbeddedLog::open_with(dir.path().to_owned(), SEGMENT_BYTES, clock).expect("open");
    append(&log, 0..1).await;
    advance(&ms, Duration::from_secs(59 * 60));
    append(&log, 1..2).await;
    assert_eq!(
        segments(dir.path()),
        [0],
        "younger than the retention: still active"
    );
    advance(&ms, Duration::from_secs(2 * 60));
    append(&log, 2..3).await;
    assert_eq!(
        segments(dir.path()),
        [0, 2],
        "the first record is over an hour old"
    );
}

#[tokio::test]
async fn expired_segments_are_deleted_and_offsets_keep_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ms, clock) = manual_clock();
    let open = || EmbeddedLog::open_with(dir.path().to_owned(), SMALL_SEGMENT, clock.clone());
    {
        let log = open().expect("open");
        append(&log, 0..12).await;
        assert_eq!(expire(&log), 0, "nothing is an hour old yet");
        advance(&ms, 2 * HOUR);
        // Two hours on, the append rolls the active segment by age and then finds every
        // closed segment expired: only the new active one stays.
        assert_eq!(append(&log, 12..13).await, [12]);
        assert_eq!(segments(dir.path()), [12]);
        assert_eq!(append(&log, 13..14).await, [13]);
        let mut consumer = earliest(&log).await;
        for offset in 12..14 {
            assert_eq!(next(&mut consumer).await.offset, offset);
        }
    }
    // After a restart: the first kept offset from the oldest segment, the next from the newest.
    let log = open().expect("reopen");
    let topic = log.topic(T).expect("topic");
    let partition = topic.partition("t", 0).expect("partition");
    assert_eq!(
        (partition.first_offset(), partition.next_offset()),
        (12, 14)
    );
    let mut consumer = earliest(&log).await;
    assert_eq!(next(&mut consumer).await.offset, 12);
    assert_eq!(append(&log, 14..15).await, [14]);
}

#[tokio::test]
async fn segments_that_expired_while_closed_are_deleted_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ms, clock) = manual_clock();
    let open = || EmbeddedLog::open_with(dir.path().to_owned(), SMALL_SEGMENT, clock.clone());
    append(&open().expect("open"), 0..12).await;
    advance(&ms, 2 * HOUR);
    let log = open().expect("reopen");
    let mut consumer = earliest(&log).await;
    assert_eq!(next(&mut consumer).await.offset, 10);
    assert_eq!(segments(dir.path()), [10]);
}

#[tokio::test]
async fn a_reader_before_the_log_start_goes_on_at_the_first_kept_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ms, clock) = manual_clock();
    let log = EmbeddedLog::open_with(dir.path().to_owned(), SMALL_SEGMENT, clock).expect("open");
    append(&log, 0..12).await;
    let mut reader = earliest(&log).await;
    assert_eq!(next(&mut reader).await.offset, 0);
    advance(&ms, 2 * HOUR);
    assert_eq!(expire(&log), 2);
    let record = next(&mut reader).await;
    assert_eq!((record.offset, record.value), (10, Bytes::from("v010")));
}

#[tokio::test]
async fn a_group_keeps_the_segments_it_has_not_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ms, clock) = manual_clock();
    let log = EmbeddedLog::open_with(dir.path().to_owned(), SMALL_SEGMENT, clock).expect("open");
    let group = || Subscription::Group("processors".into());
    let mut consumer = log.subscribe(T, group()).await.expect("subscribe");
    append(&log, 0..12).await;
    advance(&ms, 2 * HOUR);
    assert_eq!(expire(&log), 0, "the group has committed nothing");

    for _ in 0..7 {
        let record = next(&mut consumer).await;
        consumer.commit(&record).await.expect("commit");
    }
    drop(consumer); // saves the positions
    assert_eq!(expire(&log), 1);
    assert_eq!(
        segments(dir.path()),
        [5, 10],
        "offsets 7 to 9 are not committed"
    );

    let mut consumer = log.subscribe(T, group()).await.expect("subscribe");
    for offset in 7..12 {
        let record = next(&mut consumer).await;
        assert_eq!(record.offset, offset);
        consumer.commit(&record).await.expect("commit");
    }
    drop(consumer);
    assert_eq!(expire(&log), 1);
    assert_eq!(segments(dir.path()), [10], "the active segment stays");
}

#[tokio::test]
async fn an_old_single_file_partition_opens_and_reads() {
    // The previous format: partition 0 of topic `t` is the one file `t/0.log`, records framed
    // as key_len | value_len | FNV-1a checksum of key and value | key | value.
    fn old_record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut sum: u32 = 0x811c_9dc5;
        for byte in key.iter().chain(value) {
            sum = (sum ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(&sum.to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        out
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("t")).expect("topic folder");
    let old: Vec<u8> = ["one", "two", "three"]
        .iter()
        .flat_map(|v| old_record(b"k", v.as_bytes()))
        .collect();
    fs::write(dir.path().join("t/0.log"), old).expect("old partition");

    let log = EmbeddedLog::open(dir.path()).expect("open");
    let mut consumer = earliest(&log).await;
    for (offset, value) in [(0, "one"), (1, "two"), (2, "three")] {
        let record = next(&mut consumer).await;
        assert_eq!((record.offset, record.value), (offset, Bytes::from(value)));
    }
    let (_, offset) = log
        .append(T, b"k", Bytes::from_static(b"four"))
        .await
        .expect("append");
    assert_eq!(offset, 3);
    assert_eq!(next(&mut consumer).await.value, "four");
    assert!(
        !dir.path().join("t/0.log").exists(),
        "moved in as segment 0"
    );
    assert_eq!(segments(dir.path()), [0]);
}

#[tokio::test]
async fn a_crash_between_creating_a_segment_and_writing_to_it_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || EmbeddedLog::open_with(dir.path().to_owned(), SMALL_SEGMENT, Clock::System);
    append(&open().expect("open"), 0..5).await;
    // What a roll leaves when the process dies before the first write to the new segment.
    File::create(dir.path().join("t/0").join(segment::file_name(5))).expect("empty segment");

    let log = open().expect("reopen");
    assert_eq!(append(&log, 5..6).await, [5]);
    assert_eq!(segments(dir.path()), [0, 5]);
    let mut consumer = earliest(&log).await;
    for offset in 0..6 {
        assert_eq!(next(&mut consumer).await.offset, offset);
    }
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = EmbeddedLog::open(dir.path()).expect("open");
    assert!(matches!(
        EmbeddedLog::open(dir.path()),
        Err(LogError::Locked(_))
    ));
}
