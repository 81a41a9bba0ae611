//! The channel topics that exist.
//!
//! This is contract, not domain logic: a connector uses it to answer `unmatched topic` at once
//! (Phoenix does so before any channel code runs), and processors use it to pick the channel
//! module that decides.

/// The channel module a topic belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `donations:lobby`
    DonationsLobby,
    /// `donations:campaign:<id>`
    Campaign(String),
    /// `zakat:user:<id>`
    Zakat(String),
    /// `admin:<anything>`
    Admin(String),
    /// `collab:document:<id>`
    CollabDocument(String),
    /// `waqf:public`
    WaqfPublic,
    /// `waqf:trustee:<id>`, `waqf:beneficiary:<id>`, `reports:user:<id>`, `imports:user:<id>`:
    /// topics only the user `<id>` may join.
    UserScoped {
        /// The topic family, e.g. `reports:user`.
        family: &'static str,
        /// The user id the topic belongs to.
        user_id: String,
    },
    /// `dashboard:live`
    DashboardLive,
}

const USER_SCOPED: [&str; 4] = [
    "waqf:trustee:",
    "waqf:beneficiary:",
    "reports:user:",
    "imports:user:",
];

/// Prefix of a user's socket topic (`user_socket:<user id>`), which no client joins: a
/// broadcast of [`DISCONNECT_EVENT`] on it closes every socket of that user on every connector
/// (Phoenix's `MyAppWeb.Endpoint.broadcast("user_socket:" <> id, "disconnect", %{})`).
pub const USER_SOCKET_PREFIX: &str = "user_socket:";

/// The event that, broadcast on a user's socket topic, closes that user's sockets.
pub const DISCONNECT_EVENT: &str = "disconnect";

/// The socket topic of `user_id`.
pub fn user_socket_topic(user_id: &str) -> String {
    format!("{USER_SOCKET_PREFIX}{user_id}")
}

/// The user whose sockets a broadcast of `event` on `topic` closes, if it is a disconnect.
pub fn disconnected_user<'a>(topic: &'a str, event: &str) -> Option<&'a str> {
    if event != DISCONNECT_EVENT {
        return None;
    }
    topic.strip_prefix(USER_SOCKET_PREFIX)
}

/// Whether `topic` has a stream of positioned broadcasts: every channel topic but the
/// dashboard's (whose batches are live figures, sent by its own task).
pub fn has_stream(topic: &str) -> bool {
    route(topic).is_some_and(|r| r != Route::DashboardLive)
}

/// The event of the derived command that brings a broadcast to the processor owning its
/// topic, which gives it its position: `{event, payload, transforms}`. Processors relay their
/// broadcasts on other topics so; connectors relay API broadcasts so.
pub const RELAY_EVENT: &str = "broadcast";

/// Longest channel topic accepted; longer topics match no route.
pub const MAX_TOPIC_LEN: usize = 255;

/// Matches a channel topic against the routes, `None` when no channel serves it.
pub fn route(topic: &str) -> Option<Route> {
    if topic.len() > MAX_TOPIC_LEN {
        return None;
    }
    let suffix = |prefix: &str| {
        topic
            .strip_prefix(prefix)
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned)
    };
    match topic {
        "donations:lobby" => return Some(Route::DonationsLobby),
        "waqf:public" => return Some(Route::WaqfPublic),
        "dashboard:live" => return Some(Route::DashboardLive),
        _ => {}
    }
    if let Some(id) = suffix("donations:campaign:") {
        return Some(Route::Campaign(id));
    }
    if let Some(id) = suffix("zakat:user:") {
        return Some(Route::Zakat(id));
    }
    if let Some(rest) = suffix("admin:") {
        return Some(Route::Admin(rest));
    }
    if let Some(id) = suffix("collab:document:") {
        return Some(Route::CollabDocument(id));
    }
    USER_SCOPED.iter().find_map(|prefix| {
        suffix(prefix).map(|user_id| Route::UserScoped {
            family: prefix.trim_end_matches(':'),
            user_id,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_contract_topics() {
        assert_eq!(route("donations:lobby"), Some(Route::DonationsLobby));
        assert_eq!(
            route("donations:campaign:42"),
            Some(Route::Campaign("42".into()))
        );
        assert_eq!(route("zakat:user:7"), Some(Route::Zakat("7".into())));
        assert_eq!(route("admin:x"), Some(Route::Admin("x".into())));
        assert_eq!(
            route("reports:user:9"),
            Some(Route::UserScoped {
                family: "reports:user",
                user_id: "9".into()
            })
        );
        assert_eq!(route("dashboard:live"), Some(Route::DashboardLive));
    }

    #[test]
    fn user_socket_topics_carry_disconnects() {
        let topic = user_socket_topic("42");
        assert_eq!(disconnected_user(&topic, DISCONNECT_EVENT), Some("42"));
        assert_eq!(disconnected_user(&topic, "other"), None);
        assert_eq!(disconnected_user("donations:lobby", DISCONNECT_EVENT), None);
        assert_eq!(route(&topic), None, "no client joins a socket topic");
    }

    #[test]
    fn rejects_unknown_and_empty_ids() {
        assert_eq!(route("room:lobby"), None);
        assert_eq!(route("donations:campaign:"), None);
        assert_eq!(route("admin:"), None);
        assert_eq!(route("phoenix"), None);
        assert_eq!(route(&"a".repeat(300)), None);
    }
}
