//! Exact decimal money.
//!
//! Amounts travel as decimal strings; a client may send a JSON number, which is read from its
//! exact text (serde_json's `arbitrary_precision`), never through a float.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

/// Largest amount accepted for one donation.
pub(crate) const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Why a value is not a usable amount, as the message shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AmountError {
    /// Absent or null.
    #[error("can't be blank")]
    Missing,
    /// Not a decimal number.
    #[error("must be a decimal number")]
    NotANumber,
    /// Zero or negative.
    #[error("must be greater than 0")]
    NotPositive,
    /// More than two decimal places.
    #[error("must have at most 2 decimal places")]
    TooPrecise,
    /// Over [`MAX_AMOUNT`].
    #[error("must be at most 1000000000")]
    TooLarge,
}

/// Reads a decimal from a JSON string or number, exactly.
pub(crate) fn parse_decimal(value: Option<&Value>) -> Result<Decimal, AmountError> {
    let text = match value {
        None | Some(Value::Null) => return Err(AmountError::Missing),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(AmountError::NotANumber),
    };
    if text.is_empty() {
        return Err(AmountError::Missing);
    }
    // Plain decimal notation only: no exponents, no signs other than a leading minus.
    let plain = text
        .strip_prefix('-')
        .unwrap_or(&text)
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.');
    if !plain || text.matches('.').count() > 1 {
        return Err(AmountError::NotANumber);
    }
    Decimal::from_str(&text).map_err(|_| AmountError::NotANumber)
}

/// Reads an amount of money: a decimal > 0 with at most 2 places, at most [`MAX_AMOUNT`].
pub(crate) fn parse_amount(value: Option<&Value>) -> Result<Decimal, AmountError> {
    let amount = parse_decimal(value)?;
    if amount <= Decimal::ZERO {
        return Err(AmountError::NotPositive);
    }
    if amount.normalize().scale() > 2 {
        return Err(AmountError::TooPrecise);
    }
    if amount > MAX_AMOUNT {
        return Err(AmountError::TooLarge);
    }
    Ok(amount)
}

/// Formats money with exactly two decimal places ("100.00").
pub(crate) fn format_money(amount: Decimal) -> String {
    let mut amount = amount;
    amount.rescale(2);
    amount.to_string()
}

/// Formats a computed decimal with at least two places, keeping any further exact digits.
pub(crate) fn format_exact(value: Decimal) -> String {
    let value = value.normalize();
    if value.scale() < 2 {
        format_money(value)
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn amount(v: Value) -> Result<String, AmountError> {
        parse_amount(Some(&v)).map(format_money)
    }

    #[test]
    fn strings_and_numbers_are_exact() {
        assert_eq!(amount(json!("100")), Ok("100.00".into()));
        assert_eq!(amount(json!("0.10")), Ok("0.10".into()));
        let number: Value = serde_json::from_str("0.1").expect("json");
        assert_eq!(amount(number), Ok("0.10".into()));
        let big: Value = serde_json::from_str("999999999.99").expect("json");
        assert_eq!(amount(big), Ok("999999999.99".into()));
    }

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(amount(json!(null)), Err(AmountError::Missing));
        assert_eq!(amount(json!("")), Err(AmountError::Missing));
        assert_eq!(amount(json!("abc")), Err(AmountError::NotANumber));
        assert_eq!(amount(json!("1e3")), Err(AmountError::NotANumber));
        assert_eq!(amount(json!([1])), Err(AmountError::NotANumber));
        assert_eq!(amount(json!("0")), Err(AmountError::NotPositive));
        assert_eq!(amount(json!("-5")), Err(AmountError::NotPositive));
        assert_eq!(amount(json!("1.005")), Err(AmountError::TooPrecise));
        assert_eq!(amount(json!("1000000000.01")), Err(AmountError::TooLarge));
        assert_eq!(amount(json!("1000000000")), Ok("1000000000.00".into()));
        assert_eq!(amount(json!("1.50")), Ok("1.50".into()));
        assert_eq!(amount(json!("1.500")), Ok("1.50".into()));
    }

    #[test]
    fn exact_format_keeps_digits() {
        let d = Decimal::from_str("5535.455").expect("decimal");
        assert_eq!(format_exact(d), "5535.455");
        assert_eq!(format_exact(Decimal::from(85)), "85.00");
    }
}
