//! What leaves a partition's worker: a group's outputs, and commands set aside in the
//! dead-letter topic.

use bytes::Bytes;
use eventlog::{Log, LogError, Pending, Record};
use topics::names::{TopicSpec, BROADCASTS, COMMANDS, DEAD_LETTERS, DELIVERIES, EVENTS, JOBS};
use topics::{Command, Delivery, Refusal};

use super::{AttemptError, Shared};
use crate::decision::{Decision, Outcome};

/// Sends a poison command to the dead-letter topic, retrying until the log takes it.
pub(super) async fn dead_letter(shared: &Shared, record: &Record, reason: &str) -> Option<Pending> {
    set_aside(shared, record, reason, true).await
}

/// Sends a command to the dead-letter topic, retrying until the log takes it; with
/// `tell_client`, its client is answered `command failed` (not when the command was applied
/// and only its outputs could not be sent: that would say it failed when it did not).
pub(super) async fn set_aside(
    shared: &Shared,
    record: &Record,
    reason: &str,
    tell_client: bool,
) -> Option<Pending> {
    tracing::error!(
        partition = record.partition,
        offset = record.offset,
        reason,
        "sending a command to the dead-letter topic"
    );
    shared.metrics.dead_letters.inc();
    shared
        .metrics
        .commands
        .with_label_values(&["dead_letter"])
        .inc();
    let mut delay = shared.retry_initial;
    while let Err(error) = shared
        .log
        .append(DEAD_LETTERS, &record.key, record.value.clone())
        .await
    {
        tracing::warn!(%error, "dead-letter topic unavailable; retrying");
        tokio::select! {
            () = shared.shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(shared.retry_max);
    }
    // A client waiting for this command's reply is told it failed, not left to time out.
    match refusal_of(record).filter(|_| tell_client) {
        Some(outcome) => match emit(&*shared.log, &[outcome]) {
            Ok(pending) => Some(pending),
            Err(error) => {
                tracing::warn!(%error, "the failure reply of a dead-lettered command was not sent");
                Some(Box::pin(std::future::ready(Ok(()))))
            }
        },
        None => Some(Box::pin(std::future::ready(Ok(())))),
    }
}

/// The `command failed` reply to a dead-lettered command's message, when it can be read and
/// its client waits for a reply.
fn refusal_of(record: &Record) -> Option<Outcome> {
    let command = Command::decode(&record.value).ok()?;
    command.socket.msg_ref.as_ref()?;
    Some(Decision::refuse(Refusal::Failed).outcome(&command))
}

/// An outcome's records, in order: the delivery, then broadcasts, then domain events, then
/// derived commands, then jobs.
fn records_of(outcome: &Outcome) -> Result<Vec<(TopicSpec, Bytes, Bytes)>, AttemptError> {
    let mut records = Vec::new();
    if let Some(delivery) = &outcome.delivery {
        let key = Bytes::copy_from_slice(delivery.socket.connector_id.as_bytes());
        records.push((DELIVERIES, key, delivery.encode()?));
    }
    for broadcast in &outcome.broadcasts {
        let key = Bytes::copy_from_slice(broadcast.topic.as_bytes());
        records.push((BROADCASTS, key, broadcast.encode()?));
    }
    for event in &outcome.domain_events {
        let key = Bytes::copy_from_slice(event.campaign_id().as_bytes());
        records.push((EVENTS, key, event.encode()?));
    }
    for command in &outcome.commands {
        let key = Bytes::copy_from_slice(command.topic.as_bytes());
        records.push((COMMANDS, key, command.encode()?));
    }
    for job in &outcome.jobs {
        let key = Bytes::copy_from_slice(job.topic.as_bytes());
        records.push((JOBS, key, job.encode()?));
    }
    Ok(records)
}

/// Puts the outcomes on their way, in order, each as [`records_of`] lists it.
pub(super) fn emit(log: &dyn Log, outcomes: &[Outcome]) -> Result<Pending, AttemptError> {
    let mut records = Vec::new();
    for outcome in outcomes {
        records.extend(records_of(outcome)?);
    }
    Ok(log.send_all(records)?)
}

/// Whether the log refused records for good (too large, an unknown topic) rather than being
/// unreachable for a while.
pub(super) fn is_refusal(error: &LogError) -> bool {
    !matches!(error, LogError::Unavailable(_) | LogError::Io { .. })
}

/// Sends one record, retrying while the log is unreachable; `Some(false)` when the log
/// refused it for good, `None` at shutdown.
async fn send_one(shared: &Shared, record: (TopicSpec, Bytes, Bytes)) -> Option<bool> {
    let mut delay = shared.retry_initial;
    loop {
        let sent = match shared.log.send_all(vec![record.clone()]) {
            Ok(pending) => pending.await,
            Err(error) => Err(error),
        };
        match sent {
            Ok(()) => return Some(true),
            Err(error) if is_refusal(&error) => {
                tracing::error!(%error, topic = record.0.name, bytes = record.2.len(), "the log refused an output; it is lost");
                return Some(false);
            }
            Err(error) => tracing::warn!(%error, "an output was not stored; retrying"),
        }
        tokio::select! {
            () = shared.shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(shared.retry_max);
    }
}

/// Sends `records` (the outputs of `command`, whose group's outputs the log refused) one by
/// one, so only what the log refuses (a record over its size limit) is lost, and nothing of
/// the other commands of the group. A reply lost so is replaced by `reply too large`. Returns
/// how many records were lost (`None` at shutdown).
pub(super) async fn emit_piecewise(
    shared: &Shared,
    records: Vec<(TopicSpec, Bytes, Bytes)>,
    command: &Command,
) -> Option<Result<usize, AttemptError>> {
    let mut lost = 0;
    let mut reply_lost = false;
    for record in records {
        let is_reply =
            record.0 == DELIVERIES && Delivery::decode(&record.2).is_ok_and(|d| d.reply.is_some());
        if !send_one(shared, record).await? {
            lost += 1;
            reply_lost |= is_reply;
        }
    }
    if reply_lost && command.socket.msg_ref.is_some() {
        let refusal = Decision::refuse(Refusal::ReplyTooLarge).outcome(command);
        match records_of(&refusal) {
            Ok(records) => {
                for record in records {
                    send_one(shared, record).await?;
                }
            }
            Err(error) => return Some(Err(error)),
        }
    }
    Some(Ok(lost))
}

/// A log that keeps what is sent to it instead of sending it: a command's outputs, collected
/// to be sent one by one by [`emit_piecewise`].
#[derive(Debug, Default)]
pub(super) struct Collected {
    records: std::sync::Mutex<Vec<(TopicSpec, Bytes, Bytes)>>,
}

impl Collected {
    /// What was sent so far.
    pub(super) fn take(&self) -> Vec<(TopicSpec, Bytes, Bytes)> {
        std::mem::take(
            &mut self
                .records
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

#[async_trait::async_trait]
impl Log for Collected {
    async fn append(
        &self,
        topic: TopicSpec,
        key: &[u8],
        value: Bytes,
    ) -> Result<(u32, u64), LogError> {
        self.send_all(vec![(topic, Bytes::copy_from_slice(key), value)])?
            .await
            .map(|()| (0, 0))
    }

    fn send_all(&self, records: Vec<(TopicSpec, Bytes, Bytes)>) -> Result<Pending, LogError> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(records);
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    async fn subscribe(
        &self,
        _topic: TopicSpec,
        _subscription: eventlog::Subscription,
    ) -> Result<Box<dyn eventlog::Consumer>, LogError> {
        Err(LogError::Unavailable(
            "outputs are only collected here".into(),
        ))
    }
}
