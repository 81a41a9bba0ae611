//! Durability: acknowledged donations survive `kill -9` of `fawkes dev` and are counted once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Client, Connect, SECRET};
use serde_json::{json, Value};

/// A `fawkes dev` child process on port 0.
struct Process {
    child: Child,
    addr: String,
}

impl Process {
    fn start(data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fawkes"))
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("FAWKES_JWT_SECRET", SECRET)
            .env("FAWKES_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fawkes");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("fawkes listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Self { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.addr)
    }

    fn kill_9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(process: &Process) -> Client {
    // Wait until the socket endpoint answers (the listening line comes right after bind).
    for _ in 0..50 {
        if let Connect::Open(client) = Client::try_connect(&process.url(), None).await {
            return *client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fawkes did not accept sockets")
}

async fn campaign_state(process: &Process) -> Value {
    let mut client = connect(process).await;
    let (_, reply) = client.join("donations:campaign:1", json!({})).await;
    assert_eq!(reply["status"], "ok");
    client.event("donations:campaign:1", "campaign_state").await[4]["campaign"].clone()
}

#[tokio::test]
async fn acknowledged_donations_survive_kill_9_and_count_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = Process::start(dir.path());
    let mut client = connect(&first).await;
    let topic = "donations:campaign:1";
    let (jr, _) = client.join(topic, json!({})).await;

    // Pipeline 300 donations of 1.00 and kill the server after 100 acknowledgements, while
    // the rest are in flight.
    let mut refs = Vec::new();
    for i in 0..300 {
        refs.push(
            client
                .send(
                    Some(&jr),
                    topic,
                    "new_donation",
                    json!({"amount": "1.00", "donor_name": format!("d{i}")}),
                )
                .await,
        );
    }
    let mut acked = Vec::new();
    for msg_ref in refs.iter().take(100) {
        let reply = client.reply(msg_ref).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        acked.push(
            reply["response"]["donation_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    first.kill_9();
    drop(client);

    let second = Process::start(dir.path());
    // The restarted processors may still be replaying commands the first process had logged;
    // wait until the count settles, then check totals are exact.
    let mut last = Value::Null;
    for _ in 0..50 {
        let campaign = campaign_state(&second).await;
        if campaign == last {
            break;
        }
        last = campaign;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let count = last["donation_count"].as_u64().expect("count");
    assert!(
        count >= acked.len() as u64,
        "every acknowledged donation is kept: {count} < {}",
        acked.len()
    );
    assert!(count <= 300, "no donation counted twice: {count}");
    assert_eq!(
        last["total"],
        format!("{count}.00"),
        "the total matches the donations exactly once"
    );

    // A second restart changes nothing: every command has been applied once.
    drop(second);
    let third = Process::start(dir.path());
    let campaign = campaign_state(&third).await;
    assert_eq!(campaign["donation_count"].as_u64(), Some(count));
    assert_eq!(campaign["total"], format!("{count}.00"));
}
