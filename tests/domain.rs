//! End-to-end through real sockets on a `fawkes dev` started on port 0: donation moderation
//! by role, the audiences of a waqf, and a report streamed from real stored records.

mod common;

use std::time::Duration;

use common::{token, unpositioned, Client, TestServer};
use serde_json::{json, Value};

const CAMPAIGN: &str = "donations:campaign:1";

fn error(reason: &str) -> Value {
    json!({"status": "error", "response": {"reason": reason}})
}

/// Donates `amount` to campaign 1 from `client` (joined with `join_ref`); the donation id.
async fn donate(client: &mut Client, join_ref: &str, amount: &str) -> String {
    let reply = client
        .push(
            join_ref,
            CAMPAIGN,
            "new_donation",
            json!({"amount": amount, "donor_name": "Aisha"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["response"]["donation_id"]
        .as_str()
        .expect("a donation id")
        .to_owned()
}

/// Campaign 1 as a socket joining now sees it.
async fn campaign_state(server: &TestServer) -> Value {
    let mut late = Client::connect(server, None).await;
    late.join(CAMPAIGN, json!({})).await;
    late.event(CAMPAIGN, "campaign_state").await[4]["campaign"].clone()
}

/// Every frame of `client` on `topic` until (and with) the first `last` event, in order.
async fn frames_until(client: &mut Client, topic: &str, last: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.recv().await;
        if frame[2] != topic {
            continue;
        }
        let done = frame[3] == last;
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

#[tokio::test]
async fn moderation_follows_the_roles_and_a_rejection_leaves_the_total_once() {
    let server = TestServer::start().await;
    let mut donor = Client::connect(&server, Some(&token("5", &[]))).await;
    let (djr, _) = donor.join(CAMPAIGN, json!({})).await;
    let first = donate(&mut donor, &djr, "40.00").await;
    donate(&mut donor, &djr, "60.00").await;
    let mut viewer = Client::connect(&server, None).await;
    viewer.join(CAMPAIGN, json!({})).await;

    // Anyone else cannot even reach a moderation: the admin topics refuse them.
    let mut user = Client::connect(&server, Some(&token("7", &[]))).await;
    assert_eq!(
        user.join("admin:ops", json!({})).await.1,
        error("unauthorized")
    );
    assert_eq!(
        user.push(
            "j1",
            "admin:ops",
            "moderate_donation",
            json!({"donation_id": first, "action": "approve"})
        )
        .await,
        error("unmatched topic")
    );

    // An admin approves and flags, but may not reject.
    let mut admin = Client::connect(&server, Some(&token("8", &["admin"]))).await;
    let (ajr, _) = admin.join("admin:ops", json!({})).await;
    let moderate = |id: &str, action: &str| json!({"donation_id": id, "action": action});
    for (action, status) in [("approve", "approved"), ("flag", "flagged")] {
        let reply = admin
            .push(
                &ajr,
                "admin:ops",
                "moderate_donation",
                moderate(&first, action),
            )
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["response"]["donation"]["status"], status);
        assert_eq!(reply["response"]["donation"]["donor_name"], "Aisha");
        assert_eq!(reply["response"]["new_total"], "100.00");
    }
    assert_eq!(
        admin
            .push(
                &ajr,
                "admin:ops",
                "moderate_donation",
                moderate(&first, "reject")
            )
            .await,
        error("insufficient permissions")
    );
    assert_eq!(
        admin
            .push(
                &ajr,
                "admin:ops",
                "moderate_donation",
                moderate("nope", "flag")
            )
            .await,
        error("not found")
    );
    assert_eq!(
        admin
            .push(
                &ajr,
                "admin:ops",
                "moderate_donation",
                moderate(&first, "hide")
            )
            .await,
        json!({"status": "error", "response": {"errors": {
            "action": ["must be one of approve, flag, reject"]}}})
    );
    assert_eq!(campaign_state(&server).await["total"], "100.00");

    // A super admin rejects: the campaign's subscribers see the total without it.
    let mut chief = Client::connect(&server, Some(&token("9", &["super_admin"]))).await;
    let (cjr, _) = chief.join("admin:chief", json!({})).await;
    let reply = chief
        .push(
            &cjr,
            "admin:chief",
            "moderate_donation",
            moderate(&first, "reject"),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["response"]["donation"]["status"], "rejected");
    assert_eq!(reply["response"]["new_total"], "60.00");
    let told = viewer.event(CAMPAIGN, "donation_moderated").await;
    assert_eq!(
        unpositioned(told[4].clone()).0,
        json!({"donation_id": first, "status": "rejected", "new_total": "60.00",
               "donation_count": 1})
    );

    // The same push retried, and the same rejection from another admin topic (whose
    // commands are on another partition than the first's and the campaign's): answered
    // alike, taken out once, announced once.
    let partition = |topic: &str| {
        topics::names::partition_for(topic.as_bytes(), topics::names::COMMANDS.partitions)
    };
    assert_ne!(partition("admin:chief"), partition("admin:ops"));
    assert_ne!(partition("admin:chief"), partition(CAMPAIGN));
    let retried = chief
        .push(
            &cjr,
            "admin:chief",
            "moderate_donation",
            moderate(&first, "reject"),
        )
        .await;
    assert_eq!(retried, reply);
    let mut other_chief = Client::connect(&server, Some(&token("10", &["super_admin"]))).await;
    let (ojr, _) = other_chief.join("admin:ops", json!({})).await;
    let again = other_chief
        .push(
            &ojr,
            "admin:ops",
            "moderate_donation",
            moderate(&first, "reject"),
        )
        .await;
    assert_eq!(again["response"]["new_total"], "60.00");
    // A rejection is final.
    assert_eq!(
        admin
            .push(
                &ajr,
                "admin:ops",
                "moderate_donation",
                moderate(&first, "approve")
            )
            .await,
        error("donation already rejected")
    );
    viewer
        .assert_no_event("donation_moderated", Duration::from_millis(300))
        .await;
    let state = campaign_state(&server).await;
    assert_eq!(state["total"], "60.00");
    assert_eq!(state["donation_count"], 1);
    server.stop().await;
}

#[tokio::test]
async fn each_audience_of_a_waqf_sees_what_it_should_and_nothing_more() {
    let server = TestServer::start().await;
    let public = "waqf:public";
    let mut creator = Client::connect(&server, Some(&token("20", &[]))).await;
    let mut trustee = Client::connect(&server, Some(&token("21", &[]))).await;
    let mut beneficiary = Client::connect(&server, Some(&token("22", &[]))).await;
    let mut stranger = Client::connect(&server, Some(&token("24", &[]))).await;
    let mut anonymous = Client::connect(&server, None).await;
    let (cjr, _) = creator.join(public, json!({})).await;
    for client in [
        &mut trustee,
        &mut beneficiary,
        &mut stranger,
        &mut anonymous,
    ] {
        assert_eq!(client.join(public, json!({})).await.1["status"], "ok");
    }
    assert_eq!(
        trustee.join("waqf:trustee:21", json!({})).await.1["status"],
        "ok"
    );
    assert_eq!(
        beneficiary.join("waqf:beneficiary:22", json!({})).await.1["status"],
        "ok"
    );
    // Nobody joins another user's topics.
    assert_eq!(
        stranger.join("waqf:trustee:21", json!({})).await.1,
        error("unauthorized")
    );
    assert_eq!(
        beneficiary.join("waqf:beneficiary:23", json!({})).await.1,
        error("unauthorized")
    );
    assert_eq!(
        trustee.join("waqf:beneficiary:22", json!({})).await.1,
        error("unauthorized")
    );

    let waqf = json!({
        "type": "khayri",
        "name": "Well in Tarim",
        "trustees": [{"user_id": "21"}],
        "beneficiaries": [
            {"user_id": "22", "allocation": "100.50"},
            {"user_id": 23, "allocation": "77.25"},
        ],
    });
    let mut anon_creator = Client::connect(&server, None).await;
    let (ajr, _) = anon_creator.join(public, json!({})).await;
    assert_eq!(
        anon_creator
            .push(&ajr, public, "create_waqf", waqf.clone())
            .await,
        error("unauthorized")
    );
    let invalid = creator
        .push(
            &cjr,
            public,
            "create_waqf",
            json!({"type": "khayri", "name": "W", "trustees": [],
                   "beneficiaries": [{"user_id": "22", "allocation": "0"}]}),
        )
        .await;
    assert_eq!(
        invalid["response"]["errors"],
        json!({"trustees": ["should have at least 1 item(s)"],
               "beneficiaries[0].allocation": ["must be greater than 0"]})
    );

    let reply = creator.push(&cjr, public, "create_waqf", waqf).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let full = reply["response"]["waqf"].clone();
    let id = full["id"].as_str().expect("an id").to_owned();
    assert_eq!(full["total_allocation"], "177.75");
    assert_eq!(
        full["beneficiaries"][1],
        json!({"user_id": "23", "allocation": "77.25"})
    );
    let minimal = json!({"id": id, "type": "khayri", "created_at": full["created_at"]});

    let (seen, _) = unpositioned(trustee.event(public, "waqf_created").await[4].clone());
    assert_eq!(
        seen,
        json!({"id": id, "type": "khayri", "created_at": full["created_at"], "waqf": full})
    );
    assert_eq!(
        unpositioned(trustee.event("waqf:trustee:21", "waqf_assigned").await[4].clone()).0,
        json!({ "waqf": full })
    );
    let (seen, _) = unpositioned(beneficiary.event(public, "waqf_created").await[4].clone());
    let mut own = minimal.clone();
    own["benefit_amount"] = json!("100.50");
    assert_eq!(seen, own, "its own allocation and nothing else");
    let available = beneficiary
        .event("waqf:beneficiary:22", "waqf_available")
        .await[4]
        .clone();
    assert_eq!(
        unpositioned(available).0,
        json!({"id": id, "benefit_amount": "100.50"})
    );
    for client in [&mut stranger, &mut anonymous, &mut creator] {
        let (seen, _) = unpositioned(client.event(public, "waqf_created").await[4].clone());
        assert_eq!(seen, minimal);
    }
    // Nothing else reaches them: no other allocation, no record.
    for client in [&mut beneficiary, &mut stranger, &mut anonymous] {
        client
            .assert_no_event("waqf_assigned", Duration::from_millis(200))
            .await;
    }
    for client in [&mut trustee, &mut stranger, &mut anonymous] {
        client
            .assert_no_event("waqf_available", Duration::from_millis(200))
            .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_report_streams_its_progress_then_the_users_real_records_to_its_socket_only() {
    let server = TestServer::start().await;
    let topic = "reports:user:30";
    let year: i32 = topics::timestamp::now()[..4].parse().expect("a year");

    // Real donations first (and one of someone else), one of them rejected.
    let mut donor = Client::connect(&server, Some(&token("30", &[]))).await;
    let (djr, _) = donor.join(CAMPAIGN, json!({})).await;
    let rejected = donate(&mut donor, &djr, "10.00").await;
    let kept = donate(&mut donor, &djr, "20.50").await;
    let mut other = Client::connect(&server, Some(&token("31", &[]))).await;
    let (ojr, _) = other.join(CAMPAIGN, json!({})).await;
    donate(&mut other, &ojr, "99.00").await;
    let mut chief = Client::connect(&server, Some(&token("9", &["super_admin"]))).await;
    let (cjr, _) = chief.join("admin:chief", json!({})).await;
    let reply = chief
        .push(
            &cjr,
            "admin:chief",
            "moderate_donation",
            json!({"donation_id": rejected, "action": "reject"}),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    // A waqf that benefits the user.
    let mut founder = Client::connect(&server, Some(&token("32", &[]))).await;
    let (fjr, _) = founder.join("waqf:public", json!({})).await;
    let created = founder
        .push(
            &fjr,
            "waqf:public",
            "create_waqf",
            json!({"type": "ahli", "name": "Family trust", "trustees": [{"user_id": "32"}],
                   "beneficiaries": [{"user_id": "30", "allocation": "15"},
                                     {"user_id": "33", "allocation": "25"}]}),
        )
        .await;
    let waqf_id = created["response"]["waqf"]["id"].clone();
    // A zakat calculation, which the zakat channel stores under the user.
    let mut zakat = Client::connect(&server, Some(&token("30", &[]))).await;
    let (zjr, _) = zakat.join("zakat:user:30", json!({})).await;
    let calculated = zakat
        .push(
            &zjr,
            "zakat:user:30",
            "calculate_zakat",
            json!({"currency": "USD", "gold_price": "65.00",
                   "assets": {"cash": "10000"}, "liabilities": "0"}),
        )
        .await;
    assert_eq!(calculated["status"], "ok", "{calculated}");
    let mut reader = Client::connect(&server, Some(&token("30", &[]))).await;
    let mut second_tab = Client::connect(&server, Some(&token("30", &[]))).await;
    let (rjr, _) = reader.join(topic, json!({})).await;
    second_tab.join(topic, json!({})).await;
    let mut intruder = Client::connect(&server, Some(&token("31", &[]))).await;
    assert_eq!(
        intruder.join(topic, json!({})).await.1,
        error("unauthorized")
    );
    let invalid = reader
        .push(
            &rjr,
            topic,
            "generate_report",
            json!({"type": "weekly", "year": 1999}),
        )
        .await;
    assert_eq!(
        invalid["response"]["errors"],
        json!({"type": ["must be one of annual, donations, zakat, waqf"],
               "year": [format!("must be a year from 2000 to {year}")]})
    );

    let msg_ref = reader
        .send(
            Some(&rjr),
            topic,
            "generate_report",
            json!({"type": "annual", "year": year}),
        )
        .await;
    let frames = frames_until(&mut reader, topic, "report_ready").await;
    let order: Vec<(String, Value)> = frames
        .iter()
        .map(|f| {
            (
                f[3].as_str().unwrap_or_default().to_owned(),
                f[4]["percent"].clone(),
            )
        })
        .collect();
    let progress = |p: u32| ("report_progress".to_owned(), json!(p));
    assert_eq!(
        order,
        vec![
            ("phx_reply".to_owned(), Value::Null),
            progress(0),
            progress(25),
            progress(50),
            progress(75),
            progress(100),
            ("report_ready".to_owned(), Value::Null),
        ]
    );
    assert_eq!(frames[0][1], msg_ref.as_str());
    assert_eq!(
        frames[0][4],
        json!({"status": "ok", "response": {"status": "started"}})
    );
    assert!(
        frames[1..].iter().all(|f| f[0] == rjr.as_str()),
        "pushes on the join"
    );
    let report = &frames[6][4]["report"];
    let donations: Vec<(Value, Value, Value)> = report["donations"]
        .as_array()
        .expect("donations")
        .iter()
        .map(|d| (d["id"].clone(), d["amount"].clone(), d["status"].clone()))
        .collect();
    assert_eq!(
        donations,
        vec![
            (json!(kept), json!("20.50"), json!("accepted")),
            (json!(rejected), json!("10.00"), json!("rejected")),
        ],
        "the user's own, newest first"
    );
    assert_eq!(report["donation_totals"], json!({"USD": "20.50"}));
    let calculations = report["zakat_calculations"]
        .as_array()
        .expect("zakat calculations");
    assert_eq!(calculations.len(), 1);
    assert_eq!(
        calculations[0]["calculation"]["zakat_due"],
        calculated["response"]["zakat_due"]
    );
    assert_eq!(calculations[0]["calculation"]["zakat_due"], "250.00");
    let waqfs = report["waqfs"].as_array().expect("waqfs");
    assert_eq!(waqfs.len(), 1);
    assert_eq!(waqfs[0]["roles"], json!(["beneficiary"]));
    assert_eq!(waqfs[0]["waqf"]["id"], waqf_id);
    assert_eq!(waqfs[0]["waqf"]["benefit_amount"], "15.00");
    assert!(
        waqfs[0]["waqf"].get("beneficiaries").is_none(),
        "not the others' allocations"
    );
    // The user's other socket on the same topic was not sent any of it.
    second_tab
        .assert_no_event("report_ready", Duration::from_millis(300))
        .await;
    second_tab
        .assert_no_event("report_progress", Duration::from_millis(10))
        .await;
    server.stop().await;
}
