//! An in-memory model of the Scylla tables with the semantics the protocol relies on: every
//! statement is atomic on its one partition, conditional writes apply only when their
//! condition holds, nothing spans two statements. Each call yields first, so two owners
//! driven concurrently interleave between any two statements; a crash can be injected after
//! any number of writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::tables::{CampaignCas, CampaignRow, Listed, Tables};
use crate::{Presence, PresenceFilter, StoreError};

#[derive(Debug, Default)]
struct State {
    campaigns: HashMap<String, CampaignRow>,
    /// (campaign, bucket) → seq → (id, body).
    donations: HashMap<(String, i64), BTreeMap<i64, (String, String)>>,
    outcomes: HashMap<String, String>,
    sequences: HashMap<String, i64>,
    claims: HashMap<(String, String), i64>,
    /// topic → (connector, socket, join id) → body.
    presence: HashMap<String, BTreeMap<(String, u64, String), String>>,
    presence_by_connector: BTreeMap<String, std::collections::BTreeSet<String>>,
    presence_connectors: std::collections::BTreeSet<String>,
    records: HashMap<(String, String), String>,
    /// (topic, bucket) → offset → body.
    history: HashMap<(String, i64), BTreeMap<i64, String>>,
    /// (kind, owner) → (created_at, id) → body.
    listed: HashMap<(String, String), BTreeMap<(String, String), String>>,
}

/// The model tables.
#[derive(Debug)]
pub(crate) struct Model {
    state: Mutex<State>,
    /// Writes left before the injected crash (`usize::MAX`: none).
    writes_left: AtomicUsize,
    /// Presence rows deleted: each would be a tombstone on a cluster.
    presence_deletes: AtomicUsize,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            writes_left: AtomicUsize::new(usize::MAX),
            presence_deletes: AtomicUsize::new(0),
        }
    }
}

impl Model {
    /// From now on, `writes` more writes succeed and every statement after them fails, as if
    /// the process had died there.
    pub(crate) fn crash_after(&self, writes: usize) {
        self.writes_left.store(writes, Ordering::SeqCst);
    }

    /// The process is back: statements succeed again.
    pub(crate) fn restart(&self) {
        self.writes_left.store(usize::MAX, Ordering::SeqCst);
    }

    /// How many presence rows were deleted.
    pub(crate) fn presence_deletes(&self) -> usize {
        self.presence_deletes.load(Ordering::SeqCst)
    }

    fn crashed(&self) -> bool {
        self.writes_left.load(Ordering::SeqCst) == 0
    }

    async fn read<V>(&self, f: impl FnOnce(&State) -> V) -> Result<V, StoreError> {
        tokio::task::yield_now().await;
        if self.crashed() {
            return Err(StoreError::Unavailable("the model process crashed".into()));
        }
        Ok(f(&self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)))
    }

    async fn write<V>(&self, f: impl FnOnce(&mut State) -> V) -> Result<V, StoreError> {
        tokio::task::yield_now().await;
        let taken = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                usize::MAX => Some(usize::MAX),
                n => Some(n - 1),
            });
        if taken.is_err() {
            return Err(StoreError::Unavailable("the model process crashed".into()));
        }
        Ok(f(&mut self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)))
    }
}

#[async_trait]
impl Tables for Model {
    async fn campaign(&self, id: &str) -> Result<Option<CampaignRow>, StoreError> {
        self.read(|s| s.campaigns.get(id).cloned()).await
    }

    async fn write_campaign(&self, cas: &CampaignCas) -> Result<bool, StoreError> {
        self.write(|s| match cas {
            CampaignCas::Create { id, body, pending } => {
                if s.campaigns.contains_key(id) {
                    return false;
                }
                let mut row = CampaignRow {
                    body: body.clone(),
                    version: 1,
                    pending: BTreeMap::new(),
                };
                if let Some((partition, text)) = pending {
                    row.pending.insert(*partition, text.clone());
                }
                s.campaigns.insert(id.clone(), row);
                true
            }
            CampaignCas::Update {
                id,
                body,
                expected,
                pending,
            } => match s.campaigns.get_mut(id) {
                Some(row) if row.version == *expected => {
                    row.body = body.clone();
                    row.version = expected + 1;
                    if let Some((partition, text)) = pending {
                        row.pending.insert(*partition, text.clone());
                    }
                    true
                }
                _ => false,
            },
        })
        .await
    }

    async fn insert_donation(
        &self,
        campaign_id: &str,
        bucket: i64,
        seq: i64,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            s.donations
                .entry((campaign_id.to_owned(), bucket))
                .or_default()
                .insert(seq, (id.to_owned(), body.to_owned()));
        })
        .await
    }

    async fn donations(
        &self,
        campaign_id: &str,
        bucket: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or_default();
        self.read(|s| {
            s.donations
                .get(&(campaign_id.to_owned(), bucket))
                .map(|rows| {
                    rows.values()
                        .rev()
                        .take(limit)
                        .map(|(_, body)| body.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<String>, StoreError> {
        self.read(|s| s.outcomes.get(command_id).cloned()).await
    }

    async fn put_outcome(&self, command_id: &str, outcome: &str) -> Result<(), StoreError> {
        self.write(|s| {
            s.outcomes.insert(command_id.to_owned(), outcome.to_owned());
        })
        .await
    }

    async fn sequence(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.read(|s| s.sequences.get(name).copied()).await
    }

    async fn create_sequence(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|s| {
            if s.sequences.contains_key(name) {
                return false;
            }
            s.sequences.insert(name.to_owned(), 1);
            true
        })
        .await
    }

    async fn advance_sequence(&self, name: &str, from: i64, to: i64) -> Result<bool, StoreError> {
        self.write(|s| match s.sequences.get_mut(name) {
            Some(value) if *value == from => {
                *value = to;
                true
            }
            _ => false,
        })
        .await
    }

    async fn claim(&self, sequence: &str, claimant: &str) -> Result<Option<i64>, StoreError> {
        self.read(|s| {
            s.claims
                .get(&(sequence.to_owned(), claimant.to_owned()))
                .copied()
        })
        .await
    }

    async fn put_claim(
        &self,
        sequence: &str,
        claimant: &str,
        value: i64,
    ) -> Result<bool, StoreError> {
        self.write(|s| {
            let key = (sequence.to_owned(), claimant.to_owned());
            if s.claims.contains_key(&key) {
                return false;
            }
            s.claims.insert(key, value);
            true
        })
        .await
    }

    async fn presences(
        &self,
        topic: &str,
        filter: &PresenceFilter,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|s| {
            s.presence
                .get(topic)
                .map(|rows| {
                    rows.iter()
                        .filter(|((connector, socket, _), _)| match filter {
                            PresenceFilter::All => true,
                            PresenceFilter::Connector(c) => c == connector,
                            PresenceFilter::Socket {
                                connector_id,
                                socket_id,
                            } => connector_id == connector && socket_id == socket,
                        })
                        .map(|(_, body)| body.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
    }

    async fn add_presence_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        self.write(|s| {
            s.presence_connectors.insert(connector_id.to_owned());
        })
        .await
    }

    async fn add_presence_topic(&self, connector_id: &str, topic: &str) -> Result<(), StoreError> {
        self.write(|s| {
            s.presence_by_connector
                .entry(connector_id.to_owned())
                .or_default()
                .insert(topic.to_owned());
        })
        .await
    }

    async fn put_presence(&self, presence: &Presence, body: &str) -> Result<(), StoreError> {
        self.write(|s| {
            s.presence
                .entry(presence.topic.clone())
                .or_default()
                .insert(
                    (
                        presence.connector_id.clone(),
                        presence.socket_id,
                        presence.join_id.clone(),
                    ),
                    body.to_owned(),
                );
        })
        .await
    }

    async fn delete_presence(&self, presence: &Presence) -> Result<(), StoreError> {
        self.presence_deletes.fetch_add(1, Ordering::SeqCst);
        self.write(|s| {
            if let Some(rows) = s.presence.get_mut(&presence.topic) {
                rows.remove(&(
                    presence.connector_id.clone(),
                    presence.socket_id,
                    presence.join_id.clone(),
                ));
            }
        })
        .await
    }

    async fn forget_presence_topic(
        &self,
        connector_id: &str,
        topic: &str,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            if let Some(topics) = s.presence_by_connector.get_mut(connector_id) {
                topics.remove(topic);
            }
        })
        .await
    }

    async fn presence_topics(&self, connector_id: &str) -> Result<Vec<String>, StoreError> {
        self.read(|s| {
            s.presence_by_connector
                .get(connector_id)
                .map(|topics| topics.iter().cloned().collect())
                .unwrap_or_default()
        })
        .await
    }

    async fn presence_connectors(&self) -> Result<Vec<String>, StoreError> {
        self.read(|s| s.presence_connectors.iter().cloned().collect())
            .await
    }

    async fn forget_presence_connector(&self, connector_id: &str) -> Result<(), StoreError> {
        self.write(|s| {
            s.presence_connectors.remove(connector_id);
        })
        .await
    }

    async fn put_record(&self, kind: &str, id: &str, body: &str) -> Result<(), StoreError> {
        self.write(|s| {
            s.records
                .insert((kind.to_owned(), id.to_owned()), body.to_owned());
        })
        .await
    }

    async fn put_history(
        &self,
        topic: &str,
        bucket: i64,
        offset: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        self.write(|s| {
            s.history
                .entry((topic.to_owned(), bucket))
                .or_default()
                .insert(offset, body.to_owned());
        })
        .await
    }

    async fn history(
        &self,
        topic: &str,
        bucket: i64,
        after: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or_default();
        self.read(|s| {
            s.history
                .get(&(topic.to_owned(), bucket))
                .map(|rows| {
                    rows.range(after.saturating_add(1)..)
                        .take(limit)
                        .map(|(_, body)| body.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
    }

    async fn record(&self, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|s| s.records.get(&(kind.to_owned(), id.to_owned())).cloned())
            .await
    }

    async fn put_listed(&self, listed: &Listed<'_>) -> Result<(), StoreError> {
        self.write(|s| {
            s.listed
                .entry((listed.kind.to_owned(), listed.owner.to_owned()))
                .or_default()
                .insert(
                    (listed.created_at.to_owned(), listed.id.to_owned()),
                    listed.body.to_owned(),
                );
        })
        .await
    }

    async fn listed(&self, kind: &str, owner: &str, limit: i32) -> Result<Vec<String>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or_default();
        self.read(|s| {
            s.listed
                .get(&(kind.to_owned(), owner.to_owned()))
                .map(|rows| rows.values().rev().take(limit).cloned().collect())
                .unwrap_or_default()
        })
        .await
    }
}
