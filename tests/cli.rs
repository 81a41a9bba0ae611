//! The `fawkes` binary's own surface: `fawkes token`, configuration errors, the idle timeout,
//! `topics create` settings.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::mint_with_cli;
use common::{Client, TestServer};
use serde_json::json;

#[tokio::test]
async fn tokens_minted_by_the_cli_are_accepted() {
    let server = TestServer::start().await;
    let admin = mint_with_cli(&["--sub", "42", "--role", "admin", "--ttl", "10m"]);
    let mut c = Client::connect(&server, Some(&admin)).await;
    let (_, reply) = c.join("admin:ops", json!({})).await;
    assert_eq!(reply["status"], "ok", "an admin token from `fawkes token`");
    let user = mint_with_cli(&["--sub", "42"]);
    let mut c = Client::connect(&server, Some(&user)).await;
    assert_eq!(c.join("admin:ops", json!({})).await.1["status"], "error");
    assert_eq!(c.join("zakat:user:42", json!({})).await.1["status"], "ok");
    server.stop().await;
}

#[test]
fn invalid_configuration_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_fawkes"))
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--outbound-queue",
            "0",
            "--idle-timeout-secs",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("FAWKES_JWT_SECRET", "")
        .output()
        .expect("run fawkes");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "FAWKES_IDLE_TIMEOUT_SECS",
        "FAWKES_OUTBOUND_QUEUE",
        "FAWKES_JWT_SECRET",
    ] {
        assert!(
            stderr.contains(problem),
            "{problem} not reported in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn silent_sockets_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_in(dir.path(), &["--idle-timeout-secs", "1"]).await;
    let mut talker = Client::connect(&server, None).await;
    let mut silent = Client::connect(&server, None).await;
    // Heartbeats keep a socket alive past the timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        talker.heartbeat().await;
    }
    assert_eq!(silent.closed().await, Some(1001));
    talker.heartbeat().await;
    server.stop().await;
}

#[test]
fn schema_print_and_apply_without_nodes() {
    let output = Command::new(env!("CARGO_BIN_EXE_fawkes"))
        .args(["schema", "print", "--scylla-keyspace", "drive"])
        .output()
        .expect("run fawkes schema print");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("CREATE KEYSPACE IF NOT EXISTS drive"));
    assert!(text.contains("CREATE TABLE IF NOT EXISTS drive.donations_by_campaign"));
    assert!(!text.to_uppercase().contains("ALLOW FILTERING"));

    let output = Command::new(env!("CARGO_BIN_EXE_fawkes"))
        .args(["schema", "apply"])
        .env_remove("FAWKES_SCYLLA_NODES")
        .output()
        .expect("run fawkes schema apply");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("FAWKES_SCYLLA_NODES is required"));
}

#[test]
fn topics_create_refuses_a_placement_that_could_never_acknowledge() {
    let output = Command::new(env!("CARGO_BIN_EXE_fawkes"))
        .args(["topics", "create", "--replication-factor", "2"])
        .args(["--min-insync-replicas", "3"])
        .env_remove("FAWKES_KAFKA_BROKERS")
        .output()
        .expect("run fawkes topics create");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "min.insync.replicas (3)",
        "FAWKES_KAFKA_BROKERS is required",
    ] {
        assert!(
            stderr.contains(problem),
            "{problem} not reported in:\n{stderr}"
        );
    }
}
