//! `zakat:user:<id>`: nisab calculation.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::decision::Decision;
use crate::money::{format_exact, parse_decimal};
use topics::Refusal;

/// Grams of gold that make the nisab.
pub(crate) const NISAB_GOLD_GRAMS: u32 = 85;

/// Channel events on a zakat topic.
pub(crate) fn handle_in(event: &str, payload: &Value) -> Decision {
    match event {
        "calculate_nisab" => calculate_nisab(payload),
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

fn calculate_nisab(payload: &Value) -> Decision {
    let currency = payload.get("currency").and_then(Value::as_str);
    let gold_price = parse_decimal(payload.get("gold_price"));
    match (currency, gold_price) {
        (Some(currency), Ok(price)) if !currency.is_empty() && price > Decimal::ZERO => {
            let nisab = price * Decimal::from(NISAB_GOLD_GRAMS);
            Decision::ok(json!({ "nisab": format_exact(nisab), "currency": currency }))
        }
        (currency, price) => {
            let mut errors = serde_json::Map::new();
            if currency.is_none_or(str::is_empty) {
                errors.insert("currency".into(), json!(["can't be blank"]));
            }
            match price {
                Ok(p) if p <= Decimal::ZERO => {
                    errors.insert("gold_price".into(), json!(["must be greater than 0"]));
                }
                Err(e) => {
                    errors.insert("gold_price".into(), json!([e.to_string()]));
                }
                Ok(_) => {}
            }
            Decision::invalid(Value::Object(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nisab_is_85_grams_of_gold() {
        let d = handle_in(
            "calculate_nisab",
            &json!({"currency": "USD", "gold_price": "65.50"}),
        );
        assert_eq!(
            d.reply.expect("reply").response,
            json!({"nisab": "5567.50", "currency": "USD"})
        );
        let number: Value =
            serde_json::from_str(r#"{"currency":"EUR","gold_price":60.123}"#).expect("json");
        assert_eq!(
            handle_in("calculate_nisab", &number)
                .reply
                .expect("reply")
                .response["nisab"],
            "5110.455"
        );
    }

    #[test]
    fn refuses_bad_input() {
        let d = handle_in("calculate_nisab", &json!({"gold_price": "-1"}));
        assert_eq!(
            d.reply.expect("reply").response,
            json!({"errors": {"currency": ["can't be blank"], "gold_price": ["must be greater than 0"]}})
        );
    }
}
