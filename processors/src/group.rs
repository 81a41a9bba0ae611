//! Group commit: the commands queued for one partition, decided in order and stored together.
//!
//! A partition's worker takes every command waiting in its queue (up to [`MAX_GROUP`]; no
//! waiting for more, so a quiet partition answers at once and a busy one batches by itself),
//! and for the group:
//! 1. answers commands already applied from their stored outcome (by command id, or by the
//!    campaign's fence after [`Store::settle`]);
//! 2. decides the rest in order, each on the state the previous ones left (campaign rows are
//!    folded in memory, keeping the version they were read at);
//! 3. stores them with one [`Store::apply_batch`]: one compare-and-set per campaign for the
//!    whole group;
//! 4. puts every outcome on the log in one round, in command order, and reports the group's
//!    last record done (committed) once the log acknowledged them all.
//!
//! So per-key order is kept and replies leave only after the write. A conflict (another
//! writer, or a command of the group applied meanwhile by a second owner) decides the group
//! again on fresh state. A group that fails permanently is processed one command at a time,
//! so only the poison command goes to the dead-letter topic. A command that reads presences
//! of a topic the group already changed starts a new group, so its view is current; so does
//! one that lists the records of a user the group wrote for (a report), while donations the
//! group wrote are folded in memory like campaigns (`reads`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{Log, LogError, Pending, Record};
use serde_json::Value;
use store::{Applied, Campaign, Decided, Document, Position, Store, StoreError, Write};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use topics::{Command, RecordError};

use crate::decision::{Outcome, View};
use crate::metrics::ProcessorMetrics;
use crate::prices::PriceFeed;
use crate::streams::{self, HistoryLimits};
use crate::{decide, needs};

/// Most commands decided and stored together.
pub(crate) const MAX_GROUP: usize = 256;

/// Most groups of one partition whose outputs may be awaiting acknowledgement at once.
const MAX_IN_FLIGHT: usize = 16;

/// What the workers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: ProcessorMetrics,
    pub(crate) shutdown: CancellationToken,
    /// First retry delay after a transient failure.
    pub(crate) retry_initial: Duration,
    /// Longest retry delay.
    pub(crate) retry_max: Duration,
    /// Commands queued per partition before the runner stops reading.
    pub(crate) partition_queue: usize,
    /// The price feed, asked while loading the views of commands that need prices.
    pub(crate) prices: PriceFeed,
    /// How much history each topic keeps for clients to recover.
    pub(crate) history: HistoryLimits,
}

/// The queue and task of one partition's worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) queue: mpsc::Sender<Record>,
    pub(crate) task: JoinHandle<()>,
}

/// Why one attempt at a group failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("a domain event could not be encoded: {0}")]
    Event(#[from] topics::avro::AvroError),
    #[error("the stored outcome of command {0} could not be read back")]
    BadOutcome(String),
    #[error("command {0} is in its campaign's state but its outcome is gone")]
    LostOutcome(String),
}

impl AttemptError {
    fn is_retryable(&self) -> bool {
        match self {
            // Unreachable or failing storage: wait for it. A refusal (a record over the
            // broker's size limit, an unknown topic) would fail the same way forever.
            AttemptError::Log(e) => matches!(e, LogError::Unavailable(_) | LogError::Io { .. }),
            AttemptError::Store(e) => e.is_retryable(),
            AttemptError::Record(_)
            | AttemptError::Event(_)
            | AttemptError::BadOutcome(_)
            | AttemptError::LostOutcome(_) => false,
        }
    }
}

/// Spawns the worker of one partition: it decides and stores groups one at a time, in order,
/// and puts their outputs on the log without waiting; a second loop in the same task waits
/// for the acknowledgements, in order, and only then reports the group's last record done
/// (to be committed). So the next group is decided while the previous outputs travel.
pub(crate) fn spawn_worker(shared: Arc<Shared>, done: mpsc::Sender<Record>) -> Worker {
    let (queue, mut rx) = mpsc::channel::<Record>(shared.partition_queue);
    let (acks_tx, mut acks_rx) = mpsc::channel::<(Vec<Record>, Pending)>(MAX_IN_FLIGHT);
    let acker_shared = shared.clone();
    let decide_loop = async move {
        while let Some(first) = rx.recv().await {
            let mut records = vec![first];
            while records.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            let Some(pending) = process_with_retry(&shared, &records).await else {
                return; // shutting down mid-retry: leave the group uncommitted
            };
            if acks_tx.send((records, pending)).await.is_err() {
                return;
            }
        }
    };
    let ack_loop = async move {
        while let Some((records, pending)) = acks_rx.recv().await {
            let mut pending = pending;
            // Outputs not acknowledged: redo the group, which re-sends the stored outcomes;
            // outputs the log refuses (too large for it) would be refused again, so the
            // group's outcomes are re-sent record by record instead of being retried forever.
            while let Err(error) = pending.await {
                if is_refusal(&error) {
                    tracing::error!(%error, commands = records.len(), "the log refused a group's outputs; sending them one by one");
                    if resend_piecewise(&acker_shared, &records, &error)
                        .await
                        .is_none()
                    {
                        return;
                    }
                    break;
                }
                tracing::warn!(%error, commands = records.len(), "outputs not acknowledged; sending them again");
                match process_with_retry(&acker_shared, &records).await {
                    Some(again) => pending = again,
                    None => return,
                }
            }
            let Some(last) = records.into_iter().last() else {
                continue;
            };
            if done.send(last).await.is_err() {
                return;
            }
        }
    };
    // One task for both loops, so aborting it (on revoke) stops both.
    let task = tokio::spawn(async move {
        tokio::join!(decide_loop, ack_loop);
    });
    Worker { queue, task }
}

/// Re-sends the outputs of each of `records` record by record (see [`emit_piecewise`]): each
/// command processed alone again (a stored one answers from its outcome, a read-only one is
/// decided again) with its outputs collected, then sent one by one. A command that lost
/// outputs so, or cannot be processed again, goes to the dead-letter topic (its client not
/// told it failed: it was applied). `None` at shutdown.
async fn resend_piecewise(shared: &Shared, records: &[Record], refusal: &LogError) -> Option<()> {
    for record in records {
        let reason = match Command::decode(&record.value) {
            Ok(command) => {
                let collected = Collected::default();
                let alone = [(command, record)];
                match process(&collected, &*shared.store, &shared.prices, &shared.history, &alone).await {
                    Ok(_) => match emit_piecewise(shared, collected.take(), &alone[0].0).await? {
                        Ok(0) => continue,
                        Ok(lost) => {
                            format!("{lost} of its outputs were refused by the log: {refusal}")
                        }
                        Err(error) => format!("its outputs could not be encoded: {error}"),
                    },
                    Err(error) => format!("its outputs were refused by the log ({refusal}), and processing it again failed: {error}"),
                }
            }
            Err(error) => error.to_string(),
        };
        // Nothing is sent to its client (it was applied): the acknowledgement is immediate.
        let _told = set_aside(shared, record, &reason, false).await?.await;
    }
    Some(())
}

/// Processes a group of records, retrying transient failures; their outputs are on their way
/// when this returns. `None` when interrupted by shutdown.
async fn process_with_retry(shared: &Shared, records: &[Record]) -> Option<Pending> {
    let started = Instant::now();
    let mut pendings = Vec::new();
    let mut commands = Vec::with_capacity(records.len());
    for record in records {
        match Command::decode(&record.value) {
            Ok(command) => commands.push((command, record)),
            Err(error) => pendings.push(dead_letter(shared, record, &error.to_string()).await?),
        }
    }
    match retry(shared, &commands, started).await {
        Ok(pending) => pendings.push(pending?),
        Err(error) if commands.len() == 1 => {
            let (_, record) = commands[0];
            pendings.push(dead_letter(shared, record, &error.to_string()).await?);
        }
        Err(error) => {
            // Find the poison command: one at a time, so the others still go through.
            tracing::warn!(%error, commands = commands.len(), "a group failed; processing its commands one by one");
            for one in commands.chunks(1) {
                match retry(shared, one, started).await {
                    Ok(pending) => pendings.push(pending?),
                    Err(error) => {
                        pendings.push(dead_letter(shared, one[0].1, &error.to_string()).await?);
                    }
                }
            }
        }
    }
    Some(all(pendings))
}

/// One future for several acknowledgements.
fn all(pendings: Vec<Pending>) -> Pending {
    Box::pin(async move {
        for pending in pendings {
            pending.await?;
        }
        Ok(())
    })
}

/// Attempts `commands` as one group until it goes through (`Ok(Some)`), shutdown interrupts
/// (`Ok(None)`) or it fails permanently (`Err`).
async fn retry(
    shared: &Shared,
    commands: &[(Command, &Record)],
    started: Instant,
) -> Result<Option<Pending>, AttemptError> {
    let mut delay = shared.retry_initial;
    loop {
        match process(
            &*shared.log,
            &*shared.store,
            &shared.prices,
            &shared.history,
            commands,
        )
        .await
        {
            Ok((results, pending)) => {
                let seconds = started.elapsed().as_secs_f64();
                for result in results {
                    shared.metrics.commands.with_label_values(&[result]).inc();
                    shared.metrics.latency.observe(seconds);
                }
                return Ok(Some(pending));
            }
            Err(error) if error.is_retryable() => {
                shared.metrics.retries.inc();
                tracing::warn!(commands = commands.len(), %error, ?delay, "retrying a group of commands");
                tokio::select! {
                    () = shared.shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(shared.retry_max);
            }
            Err(error) => return Err(error),
        }
    }
}

/// A command decided in this group, waiting to be stored.
struct Unstored {
    /// Its index in the group (and in its outcomes).
    index: usize,
    position: Option<Position>,
    writes: Vec<Write>,
    body: Value,
}

/// The group being decided: outcomes in command order, the decisions not stored yet, and the
/// state they were decided on.
#[derive(Default)]
struct Group {
    outcomes: Vec<Outcome>,
    results: Vec<&'static str>,
    unstored: Vec<Unstored>,
    /// Campaigns as the group's decisions left them (at the version they were read).
    campaigns: HashMap<String, Campaign>,
    /// Documents as the group's decisions left them, by (kind, id).
    documents: HashMap<(String, String), Document>,
    /// Topics whose presences the unstored decisions change.
    presence_topics: HashSet<String>,
    /// Donations and documents the unstored decisions wrote.
    written: reads::Written,
    /// Idempotency aliases used by the group's commands, with the command that first did.
    aliases: HashMap<String, usize>,
    /// (campaign, version, partition) settled in this group: settling finishes every group
    /// written up to that version, so a campaign read again at the same version needs no
    /// second settle (one written since, by another owner, has another version).
    settled: HashSet<(String, u64, u32)>,
}

impl Group {
    /// Stores the unstored decisions in one batch; a command found applied already (alone in
    /// its batch) is answered from its stored outcome instead.
    async fn store(&mut self, store: &dyn Store, ids: &[&str]) -> Result<(), AttemptError> {
        if self.unstored.is_empty() {
            return Ok(());
        }
        // A document written again later in the group (a topic's stream, at every broadcast)
        // needs only its last write: the group's decisions read the folded one.
        let mut last_written = HashSet::new();
        for unstored in self.unstored.iter_mut().rev() {
            unstored.writes.retain(|w| match w {
                Write::PutDocument(d) => last_written.insert((d.kind.clone(), d.id.clone())),
                _ => true,
            });
        }
        let batch: Vec<Decided<'_>> = self
            .unstored
            .iter()
            .map(|w| Decided {
                command_id: ids[w.index],
                position: w.position,
                writes: &w.writes,
                outcome: &w.body,
            })
            .collect();
        let applied = store.apply_batch(&batch).await?;
        for (write, applied) in self.unstored.iter().zip(applied) {
            if let Applied::Duplicate(stored) = applied {
                self.outcomes[write.index] = parse_outcome(ids[write.index], stored)?;
                self.results[write.index] = "replayed";
            }
        }
        self.unstored.clear();
        self.campaigns.clear();
        self.documents.clear();
        self.presence_topics.clear();
        self.written.clear();
        Ok(())
    }

    /// The outcome a client idempotency key already answered with, if any: by a command
    /// earlier in this group, or stored (after settling the campaign, whose last group may
    /// hold it unfinished).
    async fn first_answer(
        &mut self,
        store: &dyn Store,
        alias: &str,
        campaign: Option<&Campaign>,
        position: Position,
    ) -> Result<Option<Outcome>, AttemptError> {
        if let Some(&earlier) = self.aliases.get(alias) {
            return Ok(Some(self.outcomes[earlier].clone()));
        }
        let mut stored = store.outcome(alias).await?;
        if let (None, Some(campaign)) = (&stored, campaign) {
            self.settle(store, campaign, position.partition).await?;
            stored = store.outcome(alias).await?;
        }
        stored.map(|v| parse_outcome(alias, v)).transpose()
    }

    /// [`Store::settle`] of `campaign` (as read) on `partition`, once per version read.
    async fn settle(
        &mut self,
        store: &dyn Store,
        campaign: &Campaign,
        partition: u32,
    ) -> Result<(), AttemptError> {
        let key = (campaign.id.clone(), campaign.version, partition);
        if !self.settled.contains(&key) {
            store.settle(&campaign.id, partition).await?;
            self.settled.insert(key);
        }
        Ok(())
    }

    fn answer(&mut self, outcome: Outcome, result: &'static str) {
        self.outcomes.push(outcome);
        self.results.push(result);
    }
}

/// Decides and stores a group of commands; returns how each ended (the metric label) and the
/// acknowledgement of all their outputs.
async fn process(
    log: &dyn Log,
    store: &dyn Store,
    prices: &PriceFeed,
    limits: &HistoryLimits,
    commands: &[(Command, &Record)],
) -> Result<(Vec<&'static str>, Pending), AttemptError> {
    let ids: Vec<&str> = commands.iter().map(|(c, _)| c.id.as_str()).collect();
    let mut group = Group::default();
    // Any command may have written (joins and leaves track presence), so a processed one is
    // answered from its stored outcome. Read for the whole group at once: one written by
    // another owner after this read makes the group's store fail and the group run again.
    let mut stored = store.outcomes(&ids).await?.into_iter();
    for (index, (command, record)) in commands.iter().enumerate() {
        let position = Position {
            partition: record.partition,
            offset: record.offset,
        };
        if let Some(stored) = stored.next().flatten() {
            group.answer(parse_outcome(&command.id, stored)?, "replayed");
            continue;
        }
        let needs = needs(command);
        if (needs.presence.is_some() && group.presence_topics.contains(&command.topic))
            || needs
                .records
                .as_ref()
                .is_some_and(|r| group.writes_records_of(r))
        {
            group.store(store, &ids).await?;
        }
        // A moderation names a donation; its campaign is the donation's.
        let campaign_id = match &needs.donation {
            Some(id) => group.donation(store, id).await?.map(|d| d.campaign_id),
            None => needs.campaign.clone(),
        };
        let campaign = match &campaign_id {
            Some(id) => match group.campaigns.get(id) {
                Some(folded) => Some(folded.clone()),
                None => store.campaign(id).await?,
            },
            None => None,
        };
        // The fence says every campaign write of this partition up to here is in the state.
        let fenced = campaign.as_ref().filter(|c| c.has_applied(position));
        if let Some(campaign) = fenced {
            // Processed already (by another owner, or before a crash): answer it from its
            // outcome once the campaign's last group is finished. A command that left no
            // outcome wrote no campaign (a join, a refusal): deciding it again is harmless,
            // as long as it still writes none (checked below).
            group.settle(store, campaign, position.partition).await?;
            if let Some(stored) = store.outcome(&command.id).await? {
                group.answer(parse_outcome(&command.id, stored)?, "replayed");
                continue;
            }
        }
        let fenced = fenced.is_some();
        if let Some(alias) = &needs.alias {
            if let Some(first) = group
                .first_answer(store, alias, campaign.as_ref(), position)
                .await?
            {
                group.answer(first.answer_again(command), "replayed");
                continue;
            }
            group.aliases.insert(alias.clone(), index);
        }
        let new_campaign_id = if needs.new_campaign_id {
            Some(reads::free_campaign_id(store, command, position).await?)
        } else {
            None
        };
        let donation = match (&needs.donation, &campaign) {
            (Some(id), Some(campaign)) => group.settled_donation(store, id, campaign).await?,
            _ => None,
        };
        let records = match &needs.records {
            Some(needed) => Some(reads::user_records(store, needed).await?),
            None => None,
        };
        let presences = match &needs.presence {
            Some(filter) => store.presences(&command.topic, filter).await?,
            None => Vec::new(),
        };
        let document = match &needs.document {
            Some(key) => match group.documents.get(key) {
                Some(folded) => Some(folded.clone()),
                None => store.document(&key.0, &key.1).await?,
            },
            None => None,
        };
        // An outside call, bounded by the feed's timeout and skipped while its breaker is open.
        let prices = match &needs.prices {
            Some(currency) => Some(prices.quote(currency).await),
            None => None,
        };
        let stream = match streams::stream_needed(&command.topic) {
            Some(key) => match group.documents.get(&key) {
                Some(folded) => Some(folded.clone()),
                None => store.document(&key.0, &key.1).await?,
            },
            None => None,
        };
        let history = match streams::since(command) {
            Some(since) => Some(
                store
                    .history(
                        &command.topic,
                        since.offset,
                        limits.size.saturating_add(1) as usize,
                    )
                    .await?,
            ),
            None => None,
        };
        let view = View {
            campaign,
            new_campaign_id,
            presences,
            document,
            prices,
            donation,
            records,
            now: topics::timestamp::now(),
        };
        let mut decision = decide(command, &view);
        let oldest = topics::timestamp::before_now(limits.age);
        let loaded = streams::Loaded {
            stream: stream.as_ref(),
            history: history.as_deref(),
            oldest: &oldest,
        };
        streams::assign(&mut decision, command, loaded, *limits, &view.now);
        let writes_campaign = decision
            .writes
            .iter()
            .any(|w| matches!(w, Write::PutCampaign(_)));
        if fenced && writes_campaign {
            // In the campaign's state, yet no outcome: never count it again.
            return Err(AttemptError::LostOutcome(command.id.clone()));
        }
        let outcome = decision.outcome(command);
        if decision.writes.is_empty() {
            group.answer(outcome, "read_only");
            continue;
        }
        for write in &decision.writes {
            group.written.note(write);
            match write {
                Write::PutCampaign(campaign) => {
                    group
                        .campaigns
                        .insert(campaign.id.clone(), campaign.clone());
                }
                Write::Track(presence) | Write::Untrack(presence) => {
                    group.presence_topics.insert(presence.topic.clone());
                }
                Write::ForgetPresenceTopic { topic, .. } => {
                    group.presence_topics.insert(topic.clone());
                }
                Write::PutDocument(document) => {
                    group.documents.insert(
                        (document.kind.clone(), document.id.clone()),
                        document.clone(),
                    );
                }
                Write::InsertDonation(_)
                | Write::UpdateDonation(_)
                | Write::OutcomeAlias(_)
                | Write::AppendHistory { .. } => {}
            }
        }
        let body = serde_json::to_value(&outcome)
            .map_err(|_| AttemptError::BadOutcome(command.id.clone()))?;
        group.unstored.push(Unstored {
            index,
            position: Some(position),
            writes: decision.writes,
            body,
        });
        group.answer(outcome, "applied");
    }
    group.store(store, &ids).await?;
    let pending = emit(log, &group.outcomes)?;
    Ok((group.results, pending))
}

fn parse_outcome(id: &str, stored: Value) -> Result<Outcome, AttemptError> {
    serde_json::from_value(stored).map_err(|_| AttemptError::BadOutcome(id.to_owned()))
}

mod outputs;
mod reads;
#[cfg(test)]
mod tests;

use outputs::{dead_letter, emit, emit_piecewise, is_refusal, set_aside, Collected};
