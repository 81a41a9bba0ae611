//! `zakat:user:<id>`: nisab and zakat calculations.
//!
//! Prices per gram come from the client or, when it gives none, from the price feed: the
//! runner asks the feed while loading the view ([`prices_needed`] says when), so deciding
//! stays pure and answers from [`View::prices`]. All arithmetic is exact: every number is
//! bounded in size and decimal places (see [`Kind`]) so that no product or sum can round or
//! overflow, and the checked operations are only a safety net.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use store::{Document, Write};
use topics::{Command, Refusal, ReplyBody, ReplyStatus};

use crate::decision::{Decision, NewBroadcast, View};
use crate::money::{format_exact, parse_decimal, AmountError};
use crate::prices::{is_quotable, PriceMissing, Quote, MAX_PRICE_PER_GRAM, PRICE_PLACES};

/// Most decimal places of any number of a calculation: those of a price (feed prices are
/// rounded to them), so one rule covers every input.
const MAX_PLACES: u32 = PRICE_PLACES;

/// The document kind of a stored zakat calculation (listed under its user).
pub(crate) const CALCULATION_KIND: &str = "zakat_calculation";

/// Grams of gold that make the nisab.
pub(crate) const NISAB_GOLD_GRAMS: u32 = 85;
/// The share of zakatable wealth due once it reaches the nisab: 2.5 %.
const ZAKAT_RATE: Decimal = Decimal::from_parts(25, 0, 0, false, 3);
/// Largest weight in grams: a thousand tonnes, far beyond any holding.
const MAX_GRAMS: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Largest amount of money (cash, investments, receivables, liabilities): 10^15, room for
/// the largest fortunes in currencies with small units.
const MAX_MONEY: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);
/// The asset fields of `calculate_zakat`, in the order of the formula.
const ASSETS: [&str; 5] = [
    "cash",
    "gold_grams",
    "silver_grams",
    "investments",
    "receivables",
];

/// What a number of a calculation measures, which bounds it. With at most 4 decimal places
/// each, grams × price per gram stays under 10^18 with 8 places, and 2.5 % of the sum under
/// 10^28 (Decimal's 96-bit mantissa holds 7.9 × 10^28): every figure is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Money,
    Grams,
    PricePerGram,
}

impl Kind {
    fn max(self) -> Decimal {
        match self {
            Kind::Money => MAX_MONEY,
            Kind::Grams => MAX_GRAMS,
            Kind::PricePerGram => MAX_PRICE_PER_GRAM,
        }
    }
}

/// Where a price used in a calculation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Client,
    Feed,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Feed => "feed",
        }
    }
}

/// A price after reading the payload and the view.
#[derive(Debug, Clone, PartialEq)]
enum Price {
    /// The price and where it came from.
    Known(Decimal, Source),
    /// Not given and not needed (silver without silver grams).
    Unneeded,
    /// Invalid or missing: a validation error is recorded.
    Invalid,
    /// Needed from the feed, which could not give it.
    Unavailable(PriceMissing),
}

impl Price {
    fn known(&self) -> Option<(Decimal, Source)> {
        match self {
            Price::Known(price, source) => Some((*price, *source)),
            _ => None,
        }
    }
}

/// The currency whose prices `event` needs from the price feed, if the client left a price
/// out that the calculation needs: `gold_price` (both events), or `silver_price` when
/// `calculate_zakat` has silver grams. Only ISO 4217 codes are ever looked up.
pub(crate) fn prices_needed(event: &str, payload: &Value) -> Option<String> {
    let currency = payload
        .get("currency")
        .and_then(Value::as_str)
        .filter(|c| is_quotable(c))?;
    let gold_missing = is_absent(payload.get("gold_price"));
    let needed = match event {
        "calculate_nisab" => gold_missing,
        "calculate_zakat" => {
            gold_missing || (has_silver(payload) && is_absent(payload.get("silver_price")))
        }
        _ => false,
    };
    needed.then(|| currency.to_owned())
}

/// Channel events on the zakat topic of `user_id`.
pub(crate) fn handle_in(
    event: &str,
    payload: &Value,
    user_id: &str,
    command: &Command,
    view: &View,
) -> Decision {
    match event {
        "calculate_nisab" => calculate_nisab(payload, view),
        "calculate_zakat" => calculate_zakat(payload, user_id, command, view),
        "complex_calculation" => complex::start(payload, user_id, command, view),
        "calculation_status" => complex::status(user_id, view),
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

/// `calculate_nisab {currency, gold_price?}` → `ok {nisab, currency}`.
fn calculate_nisab(payload: &Value, view: &View) -> Decision {
    let mut errors = Map::new();
    let currency = currency(payload, &mut errors);
    let gold = price(payload, "gold_price", true, view, &mut errors);
    if !errors.is_empty() {
        return Decision::invalid(Value::Object(errors));
    }
    if let Price::Unavailable(missing) = &gold {
        return unavailable(missing);
    }
    let (Some(currency), Some((gold, _))) = (currency, gold.known()) else {
        return Decision::invalid(Value::Object(errors));
    };
    match nisab(gold) {
        Some(nisab) => Decision::ok(json!({ "nisab": format_exact(nisab), "currency": currency })),
        None => too_large(),
    }
}

/// What `calculate_zakat` was given, once read and checked.
#[derive(Debug, Clone, PartialEq)]
struct Inputs {
    currency: String,
    /// The [`ASSETS`], in order; absent ones are 0.
    assets: [Decimal; 5],
    liabilities: Decimal,
    gold_price: (Decimal, Source),
    /// `None` when there is no silver and no price was given.
    silver_price: Option<(Decimal, Source)>,
}

/// What `calculate_zakat` works out.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    zakatable_wealth: Decimal,
    nisab: Decimal,
    zakat_due: Decimal,
}

/// `calculate_zakat {currency, gold_price?, silver_price?, assets, liabilities}` →
/// `ok {zakatable_wealth, nisab, zakat_due, currency}`, and `zakat_due {calculation}` on the
/// topic when zakat is due.
fn calculate_zakat(payload: &Value, user_id: &str, command: &Command, view: &View) -> Decision {
    let mut errors = Map::new();
    let currency = currency(payload, &mut errors);
    let empty = Map::new();
    let given_assets = match payload.get("assets") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(assets)) => assets,
        Some(_) => {
            add_error(&mut errors, "assets", "must be an object".into());
            &empty
        }
    };
    let mut assets = [Decimal::ZERO; 5];
    for (slot, field) in assets.iter_mut().zip(ASSETS) {
        let kind = if field.ends_with("_grams") {
            Kind::Grams
        } else {
            Kind::Money
        };
        match read(given_assets.get(field), kind) {
            Ok(value) => *slot = value.unwrap_or_default(),
            Err(message) => add_error(&mut errors, &format!("assets.{field}"), message),
        }
    }
    let liabilities = match read(payload.get("liabilities"), Kind::Money) {
        Ok(value) => value.unwrap_or_default(),
        Err(message) => {
            add_error(&mut errors, "liabilities", message);
            Decimal::ZERO
        }
    };
    let gold = price(payload, "gold_price", true, view, &mut errors);
    let silver_needed = assets[2] > Decimal::ZERO;
    let silver = price(payload, "silver_price", silver_needed, view, &mut errors);
    // Input errors first: the client can fix them whatever the feed does.
    if !errors.is_empty() {
        return Decision::invalid(Value::Object(errors));
    }
    for price in [&gold, &silver] {
        if let Price::Unavailable(missing) = price {
            return unavailable(missing);
        }
    }
    let (Some(currency), Some(gold_price)) = (currency, gold.known()) else {
        return Decision::invalid(Value::Object(errors));
    };
    let inputs = Inputs {
        currency,
        assets,
        liabilities,
        gold_price,
        silver_price: silver.known(),
    };
    let Some(figures) = figures(&inputs) else {
        return too_large();
    };
    let mut decision = Decision::ok(json!({
        "zakatable_wealth": format_exact(figures.zakatable_wealth),
        "nisab": format_exact(figures.nisab),
        "zakat_due": format_exact(figures.zakat_due),
        "currency": inputs.currency,
    }));
    let calculation = calculation(&command.id, user_id, &inputs, &figures, &view.now);
    // Stored under the user (reports list them by year), by the command's id: idempotent.
    decision.writes.push(Write::PutDocument(Document {
        kind: CALCULATION_KIND.to_owned(),
        id: command.id.clone(),
        owner: user_id.to_owned(),
        created_at: view.now.clone(),
        body: calculation.clone(),
    }));
    if figures.zakatable_wealth >= figures.nisab {
        decision.broadcasts.push(NewBroadcast::new(
            command.topic.clone(),
            "zakat_due",
            json!({ "calculation": calculation }),
        ));
    }
    decision
}

/// Zakatable wealth, nisab and zakat due; `None` only if a figure would not fit, which the
/// bounds on every input rule out.
fn figures(inputs: &Inputs) -> Option<Figures> {
    let [cash, gold_grams, silver_grams, investments, receivables] = inputs.assets;
    let silver_value = match inputs.silver_price {
        Some((price, _)) => silver_grams.checked_mul(price)?,
        None => Decimal::ZERO,
    };
    let zakatable_wealth = cash
        .checked_add(gold_grams.checked_mul(inputs.gold_price.0)?)?
        .checked_add(silver_value)?
        .checked_add(investments)?
        .checked_add(receivables)?
        .checked_sub(inputs.liabilities)?;
    let nisab = nisab(inputs.gold_price.0)?;
    let zakat_due = if zakatable_wealth >= nisab {
        zakatable_wealth.checked_mul(ZAKAT_RATE)?
    } else {
        Decimal::ZERO
    };
    Some(Figures {
        zakatable_wealth,
        nisab,
        zakat_due,
    })
}

/// 85 grams of gold at `gold_price` per gram.
fn nisab(gold_price: Decimal) -> Option<Decimal> {
    gold_price.checked_mul(Decimal::from(NISAB_GOLD_GRAMS))
}

/// The calculation as `zakat_due` carries it: what it was made from (with where each price
/// came from) and what it came to. The one place that shapes it, so the per-user store of
/// calculations keeps exactly what the broadcast showed; its id is the command's, which makes
/// storing it idempotent.
fn calculation(id: &str, user_id: &str, inputs: &Inputs, figures: &Figures, now: &str) -> Value {
    let assets: Map<String, Value> = ASSETS
        .iter()
        .zip(inputs.assets)
        .map(|(field, value)| ((*field).to_owned(), json!(format_exact(value))))
        .collect();
    let (gold_price, gold_from) = inputs.gold_price;
    let (silver_price, silver_from) = match inputs.silver_price {
        Some((price, from)) => (json!(format_exact(price)), json!(from.label())),
        None => (Value::Null, Value::Null),
    };
    json!({
        "id": id,
        "user_id": user_id,
        "currency": inputs.currency,
        "assets": assets,
        "liabilities": format_exact(inputs.liabilities),
        "gold_price": format_exact(gold_price),
        "gold_price_from": gold_from.label(),
        "silver_price": silver_price,
        "silver_price_from": silver_from,
        "zakatable_wealth": format_exact(figures.zakatable_wealth),
        "nisab": format_exact(figures.nisab),
        "zakat_due": format_exact(figures.zakat_due),
        "calculated_at": now,
    })
}

/// The `currency` field: a non-blank string.
fn currency(payload: &Value, errors: &mut Map<String, Value>) -> Option<String> {
    match payload.get("currency") {
        Some(Value::String(c)) if !c.trim().is_empty() => Some(c.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            add_error(errors, "currency", "can't be blank".into());
            None
        }
        Some(_) => {
            add_error(errors, "currency", "must be a string".into());
            None
        }
    }
}

/// The price `field` per gram: the client's, else (when `required`) the feed's from the view.
fn price(
    payload: &Value,
    field: &str,
    required: bool,
    view: &View,
    errors: &mut Map<String, Value>,
) -> Price {
    match read(payload.get(field), Kind::PricePerGram) {
        Err(message) => {
            add_error(errors, field, message);
            Price::Invalid
        }
        Ok(Some(price)) => Price::Known(price, Source::Client),
        Ok(None) if !required => Price::Unneeded,
        Ok(None) => match &view.prices {
            Some(Ok(quote)) => Price::Known(per_gram(quote, field), Source::Feed),
            Some(Err(missing @ (PriceMissing::FeedFailed | PriceMissing::BreakerOpen { .. }))) => {
                Price::Unavailable(missing.clone())
            }
            Some(Err(PriceMissing::NotQuoted(currency))) => {
                let message = format!("can't be blank (the price feed has no price in {currency})");
                add_error(errors, field, message);
                Price::Invalid
            }
            // No feed, or a currency it is not asked for: as without a feed.
            Some(Err(PriceMissing::NotConfigured)) | None => {
                add_error(errors, field, "can't be blank".into());
                Price::Invalid
            }
        },
    }
}

/// The quote's price of the metal `field` is about.
fn per_gram(quote: &Quote, field: &str) -> Decimal {
    if field == "silver_price" {
        quote.silver_per_gram
    } else {
        quote.gold_per_gram
    }
}

/// A number of a calculation: `Ok(None)` when absent; else exact, not negative (prices
/// above 0), within its kind's bound and with at most [`MAX_PLACES`] decimal places.
fn read(value: Option<&Value>, kind: Kind) -> Result<Option<Decimal>, String> {
    let number = match parse_decimal(value) {
        Err(AmountError::Missing) => return Ok(None),
        Err(error) => return Err(error.to_string()),
        Ok(number) => number,
    };
    if kind == Kind::PricePerGram && number <= Decimal::ZERO {
        return Err(AmountError::NotPositive.to_string());
    }
    if number < Decimal::ZERO {
        return Err("must not be negative".into());
    }
    if number > kind.max() {
        return Err(format!("must be at most {}", kind.max()));
    }
    if number.normalize().scale() > MAX_PLACES {
        return Err(format!("must have at most {MAX_PLACES} decimal places"));
    }
    Ok(Some(number))
}

/// Whether a price was left out (absent, null or blank): then the feed is asked for it.
fn is_absent(value: Option<&Value>) -> bool {
    parse_decimal(value) == Err(AmountError::Missing)
}

/// Whether `calculate_zakat`'s payload holds silver (a valid silver weight above 0).
fn has_silver(payload: &Value) -> bool {
    let grams = payload.get("assets").and_then(|a| a.get("silver_grams"));
    matches!(read(grams, Kind::Grams), Ok(Some(g)) if g > Decimal::ZERO)
}

/// The `price feed unavailable` refusal, saying why.
fn unavailable(missing: &PriceMissing) -> Decision {
    Decision {
        reply: Some(ReplyBody {
            status: ReplyStatus::Error,
            response: Refusal::PriceFeedUnavailable.response_with_detail(&missing.to_string()),
        }),
        ..Decision::default()
    }
}

/// Figures that would not fit: unreachable with the inputs bounded, answered as invalid
/// rather than trusted.
fn too_large() -> Decision {
    Decision::invalid(json!({ "assets": ["are too large to calculate exactly"] }))
}

fn add_error(errors: &mut Map<String, Value>, field: &str, message: String) {
    if let Value::Array(list) = errors
        .entry(field)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        list.push(Value::String(message));
    }
}

pub(crate) mod complex;
#[cfg(test)]
mod tests;
