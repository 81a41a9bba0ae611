//! `donations:campaign:<id>`: who may join, donations, goal changes and milestones.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use store::{Campaign, Donation, Visibility, Write};
use topics::events::{DomainEvent, DonationCreated, GoalUpdated, MilestoneReached};
use topics::{Audience, Claims, Command, CommandKind, Refusal, Transform};

use crate::decision::{Decision, NewBroadcast, View};
use crate::money::{format_money, parse_amount};

/// The lobby topic, which also hears about milestones.
pub(crate) const LOBBY: &str = "donations:lobby";
/// What sockets outside a campaign's organizers and admins see instead of a donor's name.
pub(crate) const ANONYMOUS: &str = "Anonymous";
/// Percentages of the goal that are announced when crossed.
pub(crate) const MILESTONES: [u32; 4] = [25, 50, 75, 100];
const MAX_DONOR_NAME: usize = 100;
/// Longest client idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 100;

/// The id a `new_donation`'s `idempotency_key` stores its outcome under, if it has a valid
/// one: scoped by topic and user (anonymous sockets share one scope), so one user's key never
/// answers another's. Written as a JSON array, so no key can be mistaken for another.
pub(crate) fn idempotency_alias(command: &Command) -> Option<String> {
    let CommandKind::Event { event, payload } = &command.kind else {
        return None;
    };
    if event != "new_donation" {
        return None;
    }
    let Some(Value::String(key)) = payload.get("idempotency_key") else {
        return None;
    };
    if key.trim().is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY {
        return None;
    }
    let user = command.claims.user_id.as_deref().unwrap_or_default();
    Some(format!("idempotency:{}", json!([command.topic, user, key])))
}

fn topic(campaign: &Campaign) -> String {
    format!("donations:campaign:{}", campaign.id)
}

fn is_organizer(campaign: &Campaign, claims: &Claims) -> bool {
    claims
        .user_id
        .as_ref()
        .is_some_and(|id| campaign.organizer_ids.contains(id))
}

/// The campaign as clients see it. `version` orders it against `donation_created`: a
/// donation whose `version` is at most the state's is already in it.
pub(crate) fn campaign_json(campaign: &Campaign) -> Value {
    json!({
        "id": campaign.id,
        "name": campaign.name,
        "goal": format_money(campaign.goal),
        "total": format_money(campaign.total),
        "currency": campaign.currency,
        "donation_count": campaign.donation_count,
        "visibility": campaign.visibility,
        "version": campaign.version,
    })
}

/// The join decision: campaign exists and is public, or the user organizes it, is a member,
/// or is an admin. On success the socket is pushed `campaign_state`.
pub(crate) fn join(claims: &Claims, view: &View) -> Decision {
    let Some(campaign) = &view.campaign else {
        return Decision::refuse(Refusal::NotFound);
    };
    let member = claims
        .user_id
        .as_ref()
        .is_some_and(|id| campaign.member_ids.contains(id));
    let allowed = campaign.visibility == Visibility::Public
        || is_organizer(campaign, claims)
        || member
        || claims.has_role("admin");
    if !allowed {
        return Decision::refuse(Refusal::Unauthorized);
    }
    Decision::ok(json!({})).push(
        "campaign_state",
        json!({ "campaign": campaign_json(campaign) }),
    )
}

/// Channel events on a campaign.
pub(crate) fn handle_in(event: &str, payload: &Value, command: &Command, view: &View) -> Decision {
    let Some(campaign) = &view.campaign else {
        return Decision::refuse(Refusal::NotFound);
    };
    match event {
        "new_donation" => new_donation(payload, command, campaign, view),
        "update_goal" => update_goal(payload, command, campaign, view),
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

fn add_error(errors: &mut Map<String, Value>, field: &str, message: String) {
    if let Value::Array(list) = errors
        .entry(field)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        list.push(Value::String(message));
    }
}

/// `new_donation` (and an import's row): validated, counted, broadcast.
pub(crate) fn new_donation(
    payload: &Value,
    command: &Command,
    campaign: &Campaign,
    view: &View,
) -> Decision {
    let mut errors = Map::new();
    let amount = parse_amount(payload.get("amount"))
        .map_err(|e| add_error(&mut errors, "amount", e.to_string()))
        .ok();
    let donor_name = match payload.get("donor_name") {
        Some(Value::String(name)) if !name.trim().is_empty() => {
            if name.chars().count() > MAX_DONOR_NAME {
                add_error(
                    &mut errors,
                    "donor_name",
                    format!("should be at most {MAX_DONOR_NAME} character(s)"),
                );
            }
            Some(name.clone())
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {
            add_error(&mut errors, "donor_name", "can't be blank".into());
            None
        }
        Some(_) => {
            add_error(&mut errors, "donor_name", "must be a string".into());
            None
        }
    };
    match payload.get("idempotency_key") {
        None | Some(Value::Null) => {}
        Some(Value::String(key)) if key.trim().is_empty() => {
            add_error(&mut errors, "idempotency_key", "can't be blank".into());
        }
        Some(Value::String(key)) if key.chars().count() > MAX_IDEMPOTENCY_KEY => add_error(
            &mut errors,
            "idempotency_key",
            format!("should be at most {MAX_IDEMPOTENCY_KEY} character(s)"),
        ),
        Some(Value::String(_)) => {}
        Some(_) => add_error(&mut errors, "idempotency_key", "must be a string".into()),
    }
    match payload.get("currency") {
        None | Some(Value::Null) => {}
        Some(Value::String(c)) if *c == campaign.currency => {}
        Some(_) => add_error(
            &mut errors,
            "currency",
            format!("must match the campaign currency ({})", campaign.currency),
        ),
    }
    let (Some(amount), Some(donor_name), true) = (amount, donor_name, errors.is_empty()) else {
        return Decision::invalid(Value::Object(errors));
    };

    let donation = Donation {
        id: command.id.clone(),
        campaign_id: campaign.id.clone(),
        amount,
        currency: campaign.currency.clone(),
        donor_name,
        user_id: command.claims.user_id.clone(),
        inserted_at: view.now.clone(),
        status: Default::default(),
    };
    let mut updated = campaign.clone();
    updated.total += amount;
    updated.donation_count += 1;
    let crossed = crossed_milestones(campaign.total, updated.total, campaign);
    updated
        .milestones_reached
        .extend(crossed.iter().map(|m| milestone_key(campaign.goal, *m)));

    let topic = topic(campaign);
    let mut broadcasts = vec![NewBroadcast {
        topic: topic.clone(),
        event: "donation_created".into(),
        payload: json!({
            "donation": {
                "id": donation.id,
                "campaign_id": donation.campaign_id,
                "amount": format_money(donation.amount),
                "currency": donation.currency,
                "donor_name": donation.donor_name,
                "inserted_at": donation.inserted_at,
            },
            "new_total": format_money(updated.total),
            // The version the campaign's write of this donation stores (a group's writes
            // store one version: every donation of it is in a state read at or after it).
            "version": campaign.version + 1,
        }),
        transforms: vec![Transform::Redact {
            path: vec!["donation".into(), "donor_name".into()],
            replacement: json!(ANONYMOUS),
            visible_to: Audience {
                user_ids: campaign.organizer_ids.clone(),
                roles: vec!["admin".into()],
            },
        }],
        position: None,
    }];
    let mut domain_events = vec![DomainEvent::DonationCreated(DonationCreated {
        command_id: command.id.clone(),
        donation_id: donation.id.clone(),
        campaign_id: campaign.id.clone(),
        amount: format_money(donation.amount),
        currency: donation.currency.clone(),
        new_total: format_money(updated.total),
        inserted_at: donation.inserted_at.clone(),
        user_id: donation.user_id.clone(),
    })];
    for milestone in crossed {
        let payload = json!({ "campaign_id": campaign.id, "milestone": milestone });
        broadcasts.push(NewBroadcast::new(
            topic.clone(),
            "milestone_reached",
            payload.clone(),
        ));
        broadcasts.push(NewBroadcast::new(LOBBY, "milestone_reached", payload));
        domain_events.push(DomainEvent::MilestoneReached(MilestoneReached {
            command_id: command.id.clone(),
            campaign_id: campaign.id.clone(),
            milestone: i32::try_from(milestone).unwrap_or(i32::MAX),
            goal: format_money(campaign.goal),
            total: format_money(updated.total),
            reached_at: view.now.clone(),
        }));
    }
    let mut writes = vec![
        Write::PutCampaign(updated),
        Write::InsertDonation(donation.clone()),
    ];
    writes.extend(idempotency_alias(command).map(Write::OutcomeAlias));
    Decision {
        broadcasts,
        writes,
        domain_events,
        ..Decision::ok(json!({ "donation_id": donation.id }))
    }
}

fn milestone_key(goal: Decimal, percent: u32) -> String {
    format!("{}@{percent}", format_money(goal))
}

/// Thresholds crossed going from `before` to `after`, ascending, skipping any already
/// announced for this goal.
fn crossed_milestones(before: Decimal, after: Decimal, campaign: &Campaign) -> Vec<u32> {
    MILESTONES
        .into_iter()
        .filter(|percent| {
            let threshold = campaign.goal * Decimal::from(*percent) / Decimal::from(100);
            before < threshold
                && after >= threshold
                && !campaign
                    .milestones_reached
                    .contains(&milestone_key(campaign.goal, *percent))
        })
        .collect()
}

fn update_goal(payload: &Value, command: &Command, campaign: &Campaign, view: &View) -> Decision {
    let claims = &command.claims;
    if !(is_organizer(campaign, claims) || claims.has_role("admin")) {
        return Decision::refuse(Refusal::Unauthorized);
    }
    let new_goal = match parse_amount(payload.get("new_goal")) {
        Ok(goal) => goal,
        Err(e) => return Decision::invalid(json!({ "new_goal": [e.to_string()] })),
    };
    let mut updated = campaign.clone();
    updated.goal = new_goal;
    Decision {
        broadcasts: vec![NewBroadcast::new(
            topic(campaign),
            "goal_updated",
            json!({ "new_goal": format_money(new_goal) }),
        )],
        writes: vec![Write::PutCampaign(updated.clone())],
        domain_events: vec![DomainEvent::GoalUpdated(GoalUpdated {
            command_id: command.id.clone(),
            campaign_id: campaign.id.clone(),
            old_goal: format_money(campaign.goal),
            new_goal: format_money(new_goal),
            updated_by: claims.user_id.clone(),
            updated_at: view.now.clone(),
        })],
        ..Decision::ok(json!({ "campaign": campaign_json(&updated) }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{self as support, *};
    use super::*;
    use crate::decide;
    use store::conformance::sample_campaign;

    fn view_with(campaign: Campaign) -> View {
        View {
            campaign: Some(campaign),
            now: "2026-01-01T00:00:00Z".into(),
            ..View::default()
        }
    }

    fn private() -> Campaign {
        let mut c = sample_campaign("2");
        c.visibility = Visibility::Private;
        c.organizer_ids = vec!["2".into()];
        c.member_ids = vec!["3".into()];
        c
    }

    fn join_status(claims: Claims, view: &View) -> Value {
        let cmd = support::join("donations:campaign:2", claims);
        let d = decide(&cmd, view);
        let reply = d.reply.expect("reply");
        json!([reply.status, reply.response])
    }

    #[test]
    fn join_authorization() {
        let view = view_with(private());
        assert_eq!(join_status(claims(Some("2"), &[]), &view)[0], "ok");
        assert_eq!(join_status(claims(Some("3"), &[]), &view)[0], "ok");
        assert_eq!(join_status(claims(Some("9"), &["admin"]), &view)[0], "ok");
        assert_eq!(
            join_status(claims(Some("4"), &[]), &view),
            json!(["error", {"reason": "unauthorized"}])
        );
        assert_eq!(
            join_status(claims(None, &[]), &View::default()),
            json!(["error", {"reason": "not found"}])
        );
        let public = view_with(sample_campaign("1"));
        let cmd = support::join("donations:campaign:1", claims(None, &[]));
        let d = decide(&cmd, &public);
        assert_eq!(d.pushes[0].event, "presence_state");
        assert_eq!(d.pushes[1].event, "campaign_state");
        assert_eq!(d.pushes[1].payload["campaign"]["goal"], "10000.00");
    }

    #[test]
    fn donation_updates_totals_and_redacts_for_viewers() {
        let view = view_with(sample_campaign("1"));
        let cmd = event(
            "donations:campaign:1",
            claims(Some("5"), &[]),
            "new_donation",
            json!({"amount": "12.50", "donor_name": "Aisha"}),
        );
        let d = decide(&cmd, &view);
        assert_eq!(
            d.reply.as_ref().expect("reply").response,
            json!({"donation_id": "cmd-1"})
        );
        let created = &d.broadcasts[0];
        assert_eq!(created.payload["new_total"], "12.50");
        let outcome = d.outcome(&cmd);
        let broadcast = &outcome.broadcasts[0];
        assert_eq!(broadcast.id, "cmd-1:0");
        let viewer = broadcast
            .payload_for(&claims(Some("5"), &[]))
            .expect("redacted");
        assert_eq!(viewer["donation"]["donor_name"], "Anonymous");
        assert_eq!(broadcast.payload_for(&claims(Some("1"), &[])), None);
        match &d.writes[0] {
            Write::PutCampaign(c) => {
                assert_eq!(c.total, Decimal::new(1250, 2));
                assert_eq!(c.donation_count, 1);
            }
            other => panic!("unexpected write {other:?}"),
        }
    }

    #[test]
    fn idempotency_keys_are_validated_scoped_and_stored_as_an_alias() {
        let view = view_with(sample_campaign("1"));
        let donate = |user: Option<&str>, key: Value| {
            event(
                "donations:campaign:1",
                claims(user, &[]),
                "new_donation",
                json!({"amount": "5", "donor_name": "Sam", "idempotency_key": key}),
            )
        };
        for (key, message) in [
            (json!(""), "can't be blank"),
            (json!("k".repeat(101)), "should be at most 100 character(s)"),
            (json!(7), "must be a string"),
        ] {
            let d = decide(&donate(Some("4"), key), &view);
            assert_eq!(
                d.reply.expect("reply").response,
                json!({"errors": {"idempotency_key": [message]}})
            );
        }
        let keyed = donate(Some("4"), json!("retry-1"));
        let alias = idempotency_alias(&keyed).expect("an alias");
        assert!(decide(&keyed, &view)
            .writes
            .contains(&Write::OutcomeAlias(alias.clone())));
        assert_eq!(crate::needs(&keyed).alias.as_deref(), Some(alias.as_str()));
        let other_user = idempotency_alias(&donate(Some("5"), json!("retry-1")));
        assert_ne!(
            other_user.as_deref(),
            Some(alias.as_str()),
            "scoped by user"
        );
        let unkeyed = donate(Some("4"), Value::Null);
        assert_eq!(idempotency_alias(&unkeyed), None);
        assert!(!decide(&unkeyed, &view)
            .writes
            .iter()
            .any(|w| matches!(w, Write::OutcomeAlias(_))));
    }

    #[test]
    fn validation_errors_list_every_field() {
        let view = view_with(sample_campaign("1"));
        let cmd = event(
            "donations:campaign:1",
            claims(None, &[]),
            "new_donation",
            json!({"amount": "-1", "donor_name": "x".repeat(101), "currency": "EUR"}),
        );
        let d = decide(&cmd, &view);
        assert!(d.writes.is_empty() && d.broadcasts.is_empty());
        assert_eq!(
            d.reply.expect("reply").response,
            json!({"errors": {
                "amount": ["must be greater than 0"],
                "donor_name": ["should be at most 100 character(s)"],
                "currency": ["must match the campaign currency (USD)"],
            }})
        );
        let blank = event(
            "donations:campaign:1",
            claims(None, &[]),
            "new_donation",
            json!({}),
        );
        assert_eq!(
            decide(&blank, &view).reply.expect("reply").response,
            json!({"errors": {"amount": ["can't be blank"], "donor_name": ["can't be blank"]}})
        );
    }

    #[test]
    fn one_donation_crosses_several_milestones_once() {
        let mut campaign = sample_campaign("1");
        campaign.total = Decimal::new(100_000, 2); // 1000.00 of 10000.00
        let view = view_with(campaign.clone());
        let cmd = event(
            "donations:campaign:1",
            claims(None, &[]),
            "new_donation",
            json!({"amount": "5000", "donor_name": "Big"}),
        );
        let d = decide(&cmd, &view);
        let milestones: Vec<(String, Value)> = d
            .broadcasts
            .iter()
            .filter(|b| b.event == "milestone_reached")
            .map(|b| (b.topic.clone(), b.payload["milestone"].clone()))
            .collect();
        assert_eq!(
            d.domain_events
                .iter()
                .map(|e| match e {
                    DomainEvent::DonationCreated(_) => 0,
                    DomainEvent::MilestoneReached(m) => m.milestone,
                    _ => -1,
                })
                .collect::<Vec<_>>(),
            vec![0, 25, 50],
            "a DonationCreated then one MilestoneReached per threshold"
        );
        assert_eq!(
            milestones,
            vec![
                ("donations:campaign:1".into(), json!(25)),
                (LOBBY.into(), json!(25)),
                ("donations:campaign:1".into(), json!(50)),
                (LOBBY.into(), json!(50)),
            ]
        );
        // The same thresholds are not announced again for the same goal.
        let Write::PutCampaign(after) = &d.writes[0] else {
            panic!("campaign write first")
        };
        let mut dropped = after.clone();
        dropped.total = Decimal::new(100_000, 2);
        let again = decide(&cmd, &view_with(dropped));
        assert!(again
            .broadcasts
            .iter()
            .all(|b| b.event != "milestone_reached"));
    }

    #[test]
    fn update_goal_needs_rights() {
        let view = view_with(sample_campaign("1"));
        let by = |c: Claims| {
            decide(
                &event(
                    "donations:campaign:1",
                    c,
                    "update_goal",
                    json!({"new_goal": "20000"}),
                ),
                &view,
            )
        };
        assert_eq!(
            by(claims(Some("5"), &[])),
            Decision::refuse(Refusal::Unauthorized)
        );
        let ok = by(claims(Some("1"), &[]));
        assert_eq!(
            ok.reply.expect("reply").response["campaign"]["goal"],
            "20000.00"
        );
        assert_eq!(ok.broadcasts[0].payload, json!({"new_goal": "20000.00"}));
        assert_eq!(by(claims(Some("9"), &["admin"])).broadcasts.len(), 1);
    }
}
