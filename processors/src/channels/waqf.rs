//! `waqf:public` `create_waqf`: an endowment with trustees and beneficiaries.
//!
//! Three audiences see a waqf: the public its minimal view (`id`, `type`, `created_at`), its
//! trustees the full record, each beneficiary the public view and its own allocation only.
//! On `waqf:public`, which anyone may join, one `waqf_created` broadcast carries the public
//! view and [`Transform::Reveal`]s for the trustees and for each beneficiary, so the
//! connector shapes it per socket and encodes it once per audience. Each trustee also hears
//! `waqf_assigned` on `waqf:trustee:<id>`, each beneficiary `waqf_available` on
//! `waqf:beneficiary:<id>` (topics only that user may join).
//!
//! Stored as documents: the record under its creator ([`WAQF_KIND`]), and for each user it
//! concerns (creator, trustees, beneficiaries) that user's view and roles
//! ([`WAQF_ROLE_KIND`]), which reports list.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use store::{Document, Write};
use topics::broadcast::MASKED_TRANSFORMS;
use topics::{Audience, Command, Refusal, Transform};

use crate::decision::{Decision, NewBroadcast, View};
use crate::money::{format_money, parse_amount};

/// The document kind of a waqf's full record, listed under its creator.
pub(crate) const WAQF_KIND: &str = "waqf";
/// The document kind of one user's part in a waqf (`{waqf_id, roles, waqf}`, the waqf as that
/// user may see it), listed under that user.
pub(crate) const WAQF_ROLE_KIND: &str = "waqf_role";
/// The public topic.
const PUBLIC: &str = "waqf:public";
const MAX_TYPE: usize = 50;
const MAX_NAME: usize = 200;
const MAX_TRUSTEES: usize = 20;
/// Each beneficiary has a reveal of its own on the public broadcast, next to the trustees'
/// one: all must fit in the mask the connector tells variants apart by.
const MAX_BENEFICIARIES: usize = 50;
const _: () = assert!(MAX_BENEFICIARIES < MASKED_TRANSFORMS);

/// Channel events on `waqf:public`.
pub(crate) fn handle_in(event: &str, payload: &Value, command: &Command, view: &View) -> Decision {
    match event {
        "create_waqf" => create(payload, command, view),
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

/// Validation errors by field, each field with its messages.
#[derive(Default)]
struct Errors(Map<String, Value>);

impl Errors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        if let Value::Array(list) = self
            .0
            .entry(field)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::String(message.into()));
        }
    }
}

/// A required string of at most `max` characters.
fn text(errors: &mut Errors, payload: &Value, field: &str, max: usize) -> String {
    match payload.get(field) {
        Some(Value::String(s)) if s.trim().is_empty() => errors.add(field, "can't be blank"),
        Some(Value::String(s)) if s.chars().count() > max => {
            errors.add(field, format!("should be at most {max} character(s)"));
        }
        Some(Value::String(s)) => return s.clone(),
        None | Some(Value::Null) => errors.add(field, "can't be blank"),
        Some(_) => errors.add(field, "must be a string"),
    }
    String::new()
}

/// A user id given as a non-blank string or an integer.
fn user_id(value: Option<&Value>) -> Result<String, &'static str> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        _ => Err("can't be blank"),
    }
}

/// The items of a list field of 1 to `max` objects.
fn items<'a>(errors: &mut Errors, payload: &'a Value, field: &str, max: usize) -> &'a [Value] {
    match payload.get(field) {
        Some(Value::Array(list)) if list.is_empty() => {
            errors.add(field, "should have at least 1 item(s)")
        }
        Some(Value::Array(list)) if list.len() > max => {
            errors.add(field, format!("should have at most {max} item(s)"));
        }
        Some(Value::Array(list)) => return list,
        None | Some(Value::Null) => errors.add(field, "can't be blank"),
        Some(_) => errors.add(field, "must be a list"),
    }
    &[]
}

/// Reads the `user_id` of each item of `field`, and what `read` makes of the rest; each user
/// once.
fn people<T>(
    errors: &mut Errors,
    payload: &Value,
    field: &str,
    max: usize,
    mut read: impl FnMut(&mut Errors, &str, &Value) -> Option<T>,
) -> Vec<(String, T)> {
    let mut found = Vec::new();
    for (i, item) in items(errors, payload, field, max).iter().enumerate() {
        let at = format!("{field}[{i}]");
        let id = user_id(item.get("user_id"))
            .map_err(|e| errors.add(&format!("{at}.user_id"), e))
            .ok();
        let rest = read(errors, &at, item);
        if let (Some(id), Some(rest)) = (id, rest) {
            if found.iter().any(|(seen, _)| *seen == id) {
                errors.add(field, format!("must not list user {id} twice"));
            } else {
                found.push((id, rest));
            }
        }
    }
    found
}

fn create(payload: &Value, command: &Command, view: &View) -> Decision {
    let Some(creator) = command.claims.user_id.clone() else {
        return Decision::refuse(Refusal::Unauthorized);
    };
    let mut errors = Errors::default();
    let kind = text(&mut errors, payload, "type", MAX_TYPE);
    let name = text(&mut errors, payload, "name", MAX_NAME);
    let trustees = people(&mut errors, payload, "trustees", MAX_TRUSTEES, |_, _, _| {
        Some(())
    });
    let beneficiaries = people(
        &mut errors,
        payload,
        "beneficiaries",
        MAX_BENEFICIARIES,
        |errors, at, item| {
            parse_amount(item.get("allocation"))
                .map_err(|e| errors.add(&format!("{at}.allocation"), e.to_string()))
                .ok()
        },
    );
    if !errors.0.is_empty() {
        return Decision::invalid(Value::Object(errors.0));
    }

    let id = command.id.clone();
    let trustee_ids: Vec<String> = trustees.into_iter().map(|(id, ())| id).collect();
    let total: Decimal = beneficiaries.iter().map(|(_, a)| *a).sum();
    let record = json!({
        "id": id,
        "type": kind,
        "name": name,
        "created_by": creator,
        "created_at": view.now,
        "trustees": trustee_ids.iter().map(|u| json!({"user_id": u})).collect::<Vec<_>>(),
        "beneficiaries": beneficiaries
            .iter()
            .map(|(u, a)| json!({"user_id": u, "allocation": format_money(*a)}))
            .collect::<Vec<_>>(),
        "total_allocation": format_money(total),
    });
    let public = json!({ "id": id, "type": kind, "created_at": view.now });

    let trustees_see = Transform::Reveal {
        path: vec!["waqf".into()],
        value: record.clone(),
        visible_to: Audience::users(trustee_ids.iter().cloned()),
    };
    let each_sees_its_own = beneficiaries
        .iter()
        .map(|(user, allocation)| Transform::Reveal {
            path: vec!["benefit_amount".into()],
            value: json!(format_money(*allocation)),
            visible_to: Audience::users([user.clone()]),
        });
    let mut broadcasts = vec![NewBroadcast {
        topic: PUBLIC.into(),
        event: "waqf_created".into(),
        payload: public.clone(),
        transforms: std::iter::once(trustees_see)
            .chain(each_sees_its_own)
            .collect(),
        position: None,
    }];
    broadcasts.extend(trustee_ids.iter().map(|user| {
        NewBroadcast::new(
            format!("waqf:trustee:{user}"),
            "waqf_assigned",
            json!({ "waqf": record }),
        )
    }));
    broadcasts.extend(beneficiaries.iter().map(|(user, allocation)| {
        NewBroadcast::new(
            format!("waqf:beneficiary:{user}"),
            "waqf_available",
            json!({ "id": id, "benefit_amount": format_money(*allocation) }),
        )
    }));

    // Each user's part: roles in a fixed order, and the view those roles allow.
    let mut roles: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    roles.entry(&creator).or_default().push("creator");
    for user in &trustee_ids {
        roles.entry(user).or_default().push("trustee");
    }
    for (user, _) in &beneficiaries {
        roles.entry(user).or_default().push("beneficiary");
    }
    let document = |kind: &str, id: String, owner: &str, body: Value| {
        Write::PutDocument(Document {
            kind: kind.to_owned(),
            id,
            owner: owner.to_owned(),
            created_at: view.now.clone(),
            body,
        })
    };
    let mut writes = vec![document(WAQF_KIND, id.clone(), &creator, record.clone())];
    for (user, roles) in &roles {
        let full = roles.iter().any(|r| *r != "beneficiary");
        let seen = if full {
            record.clone()
        } else {
            let mut own = public.clone();
            own["name"] = json!(name);
            if let Some((_, allocation)) = beneficiaries.iter().find(|(u, _)| u == user) {
                own["benefit_amount"] = json!(format_money(*allocation));
            }
            own
        };
        let key = json!([id, user]).to_string();
        let body = json!({ "waqf_id": id, "roles": roles, "waqf": seen });
        writes.push(document(WAQF_ROLE_KIND, key, user, body));
    }
    Decision {
        broadcasts,
        writes,
        ..Decision::ok(json!({ "waqf": record }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::decide;
    use topics::Claims;

    fn view() -> View {
        View {
            now: "2026-03-01T10:00:00.000Z".into(),
            ..View::default()
        }
    }

    fn create_as(user: Option<&str>, payload: Value) -> Decision {
        let cmd = event(PUBLIC, claims(user, &[]), "create_waqf", payload);
        decide(&cmd, &view())
    }

    fn valid() -> Value {
        json!({
            "type": "khayri",
            "name": "Well in Tarim",
            "trustees": [{"user_id": "t1"}, {"user_id": 12}],
            "beneficiaries": [
                {"user_id": "b1", "allocation": "100.50"},
                {"user_id": "b2", "allocation": 250},
            ],
        })
    }

    #[test]
    fn creates_a_waqf_and_stores_it_under_everyone_it_concerns() {
        let d = create_as(Some("c"), valid());
        let reply = d.reply.clone().expect("reply");
        assert_eq!(reply.status, topics::ReplyStatus::Ok);
        let waqf = &reply.response["waqf"];
        assert_eq!(waqf["id"], "cmd-1");
        assert_eq!(waqf["created_by"], "c");
        assert_eq!(
            waqf["trustees"],
            json!([{"user_id": "t1"}, {"user_id": "12"}])
        );
        assert_eq!(waqf["beneficiaries"][1]["allocation"], "250.00");
        assert_eq!(waqf["total_allocation"], "350.50");
        let documents: Vec<(&str, &str, &Value)> = d
            .writes
            .iter()
            .map(|w| match w {
                Write::PutDocument(doc) => (doc.kind.as_str(), doc.owner.as_str(), &doc.body),
                other => panic!("only documents: {other:?}"),
            })
            .collect();
        assert_eq!(documents[0], (WAQF_KIND, "c", waqf));
        let parts: Vec<(&str, Value, &Value)> = documents[1..]
            .iter()
            .map(|(_, owner, body)| (*owner, body["roles"].clone(), &body["waqf"]))
            .collect();
        assert_eq!(
            parts
                .iter()
                .map(|(o, r, _)| (*o, r.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("12", json!(["trustee"])),
                ("b1", json!(["beneficiary"])),
                ("b2", json!(["beneficiary"])),
                ("c", json!(["creator"])),
                ("t1", json!(["trustee"])),
            ]
        );
        assert_eq!(parts[0].2, waqf, "a trustee's part is the full record");
        assert_eq!(
            *parts[1].2,
            json!({"id": "cmd-1", "type": "khayri", "created_at": "2026-03-01T10:00:00.000Z",
                   "name": "Well in Tarim", "benefit_amount": "100.50"}),
            "a beneficiary's part has its own allocation only"
        );
    }

    #[test]
    fn broadcasts_reach_three_audiences() {
        let d = create_as(Some("c"), valid());
        let topics: Vec<(&str, &str)> = d
            .broadcasts
            .iter()
            .map(|b| (b.topic.as_str(), b.event.as_str()))
            .collect();
        assert_eq!(
            topics,
            vec![
                ("waqf:public", "waqf_created"),
                ("waqf:trustee:t1", "waqf_assigned"),
                ("waqf:trustee:12", "waqf_assigned"),
                ("waqf:beneficiary:b1", "waqf_available"),
                ("waqf:beneficiary:b2", "waqf_available"),
            ]
        );
        assert_eq!(
            d.broadcasts[4].payload,
            json!({"id": "cmd-1", "benefit_amount": "250.00"})
        );
        let full = d.reply.clone().expect("reply").response["waqf"].clone();
        assert_eq!(d.broadcasts[1].payload, json!({ "waqf": full }));

        let cmd = event(PUBLIC, claims(Some("c"), &[]), "create_waqf", valid());
        let public = &d.outcome(&cmd).broadcasts[0];
        let minimal = json!({"id": "cmd-1", "type": "khayri",
                             "created_at": "2026-03-01T10:00:00.000Z"});
        assert_eq!(public.payload, minimal);
        let sees = |user: Option<&str>| -> Value {
            let claims = claims(user, &[]);
            public
                .payload_for(&claims)
                .unwrap_or_else(|| public.payload.clone())
        };
        assert_eq!(sees(None), minimal);
        assert_eq!(sees(Some("c")), minimal, "the creator has its reply");
        assert_eq!(sees(Some("t1"))["waqf"], full);
        assert_eq!(sees(Some("12"))["waqf"], full);
        let b1 = sees(Some("b1"));
        assert_eq!(b1["benefit_amount"], "100.50");
        assert!(b1.get("waqf").is_none(), "no other allocation: {b1}");
        assert_eq!(sees(Some("b2"))["benefit_amount"], "250.00");
        let admin = Claims {
            roles: vec!["admin".into()],
            ..claims(Some("a"), &[])
        };
        assert_eq!(public.payload_for(&admin), None);
    }

    #[test]
    fn a_trustee_who_is_also_a_beneficiary_sees_both() {
        let mut payload = valid();
        payload["beneficiaries"][0]["user_id"] = json!("t1");
        let d = create_as(Some("c"), payload);
        let cmd = event(PUBLIC, claims(Some("c"), &[]), "create_waqf", valid());
        let both = d.outcome(&cmd).broadcasts[0]
            .payload_for(&claims(Some("t1"), &[]))
            .expect("revealed");
        assert_eq!(both["benefit_amount"], "100.50");
        assert_eq!(both["waqf"]["total_allocation"], "350.50");
    }

    #[test]
    fn anonymous_sockets_may_not_create() {
        assert_eq!(
            create_as(None, valid()),
            Decision::refuse(Refusal::Unauthorized)
        );
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let d = create_as(
            Some("c"),
            json!({
                "type": "",
                "name": "n".repeat(201),
                "trustees": [],
                "beneficiaries": [
                    {"user_id": "b1", "allocation": "-1"},
                    {"allocation": "1.005"},
                    {"user_id": "b3", "allocation": "5"},
                    {"user_id": "b3", "allocation": "6"},
                ],
            }),
        );
        assert!(d.writes.is_empty() && d.broadcasts.is_empty());
        assert_eq!(
            d.reply.expect("reply").response,
            json!({"errors": {
                "type": ["can't be blank"],
                "name": ["should be at most 200 character(s)"],
                "trustees": ["should have at least 1 item(s)"],
                "beneficiaries[0].allocation": ["must be greater than 0"],
                "beneficiaries[1].user_id": ["can't be blank"],
                "beneficiaries[1].allocation": ["must have at most 2 decimal places"],
                "beneficiaries": ["must not list user b3 twice"],
            }})
        );
        let too_many: Vec<Value> = (0..=MAX_BENEFICIARIES)
            .map(|i| json!({"user_id": i, "allocation": "1"}))
            .collect();
        let mut payload = valid();
        payload["beneficiaries"] = json!(too_many);
        payload["trustees"] = json!("t1");
        assert_eq!(
            create_as(Some("c"), payload).reply.expect("reply").response,
            json!({"errors": {
                "trustees": ["must be a list"],
                "beneficiaries": ["should have at most 50 item(s)"],
            }})
        );
    }
}
