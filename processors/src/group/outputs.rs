//! What leaves a partition's worker: a group's outputs, and commands set aside in the
//! dead-letter topic.

use bytes::Bytes;
use eventlog::{Log, Pending, Record};
use topics::names::{BROADCASTS, COMMANDS, DEAD_LETTERS, DELIVERIES, EVENTS, JOBS};
use topics::{Command, Refusal};

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

/// Puts the outcomes on their way, in order: for each, the delivery, then broadcasts, then
/// domain events, then derived commands, then jobs.
pub(super) fn emit(log: &dyn Log, outcomes: &[Outcome]) -> Result<Pending, AttemptError> {
    let mut records = Vec::new();
    for outcome in outcomes {
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
    }
    Ok(log.send_all(records)?)
}
