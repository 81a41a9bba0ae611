use rust_decimal::Decimal;
use serde_json::json;
use store::Write;

use super::*;
use crate::channels::test_support::{claims, event};
use crate::{decide, needs};

const TOPIC: &str = "zakat:user:4";
const NOW: &str = "2026-03-01T10:00:00Z";

fn view() -> View {
    View {
        now: NOW.into(),
        ..View::default()
    }
}

fn request() -> Value {
    json!({
        "currency": "USD",
        "years": [
            {"year": 2024, "gold_price": "60", "assets": {"cash": "10000"}},
            {"year": 2025, "assets": {"cash": "1000"}},
            {"year": 2026, "gold_price": "70", "assets": {"cash": "20000"}, "liabilities": "5000"},
        ],
    })
}

fn started() -> Decision {
    let command = event(
        TOPIC,
        claims(Some("4"), &[]),
        "complex_calculation",
        request(),
    );
    decide(&command, &view())
}

fn quote() -> Quote {
    Quote {
        currency: "USD".into(),
        gold_per_gram: Decimal::new(6550, 2),
        silver_per_gram: Decimal::new(80, 2),
    }
}

#[test]
fn a_request_is_answered_processing_stored_and_sent_as_a_job() {
    let decision = started();
    let reply = decision.reply.clone().expect("reply");
    assert_eq!(reply.status, ReplyStatus::Ok);
    assert_eq!(
        reply.response,
        json!({"status": "processing", "id": "cmd-1"})
    );
    let [Write::PutDocument(stored)] = decision.writes.as_slice() else {
        panic!("stored: {:?}", decision.writes)
    };
    assert_eq!((stored.kind.as_str(), stored.owner.as_str()), (KIND, "4"));
    assert_eq!(stored.body["status"], "processing");
    let [job] = decision.jobs.as_slice() else {
        panic!("one job")
    };
    assert_eq!((job.id.as_str(), job.topic.as_str()), ("cmd-1:job", TOPIC));
    assert_eq!(job.socket.msg_ref, None);
    assert!(
        decision.commands.is_empty(),
        "nothing for the command partition"
    );
}

#[test]
fn requests_without_years_are_refused_at_once() {
    for bad in [
        json!({"currency": "USD"}),
        json!({"years": []}),
        json!({"years": [{"assets": {}}]}),
        json!({"years": ["2024"]}),
        json!({"years": vec![json!({"year": 2000}); MAX_YEARS + 1]}),
    ] {
        let command = event(TOPIC, claims(Some("4"), &[]), "complex_calculation", bad);
        let decision = decide(&command, &view());
        let reply = decision.reply.expect("reply");
        assert_eq!(reply.status, ReplyStatus::Error);
        assert!(reply.response["errors"]["years"].is_array());
        assert!(decision.jobs.is_empty() && decision.writes.is_empty());
    }
}

#[test]
fn the_job_works_each_year_out_with_the_feed_price_where_none_was_given() {
    let job = started().jobs.remove(0);
    let CommandKind::Derived { payload, .. } = &job.kind else {
        panic!("derived")
    };
    assert_eq!(prices_needed(&payload["request"]), Some("USD".into()));
    let result = work(&job, "4", Some(Ok(quote())), NOW);
    assert_eq!(result["id"], "cmd-1");
    let years = result["result"]["years"].as_array().expect("years");
    assert_eq!(years.len(), 3);
    // 2024: nisab 85 × 60 = 5100, 10000 ≥ it: 250 due; 2025: nisab 85 × 65.50 (feed) =
    // 5567.50 > 1000: nothing; 2026: nisab 5950, 15000: 375.
    assert_eq!(years[0]["zakat_due"], "250.00");
    assert_eq!(years[0]["year"], 2024);
    assert_eq!(years[1]["nisab"], "5567.50");
    assert_eq!(years[1]["zakat_due"], "0.00");
    assert_eq!(years[2]["zakat_due"], "375.00");
    assert_eq!(result["result"]["total_zakat_due"], "625");

    // The feed failing fails the job, saying why.
    let failed = work(&job, "4", Some(Err(PriceMissing::FeedFailed)), NOW);
    assert_eq!(failed["failed"]["reason"], "price feed unavailable");
    // Bad input in one year fails it as invalid, listing the year's errors.
    let mut bad = request();
    bad["years"][0]["assets"]["cash"] = json!("-5");
    let mut job = job.clone();
    job.kind = CommandKind::Derived {
        event: JOB.into(),
        payload: json!({"id": "cmd-1", "request": bad}),
    };
    let failed = work(&job, "4", Some(Ok(quote())), NOW);
    assert_eq!(failed["failed"]["reason"], "invalid input");
    assert_eq!(failed["failed"]["errors"][0]["year"], 2024);
    assert!(failed["failed"]["errors"][0]["errors"]["assets.cash"].is_array());
}

fn done_command(payload: Value) -> Command {
    let mut command = event(TOPIC, claims(Some("4"), &[]), "x", json!({}));
    command.id = "cmd-1:done".into();
    command.socket.msg_ref = None;
    command.kind = CommandKind::Derived {
        event: DONE.into(),
        payload,
    };
    command
}

#[test]
fn a_result_is_stored_and_pushed_to_the_asking_socket_only() {
    let job = started().jobs.remove(0);
    let result = work(&job, "4", Some(Ok(quote())), NOW);
    let command = done_command(result.clone());
    assert_eq!(
        needs(&command).document,
        Some((KIND.to_owned(), "cmd-1".to_owned()))
    );
    let decision = decide(&command, &view());
    assert_eq!(decision.reply, None);
    assert!(decision.broadcasts.is_empty(), "to that socket only");
    assert_eq!(decision.pushes.len(), 1);
    assert_eq!(decision.pushes[0].event, "calculation_complete");
    assert_eq!(decision.pushes[0].payload["result"], result["result"]);
    let [Write::PutDocument(stored)] = decision.writes.as_slice() else {
        panic!("stored")
    };
    assert_eq!(stored.body["status"], "complete");

    let failed = decide(
        &done_command(json!({"id": "cmd-1", "failed": {"reason": "invalid input", "errors": []}})),
        &view(),
    );
    assert_eq!(failed.pushes[0].event, "calculation_failed");
    assert_eq!(failed.pushes[0].payload["reason"], "invalid input");
    assert_eq!(failed.pushes[0].payload["id"], "cmd-1");

    // calculation_status reads the stored calculation, the owner's only.
    let status = |user: &str| {
        let command = event(
            &format!("zakat:user:{user}"),
            claims(Some(user), &[]),
            "calculation_status",
            json!({"id": "cmd-1"}),
        );
        let view = View {
            document: Some(stored.clone()),
            ..view()
        };
        decide(&command, &view).reply.expect("reply")
    };
    assert_eq!(status("4").response["status"], "complete");
    assert_eq!(status("5").response, json!({"reason": "not found"}));
}
