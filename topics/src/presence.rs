//! Presence payloads (PROTOCOL.md §9) and the algebra both sides need on them.
//!
//! Processors build `presence_state` and `presence_diff` payloads; connectors keep a replica
//! of each joined topic's presences (to answer `presence_state` without the log carrying the
//! whole list for every join) and coalesce diffs into one frame per short window. Both rest on
//! two operations defined here, with the semantics of phoenix.js `Presence.syncDiff`:
//!
//! - [`PresenceState::apply`]: add the joined metas a key does not have yet (by `phx_ref`),
//!   then remove the left ones, dropping keys with no metas left.
//! - [`PresenceDiff::then`]: one diff with the effect of two in a row.
//!
//! Every `phx_ref` is joined once and left at most once, after its join. Under that rule
//! applying diffs again to a state that already reflects them changes nothing, so a snapshot
//! followed by every diff from some earlier point converges to the true state. That is what
//! makes a replica built from a snapshot plus overlapping diffs exact, and why [`then`]
//! keeps the leave of a meta joined in the same window instead of cancelling the two (a
//! snapshot taken in between must still lose it).
//!
//! [`then`]: PresenceDiff::then

use serde_json::{json, Map, Value};

/// The push that carries a channel's full presence list to a joining socket.
pub const STATE_EVENT: &str = "presence_state";
/// The broadcast that carries presence changes to every subscriber.
pub const DIFF_EVENT: &str = "presence_diff";

/// The `phx_ref` of a meta.
pub fn meta_ref(meta: &Value) -> Option<&str> {
    meta.get("phx_ref").and_then(Value::as_str)
}

/// Metas by presence key, in the order keys first appeared.
type Metas = Map<String, Value>;

fn metas_of(entry: &Value) -> impl Iterator<Item = &Value> {
    entry
        .get("metas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Reads `{key: {"metas": [...]}}` into key → array of metas; anything else is skipped.
fn read_entries(value: &Value) -> Metas {
    let mut out = Map::new();
    if let Some(object) = value.as_object() {
        for (key, entry) in object {
            let metas: Vec<Value> = metas_of(entry).cloned().collect();
            out.insert(key.clone(), Value::Array(metas));
        }
    }
    out
}

fn write_entries(entries: &Metas) -> Value {
    Value::Object(
        entries
            .iter()
            .map(|(key, metas)| (key.clone(), json!({ "metas": metas })))
            .collect(),
    )
}

fn metas_mut<'a>(entries: &'a mut Metas, key: &str) -> &'a mut Vec<Value> {
    let slot = entries
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(metas) => metas,
        _ => unreachable!("the slot was just made an array"),
    }
}

/// Adds the metas of `from` under `key` whose refs `to` does not have yet.
fn add_metas(to: &mut Metas, key: &str, from: &[Value]) {
    let metas = metas_mut(to, key);
    for meta in from {
        let known = meta_ref(meta).is_some_and(|r| metas.iter().any(|m| meta_ref(m) == Some(r)));
        if !known {
            metas.push(meta.clone());
        }
    }
}

/// Removes the metas under `key` whose refs appear in `refs`; drops the key when none are left.
fn remove_metas(from: &mut Metas, key: &str, refs: &[&str]) {
    let Some(Value::Array(metas)) = from.get_mut(key) else {
        return;
    };
    metas.retain(|m| meta_ref(m).is_none_or(|r| !refs.contains(&r)));
    if metas.is_empty() {
        from.remove(key);
    }
}

fn refs(metas: &Value) -> Vec<&str> {
    metas
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(meta_ref)
        .collect()
}

fn as_slice(metas: &Value) -> &[Value] {
    metas.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Who is present on one topic: the payload of `presence_state`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceState {
    entries: Metas,
}

impl PresenceState {
    /// Reads a `presence_state` payload.
    pub fn from_value(value: &Value) -> Self {
        Self {
            entries: read_entries(value),
        }
    }

    /// The `presence_state` payload.
    pub fn to_value(&self) -> Value {
        write_entries(&self.entries)
    }

    /// Adds one meta under `key`.
    pub fn insert(&mut self, key: &str, meta: Value) {
        add_metas(&mut self.entries, key, std::slice::from_ref(&meta));
    }

    /// Applies a diff: joins first, then leaves (phoenix.js `syncDiff`).
    pub fn apply(&mut self, diff: &PresenceDiff) {
        for (key, metas) in &diff.joins {
            add_metas(&mut self.entries, key, as_slice(metas));
        }
        for (key, metas) in &diff.leaves {
            remove_metas(&mut self.entries, key, &refs(metas));
        }
    }

    /// Number of keys present (users, for campaign presence).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of metas (tracked sockets) over all keys.
    pub fn meta_count(&self) -> usize {
        self.entries.values().map(|m| as_slice(m).len()).sum()
    }
}

/// Serializes as the `presence_state` payload, without building it as a [`Value`] first (a
/// large list is encoded once for many joining sockets).
impl serde::Serialize for PresenceState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            metas: &'a Value,
        }
        serializer.collect_map(self.entries.iter().map(|(k, metas)| (k, Entry { metas })))
    }
}

/// Joins and leaves: the payload of `presence_diff`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceDiff {
    joins: Metas,
    leaves: Metas,
}

impl PresenceDiff {
    /// Reads a `presence_diff` payload; `None` when it is not shaped like one.
    pub fn from_value(value: &Value) -> Option<Self> {
        let joins = value.get("joins")?;
        let leaves = value.get("leaves")?;
        Some(Self {
            joins: read_entries(joins),
            leaves: read_entries(leaves),
        })
    }

    /// The `presence_diff` payload (`joins` and `leaves` always present).
    pub fn to_value(&self) -> Value {
        json!({ "joins": write_entries(&self.joins), "leaves": write_entries(&self.leaves) })
    }

    /// Records that `meta` joined under `key`.
    pub fn join(&mut self, key: &str, meta: Value) {
        add_metas(&mut self.joins, key, std::slice::from_ref(&meta));
    }

    /// Records that `meta` left from under `key`.
    pub fn leave(&mut self, key: &str, meta: Value) {
        add_metas(&mut self.leaves, key, std::slice::from_ref(&meta));
    }

    /// Whether the diff changes nothing.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }

    /// Folds `next` into this diff, so that applying the result equals applying this diff and
    /// then `next`, on any state (including one that already reflects part of them).
    pub fn then(&mut self, next: &PresenceDiff) {
        for (key, metas) in &next.leaves {
            remove_metas(&mut self.joins, key, &refs(metas));
        }
        for (key, metas) in &next.joins {
            add_metas(&mut self.joins, key, as_slice(metas));
        }
        for (key, metas) in &next.leaves {
            add_metas(&mut self.leaves, key, as_slice(metas));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(r: &str) -> Value {
        json!({"name": "n", "phx_ref": r})
    }

    fn diff(joins: &[(&str, &str)], leaves: &[(&str, &str)]) -> PresenceDiff {
        let mut d = PresenceDiff::default();
        for (k, r) in joins {
            d.join(k, meta(r));
        }
        for (k, r) in leaves {
            d.leave(k, meta(r));
        }
        d
    }

    #[test]
    fn payloads_round_trip_with_both_maps() {
        let d = diff(&[("1", "a")], &[]);
        let v = d.to_value();
        assert_eq!(v["leaves"], json!({}));
        assert_eq!(v["joins"]["1"]["metas"][0]["phx_ref"], "a");
        assert_eq!(PresenceDiff::from_value(&v), Some(d));
        assert_eq!(PresenceDiff::from_value(&json!({"joins": {}})), None);
    }

    #[test]
    fn a_state_serializes_as_its_payload() {
        let mut s = PresenceState::default();
        s.apply(&diff(&[("u", "a"), ("v", "b")], &[]));
        let text = serde_json::to_string(&s).expect("serializes");
        assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(s.to_value())
        );
    }

    #[test]
    fn apply_keeps_other_metas_and_drops_empty_keys() {
        let mut s = PresenceState::default();
        s.apply(&diff(&[("u", "a"), ("u", "b"), ("v", "c")], &[]));
        assert_eq!((s.len(), s.meta_count()), (2, 3));
        s.apply(&diff(&[], &[("u", "a"), ("v", "c"), ("nobody", "z")]));
        assert_eq!((s.len(), s.meta_count()), (1, 1));
        assert_eq!(s.to_value()["u"]["metas"][0]["phx_ref"], "b");
    }

    #[test]
    fn an_update_replaces_the_meta() {
        let mut s = PresenceState::default();
        s.apply(&diff(&[("u", "a")], &[]));
        s.apply(&diff(&[("u", "a2")], &[("u", "a")]));
        assert_eq!(s.to_value()["u"]["metas"][0]["phx_ref"], "a2");
        assert_eq!(s.meta_count(), 1);
    }

    /// Applying the fold of a sequence equals applying the sequence, from every snapshot a
    /// replica could have started from (one that already saw any prefix of the sequence).
    #[test]
    fn folding_equals_applying_in_order_from_any_overlapping_snapshot() {
        let steps = [
            diff(&[("u", "a")], &[]),
            diff(&[("v", "b")], &[]),
            diff(&[("u", "a2")], &[("u", "a")]),
            diff(&[], &[("v", "b")]),
            diff(&[("v", "c"), ("w", "d")], &[]),
            diff(&[], &[("u", "a2"), ("w", "d")]),
        ];
        let mut truth = PresenceState::default();
        for d in &steps {
            truth.apply(d);
        }
        for seen in 0..=steps.len() {
            let mut snapshot = PresenceState::default();
            for d in &steps[..seen] {
                snapshot.apply(d);
            }
            for from in 0..=seen {
                let mut folded = PresenceDiff::default();
                for d in &steps[from..] {
                    folded.then(d);
                }
                let mut replica = snapshot.clone();
                replica.apply(&folded);
                assert_eq!(replica, truth, "snapshot after {seen}, diffs from {from}");
            }
        }
    }
}
