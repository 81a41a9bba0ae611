//! The IO shell around [`decide`](crate::decide): consume, load, decide, persist, emit, commit.
//!
//! One command at a time, in log order; the offset is committed only after the effects are
//! stored and the outcome is on the log, so a crash at any point leads to the command being
//! processed again, which [`Store::apply`]'s idempotency turns into a re-emit of the stored
//! outcome (broadcast ids let connectors drop the repeat). Transient failures are retried with
//! capped backoff, never skipped; an undecodable record is logged, counted and skipped.

use std::sync::Arc;
use std::time::Duration;

use store::{Applied, Store, StoreError};
use tokio_util::sync::CancellationToken;
use topics::names::{BROADCASTS, COMMANDS, DELIVERIES};
use topics::{Command, CommandKind, Log, LogError, Record, Subscription};

use crate::decision::{Outcome, View};
use crate::{decide, needs};

/// Processor runner settings.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Consumer group shared by the processors.
    pub group: String,
    /// First retry delay after a transient failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            group: "fawkes-processors".into(),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// The runner stopped because of an error it cannot retry.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The log failed.
    #[error("the command log failed: {0}")]
    Log(#[from] LogError),
    /// The store failed permanently.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

/// Why one attempt at a command failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored outcome of command {0} could not be read back")]
    BadOutcome(String),
}

impl AttemptError {
    fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Log(LogError::Closed) => false,
            AttemptError::Log(_) => true,
            AttemptError::Store(e) => e.is_retryable(),
            AttemptError::BadOutcome(_) => false,
        }
    }
}

/// Consumes commands until `shutdown` fires.
pub async fn run(
    config: RunnerConfig,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let mut consumer = log
        .subscribe(COMMANDS, Subscription::Group(config.group.clone()))
        .await?;
    tracing::info!(group = %config.group, "processor runner started");
    loop {
        let record = tokio::select! {
            () = shutdown.cancelled() => break,
            record = consumer.next() => record?,
        };
        if !process_with_retry(&config, &*log, &*store, &record, &shutdown).await? {
            // Shutting down mid-retry: leave the offset uncommitted, the command is redone.
            break;
        }
        consumer.commit(&record).await?;
    }
    tracing::info!("processor runner stopped");
    Ok(())
}

/// Processes one record, retrying transient failures; false when interrupted by shutdown.
async fn process_with_retry(
    config: &RunnerConfig,
    log: &dyn Log,
    store: &dyn Store,
    record: &Record,
    shutdown: &CancellationToken,
) -> Result<bool, RunnerError> {
    let command = match Command::decode(&record.value) {
        Ok(command) => command,
        Err(error) => {
            tracing::error!(
                partition = record.partition,
                offset = record.offset,
                %error,
                "skipping an undecodable command"
            );
            return Ok(true);
        }
    };
    let mut delay = config.retry_initial;
    loop {
        match process(log, store, &command).await {
            Ok(()) => return Ok(true),
            Err(error) if error.is_retryable() => {
                tracing::warn!(command = %command.id, %error, ?delay, "retrying command");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(false),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(config.retry_max);
            }
            Err(AttemptError::Log(e)) => return Err(e.into()),
            Err(AttemptError::Store(e)) => return Err(e.into()),
            Err(error @ AttemptError::BadOutcome(_)) => {
                tracing::error!(command = %command.id, %error, "skipping command");
                return Ok(true);
            }
        }
    }
}

async fn process(log: &dyn Log, store: &dyn Store, command: &Command) -> Result<(), AttemptError> {
    // Joins and leaves never write, so they never have a stored outcome to look up.
    let may_have_written = matches!(command.kind, CommandKind::Event { .. });
    if may_have_written {
        if let Some(stored) = store.outcome(&command.id).await? {
            return emit(log, &parse_outcome(&command.id, stored)?).await;
        }
    }
    let view = load_view(store, command).await?;
    let decision = decide(command, &view);
    let outcome = decision.outcome(command);
    if !decision.writes.is_empty() {
        let body = serde_json::to_value(&outcome)
            .map_err(|_| AttemptError::BadOutcome(command.id.clone()))?;
        if let Applied::Duplicate(stored) =
            store.apply(&command.id, &decision.writes, &body).await?
        {
            return emit(log, &parse_outcome(&command.id, stored)?).await;
        }
    }
    emit(log, &outcome).await
}

fn parse_outcome(id: &str, stored: serde_json::Value) -> Result<Outcome, AttemptError> {
    serde_json::from_value(stored).map_err(|_| AttemptError::BadOutcome(id.to_owned()))
}

async fn load_view(store: &dyn Store, command: &Command) -> Result<View, AttemptError> {
    let needs = needs(command);
    let campaign = match &needs.campaign {
        Some(id) => store.campaign(id).await?,
        None => None,
    };
    let new_campaign_id = if needs.new_campaign_id {
        Some(free_campaign_id(store).await?)
    } else {
        None
    };
    Ok(View {
        campaign,
        new_campaign_id,
        now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// A campaign id from the sequence that no campaign uses (seeded campaigns have fixed ids).
async fn free_campaign_id(store: &dyn Store) -> Result<String, AttemptError> {
    loop {
        let id = store.next_id("campaign").await?.to_string();
        if store.campaign(&id).await?.is_none() {
            return Ok(id);
        }
    }
}

async fn emit(log: &dyn Log, outcome: &Outcome) -> Result<(), AttemptError> {
    if let Some(delivery) = &outcome.delivery {
        log.append(
            DELIVERIES,
            delivery.socket.connector_id.as_bytes(),
            delivery.encode(),
        )
        .await?;
    }
    for broadcast in &outcome.broadcasts {
        log.append(BROADCASTS, broadcast.topic.as_bytes(), broadcast.encode())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::test_support::{claims, event};
    use serde_json::json;
    use store::conformance::sample_campaign;
    use store::{EmbeddedStore, Write};
    use topics::log::embedded::EmbeddedLog;
    use topics::log::Consumer;
    use topics::{Broadcast, Delivery, StartAt};

    async fn next<T>(consumer: &mut Box<dyn Consumer>, decode: fn(&[u8]) -> Option<T>) -> T {
        let record = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a record in time")
            .expect("read");
        decode(&record.value).expect("decodes")
    }

    #[tokio::test]
    async fn a_command_processed_twice_is_counted_once_and_answered_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path().join("log")).expect("log"));
        let store = EmbeddedStore::open(dir.path()).expect("store");
        store
            .apply(
                "seed",
                &[Write::PutCampaign(sample_campaign("1"))],
                &json!({}),
            )
            .await
            .expect("seed");
        let mut deliveries = log
            .subscribe(
                DELIVERIES,
                Subscription::Partitions {
                    partitions: (0..DELIVERIES.partitions).collect(),
                    start: StartAt::Earliest,
                },
            )
            .await
            .expect("subscribe");
        let mut broadcasts = log
            .subscribe(
                BROADCASTS,
                Subscription::Partitions {
                    partitions: (0..BROADCASTS.partitions).collect(),
                    start: StartAt::Earliest,
                },
            )
            .await
            .expect("subscribe");

        let cmd = event(
            "donations:campaign:1",
            claims(Some("4"), &[]),
            "new_donation",
            json!({"amount": "10", "donor_name": "Sam"}),
        );
        process(&*log, &store, &cmd).await.expect("first");
        process(&*log, &store, &cmd).await.expect("second");

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
}
