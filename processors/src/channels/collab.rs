//! `collab:document:<id>`: who is in a document, where their cursor is, whether they type.
//! Each change is a meta update on the user's presence, so it reaches the others as a
//! `presence_diff` (CHANNELS.md).

use serde_json::{json, Value};
use topics::{Command, Refusal};

use super::presence;
use crate::decision::{Decision, View};

/// Channel events on a document.
pub(crate) fn handle_in(event: &str, payload: &Value, command: &Command, view: &View) -> Decision {
    match event {
        "cursor_moved" => match payload.get("position") {
            Some(position) => presence::update(command, view, |meta| {
                meta.insert("cursor_position".into(), position.clone());
            }),
            None => Decision::invalid(json!({"position": ["can't be blank"]})),
        },
        "typing" => match payload.get("typing") {
            Some(Value::Bool(typing)) => presence::update(command, view, |meta| {
                meta.insert("typing".into(), Value::Bool(*typing));
                meta.insert("typing_at".into(), Value::String(view.now.clone()));
            }),
            _ => Decision::invalid(json!({"typing": ["must be true or false"]})),
        },
        _ => Decision::refuse(Refusal::UnknownEvent),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{claims, event};
    use super::*;

    #[test]
    fn events_are_validated_before_anything_changes() {
        let view = View::default();
        let bad = |name: &str, payload: Value| {
            let c = event(
                "collab:document:1",
                claims(Some("7"), &[]),
                name,
                payload.clone(),
            );
            handle_in(name, &payload, &c, &view)
        };
        assert_eq!(
            bad("typing", json!({"typing": "yes"})),
            Decision::invalid(json!({"typing": ["must be true or false"]}))
        );
        assert_eq!(
            bad("cursor_moved", json!({})),
            Decision::invalid(json!({"position": ["can't be blank"]}))
        );
        assert_eq!(
            bad("typing", json!({"typing": true})),
            Decision::refuse(Refusal::NotTracked)
        );
        assert_eq!(
            bad("shout", json!({})),
            Decision::refuse(Refusal::UnknownEvent)
        );
    }
}
