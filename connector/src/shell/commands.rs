//! A session's commands on their way to the log: appended in order, a join's or push's
//! confirmed before the next client message is read (and answered `unavailable` when it is
//! not confirmed in time), a leave's confirmed in the background.

use tokio::time::Instant;
use topics::names::COMMANDS;
use topics::{Command, CommandKind, SocketRef};

use super::{Outlet, Shell};
use crate::session::Action;

/// Why a command was not confirmed on the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotStored {
    /// The log refused it or is unreachable (for a timeout: it may still land).
    #[error(transparent)]
    Log(#[from] eventlog::LogError),
    /// It could not be encoded (a bug: commands always encode).
    #[error("the command could not be encoded: {0}")]
    Encode(String),
}

/// A join or push whose command is on the log and whose reply has not come yet.
#[derive(Debug)]
pub(super) struct Awaited {
    /// When it is answered `unavailable` if no reply came.
    pub(super) deadline: Instant,
    /// The channel topic.
    pub(super) topic: String,
    /// The join it belongs to.
    pub(super) join_id: String,
    /// The client's ref, which the reply echoes.
    pub(super) msg_ref: String,
    /// A join (rather than a push): answered by undoing the join.
    pub(super) join: bool,
}

/// Waits for `pending` at most `within`; a wait that runs out is [`LogError::Unavailable`]:
/// unknown, not failed.
///
/// [`LogError::Unavailable`]: eventlog::LogError::Unavailable
pub(crate) async fn confirm(
    pending: eventlog::Pending,
    within: std::time::Duration,
) -> Result<(), NotStored> {
    match tokio::time::timeout(within, pending).await {
        Ok(confirmed) => Ok(confirmed?),
        Err(_) => Err(NotStored::Log(eventlog::LogError::Unavailable(format!(
            "not confirmed within {within:?}"
        )))),
    }
}

impl<O: Outlet> Shell<O> {
    /// Appends the command the session asked for; returns the actions to carry out next when
    /// it was not confirmed (its join or push answered `unavailable`).
    pub(super) async fn command(
        &mut self,
        topic: String,
        join_id: String,
        msg_ref: Option<String>,
        mut kind: CommandKind,
    ) -> Vec<Action> {
        let asks_presence = match &mut kind {
            CommandKind::Join { presence_known, .. } => {
                *presence_known =
                    self.app
                        .replicas
                        .presence_known(&topic, self.socket_id, &join_id);
                !*presence_known
            }
            _ => false,
        };
        let command = Command {
            id: uuid::Uuid::new_v4().to_string(),
            topic,
            socket: SocketRef {
                connector_id: self.app.config.connector_id.clone(),
                socket_id: self.socket_id,
                join_id: Some(join_id),
                msg_ref,
            },
            claims: (*self.handle.claims).clone(),
            kind,
            received_at: topics::timestamp::now(),
        };
        // A join's or push's command is confirmed on the log before the next message of this
        // socket is read, waiting at most the append timeout; one not confirmed by then is
        // answered `unavailable` (it may still land: a timed-out produce is unknown, not
        // failed). Leaves need no answer: they are confirmed in the background.
        let read_at = Instant::now();
        let stored = if command.socket.msg_ref.is_some() {
            self.store(&command).await
        } else {
            self.store_in_background(&command)
        };
        if let (Ok(()), Some(msg_ref)) = (&stored, &command.socket.msg_ref) {
            self.awaited.push_back(Awaited {
                deadline: read_at + self.app.config.reply_timeout,
                topic: command.topic.clone(),
                join_id: command.socket.join_id.clone().unwrap_or_default(),
                msg_ref: msg_ref.clone(),
                join: matches!(command.kind, CommandKind::Join { .. }),
            });
        }
        let mut more = Vec::new();
        if let Err(error) = stored {
            tracing::warn!(
                socket = self.socket_id,
                topic = %command.topic,
                command = %command.id,
                %error,
                "a command was not confirmed on the log; answering unavailable"
            );
            let join_id = command.socket.join_id.as_deref().unwrap_or_default();
            if asks_presence {
                self.app
                    .replicas
                    .cancel_request(&command.topic, self.socket_id, join_id);
            }
            self.session.not_stored(
                &command.topic,
                join_id,
                command.socket.msg_ref.as_deref(),
                &command.kind,
                &mut more,
            );
        }
        more
    }

    /// Puts a command on its way to the log: its records are queued in order before this
    /// returns, so later commands of this socket follow it.
    fn send_command(&self, command: &Command) -> Result<eventlog::Pending, NotStored> {
        let bytes = command
            .encode()
            .map_err(|e| NotStored::Encode(e.to_string()))?;
        let key = bytes::Bytes::copy_from_slice(command.topic.as_bytes());
        self.app
            .log
            .send_all(vec![(COMMANDS, key, bytes)])
            .map_err(NotStored::Log)
    }

    /// Appends a command and waits until the log confirms it, at most the append timeout.
    async fn store(&mut self, command: &Command) -> Result<(), NotStored> {
        let pending = self.send_command(command).inspect_err(|e| self.report(e))?;
        let confirmed = confirm(pending, self.app.config.append_timeout).await;
        match &confirmed {
            Ok(()) => self.app.metrics.log.ok(),
            Err(error) => self.report(error),
        }
        confirmed
    }

    /// Appends a command and confirms it in a task of the connector's tracker (so the drain
    /// waits for it), logging one that is not confirmed in time.
    fn store_in_background(&mut self, command: &Command) -> Result<(), NotStored> {
        let pending = self.send_command(command).inspect_err(|e| self.report(e))?;
        let app = self.app.clone();
        let (topic, id) = (command.topic.clone(), command.id.clone());
        self.app.tracker.spawn(async move {
            match confirm(pending, app.config.append_timeout).await {
                Ok(()) => app.metrics.log.ok(),
                Err(error) => {
                    if let NotStored::Log(error) = &error {
                        app.metrics.log.failed("append_command", error);
                    }
                    tracing::warn!(%topic, command = %id, %error, "a leave was not confirmed on the log; this connector's lease cleans its presence up");
                }
            }
        });
        Ok(())
    }

    fn report(&self, error: &NotStored) {
        if let NotStored::Log(error) = error {
            self.app.metrics.log.failed("append_command", error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_append_not_confirmed_in_time_is_unavailable_not_failed() {
        let never: eventlog::Pending = Box::pin(std::future::pending());
        let started = Instant::now();
        let result = confirm(never, Duration::from_millis(50)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2));
        match result {
            Err(NotStored::Log(error)) => assert!(error.is_transient(), "{error}"),
            other => panic!("unexpected {other:?}"),
        }
        let stored: eventlog::Pending = Box::pin(std::future::ready(Ok(())));
        assert!(confirm(stored, Duration::from_secs(5)).await.is_ok());
        let refused: eventlog::Pending = Box::pin(std::future::ready(Err(
            eventlog::LogError::Kafka("no".into()),
        )));
        assert!(matches!(
            confirm(refused, Duration::from_secs(5)).await,
            Err(NotStored::Log(eventlog::LogError::Kafka(_)))
        ));
    }
}
