//! Demo data for `fawkes dev` (CHANNELS.md, "Demo data").

use rust_decimal::Decimal;
use serde_json::json;
use store::{Campaign, Store, StoreError, Visibility, Write};

/// The demo campaigns.
pub fn demo_campaigns(now: &str) -> Vec<Campaign> {
    let campaign =
        |id: &str, name: &str, visibility, goal: i64, organizer: &str, members: &[&str]| Campaign {
            id: id.into(),
            name: name.into(),
            goal: Decimal::new(goal * 100, 2),
            currency: "USD".into(),
            visibility,
            organizer_ids: vec![organizer.into()],
            member_ids: members.iter().map(|m| (*m).to_owned()).collect(),
            total: Decimal::new(0, 2),
            donation_count: 0,
            milestones_reached: Vec::new(),
            created_at: now.to_owned(),
            version: 0,
            applied: Default::default(),
        };
    vec![
        campaign(
            "1",
            "Ramadan Food Drive",
            Visibility::Public,
            10_000,
            "1",
            &[],
        ),
        campaign(
            "2",
            "Private Circle",
            Visibility::Private,
            5_000,
            "2",
            &["3"],
        ),
    ]
}

/// Creates the demo campaigns that do not exist yet; existing ones (and their totals) are kept.
pub async fn seed(store: &dyn Store) -> Result<usize, StoreError> {
    let now = topics::timestamp::now();
    let mut created = 0;
    for campaign in demo_campaigns(&now) {
        if store.campaign(&campaign.id).await?.is_none() {
            let command_id = format!("seed:campaign:{}", campaign.id);
            store
                .apply(&command_id, &[Write::PutCampaign(campaign)], &json!({}))
                .await?;
            created += 1;
        }
    }
    Ok(created)
}
