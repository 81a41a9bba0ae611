//! `admin:<x>` `moderate_donation`: approve, flag or reject a donation, by the moderator's
//! roles (super_admin: any; admin: approve and flag).
//!
//! Every change of status is a campaign write (the donation's campaign, put back with the
//! donation), even when the total does not move: the campaign's compare-and-set then orders
//! all moderations of its donations, whichever admin topic (and command partition) they come
//! from, and its fence makes each one count once. A rejection takes the donation out of the
//! total and the count and tells the campaign's subscribers; it is final: rejecting again
//! changes nothing, approving or flagging a rejected donation is refused.

use serde_json::{json, Map, Value};
use store::{Donation, DonationStatus, Write};
use topics::events::{DomainEvent, DonationModerated};
use topics::{Claims, Command, CommandKind, Refusal};

use crate::decision::{Decision, NewBroadcast, View};
use crate::money::format_money;

/// Longest donation id accepted.
const MAX_DONATION_ID: usize = 200;

/// What a moderator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Approve,
    Flag,
    Reject,
}

impl Action {
    fn parse(value: Option<&Value>) -> Result<Self, String> {
        match value.and_then(Value::as_str) {
            Some("approve") => Ok(Action::Approve),
            Some("flag") => Ok(Action::Flag),
            Some("reject") => Ok(Action::Reject),
            None if value.is_none_or(Value::is_null) => Err("can't be blank".into()),
            _ => Err("must be one of approve, flag, reject".into()),
        }
    }

    /// The status the donation has after it.
    fn status(self) -> DonationStatus {
        match self {
            Action::Approve => DonationStatus::Approved,
            Action::Flag => DonationStatus::Flagged,
            Action::Reject => DonationStatus::Rejected,
        }
    }

    /// Whether `claims` may take this action: a super_admin any, an admin all but reject.
    fn allowed(self, claims: &Claims) -> bool {
        claims.has_role("super_admin") || (claims.has_role("admin") && self != Action::Reject)
    }
}

/// Reads a donation id given as a string or an integer.
fn parse_donation_id(value: Option<&Value>) -> Result<String, String> {
    match value {
        Some(Value::String(id)) if id.trim().is_empty() => Err("can't be blank".into()),
        Some(Value::String(id)) if id.chars().count() > MAX_DONATION_ID => {
            Err(format!("should be at most {MAX_DONATION_ID} character(s)"))
        }
        Some(Value::String(id)) => Ok(id.clone()),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        None | Some(Value::Null) => Err("can't be blank".into()),
        Some(_) => Err("must be a string".into()),
    }
}

/// The donation a `moderate_donation` command names, for [`Needs::donation`]
/// (crate::decision::Needs), if it names one validly.
pub(crate) fn donation_needed(command: &Command) -> Option<String> {
    let CommandKind::Event { event, payload } = &command.kind else {
        return None;
    };
    (event == "moderate_donation")
        .then(|| parse_donation_id(payload.get("donation_id")).ok())
        .flatten()
}

/// A donation as a moderator sees it.
fn donation_json(donation: &Donation) -> Value {
    json!({
        "id": donation.id,
        "campaign_id": donation.campaign_id,
        "amount": format_money(donation.amount),
        "currency": donation.currency,
        "donor_name": donation.donor_name,
        "user_id": donation.user_id,
        "inserted_at": donation.inserted_at,
        "status": donation.status.as_str(),
    })
}

/// `moderate_donation {donation_id, action}`.
pub(crate) fn moderate(payload: &Value, command: &Command, view: &View) -> Decision {
    let claims = &command.claims;
    if !(claims.has_role("super_admin") || claims.has_role("admin")) {
        return Decision::refuse(Refusal::InsufficientPermissions);
    }
    let mut errors = Map::new();
    let id = parse_donation_id(payload.get("donation_id"))
        .map_err(|e| errors.insert("donation_id".into(), json!([e])))
        .ok();
    let action = Action::parse(payload.get("action"))
        .map_err(|e| errors.insert("action".into(), json!([e])))
        .ok();
    let (Some(id), Some(action)) = (id, action) else {
        return Decision::invalid(Value::Object(errors));
    };
    if !action.allowed(claims) {
        return Decision::refuse(Refusal::InsufficientPermissions);
    }
    let Some(donation) = view.donation.as_ref().filter(|d| d.id == id) else {
        return Decision::refuse(Refusal::NotFound);
    };
    let Some(campaign) = view
        .campaign
        .as_ref()
        .filter(|c| c.id == donation.campaign_id)
    else {
        return Decision::refuse(Refusal::NotFound);
    };
    let unchanged = || {
        Decision::ok(json!({
            "donation": donation_json(donation),
            "new_total": format_money(campaign.total),
        }))
    };
    match (donation.status, action) {
        (DonationStatus::Rejected, Action::Reject) => return unchanged(),
        (DonationStatus::Rejected, _) => return Decision::refuse(Refusal::AlreadyRejected),
        (status, action) if status == action.status() => return unchanged(),
        _ => {}
    }

    let mut moderated = donation.clone();
    moderated.status = action.status();
    let mut updated = campaign.clone();
    let mut broadcasts = Vec::new();
    if action == Action::Reject {
        updated.total -= donation.amount;
        updated.donation_count = updated.donation_count.saturating_sub(1);
        broadcasts.push(NewBroadcast::new(
            format!("donations:campaign:{}", campaign.id),
            "donation_moderated",
            json!({
                "donation_id": donation.id,
                "status": moderated.status.as_str(),
                "new_total": format_money(updated.total),
                "donation_count": updated.donation_count,
            }),
        ));
    }
    let event = DomainEvent::DonationModerated(DonationModerated {
        command_id: command.id.clone(),
        donation_id: donation.id.clone(),
        campaign_id: campaign.id.clone(),
        status: moderated.status.as_str().to_owned(),
        amount: format_money(donation.amount),
        currency: donation.currency.clone(),
        new_total: format_money(updated.total),
        moderated_by: claims.user_id.clone(),
        moderated_at: view.now.clone(),
    });
    let reply = json!({
        "donation": donation_json(&moderated),
        "new_total": format_money(updated.total),
    });
    Decision {
        broadcasts,
        domain_events: vec![event],
        writes: vec![
            Write::PutCampaign(updated),
            Write::UpdateDonation(moderated),
        ],
        ..Decision::ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::decide;
    use rust_decimal::Decimal;
    use store::conformance::sample_campaign;
    use store::Campaign;
    use topics::ReplyStatus;

    fn donation(status: DonationStatus) -> Donation {
        Donation {
            id: "d1".into(),
            campaign_id: "1".into(),
            amount: Decimal::new(2500, 2),
            currency: "USD".into(),
            donor_name: "Aisha".into(),
            user_id: Some("5".into()),
            inserted_at: "2026-01-01T00:00:00Z".into(),
            status,
        }
    }

    fn campaign() -> Campaign {
        let mut campaign = sample_campaign("1");
        campaign.total = Decimal::new(10_000, 2);
        campaign.donation_count = 3;
        campaign
    }

    fn view(status: DonationStatus) -> View {
        View {
            donation: Some(donation(status)),
            campaign: Some(campaign()),
            now: "2026-02-01T00:00:00Z".into(),
            ..View::default()
        }
    }

    fn moderate_as(roles: &[&str], action: &str, view: &View) -> Decision {
        let cmd = event(
            "admin:ops",
            claims(Some("9"), roles),
            "moderate_donation",
            json!({"donation_id": "d1", "action": action}),
        );
        decide(&cmd, view)
    }

    fn written_campaign(decision: &Decision) -> &Campaign {
        decision
            .writes
            .iter()
            .find_map(|w| match w {
                Write::PutCampaign(c) => Some(c),
                _ => None,
            })
            .expect("a campaign write")
    }

    fn written_status(decision: &Decision) -> DonationStatus {
        decision
            .writes
            .iter()
            .find_map(|w| match w {
                Write::UpdateDonation(d) => Some(d.status),
                _ => None,
            })
            .expect("a donation update")
    }

    #[test]
    fn a_super_admin_rejects_and_the_donation_leaves_the_total() {
        let d = moderate_as(&["super_admin"], "reject", &view(DonationStatus::Accepted));
        let reply = d.reply.clone().expect("reply");
        assert_eq!(reply.status, ReplyStatus::Ok);
        assert_eq!(reply.response["donation"]["status"], "rejected");
        assert_eq!(reply.response["new_total"], "75.00");
        let campaign = written_campaign(&d);
        assert_eq!(campaign.total, Decimal::new(7500, 2));
        assert_eq!(campaign.donation_count, 2);
        assert_eq!(campaign.version, 0, "based on the version read");
        assert_eq!(written_status(&d), DonationStatus::Rejected);
        assert_eq!(d.broadcasts.len(), 1);
        assert_eq!(d.broadcasts[0].topic, "donations:campaign:1");
        assert_eq!(d.broadcasts[0].event, "donation_moderated");
        assert_eq!(
            d.broadcasts[0].payload,
            json!({"donation_id": "d1", "status": "rejected", "new_total": "75.00",
                   "donation_count": 2})
        );
        assert!(matches!(
            &d.domain_events[..],
            [DomainEvent::DonationModerated(e)] if e.status == "rejected" && e.new_total == "75.00"
        ));
    }

    #[test]
    fn approving_and_flagging_keep_the_total_but_write_the_campaign() {
        for (roles, action, status) in [
            (&["admin"][..], "approve", DonationStatus::Approved),
            (&["admin"][..], "flag", DonationStatus::Flagged),
            (&["super_admin"][..], "flag", DonationStatus::Flagged),
        ] {
            let d = moderate_as(roles, action, &view(DonationStatus::Accepted));
            assert_eq!(
                d.reply.clone().expect("reply").response["donation"]["status"],
                status.as_str()
            );
            assert_eq!(written_status(&d), status);
            assert_eq!(written_campaign(&d).total, Decimal::new(10_000, 2));
            assert!(d.broadcasts.is_empty(), "subscribers see nothing change");
        }
        let d = moderate_as(&["admin"], "approve", &view(DonationStatus::Flagged));
        assert_eq!(written_status(&d), DonationStatus::Approved);
    }

    #[test]
    fn roles_decide_what_a_moderator_may_do() {
        let accepted = view(DonationStatus::Accepted);
        let refused = Decision::refuse(Refusal::InsufficientPermissions);
        assert_eq!(moderate_as(&["admin"], "reject", &accepted), refused);
        assert_eq!(moderate_as(&[], "approve", &accepted), refused);
        assert_eq!(moderate_as(&["service"], "flag", &accepted), refused);
        assert_eq!(
            refused.reply.expect("reply").response,
            json!({"reason": "insufficient permissions"})
        );
    }

    #[test]
    fn a_rejection_is_final() {
        let rejected = view(DonationStatus::Rejected);
        let again = moderate_as(&["super_admin"], "reject", &rejected);
        assert!(again.writes.is_empty() && again.broadcasts.is_empty());
        assert!(again.domain_events.is_empty());
        let reply = again.reply.expect("reply");
        assert_eq!(reply.status, ReplyStatus::Ok);
        assert_eq!(reply.response["new_total"], "100.00", "not taken out twice");
        for action in ["approve", "flag"] {
            assert_eq!(
                moderate_as(&["super_admin"], action, &rejected),
                Decision::refuse(Refusal::AlreadyRejected)
            );
        }
        // The same status again changes nothing either.
        let approved = moderate_as(&["admin"], "approve", &view(DonationStatus::Approved));
        assert!(approved.writes.is_empty());
    }

    #[test]
    fn bad_requests_and_missing_donations() {
        let accepted = view(DonationStatus::Accepted);
        let cmd = event(
            "admin:ops",
            claims(Some("9"), &["super_admin"]),
            "moderate_donation",
            json!({"donation_id": "", "action": "delete"}),
        );
        assert_eq!(
            decide(&cmd, &accepted).reply.expect("reply").response,
            json!({"errors": {"donation_id": ["can't be blank"],
                              "action": ["must be one of approve, flag, reject"]}})
        );
        let cmd = event(
            "admin:ops",
            claims(Some("9"), &["super_admin"]),
            "moderate_donation",
            json!({"donation_id": "other", "action": "reject"}),
        );
        assert_eq!(decide(&cmd, &accepted), Decision::refuse(Refusal::NotFound));
        assert_eq!(
            moderate_as(&["super_admin"], "reject", &View::default()),
            Decision::refuse(Refusal::NotFound)
        );
    }

    #[test]
    fn the_donation_named_is_what_is_loaded() {
        let named = |payload: Value| {
            donation_needed(&event(
                "admin:ops",
                claims(Some("9"), &["admin"]),
                "moderate_donation",
                payload,
            ))
        };
        assert_eq!(named(json!({"donation_id": "d1"})).as_deref(), Some("d1"));
        assert_eq!(named(json!({"donation_id": 42})).as_deref(), Some("42"));
        assert_eq!(named(json!({"donation_id": ""})), None);
        assert_eq!(named(json!({})), None);
        let cmd = event(
            "admin:ops",
            claims(Some("9"), &["admin"]),
            "moderate_donation",
            json!({"donation_id": "d1", "action": "flag"}),
        );
        let needs = crate::needs(&cmd);
        assert_eq!(needs.donation.as_deref(), Some("d1"));
        assert_eq!(needs.campaign, None, "the campaign is the donation's");
    }
}
