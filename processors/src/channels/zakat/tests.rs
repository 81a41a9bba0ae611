use super::*;
use crate::channels::test_support::{claims, event};
use crate::{decide, needs};
use std::time::Duration;

const TOPIC: &str = "zakat:user:4";

fn quote() -> Quote {
    Quote {
        currency: "USD".into(),
        gold_per_gram: Decimal::new(6550, 2),
        silver_per_gram: Decimal::new(80, 2),
    }
}

/// Decides `name` with `payload` on a view holding `prices`, as the runner would.
fn run(name: &str, payload: Value, prices: Option<Result<Quote, PriceMissing>>) -> Decision {
    let command = event(TOPIC, claims(Some("4"), &[]), name, payload);
    let view = View {
        prices,
        now: "2026-03-01T10:00:00Z".into(),
        ..View::default()
    };
    decide(&command, &view)
}

fn reply(decision: &Decision) -> (ReplyStatus, Value) {
    let reply = decision.reply.clone().expect("a reply");
    (reply.status, reply.response)
}

fn ok(decision: &Decision) -> Value {
    let (status, response) = reply(decision);
    assert_eq!(status, ReplyStatus::Ok, "{response}");
    response
}

fn errors(decision: &Decision) -> Value {
    let (status, response) = reply(decision);
    assert_eq!(status, ReplyStatus::Error, "{response}");
    response["errors"].clone()
}

fn needed(name: &str, payload: Value) -> Option<String> {
    needs(&event(TOPIC, claims(Some("4"), &[]), name, payload)).prices
}

#[test]
fn nisab_is_85_grams_of_gold() {
    let d = run(
        "calculate_nisab",
        json!({"currency": "USD", "gold_price": "65.50"}),
        None,
    );
    assert_eq!(ok(&d), json!({"nisab": "5567.50", "currency": "USD"}));
    let number: Value =
        serde_json::from_str(r#"{"currency":"EUR","gold_price":60.123}"#).expect("json");
    assert_eq!(
        ok(&run("calculate_nisab", number, None))["nisab"],
        "5110.455"
    );
}

#[test]
fn nisab_refuses_bad_input() {
    let d = run("calculate_nisab", json!({"gold_price": "-1"}), None);
    assert_eq!(
        errors(&d),
        json!({"currency": ["can't be blank"], "gold_price": ["must be greater than 0"]})
    );
    let d = run(
        "calculate_nisab",
        json!({"currency": 5, "gold_price": "1.00001"}),
        None,
    );
    assert_eq!(
        errors(&d),
        json!({"currency": ["must be a string"], "gold_price": ["must have at most 4 decimal places"]})
    );
    // Far beyond Decimal's range once multiplied: refused, never a panic.
    let huge: Value =
        serde_json::from_str(r#"{"currency":"USD","gold_price":79228162514264337593543950335}"#)
            .expect("json");
    assert_eq!(
        errors(&run("calculate_nisab", huge, None)),
        json!({"gold_price": ["must be at most 1000000000"]})
    );
}

#[test]
fn nisab_without_a_price_uses_the_feed() {
    let d = run(
        "calculate_nisab",
        json!({"currency": "USD"}),
        Some(Ok(quote())),
    );
    assert_eq!(ok(&d), json!({"nisab": "5567.50", "currency": "USD"}));
    // The client's own price wins over the feed's.
    let d = run(
        "calculate_nisab",
        json!({"currency": "USD", "gold_price": "70"}),
        Some(Ok(quote())),
    );
    assert_eq!(ok(&d)["nisab"], "5950.00");
}

#[test]
fn without_a_feed_a_missing_price_is_invalid_as_before() {
    for prices in [None, Some(Err(PriceMissing::NotConfigured))] {
        let d = run("calculate_nisab", json!({"currency": "USD"}), prices);
        assert_eq!(errors(&d), json!({"gold_price": ["can't be blank"]}));
    }
    let d = run(
        "calculate_nisab",
        json!({"currency": "XAG"}),
        Some(Err(PriceMissing::NotQuoted("XAG".into()))),
    );
    assert_eq!(
        errors(&d),
        json!({"gold_price": ["can't be blank (the price feed has no price in XAG)"]})
    );
}

#[test]
fn a_failing_or_open_feed_is_refused_as_unavailable() {
    let d = run(
        "calculate_nisab",
        json!({"currency": "USD"}),
        Some(Err(PriceMissing::FeedFailed)),
    );
    assert_eq!(
        reply(&d),
        (
            ReplyStatus::Error,
            json!({
                "reason": "price feed unavailable",
                "detail": "the price feed failed; give the prices or retry later",
            })
        )
    );
    let open = Some(Err(PriceMissing::BreakerOpen {
        retry_after: Duration::from_millis(12_500),
    }));
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "assets": {"cash": "1"}}),
        open,
    );
    let (status, response) = reply(&d);
    assert_eq!(status, ReplyStatus::Error);
    assert_eq!(response["reason"], "price feed unavailable");
    assert_eq!(
        response["detail"],
        "the price feed is paused after repeated failures; give the prices or retry in 13 s"
    );
    assert!(d.broadcasts.is_empty() && d.writes.is_empty());
    // Input errors come first: fixing them needs no feed.
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "assets": {"cash": "-1"}}),
        Some(Err(PriceMissing::FeedFailed)),
    );
    assert_eq!(errors(&d), json!({"assets.cash": ["must not be negative"]}));
}

#[test]
fn the_feed_is_asked_only_for_prices_the_client_left_out() {
    assert_eq!(
        needed("calculate_nisab", json!({"currency": "USD"})),
        Some("USD".into())
    );
    assert_eq!(
        needed(
            "calculate_nisab",
            json!({"currency": "USD", "gold_price": null})
        ),
        Some("USD".into())
    );
    assert_eq!(
        needed(
            "calculate_nisab",
            json!({"currency": "USD", "gold_price": "60"})
        ),
        None
    );
    assert_eq!(
        needed(
            "calculate_nisab",
            json!({"currency": "USD", "gold_price": "oops"})
        ),
        None,
        "an invalid price is an input error, not a reason to ask the feed"
    );
    // Only ISO 4217 codes reach the feed.
    assert_eq!(needed("calculate_nisab", json!({"currency": "usd"})), None);
    assert_eq!(needed("calculate_nisab", json!({"currency": "US D"})), None);
    assert_eq!(needed("calculate_nisab", json!({})), None);
    // Zakat: gold always; silver only with silver grams.
    let gold_only = json!({"currency": "EUR", "gold_price": "60", "assets": {"silver_grams": "0"}});
    assert_eq!(needed("calculate_zakat", gold_only), None);
    let silver = json!({"currency": "EUR", "gold_price": "60", "assets": {"silver_grams": "5"}});
    assert_eq!(needed("calculate_zakat", silver), Some("EUR".into()));
    let both = json!({"currency": "EUR", "gold_price": "60", "silver_price": "0.7",
                      "assets": {"silver_grams": "5"}});
    assert_eq!(needed("calculate_zakat", both), None);
    let bad_silver =
        json!({"currency": "EUR", "gold_price": "60", "assets": {"silver_grams": "-5"}});
    assert_eq!(needed("calculate_zakat", bad_silver), None);
    assert_eq!(
        needed("calculate_zakat", json!({"currency": "EUR"})),
        Some("EUR".into())
    );
    assert_eq!(needed("something_else", json!({"currency": "EUR"})), None);
}

#[test]
fn zakat_is_two_and_a_half_percent_of_wealth_at_or_over_the_nisab() {
    let payload = json!({
        "currency": "USD", "gold_price": "65.50", "silver_price": "0.80",
        "assets": {"cash": "10000", "gold_grams": "10", "silver_grams": "100",
                   "investments": "500", "receivables": 200},
        "liabilities": "1000",
    });
    let d = run("calculate_zakat", payload, None);
    // 10000 + 10 × 65.50 + 100 × 0.80 + 500 + 200 − 1000
    assert_eq!(
        ok(&d),
        json!({"zakatable_wealth": "10435.00", "nisab": "5567.50", "zakat_due": "260.875",
               "currency": "USD"})
    );
    assert_eq!(d.broadcasts.len(), 1);
    let broadcast = &d.broadcasts[0];
    assert_eq!(
        (broadcast.topic.as_str(), broadcast.event.as_str()),
        (TOPIC, "zakat_due")
    );
    assert_eq!(
        broadcast.payload,
        json!({"calculation": {
            "id": "cmd-1", "user_id": "4", "currency": "USD",
            "assets": {"cash": "10000.00", "gold_grams": "10.00", "silver_grams": "100.00",
                       "investments": "500.00", "receivables": "200.00"},
            "liabilities": "1000.00",
            "gold_price": "65.50", "gold_price_from": "client",
            "silver_price": "0.80", "silver_price_from": "client",
            "zakatable_wealth": "10435.00", "nisab": "5567.50", "zakat_due": "260.875",
            "calculated_at": "2026-03-01T10:00:00Z",
        }})
    );
    // Stored under the user, exactly as broadcast, by the command's id.
    let [store::Write::PutDocument(stored)] = d.writes.as_slice() else {
        panic!("the calculation is stored: {:?}", d.writes)
    };
    assert_eq!(
        (
            stored.kind.as_str(),
            stored.id.as_str(),
            stored.owner.as_str()
        ),
        (CALCULATION_KIND, "cmd-1", "4")
    );
    assert_eq!(stored.body, broadcast.payload["calculation"]);
    // Exactly the nisab is due; a cent less is not, and nothing is broadcast.
    let at = |cash: &str| {
        run(
            "calculate_zakat",
            json!({"currency": "USD", "gold_price": "65.50", "assets": {"cash": cash}}),
            None,
        )
    };
    let d = at("5567.50");
    assert_eq!(ok(&d)["zakat_due"], "139.1875");
    assert_eq!(d.broadcasts.len(), 1);
    let d = at("5567.49");
    assert_eq!(
        ok(&d),
        json!({"zakatable_wealth": "5567.49", "nisab": "5567.50", "zakat_due": "0.00",
               "currency": "USD"})
    );
    assert!(d.broadcasts.is_empty());
    assert_eq!(d.writes.len(), 1, "stored even when nothing is due");
}

#[test]
fn debts_beyond_the_assets_leave_nothing_due() {
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "gold_price": "65.50", "assets": {"cash": "100"},
               "liabilities": "250.25"}),
        None,
    );
    assert_eq!(
        ok(&d),
        json!({"zakatable_wealth": "-150.25", "nisab": "5567.50", "zakat_due": "0.00",
               "currency": "USD"})
    );
}

#[test]
fn prices_the_client_left_out_come_from_the_feed() {
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "gold_price": "70",
               "assets": {"cash": "9000", "silver_grams": "1000"}}),
        Some(Ok(quote())),
    );
    // Gold from the client (nisab 85 × 70), silver from the feed (1000 × 0.80).
    assert_eq!(
        ok(&d),
        json!({"zakatable_wealth": "9800.00", "nisab": "5950.00", "zakat_due": "245.00",
               "currency": "USD"})
    );
    let calculation = &d.broadcasts[0].payload["calculation"];
    assert_eq!(calculation["gold_price_from"], "client");
    assert_eq!(calculation["silver_price"], "0.80");
    assert_eq!(calculation["silver_price_from"], "feed");

    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "assets": {"cash": "100"}}),
        Some(Ok(quote())),
    );
    assert_eq!(ok(&d)["nisab"], "5567.50");
    assert!(d.broadcasts.is_empty());
}

#[test]
fn zakat_lists_every_input_error() {
    let d = run(
        "calculate_zakat",
        json!({"assets": {"cash": "-5", "gold_grams": "abc", "silver_grams": "3",
                          "investments": "1.00001", "receivables": "1000000000000001"},
               "liabilities": [1], "silver_price": "0"}),
        None,
    );
    assert_eq!(
        errors(&d),
        json!({
            "currency": ["can't be blank"],
            "assets.cash": ["must not be negative"],
            "assets.gold_grams": ["must be a decimal number"],
            "assets.investments": ["must have at most 4 decimal places"],
            "assets.receivables": ["must be at most 1000000000000000"],
            "liabilities": ["must be a decimal number"],
            "gold_price": ["can't be blank"],
            "silver_price": ["must be greater than 0"],
        })
    );
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "gold_price": "60", "assets": "lots"}),
        None,
    );
    assert_eq!(errors(&d), json!({"assets": ["must be an object"]}));
    // Silver grams need a silver price; without silver, none is asked for.
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "gold_price": "60", "assets": {"silver_grams": "2"}}),
        None,
    );
    assert_eq!(errors(&d), json!({"silver_price": ["can't be blank"]}));
    let d = run(
        "calculate_zakat",
        json!({"currency": "USD", "gold_price": "60"}),
        None,
    );
    assert_eq!(ok(&d)["zakatable_wealth"], "0.00");
}

#[test]
fn the_largest_inputs_are_calculated_exactly() {
    let most = json!({
        "currency": "IDR", "gold_price": "999999999.9999", "silver_price": "999999999.9999",
        "assets": {"cash": "1000000000000000", "gold_grams": "1000000000",
                   "silver_grams": "1000000000", "investments": "1000000000000000",
                   "receivables": "1000000000000000"},
    });
    assert_eq!(
        ok(&run("calculate_zakat", most, None)),
        json!({"zakatable_wealth": "2002999999999800000.00", "nisab": "84999999999.9915",
               "zakat_due": "50074999999995000.00", "currency": "IDR"})
    );
}

#[test]
fn other_events_are_unknown() {
    assert_eq!(
        run("calculate_everything", json!({}), None),
        Decision::refuse(Refusal::UnknownEvent)
    );
}
