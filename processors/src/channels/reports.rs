//! `reports:user:<id>` `generate_report {type, year}`: the user's donations, zakat
//! calculations and waqfs of one year.
//!
//! The user's records are read before the decision ([`RecordsNeeded`]), so the report is
//! decided purely and sent to the requesting socket only, as one delivery in order: the reply
//! `ok {status: "started"}`, `report_progress {percent, message}` at 0, 25, 50, 75 and 100,
//! then `report_ready {report}`. Nothing is stored: a report processed again is made again.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use store::{Document, DonationStatus};
use topics::{Command, CommandKind, Refusal};

use super::waqf::WAQF_ROLE_KIND;
use super::zakat::CALCULATION_KIND as ZAKAT_CALCULATION_KIND;
use crate::decision::{Decision, RecordsNeeded, UserRecords, View};
use crate::money::format_money;

/// Report types: `annual` has every section, the others the one they name.
const TYPES: [&str; 4] = ["annual", "donations", "zakat", "waqf"];
/// Most items of each section (donations, zakat calculations, waqfs); a section with more
/// says so in `truncated`. The report goes out as one record on the log, which brokers cap
/// (1 MiB by default on Kafka): about 250 bytes a donation, 1 KiB a calculation, up to 4 KiB
/// a waqf record with 50 beneficiaries keep it under 600 KiB.
const MAX_ITEMS: [usize; 3] = [500, 200, 100];
/// The first year a report may cover.
const FIRST_YEAR: i32 = 2000;

/// The sections of a report, in the order they are gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Donations,
    Zakat,
    Waqf,
}

impl Section {
    const ALL: [Section; 3] = [Section::Donations, Section::Zakat, Section::Waqf];

    fn name(self) -> &'static str {
        match self {
            Section::Donations => "donations",
            Section::Zakat => "zakat_calculations",
            Section::Waqf => "waqfs",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Section::Donations => "Donations",
            Section::Zakat => "Zakat calculations",
            Section::Waqf => "Waqfs",
        }
    }

    /// Most items it lists.
    fn max_items(self) -> usize {
        match self {
            Section::Donations => MAX_ITEMS[0],
            Section::Zakat => MAX_ITEMS[1],
            Section::Waqf => MAX_ITEMS[2],
        }
    }

    fn in_report(self, kind: &str) -> bool {
        let name = match self {
            Section::Donations => "donations",
            Section::Zakat => "zakat",
            Section::Waqf => "waqf",
        };
        kind == "annual" || kind == name
    }
}

/// Reads `year` as given: an integer, or a string of digits.
fn parse_year(value: Option<&Value>) -> Result<i32, &'static str> {
    let year = match value {
        None | Some(Value::Null) => return Err("can't be blank"),
        Some(Value::Number(n)) => n.as_i64().and_then(|y| i32::try_from(y).ok()),
        Some(Value::String(s)) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        Some(_) => None,
    };
    year.ok_or("must be a year such as 2026")
}

/// The year a timestamp (RFC 3339) falls in.
fn year_of(timestamp: &str) -> Option<i32> {
    timestamp.get(..4).and_then(|y| y.parse().ok())
}

/// The records a `generate_report` by the topic's own user needs read.
pub(crate) fn needs(user_id: &str, command: &Command) -> Option<RecordsNeeded> {
    let CommandKind::Event { event, payload } = &command.kind else {
        return None;
    };
    if event != "generate_report" || command.claims.user_id.as_deref() != Some(user_id) {
        return None;
    }
    let year = parse_year(payload.get("year")).ok()?;
    Some(RecordsNeeded {
        user_id: user_id.to_owned(),
        year,
        // One more than shown, to tell a full section from a cut one.
        donation_limit: Section::Donations.max_items() + 1,
        documents: vec![
            (ZAKAT_CALCULATION_KIND, Section::Zakat.max_items() + 1),
            (WAQF_ROLE_KIND, Section::Waqf.max_items() + 1),
        ],
    })
}

/// Channel events on `reports:user:<user_id>`.
pub(crate) fn handle_in(
    event: &str,
    payload: &Value,
    user_id: &str,
    command: &Command,
    view: &View,
) -> Decision {
    match event {
        "generate_report" => generate(payload, user_id, command, view),
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

fn generate(payload: &Value, user_id: &str, command: &Command, view: &View) -> Decision {
    if command.claims.user_id.as_deref() != Some(user_id) {
        return Decision::refuse(Refusal::Unauthorized);
    }
    let mut errors = Map::new();
    let kind = match payload.get("type").and_then(Value::as_str) {
        Some(kind) if TYPES.contains(&kind) => kind,
        _ => {
            let message = format!("must be one of {}", TYPES.join(", "));
            errors.insert("type".into(), json!([message]));
            ""
        }
    };
    let this_year = year_of(&view.now).unwrap_or(FIRST_YEAR);
    let year = match parse_year(payload.get("year")) {
        Ok(year) if (FIRST_YEAR..=this_year).contains(&year) => Some(year),
        Ok(_) => {
            let message = format!("must be a year from {FIRST_YEAR} to {this_year}");
            errors.insert("year".into(), json!([message]));
            None
        }
        Err(message) => {
            errors.insert("year".into(), json!([message]));
            None
        }
    };
    let (Some(year), true) = (year, errors.is_empty()) else {
        return Decision::invalid(Value::Object(errors));
    };
    let Some(records) = view.records.as_ref() else {
        // The runner reads the records of every valid report; without them there is nothing
        // true to send.
        return Decision::refuse(Refusal::Failed);
    };

    let mut report = Map::new();
    report.insert("type".into(), json!(kind));
    report.insert("year".into(), json!(year));
    report.insert("user_id".into(), json!(user_id));
    report.insert("generated_at".into(), json!(view.now));
    let mut truncated = Vec::new();
    let mut decision = Decision::ok(json!({ "status": "started" })).push(
        "report_progress",
        json!({ "percent": 0, "message": "Report started" }),
    );
    for (section, percent) in Section::ALL.into_iter().zip([25, 50, 75]) {
        let message = if section.in_report(kind) {
            let (items, cut) = gather(section, records, year, &mut report);
            if cut {
                truncated.push(section.name());
            }
            report.insert(section.name().into(), Value::Array(items));
            format!("{} gathered", section.label())
        } else {
            format!("{} are not part of this report", section.label())
        };
        decision = decision.push(
            "report_progress",
            json!({ "percent": percent, "message": message }),
        );
    }
    report.insert("truncated".into(), json!(truncated));
    decision
        .push(
            "report_progress",
            json!({ "percent": 100, "message": "Report complete" }),
        )
        .push("report_ready", json!({ "report": report }))
}

/// The items of one section for `year`, and whether there were more than it lists; adds
/// what the section sums up to `report`.
fn gather(
    section: Section,
    records: &UserRecords,
    year: i32,
    report: &mut Map<String, Value>,
) -> (Vec<Value>, bool) {
    match section {
        Section::Donations => {
            let donations = &records.donations;
            let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
            let items = donations
                .iter()
                .take(section.max_items())
                .inspect(|d| {
                    if d.status != DonationStatus::Rejected {
                        *totals.entry(&d.currency).or_default() += d.amount;
                    }
                })
                .map(|d| {
                    json!({
                        "id": d.id,
                        "campaign_id": d.campaign_id,
                        "amount": format_money(d.amount),
                        "currency": d.currency,
                        "donor_name": d.donor_name,
                        "inserted_at": d.inserted_at,
                        "status": d.status.as_str(),
                    })
                })
                .collect();
            let totals: Map<String, Value> = totals
                .into_iter()
                .map(|(currency, total)| (currency.to_owned(), json!(format_money(total))))
                .collect();
            report.insert("donation_totals".into(), Value::Object(totals));
            (items, donations.len() > section.max_items())
        }
        Section::Zakat => of_year(
            section,
            records.documents(ZAKAT_CALCULATION_KIND),
            year,
            |d| json!({ "id": d.id, "created_at": d.created_at, "calculation": d.body }),
        ),
        Section::Waqf => of_year(
            section,
            records.documents(WAQF_ROLE_KIND),
            year,
            |d| json!({ "roles": d.body["roles"], "waqf": d.body["waqf"] }),
        ),
    }
}

/// The documents of `year` (listed newest first), as `show` makes them, and whether the
/// listing may have cut some of that year off.
fn of_year(
    section: Section,
    documents: &[Document],
    year: i32,
    show: fn(&Document) -> Value,
) -> (Vec<Value>, bool) {
    let items = documents
        .iter()
        .take(section.max_items())
        .filter(|d| year_of(&d.created_at) == Some(year))
        .map(show)
        .collect();
    let cut = documents.len() > section.max_items()
        && documents
            .last()
            .and_then(|d| year_of(&d.created_at))
            .is_some_and(|oldest| oldest >= year);
    (items, cut)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::decide;
    use store::Donation;
    use topics::ReplyStatus;

    const TOPIC: &str = "reports:user:5";

    fn donation(id: &str, amount: i64, status: DonationStatus) -> Donation {
        Donation {
            id: id.into(),
            campaign_id: "1".into(),
            amount: Decimal::new(amount, 2),
            currency: "USD".into(),
            donor_name: "Sam".into(),
            user_id: Some("5".into()),
            inserted_at: "2025-06-01T00:00:00.000Z".into(),
            status,
        }
    }

    fn document(kind: &str, id: &str, created_at: &str, body: Value) -> Document {
        Document {
            kind: kind.into(),
            id: id.into(),
            owner: "5".into(),
            created_at: created_at.into(),
            body,
        }
    }

    fn records() -> UserRecords {
        UserRecords {
            donations: vec![
                donation("d2", 1000, DonationStatus::Rejected),
                donation("d1", 2550, DonationStatus::Approved),
            ],
            documents: vec![
                (
                    ZAKAT_CALCULATION_KIND,
                    vec![
                        document(
                            ZAKAT_CALCULATION_KIND,
                            "z2",
                            "2026-01-02T00:00:00Z",
                            json!({}),
                        ),
                        document(
                            ZAKAT_CALCULATION_KIND,
                            "z1",
                            "2025-03-01T00:00:00Z",
                            json!({"zakat_due": "12.50"}),
                        ),
                    ],
                ),
                (
                    WAQF_ROLE_KIND,
                    vec![document(
                        WAQF_ROLE_KIND,
                        "w",
                        "2025-04-01T00:00:00Z",
                        json!({"waqf_id": "w1", "roles": ["beneficiary"],
                               "waqf": {"id": "w1", "benefit_amount": "5.00"}}),
                    )],
                ),
            ],
        }
    }

    fn view() -> View {
        View {
            records: Some(records()),
            now: "2026-02-01T00:00:00.000Z".into(),
            ..View::default()
        }
    }

    fn generate_as(user: &str, payload: Value) -> Decision {
        decide(
            &event(TOPIC, claims(Some(user), &[]), "generate_report", payload),
            &view(),
        )
    }

    #[test]
    fn streams_progress_then_the_report_of_the_year() {
        let d = generate_as("5", json!({"type": "annual", "year": 2025}));
        assert_eq!(
            d.reply.clone().expect("reply").response,
            json!({"status": "started"})
        );
        assert!(
            d.writes.is_empty() && d.broadcasts.is_empty(),
            "to this socket only"
        );
        let events: Vec<(&str, Value)> = d
            .pushes
            .iter()
            .map(|p| (p.event.as_str(), p.payload["percent"].clone()))
            .collect();
        assert_eq!(
            events,
            vec![
                ("report_progress", json!(0)),
                ("report_progress", json!(25)),
                ("report_progress", json!(50)),
                ("report_progress", json!(75)),
                ("report_progress", json!(100)),
                ("report_ready", Value::Null),
            ]
        );
        assert_eq!(d.pushes[1].payload["message"], "Donations gathered");
        let report = &d.pushes[5].payload["report"];
        assert_eq!(report["year"], 2025);
        assert_eq!(report["user_id"], "5");
        let ids: Vec<&Value> = report["donations"]
            .as_array()
            .expect("donations")
            .iter()
            .map(|d| &d["id"])
            .collect();
        assert_eq!(ids, [&json!("d2"), &json!("d1")]);
        assert_eq!(report["donations"][0]["status"], "rejected");
        assert_eq!(
            report["donation_totals"],
            json!({"USD": "25.50"}),
            "rejected donations do not count"
        );
        assert_eq!(
            report["zakat_calculations"],
            json!([{"id": "z1", "created_at": "2025-03-01T00:00:00Z",
                    "calculation": {"zakat_due": "12.50"}}]),
            "only the year's"
        );
        assert_eq!(
            report["waqfs"],
            json!([{"roles": ["beneficiary"], "waqf": {"id": "w1", "benefit_amount": "5.00"}}])
        );
        assert_eq!(report["truncated"], json!([]));
    }

    #[test]
    fn a_typed_report_has_its_section_only() {
        let d = generate_as("5", json!({"type": "zakat", "year": "2026"}));
        let report = &d.pushes[5].payload["report"];
        assert!(report.get("donations").is_none() && report.get("waqfs").is_none());
        assert_eq!(report["zakat_calculations"][0]["id"], "z2");
        assert_eq!(
            d.pushes[1].payload["message"],
            "Donations are not part of this report"
        );
    }

    #[test]
    fn cut_sections_are_named() {
        let mut records = records();
        let max = Section::Donations.max_items();
        records.donations = (0..=max)
            .map(|i| donation(&i.to_string(), 100, DonationStatus::Accepted))
            .collect();
        let view = View {
            records: Some(records),
            ..view()
        };
        let cmd = event(
            TOPIC,
            claims(Some("5"), &[]),
            "generate_report",
            json!({"type": "donations", "year": 2025}),
        );
        let d = decide(&cmd, &view);
        let report = &d.pushes[5].payload["report"];
        assert_eq!(report["donations"].as_array().map(Vec::len), Some(max));
        assert_eq!(report["truncated"], json!(["donations"]));
    }

    #[test]
    fn a_document_listing_is_cut_only_if_it_may_have_missed_the_year() {
        let max = Section::Zakat.max_items();
        let calculations = |oldest: &str| {
            let mut listed: Vec<Document> = (0..max)
                .map(|i| {
                    let id = format!("z{i}");
                    document(
                        ZAKAT_CALCULATION_KIND,
                        &id,
                        "2025-05-01T00:00:00Z",
                        json!({}),
                    )
                })
                .collect();
            listed.push(document(ZAKAT_CALCULATION_KIND, "old", oldest, json!({})));
            UserRecords {
                documents: vec![(ZAKAT_CALCULATION_KIND, listed)],
                ..UserRecords::default()
            }
        };
        let truncated = |records: UserRecords| {
            let view = View {
                records: Some(records),
                ..view()
            };
            let cmd = event(
                TOPIC,
                claims(Some("5"), &[]),
                "generate_report",
                json!({"type": "zakat", "year": 2025}),
            );
            decide(&cmd, &view).pushes[5].payload["report"]["truncated"].clone()
        };
        assert_eq!(
            truncated(calculations("2025-01-01T00:00:00Z")),
            json!(["zakat_calculations"])
        );
        assert_eq!(
            truncated(calculations("2024-12-31T00:00:00Z")),
            json!([]),
            "the listing reached back past the year"
        );
    }

    #[test]
    fn type_year_and_user_are_checked() {
        let d = generate_as("5", json!({"type": "weekly", "year": 1999}));
        assert_eq!(d.reply.clone().expect("reply").status, ReplyStatus::Error);
        assert_eq!(
            d.reply.expect("reply").response,
            json!({"errors": {"type": ["must be one of annual, donations, zakat, waqf"],
                              "year": ["must be a year from 2000 to 2026"]}})
        );
        assert!(d.pushes.is_empty());
        for (year, message) in [
            (json!(2027), "must be a year from 2000 to 2026"),
            (json!("twenty"), "must be a year such as 2026"),
            (json!(2025.5), "must be a year such as 2026"),
            (Value::Null, "can't be blank"),
        ] {
            let d = generate_as("5", json!({"type": "annual", "year": year}));
            assert_eq!(
                d.reply.expect("reply").response,
                json!({"errors": {"year": [message]}})
            );
        }
        assert_eq!(
            generate_as("6", json!({"type": "annual", "year": 2025})),
            Decision::refuse(Refusal::Unauthorized)
        );
    }

    #[test]
    fn needs_read_the_users_records_of_the_year() {
        let cmd = event(
            TOPIC,
            claims(Some("5"), &[]),
            "generate_report",
            json!({"type": "annual", "year": 2025}),
        );
        let needed = crate::needs(&cmd).records.expect("records");
        assert_eq!((needed.user_id.as_str(), needed.year), ("5", 2025));
        assert_eq!(needed.donation_limit, 501);
        assert_eq!(
            needed.documents,
            vec![(ZAKAT_CALCULATION_KIND, 201), (WAQF_ROLE_KIND, 101)]
        );
        let other = event(
            TOPIC,
            claims(Some("6"), &[]),
            "generate_report",
            json!({"type": "annual", "year": 2025}),
        );
        assert_eq!(
            crate::needs(&other).records,
            None,
            "nothing read for others"
        );
    }
}
