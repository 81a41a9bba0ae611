//! `admin:<anything>`: campaign creation, and donation moderation ([`super::moderation`]).

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use store::{Campaign, Visibility, Write};
use topics::events::{CampaignCreated, DomainEvent};
use topics::{Command, Refusal};

use super::campaign::{campaign_json, LOBBY};
use crate::decision::{Decision, NewBroadcast, View};
use crate::money::parse_amount;

const MAX_NAME: usize = 200;

/// Channel events on an admin topic.
pub(crate) fn handle_in(event: &str, payload: &Value, command: &Command, view: &View) -> Decision {
    match event {
        "create_campaign" => create_campaign(payload, command, view),
        "moderate_donation" => super::moderation::moderate(payload, command, view),
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

/// Reads a list of user ids given as strings or integers.
fn user_ids(value: Option<&Value>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
                _ => Err("must be a list of user ids".to_owned()),
            })
            .collect(),
        Some(_) => Err("must be a list of user ids".to_owned()),
    }
}

fn create_campaign(payload: &Value, command: &Command, view: &View) -> Decision {
    let mut errors = Map::new();
    let mut fail = |field: &str, message: String| {
        errors.insert(field.to_owned(), json!([message]));
    };
    let name = match payload.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= MAX_NAME => {
            n.clone()
        }
        Some(Value::String(n)) if !n.trim().is_empty() => {
            fail("name", format!("should be at most {MAX_NAME} character(s)"));
            String::new()
        }
        _ => {
            fail("name", "can't be blank".into());
            String::new()
        }
    };
    let goal = parse_amount(payload.get("goal")).unwrap_or_else(|e| {
        fail("goal", e.to_string());
        Decimal::ZERO
    });
    let currency = match payload.get("currency") {
        Some(Value::String(c)) if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase()) => {
            c.clone()
        }
        _ => {
            fail(
                "currency",
                "must be a three-letter ISO code such as USD".into(),
            );
            String::new()
        }
    };
    let visibility = match payload.get("visibility").and_then(Value::as_str) {
        Some("public") => Visibility::Public,
        Some("private") => Visibility::Private,
        _ => {
            fail("visibility", "must be \"public\" or \"private\"".into());
            Visibility::Public
        }
    };
    let organizer_ids = user_ids(payload.get("organizer_ids")).unwrap_or_else(|e| {
        fail("organizer_ids", e);
        Vec::new()
    });
    let member_ids = user_ids(payload.get("member_ids")).unwrap_or_else(|e| {
        fail("member_ids", e);
        Vec::new()
    });
    if !errors.is_empty() {
        return Decision::invalid(Value::Object(errors));
    }
    let Some(id) = view.new_campaign_id.clone() else {
        // The runner always allocates an id for create_campaign; without one nothing is stored.
        return Decision::refuse(Refusal::CampaignIdUnavailable);
    };
    let campaign = Campaign {
        id,
        name,
        goal,
        currency,
        visibility,
        organizer_ids,
        member_ids,
        total: Decimal::new(0, 2),
        donation_count: 0,
        milestones_reached: Vec::new(),
        created_at: view.now.clone(),
        version: 0,
        applied: Default::default(),
    };
    let body = campaign_json(&campaign);
    let created = CampaignCreated {
        command_id: command.id.clone(),
        campaign_id: campaign.id.clone(),
        name: campaign.name.clone(),
        goal: body["goal"].as_str().unwrap_or_default().to_owned(),
        currency: campaign.currency.clone(),
        visibility: body["visibility"].as_str().unwrap_or_default().to_owned(),
        created_at: campaign.created_at.clone(),
    };
    Decision {
        domain_events: vec![DomainEvent::CampaignCreated(created)],
        broadcasts: vec![NewBroadcast::new(
            LOBBY,
            "campaign_created",
            json!({ "campaign": body }),
        )],
        writes: vec![Write::PutCampaign(campaign)],
        ..Decision::ok(json!({ "campaign": body }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::decide;
    use crate::decision::View;
    use serde_json::json;

    #[test]
    fn creates_a_campaign_and_announces_it() {
        let view = View {
            new_campaign_id: Some("3".into()),
            now: "2026-01-01T00:00:00Z".into(),
            ..View::default()
        };
        let cmd = event(
            "admin:ops",
            claims(Some("1"), &["admin"]),
            "create_campaign",
            json!({"name": "Winter", "goal": "500", "currency": "USD",
                   "visibility": "private", "organizer_ids": [4, "5"]}),
        );
        let d = decide(&cmd, &view);
        let reply = d.reply.expect("reply");
        assert_eq!(reply.status, topics::ReplyStatus::Ok);
        assert_eq!(reply.response["campaign"]["id"], "3");
        assert_eq!(reply.response["campaign"]["goal"], "500.00");
        assert_eq!(d.broadcasts[0].topic, "donations:lobby");
        assert_eq!(d.broadcasts[0].event, "campaign_created");
        assert_eq!(d.writes.len(), 1);
    }

    #[test]
    fn refuses_invalid_campaigns() {
        let cmd = event(
            "admin:ops",
            claims(Some("1"), &["admin"]),
            "create_campaign",
            json!({"goal": "0", "currency": "usd", "visibility": "secret", "organizer_ids": "1"}),
        );
        let d = decide(&cmd, &View::default());
        let errors = &d.reply.expect("reply").response["errors"];
        for field in ["name", "goal", "currency", "visibility", "organizer_ids"] {
            assert!(
                errors.get(field).is_some(),
                "{field} should be reported: {errors}"
            );
        }
        assert!(d.writes.is_empty());
    }
}
