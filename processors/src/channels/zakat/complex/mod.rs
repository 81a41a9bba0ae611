//! `complex_calculation`: zakat over several years, worked out as a job beside the command
//! partition, so a slow calculation (it may wait on the price feed) never holds up the
//! commands behind it.
//!
//! 1. `complex_calculation {currency, gold_price?, silver_price?, years: [{year, assets,
//!    liabilities, gold_price?, silver_price?}, ...]}` replies `ok {status: "processing", id}`
//!    at once, stores the calculation as processing (a document of kind [`KIND`]) and puts a
//!    job on the jobs topic;
//! 2. a processor's job runner works it out ([`work`], pure once the prices are fetched) and
//!    puts the result on the command topic as the derived command [`DONE`];
//! 3. [`DONE`] stores the result and pushes `calculation_complete {id, result}` (or
//!    `calculation_failed {id, reason, errors?}`) to the socket that asked, and only to it.
//!
//! The stored calculation outlives the socket: `calculation_status {id}` answers it from any
//! socket of the user. Every step is a command or a job with an id derived from the first, so
//! a crash anywhere repeats steps without repeating effects.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use store::{Document, Write};
use topics::{Command, CommandKind, Refusal, ReplyStatus, SocketRef};

use crate::decision::{Decision, View};
use crate::prices::{PriceMissing, Quote};

/// The document kind of a complex calculation.
pub(crate) const KIND: &str = "complex_calculation";

/// The job's event on the jobs topic.
pub(crate) const JOB: &str = "complex_calculation";

/// The derived command carrying a job's result back to the zakat topic.
pub(crate) const DONE: &str = "calculation_done";

/// Most years in one calculation.
pub(crate) const MAX_YEARS: usize = 50;

/// Price fields a year takes from the request when it gives none of its own.
const SHARED: [&str; 3] = ["currency", "gold_price", "silver_price"];

/// `complex_calculation`: checked for shape, answered `processing`, stored, sent as a job.
pub(crate) fn start(payload: &Value, user_id: &str, command: &Command, view: &View) -> Decision {
    let years = match payload.get("years") {
        Some(Value::Array(years)) if !years.is_empty() && years.len() <= MAX_YEARS => years,
        _ => {
            let message = format!("must be a list of 1 to {MAX_YEARS} years");
            return Decision::invalid(json!({ "years": [message] }));
        }
    };
    // Only objects have a "year".
    let good_year = |y: &Value| {
        y.get("year")
            .and_then(Value::as_u64)
            .is_some_and(|n| n <= 9999)
    };
    if !years.iter().all(good_year) {
        let message = "each must be an object with a year";
        return Decision::invalid(json!({ "years": [message] }));
    }
    let document = Document {
        kind: KIND.into(),
        id: command.id.clone(),
        owner: user_id.to_owned(),
        created_at: view.now.clone(),
        body: json!({"id": command.id, "status": "processing", "requested_at": view.now}),
    };
    let job = Command {
        id: format!("{}:job", command.id),
        topic: command.topic.clone(),
        socket: SocketRef {
            msg_ref: None,
            ..command.socket.clone()
        },
        claims: command.claims.clone(),
        kind: CommandKind::Derived {
            event: JOB.into(),
            payload: json!({ "id": command.id, "request": payload }),
        },
        received_at: command.received_at.clone(),
    };
    Decision {
        writes: vec![Write::PutDocument(document)],
        jobs: vec![job],
        ..Decision::ok(json!({ "status": "processing", "id": command.id }))
    }
}

/// One year of the request as a `calculate_zakat` payload: the request's currency and prices
/// where the year gives none.
fn year_payload(request: &Value, year: &Value) -> Value {
    let mut merged: Map<String, Value> = year.as_object().cloned().unwrap_or_default();
    for field in SHARED {
        if let Some(value) = request.get(field).filter(|_| !merged.contains_key(field)) {
            merged.insert(field.into(), value.clone());
        }
    }
    Value::Object(merged)
}

fn years(request: &Value) -> &[Value] {
    request
        .get("years")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The currency the job must ask the price feed for, if any year left a price out.
pub(crate) fn prices_needed(request: &Value) -> Option<String> {
    years(request)
        .iter()
        .find_map(|year| super::prices_needed("calculate_zakat", &year_payload(request, year)))
}

/// Works the job out with the prices fetched for it: the payload of its [`DONE`] command.
pub(crate) fn work(
    job: &Command,
    user_id: &str,
    prices: Option<Result<Quote, PriceMissing>>,
    now: &str,
) -> Value {
    let CommandKind::Derived { payload, .. } = &job.kind else {
        return Value::Null;
    };
    let id = payload.get("id").cloned().unwrap_or(Value::Null);
    let request = payload.get("request").cloned().unwrap_or(Value::Null);
    let view = View {
        prices,
        now: now.to_owned(),
        ..View::default()
    };
    let mut results = Vec::new();
    let mut errors = Vec::new();
    let mut total = Decimal::ZERO;
    let mut unavailable = false;
    for year in years(&request) {
        let asked = year_payload(&request, year);
        let decision = super::handle_in("calculate_zakat", &asked, user_id, job, &view);
        let Some(reply) = decision.reply else {
            continue;
        };
        let mut figures = reply.response;
        figures["year"] = year["year"].clone();
        if reply.status == ReplyStatus::Ok {
            total += figures["zakat_due"]
                .as_str()
                .and_then(|d| d.parse::<Decimal>().ok())
                .unwrap_or_default();
            results.push(figures);
        } else {
            unavailable |= figures["reason"] == Refusal::PriceFeedUnavailable.reason();
            errors.push(figures);
        }
    }
    if !errors.is_empty() {
        let reason = if unavailable {
            Refusal::PriceFeedUnavailable.reason()
        } else {
            "invalid input"
        };
        return json!({"id": id, "failed": {"reason": reason, "errors": errors}});
    }
    json!({
        "id": id,
        "result": {
            "currency": request.get("currency").cloned().unwrap_or(Value::Null),
            "years": results,
            "total_zakat_due": total.normalize().to_string(),
        },
    })
}

/// [`DONE`]: the result stored and pushed to the socket that asked.
pub(crate) fn done(payload: &Value, user_id: &str, view: &View) -> Decision {
    let Some(id) = payload.get("id").and_then(Value::as_str) else {
        return Decision::default();
    };
    let (body, event, pushed) = match (payload.get("result"), payload.get("failed")) {
        (Some(result), _) => (
            json!({"id": id, "status": "complete", "result": result, "completed_at": view.now}),
            "calculation_complete",
            json!({"id": id, "result": result}),
        ),
        (None, Some(failed)) => {
            let mut pushed = failed.clone();
            pushed["id"] = json!(id);
            (
                json!({"id": id, "status": "failed", "failure": failed, "completed_at": view.now}),
                "calculation_failed",
                pushed,
            )
        }
        (None, None) => return Decision::default(),
    };
    let created_at = view
        .document
        .as_ref()
        .map_or_else(|| view.now.clone(), |d| d.created_at.clone());
    let document = Document {
        kind: KIND.into(),
        id: id.to_owned(),
        owner: user_id.to_owned(),
        created_at,
        body,
    };
    Decision {
        writes: vec![Write::PutDocument(document)],
        ..Decision::default()
    }
    .push(event, pushed)
}

/// `calculation_status {id}`: the stored calculation of this user (another user's is not
/// found, like one that does not exist).
pub(crate) fn status(user_id: &str, view: &View) -> Decision {
    match view.document.as_ref().filter(|d| d.owner == user_id) {
        Some(document) => Decision::ok(document.body.clone()),
        None => Decision::refuse(Refusal::NotFound),
    }
}

/// The calculation a zakat command reads: `(KIND, id)` for [`DONE`] and `calculation_status`.
pub(crate) fn document_needed(event: &str, payload: &Value) -> Option<(String, String)> {
    let wanted = matches!(event, DONE | "calculation_status");
    let id = payload
        .get("id")
        .and_then(Value::as_str)
        .filter(|_| wanted)?;
    Some((KIND.to_owned(), id.to_owned()))
}

#[cfg(test)]
mod tests;
