//! Who may join which topic (CHANNELS.md, "Topics and who may join").

use serde_json::json;
use topics::routes::Route;
use topics::{Claims, Refusal};

use super::campaign;
use crate::decision::{Decision, View};

fn is_admin(claims: &Claims) -> bool {
    claims.has_role("admin") || claims.has_role("super_admin")
}

fn is_user(claims: &Claims, id: &str) -> bool {
    claims.user_id.as_deref() == Some(id)
}

/// The join decision for `route`.
pub(crate) fn join(route: &Route, claims: &Claims, view: &View) -> Decision {
    let allowed = match route {
        Route::DonationsLobby | Route::WaqfPublic => true,
        Route::Campaign(_) => return campaign::join(claims, view),
        Route::Zakat(id) => is_user(claims, id) || claims.has_role("admin"),
        Route::Admin(_) => is_admin(claims),
        Route::CollabDocument(_) => claims.user_id.is_some(),
        Route::UserScoped { user_id, .. } => is_user(claims, user_id),
        Route::DashboardLive => claims.has_role("admin"),
    };
    if allowed {
        Decision::ok(json!({}))
    } else {
        Decision::refuse(Refusal::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::claims;
    use super::*;
    use topics::ReplyStatus;

    fn allowed(route: Route, claims: &Claims) -> bool {
        join(&route, claims, &View::default())
            .reply
            .is_some_and(|r| r.status == ReplyStatus::Ok)
    }

    #[test]
    fn join_rules() {
        let anon = claims(None, &[]);
        let user7 = claims(Some("7"), &[]);
        let admin = claims(Some("1"), &["admin"]);
        let super_admin = claims(Some("2"), &["super_admin"]);
        assert!(allowed(Route::DonationsLobby, &anon));
        assert!(allowed(Route::WaqfPublic, &anon));
        assert!(allowed(Route::Zakat("7".into()), &user7));
        assert!(!allowed(Route::Zakat("8".into()), &user7));
        assert!(allowed(Route::Zakat("8".into()), &admin));
        assert!(!allowed(Route::Admin("x".into()), &user7));
        assert!(allowed(Route::Admin("x".into()), &admin));
        assert!(allowed(Route::Admin("x".into()), &super_admin));
        assert!(!allowed(Route::CollabDocument("1".into()), &anon));
        assert!(allowed(Route::CollabDocument("1".into()), &user7));
        let reports = |id: &str| Route::UserScoped {
            family: "reports:user",
            user_id: id.into(),
        };
        assert!(allowed(reports("7"), &user7));
        assert!(!allowed(reports("8"), &admin));
        assert!(allowed(Route::DashboardLive, &admin));
        assert!(!allowed(Route::DashboardLive, &super_admin));
    }
}
