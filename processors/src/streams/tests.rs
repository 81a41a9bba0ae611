use serde_json::json;
use store::conformance::sample_campaign;

use super::*;
use crate::channels::test_support::{claims, event, join};
use crate::decide;
use crate::decision::View;

const TOPIC: &str = "donations:campaign:1";
const NOW: &str = "2026-03-01T10:00:00.000Z";
const OLDEST: &str = "2026-03-01T09:00:00.000Z";

fn stream(epoch: &str, offset: u64) -> Document {
    Document {
        kind: KIND.into(),
        id: TOPIC.into(),
        owner: String::new(),
        created_at: NOW.into(),
        body: json!({"epoch": epoch, "offset": offset}),
    }
}

fn loaded<'a>(stream: Option<&'a Document>, history: Option<&'a [HistoryEntry]>) -> Loaded<'a> {
    Loaded {
        stream,
        history,
        oldest: OLDEST,
    }
}

fn donate(id: &str, amount: &str, campaign: store::Campaign) -> (Command, Decision) {
    let mut command = event(
        TOPIC,
        claims(Some("5"), &[]),
        "new_donation",
        json!({"amount": amount, "donor_name": "Aisha"}),
    );
    command.id = id.into();
    let view = View {
        campaign: Some(campaign),
        now: NOW.into(),
        ..View::default()
    };
    let decision = decide(&command, &view);
    (command, decision)
}

fn history_of(decision: &Decision) -> Vec<HistoryEntry> {
    decision
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::AppendHistory { entry, .. } => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

fn stream_written(decision: &Decision) -> Option<Document> {
    decision.writes.iter().find_map(|w| match w {
        Write::PutDocument(d) if d.kind == KIND => Some(d.clone()),
        _ => None,
    })
}

#[test]
fn broadcasts_on_the_commands_topic_take_the_next_positions_and_are_kept() {
    let (command, mut decision) = donate("c1", "10.00", sample_campaign("1"));
    let existing = stream("e1", 41);
    assign(
        &mut decision,
        &command,
        loaded(Some(&existing), None),
        HistoryLimits::default(),
        NOW,
    );
    let broadcast = &decision.broadcasts[0];
    let at = StreamPosition {
        epoch: "e1".into(),
        offset: 42,
    };
    assert_eq!(broadcast.position.as_ref(), Some(&at));
    assert_eq!(
        broadcast.payload["position"],
        json!({"epoch": "e1", "offset": 42})
    );
    let kept = history_of(&decision);
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].offset, kept[0].at.as_str()), (42, NOW));
    assert_eq!(
        stream_written(&decision).map(|d| d.body),
        Some(json!({"epoch": "e1", "offset": 42}))
    );
}

#[test]
fn a_new_stream_starts_at_one_under_the_id_of_its_first_command() {
    let (command, mut decision) = donate("first", "1", sample_campaign("1"));
    assign(
        &mut decision,
        &command,
        loaded(None, None),
        HistoryLimits::default(),
        NOW,
    );
    assert_eq!(
        decision.broadcasts[0].position,
        Some(StreamPosition {
            epoch: "first".into(),
            offset: 1
        })
    );
}

#[test]
fn broadcasts_on_other_topics_are_relayed_to_their_owner_and_positioned_there() {
    // 2,500.00 of a 10,000.00 goal: the 25 % milestone goes to the campaign and the lobby.
    let (command, mut decision) = donate("c1", "2500.00", sample_campaign("1"));
    assign(
        &mut decision,
        &command,
        loaded(None, None),
        HistoryLimits::default(),
        NOW,
    );
    assert!(decision.broadcasts.iter().all(|b| b.topic == TOPIC));
    assert!(decision.broadcasts.iter().all(|b| b.position.is_some()));
    let [relay] = decision.commands.as_slice() else {
        panic!("one relay: {:?}", decision.commands)
    };
    assert_eq!(
        (relay.id.as_str(), relay.topic.as_str()),
        ("c1:r0", "donations:lobby")
    );
    let mut relayed = decide(relay, &View::default());
    assert_eq!(relayed.broadcasts[0].event, "milestone_reached");
    assign(
        &mut relayed,
        relay,
        loaded(None, None),
        HistoryLimits::default(),
        NOW,
    );
    let broadcast = &relayed.broadcasts[0];
    assert_eq!(broadcast.topic, "donations:lobby");
    assert_eq!(broadcast.position.as_ref().map(|p| p.offset), Some(1));
    assert_eq!(broadcast.payload["milestone"], 25);
}

fn kept(offset: u64, epoch: &str, at: &str, name: &str) -> HistoryEntry {
    HistoryEntry {
        topic: TOPIC.into(),
        offset,
        epoch: epoch.into(),
        at: at.into(),
        broadcast: json!({
            "event": "donation_created",
            "payload": {"donation": {"donor_name": name}, "position": {"epoch": epoch, "offset": offset}},
            "transforms": [Transform::Redact {
                path: vec!["donation".into(), "donor_name".into()],
                replacement: json!("Anonymous"),
                visible_to: topics::Audience::users(["1".to_owned()]),
            }],
        }),
    }
}

fn join_since(user: &str, since: Option<(&str, u64)>) -> (Command, Decision) {
    let mut command = join(TOPIC, claims(Some(user), &[]));
    if let (CommandKind::Join { params, .. }, Some((epoch, offset))) = (&mut command.kind, since) {
        *params = json!({"since": {"epoch": epoch, "offset": offset}});
    }
    let view = View {
        campaign: Some(sample_campaign("1")),
        now: NOW.into(),
        ..View::default()
    };
    let decision = decide(&command, &view);
    (command, decision)
}

#[test]
fn a_join_from_a_known_position_recovers_what_it_missed_in_order_shaped_for_it() {
    let history = vec![
        kept(8, "e1", NOW, "A"),
        kept(9, "e1", NOW, "B"),
        kept(10, "e1", NOW, "C"),
    ];
    let existing = stream("e1", 10);
    let (command, mut decision) = join_since("1", Some(("e1", 7)));
    let pushes_before = decision.pushes.len();
    assign(
        &mut decision,
        &command,
        loaded(Some(&existing), Some(&history)),
        HistoryLimits::default(),
        NOW,
    );
    let response = &decision.reply.as_ref().expect("reply").response;
    assert_eq!(response["recovered"], true);
    // The join tracked a presence: its diff is the next broadcast, after the join's position.
    let position = response["position"]["offset"].as_u64().expect("position");
    assert!(position >= 10);
    let missed: Vec<&Value> = decision.pushes[pushes_before..]
        .iter()
        .map(|p| &p.payload)
        .collect();
    let names: Vec<&Value> = missed
        .iter()
        .map(|p| &p["donation"]["donor_name"])
        .collect();
    assert_eq!(
        names,
        ["A", "B", "C"],
        "user 1 organizes campaign 1: names shown"
    );
    let offsets: Vec<u64> = missed
        .iter()
        .filter_map(|p| p["position"]["offset"].as_u64())
        .collect();
    assert_eq!(offsets, [8, 9, 10]);

    // Another user sees the redacted names.
    let (command, mut decision) = join_since("5", Some(("e1", 8)));
    let pushes_before = decision.pushes.len();
    assign(
        &mut decision,
        &command,
        loaded(Some(&existing), Some(&history[1..])),
        HistoryLimits::default(),
        NOW,
    );
    let names: Vec<&Value> = decision.pushes[pushes_before..]
        .iter()
        .map(|p| &p.payload["donation"]["donor_name"])
        .collect();
    assert_eq!(names, ["Anonymous", "Anonymous"]);
}

#[test]
fn a_join_the_history_cannot_serve_is_told_so_and_gets_nothing_replayed() {
    let existing = stream("e1", 10);
    let full = vec![kept(9, "e1", NOW, "B"), kept(10, "e1", NOW, "C")];
    let old = vec![
        kept(9, "e1", "2026-03-01T08:00:00.000Z", "B"),
        kept(10, "e1", NOW, "C"),
    ];
    for (since, history) in [
        // Pruned: 8 is gone.
        (("e1", 7), &full),
        // Another epoch: that history was lost.
        (("e0", 9), &full),
        // Too old to recover.
        (("e1", 8), &old),
        // Ahead of the stream.
        (("e1", 11), &full),
    ] {
        let (command, mut decision) = join_since("5", Some(since));
        let pushes_before = decision.pushes.len();
        assign(
            &mut decision,
            &command,
            loaded(Some(&existing), Some(history)),
            HistoryLimits::default(),
            NOW,
        );
        let response = &decision.reply.as_ref().expect("reply").response;
        assert_eq!(response["recovered"], false, "{since:?}");
        assert_eq!(response["position"]["epoch"], "e1");
        assert_eq!(decision.pushes.len(), pushes_before, "nothing replayed");
    }
    // Up to date: nothing missed, recovered.
    let (command, mut decision) = join_since("5", Some(("e1", 10)));
    assign(
        &mut decision,
        &command,
        loaded(Some(&existing), Some(&[])),
        HistoryLimits::default(),
        NOW,
    );
    assert_eq!(decision.reply.expect("reply").response["recovered"], true);
    // Without `since`: the position only.
    let (command, mut decision) = join_since("5", None);
    assign(
        &mut decision,
        &command,
        loaded(Some(&existing), None),
        HistoryLimits::default(),
        NOW,
    );
    let response = decision.reply.expect("reply").response;
    assert!(response.get("recovered").is_none());
    assert!(response["position"].is_object());
}
