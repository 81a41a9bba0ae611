//! `imports:user:<id>`: `batch_import`, up to 10,000 donations in one push.
//!
//! An import is split into derived commands, so each donation is decided where every other
//! donation to its campaign is (the campaign's own command partition, which owns its row):
//! 1. `batch_import` replies `ok {ref, total}`, stores the import (a document of kind
//!    [`KIND`]) and derives one `import_row` command per row onto its campaign's topic, with
//!    the id `<ref>:<row>`;
//! 2. `import_row` is decided exactly as `new_donation` (same validation, writes and
//!    broadcasts; the campaign's fence and the row's id make it count once however often it
//!    is re-sent), answers nobody, and derives `import_row_done` back onto the import's topic;
//! 3. `import_row_done` marks the row in the import's `done` set (a row reported twice counts
//!    once) and pushes `batch_progress` every 100 rows and `batch_complete` after the last,
//!    to the socket that pushed the import.
//!
//! A processor killed anywhere in this re-reads what it had not committed: a stored command
//! re-sends its stored outcome, derived commands included, and every derived command is
//! deduplicated by its id. So the totals are exact after a crash, and the import completes.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use store::{Document, Write};
use topics::routes::{route, Route};
use topics::{Command, CommandKind, ReplyStatus, SocketRef};

use crate::channels::campaign;
use crate::decision::{Decision, View};

/// The document kind of an import.
pub(crate) const KIND: &str = "import";

/// Most rows in one import.
pub(crate) const MAX_ROWS: usize = 10_000;

/// Rows per `batch_progress` push.
pub(crate) const PROGRESS_EVERY: u64 = 100;

/// The derived command that decides one row on its campaign's partition.
pub(crate) const ROW: &str = "import_row";

/// The derived command that reports one row's result back to the import.
pub(crate) const ROW_DONE: &str = "import_row_done";

/// The stored state of an import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Import {
    #[serde(rename = "ref")]
    reference: String,
    total: u64,
    processed: u64,
    successful: u64,
    failed: u64,
    /// The failed rows with their errors, in the order they were reported.
    errors: Vec<Value>,
    /// One bit per row, set when its result was counted (base64).
    done: String,
}

impl Import {
    fn new(reference: &str, total: usize) -> Self {
        let bytes = vec![0u8; total.div_ceil(8)];
        Self {
            reference: reference.to_owned(),
            total: total as u64,
            processed: 0,
            successful: 0,
            failed: 0,
            errors: Vec::new(),
            done: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// Counts `row`'s result, unless it was counted already; returns whether it was new.
    fn count(&mut self, row: u64, errors: Option<Value>) -> bool {
        let engine = base64::engine::general_purpose::STANDARD;
        let Ok(mut bits) = engine.decode(&self.done) else {
            return false;
        };
        let (byte, bit) = ((row / 8) as usize, 1u8 << (row % 8));
        let Some(slot) = bits.get_mut(byte) else {
            return false;
        };
        if *slot & bit != 0 || row >= self.total {
            return false;
        }
        *slot |= bit;
        self.done = engine.encode(bits);
        self.processed += 1;
        match errors {
            None => self.successful += 1,
            Some(errors) => {
                self.failed += 1;
                self.errors.push(json!({ "row": row, "errors": errors }));
            }
        }
        true
    }

    /// The pushes owed after the count went from `before` to `self.processed`: a
    /// `batch_progress` when a hundred (or the last row) was reached, then `batch_complete`.
    fn pushes(&self, before: u64, mut decision: Decision) -> Decision {
        let batch = |n: u64| n.div_ceil(PROGRESS_EVERY);
        let finished = self.processed == self.total;
        let crossed = self.processed / PROGRESS_EVERY > before / PROGRESS_EVERY;
        if self.processed > before && (crossed || finished) {
            decision = decision.push(
                "batch_progress",
                json!({
                    "batch": batch(self.processed),
                    "processed": self.processed,
                    "total": self.total,
                    "successful": self.successful,
                    "failed": self.failed,
                }),
            );
        }
        if finished && self.processed > before {
            decision = decision.push(
                "batch_complete",
                json!({
                    "ref": self.reference,
                    "successful": self.successful,
                    "failed": self.failed,
                    "errors": self.errors,
                }),
            );
        }
        decision
    }

    fn document(&self, owner: &str, created_at: &str) -> Result<Document, serde_json::Error> {
        Ok(Document {
            kind: KIND.into(),
            id: self.reference.clone(),
            owner: owner.to_owned(),
            created_at: created_at.to_owned(),
            body: serde_json::to_value(self)?,
        })
    }
}

/// The campaign id of a row, as text (clients may send a number).
fn campaign_id(row: &Value) -> Option<String> {
    match row.get("campaign_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A command derived from `parent`: same claims and socket (without a message to reply to).
fn derive(parent: &Command, id: String, topic: String, event: &str, payload: Value) -> Command {
    Command {
        id,
        topic,
        socket: SocketRef {
            msg_ref: None,
            ..parent.socket.clone()
        },
        claims: parent.claims.clone(),
        kind: CommandKind::Derived {
            event: event.to_owned(),
            payload,
        },
        received_at: parent.received_at.clone(),
    }
}

/// `batch_import {donations: [...]}` on the import topic of `owner`.
pub(crate) fn batch_import(
    payload: &Value,
    command: &Command,
    owner: &str,
    view: &View,
) -> Decision {
    let rows = match payload.get("donations") {
        Some(Value::Array(rows)) if !rows.is_empty() && rows.len() <= MAX_ROWS => rows,
        Some(Value::Array(rows)) if rows.is_empty() => {
            return Decision::invalid(json!({"donations": ["can't be empty"]}))
        }
        Some(Value::Array(_)) => {
            return Decision::invalid(
                json!({"donations": [format!("should have at most {MAX_ROWS} item(s)")]}),
            )
        }
        _ => return Decision::invalid(json!({"donations": ["must be a list of donations"]})),
    };
    let reference = command.id.clone();
    let mut import = Import::new(&reference, rows.len());
    let mut commands = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let topic = campaign_id(row).map(|id| format!("donations:campaign:{id}"));
        match topic.filter(|t| matches!(route(t), Some(Route::Campaign(_)))) {
            Some(topic) => {
                let mut args = Map::new();
                for field in ["amount", "donor_name", "currency"] {
                    if let Some(value) = row.get(field) {
                        args.insert(field.into(), value.clone());
                    }
                }
                args.insert("ref".into(), json!(reference));
                args.insert("row".into(), json!(index));
                args.insert("import_topic".into(), json!(command.topic));
                commands.push(derive(
                    command,
                    format!("{reference}:{index}"),
                    topic,
                    ROW,
                    Value::Object(args),
                ));
            }
            None => {
                import.count(index as u64, Some(json!({"campaign_id": ["is invalid"]})));
            }
        }
    }
    let Ok(document) = import.document(owner, &view.now) else {
        return Decision::refuse(topics::Refusal::Failed);
    };
    let decision = Decision {
        writes: vec![Write::PutDocument(document)],
        commands,
        ..Decision::ok(json!({ "ref": reference, "total": rows.len() }))
    };
    import.pushes(0, decision)
}

/// `import_row` on a campaign's topic: the row decided as a `new_donation` by the importing
/// user (who must be allowed to join the campaign), its result sent back to the import.
pub(crate) fn row(payload: &Value, command: &Command, view: &View) -> Decision {
    let (Some(import_topic), Some(row)) = (
        payload.get("import_topic").and_then(Value::as_str),
        payload.get("row").and_then(Value::as_u64),
    ) else {
        return Decision::default();
    };
    let reference = payload.get("ref").cloned().unwrap_or(Value::Null);
    let mut decision = match view.campaign.as_ref() {
        None => Decision::invalid(json!({"campaign_id": ["does not exist"]})),
        Some(campaign) => {
            let access = campaign::join(&command.claims, view);
            match access.reply.as_ref().map(|r| r.status) {
                Some(ReplyStatus::Ok) => campaign::new_donation(payload, command, campaign, view),
                _ => Decision::invalid(json!({"campaign_id": ["is not open to you"]})),
            }
        }
    };
    let errors = decision
        .reply
        .take()
        .filter(|r| r.status != ReplyStatus::Ok)
        .map(|r| r.response.get("errors").cloned().unwrap_or(r.response));
    decision.pushes.clear();
    decision.commands.push(derive(
        command,
        format!("{}:done", command.id),
        import_topic.to_owned(),
        ROW_DONE,
        json!({ "ref": reference, "row": row, "errors": errors }),
    ));
    decision
}

/// `import_row_done` on the import's topic: counts the row once, pushes progress.
pub(crate) fn row_done(payload: &Value, view: &View) -> Decision {
    let (Some(document), Some(row)) = (&view.document, payload.get("row").and_then(Value::as_u64))
    else {
        return Decision::default();
    };
    let Ok(mut import) = serde_json::from_value::<Import>(document.body.clone()) else {
        return Decision::default();
    };
    let before = import.processed;
    let errors = payload.get("errors").filter(|e| !e.is_null()).cloned();
    if !import.count(row, errors) {
        return Decision::default();
    }
    let Ok(updated) = import.document(&document.owner, &document.created_at) else {
        return Decision::default();
    };
    let decision = Decision {
        writes: vec![Write::PutDocument(updated)],
        ..Decision::default()
    };
    import.pushes(before, decision)
}

/// The import a derived command reports to: `(KIND, ref)`.
pub(crate) fn document_needed(payload: &Value) -> Option<(String, String)> {
    let reference = payload.get("ref").and_then(Value::as_str)?;
    Some((KIND.to_owned(), reference.to_owned()))
}

#[cfg(test)]
mod tests;
