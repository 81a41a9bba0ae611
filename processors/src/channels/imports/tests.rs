use serde_json::json;
use store::conformance::sample_campaign;
use store::Write;

use rust_decimal::Decimal;

use super::*;
use crate::channels::test_support::{claims, event};
use crate::decide;

const TOPIC: &str = "imports:user:7";

fn view() -> View {
    View {
        now: "2026-03-01T00:00:00Z".into(),
        ..View::default()
    }
}

fn import(rows: Value) -> (Command, Decision) {
    let command = event(
        TOPIC,
        claims(Some("7"), &[]),
        "batch_import",
        json!({ "donations": rows }),
    );
    let decision = decide(&command, &view());
    (command, decision)
}

fn stored(decision: &Decision) -> Document {
    match decision.writes.as_slice() {
        [Write::PutDocument(d)] => d.clone(),
        other => panic!("one document written: {other:?}"),
    }
}

fn push_events(decision: &Decision) -> Vec<&str> {
    decision.pushes.iter().map(|p| p.event.as_str()).collect()
}

#[test]
fn an_import_is_answered_stored_and_split_into_one_row_command_per_campaign_row() {
    let (command, decision) = import(json!([
        {"campaign_id": "1", "amount": "10.00", "donor_name": "A"},
        {"campaign_id": 2, "amount": "5", "donor_name": "B", "currency": "USD"},
        {"amount": "1.00", "donor_name": "no campaign"},
    ]));
    let reply = decision.reply.clone().expect("reply");
    assert_eq!(reply.status, ReplyStatus::Ok);
    assert_eq!(reply.response, json!({"ref": "cmd-1", "total": 3}));
    let document = stored(&decision);
    assert_eq!(
        (document.kind.as_str(), document.owner.as_str()),
        (KIND, "7")
    );
    assert_eq!(
        document.body["processed"], 1,
        "the row without a campaign failed at once"
    );
    assert_eq!(document.body["failed"], 1);
    assert!(decision.pushes.is_empty(), "no hundred reached yet");

    let rows = &decision.commands;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].id, "cmd-1:0");
    assert_eq!(rows[0].topic, "donations:campaign:1");
    assert_eq!(rows[1].topic, "donations:campaign:2");
    assert_eq!(rows[1].socket.msg_ref, None, "rows answer no message");
    assert_eq!(rows[1].claims, command.claims);
    let CommandKind::Derived { event, payload } = &rows[1].kind else {
        panic!("a derived command")
    };
    assert_eq!(event, ROW);
    assert_eq!(payload["row"], 1);
    assert_eq!(payload["currency"], "USD");
    assert_eq!(payload["import_topic"], TOPIC);
}

#[test]
fn imports_are_refused_when_empty_too_long_or_not_a_list() {
    for rows in [json!([]), json!("x"), json!(vec![json!({}); MAX_ROWS + 1])] {
        let (_, decision) = import(rows);
        let reply = decision.reply.expect("reply");
        assert_eq!(reply.status, ReplyStatus::Error);
        assert!(reply.response["errors"]["donations"].is_array());
        assert!(decision.commands.is_empty() && decision.writes.is_empty());
    }
}

fn row_command(row: u64, campaign: &str, amount: &str) -> Command {
    let (_, decision) =
        import(json!([{"campaign_id": campaign, "amount": amount, "donor_name": "A"}]));
    let mut command = decision.commands[0].clone();
    if let CommandKind::Derived { payload, .. } = &mut command.kind {
        payload["row"] = json!(row);
    }
    command
}

#[test]
fn a_row_is_decided_as_a_new_donation_and_reports_back_without_a_reply() {
    let command = row_command(0, "1", "25.00");
    let view = View {
        campaign: Some(sample_campaign("1")),
        ..view()
    };
    let decision = decide(&command, &view);
    assert_eq!(decision.reply, None);
    assert!(decision.pushes.is_empty());
    assert!(
        matches!(decision.writes[0], Write::PutCampaign(ref c) if c.total == Decimal::new(2500, 2))
    );
    assert!(
        matches!(decision.writes[1], Write::InsertDonation(ref d) if d.id == "cmd-1:0" && d.user_id.as_deref() == Some("7"))
    );
    assert_eq!(decision.broadcasts[0].event, "donation_created");
    let done = &decision.commands[0];
    assert_eq!(
        (done.id.as_str(), done.topic.as_str()),
        ("cmd-1:0:done", TOPIC)
    );
    let CommandKind::Derived { event, payload } = &done.kind else {
        panic!("derived")
    };
    assert_eq!(event, ROW_DONE);
    assert_eq!(payload, &json!({"ref": "cmd-1", "row": 0, "errors": null}));

    // Invalid, on a missing campaign, or on a private one: no writes, the errors go back.
    let bad = decide(&row_command(0, "1", "-3"), &view);
    assert!(bad.writes.is_empty());
    let CommandKind::Derived { payload, .. } = &bad.commands[0].kind else {
        panic!("derived")
    };
    assert!(payload["errors"]["amount"].is_array(), "{payload}");
    let missing = decide(&row_command(0, "1", "1"), &self::view());
    let CommandKind::Derived { payload, .. } = &missing.commands[0].kind else {
        panic!("derived")
    };
    assert_eq!(
        payload["errors"],
        json!({"campaign_id": ["does not exist"]})
    );
    let mut private = sample_campaign("1");
    private.visibility = store::Visibility::Private;
    private.organizer_ids = vec!["2".into()];
    let closed = decide(
        &row_command(0, "1", "1"),
        &View {
            campaign: Some(private),
            ..self::view()
        },
    );
    assert!(closed.writes.is_empty());
}

fn done(row: u64, errors: Value) -> Command {
    let mut command = row_command(row, "1", "1");
    command.topic = TOPIC.into();
    command.id = format!("cmd-1:{row}:done");
    command.kind = CommandKind::Derived {
        event: ROW_DONE.into(),
        payload: json!({"ref": "cmd-1", "row": row, "errors": errors}),
    };
    command
}

#[test]
fn results_count_once_and_push_progress_every_hundred_rows_then_completion() {
    let rows: Vec<Value> = (0..250)
        .map(|_| json!({"campaign_id": "1", "amount": "1", "donor_name": "A"}))
        .collect();
    let (_, decision) = import(Value::Array(rows));
    let mut document = stored(&decision);
    let mut progress = Vec::new();
    for row in 0..250u64 {
        let errors = if row % 10 == 0 {
            json!({"amount": ["bad"]})
        } else {
            Value::Null
        };
        let command = done(row, errors);
        assert_eq!(
            crate::needs(&command).document,
            Some((KIND.to_owned(), "cmd-1".to_owned()))
        );
        let view = View {
            document: Some(document.clone()),
            ..view()
        };
        let decision = decide(&command, &view);
        document = stored(&decision);
        for push in &decision.pushes {
            progress.push((push.event.clone(), push.payload.clone()));
        }
        // The same result again (a re-sent derived command) changes nothing.
        let again = decide(
            &command,
            &View {
                document: Some(document.clone()),
                ..self::view()
            },
        );
        assert_eq!(again, Decision::default());
    }
    let events: Vec<&str> = progress.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        events,
        [
            "batch_progress",
            "batch_progress",
            "batch_progress",
            "batch_complete"
        ]
    );
    assert_eq!(
        progress[1].1,
        json!({"batch": 2, "processed": 200, "total": 250, "successful": 180, "failed": 20})
    );
    assert_eq!(progress[2].1["batch"], 3);
    assert_eq!(progress[3].1["ref"], "cmd-1");
    assert_eq!(progress[3].1["successful"], 225);
    assert_eq!(progress[3].1["failed"], 25);
    assert_eq!(progress[3].1["errors"].as_array().map(Vec::len), Some(25));
    assert_eq!(
        progress[3].1["errors"][1],
        json!({"row": 10, "errors": {"amount": ["bad"]}})
    );
}

#[test]
fn an_import_whose_rows_all_fail_at_once_completes_in_its_reply() {
    let (_, decision) = import(json!([{"campaign_id": ""}, {"campaign_id": "x".repeat(300)}]));
    assert!(decision.commands.is_empty());
    assert_eq!(push_events(&decision), ["batch_progress", "batch_complete"]);
    assert_eq!(decision.pushes[1].payload["failed"], 2);
}

#[test]
fn derived_commands_are_not_client_events() {
    // A client pushing the row event on a campaign gets "unknown event", not a donation.
    let forged = event(
        "donations:campaign:1",
        claims(Some("7"), &[]),
        ROW,
        json!({"ref": "x", "row": 0, "import_topic": TOPIC, "amount": "1", "donor_name": "A"}),
    );
    let view = View {
        campaign: Some(sample_campaign("1")),
        ..view()
    };
    let decision = decide(&forged, &view);
    assert!(decision.writes.is_empty());
    assert!(decision.commands.is_empty());
}
