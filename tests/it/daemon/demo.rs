//! `tributary demo` as a process: webhooks flow both ways. The simulated providers'
//! signed webhooks trigger runs that store their changes, and the demo's local receiver
//! verifies the Standard Webhooks signature of the daemon's outbound deliveries.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tributary::model::{RunOutcome, RunTrigger};
use tributary::store::Store;

use super::Fixture;

/// Long enough for start-up, the first runs and a few webhooks on a busy machine.
const DEMO_PATIENCE: Duration = Duration::from_secs(90);

/// Forwards each line of `reader` to `tx`, tagged with `stream`.
fn forward(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    stream: &'static str,
    tx: mpsc::UnboundedSender<(&'static str, String)>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send((stream, line)).is_err() {
                break;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_webhooks_in_and_out() {
    let fx = Fixture::sqlite("").await;
    let dir = fx.dir.path().join("demo");
    let dir_text = dir.to_str().expect("UTF-8 path").to_owned();
    let mut child = fx
        .command(&[
            "--log-format",
            "json",
            "demo",
            "--dir",
            &dir_text,
            "--records",
            "20",
            "--listen",
            "127.0.0.1:0",
            "--webhook-every",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tributary demo");
    let (tx, mut rx) = mpsc::unbounded_channel();
    forward(child.stdout.take().expect("stdout"), "stdout", tx.clone());
    forward(child.stderr.take().expect("stderr"), "stderr", tx);

    let mut welcome = String::new();
    let mut verified = 0;
    let mut unverified = Vec::new();
    let mut synced = BTreeSet::new();
    let mut log = Vec::new();
    let deadline = Instant::now() + DEMO_PATIENCE;
    while verified == 0 || synced.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((stream, line))) = tokio::time::timeout(left, rx.recv()).await else {
            panic!(
                "the demo showed {verified} verified deliveries and runs of webhooks' changes {synced:?} in time:\n{welcome}\n{}",
                log.join("\n")
            );
        };
        if stream == "stdout" {
            if line.contains("outbound webhook delivered:") {
                if line.ends_with("verified: yes") {
                    verified += 1;
                } else {
                    unverified.push(line.clone());
                }
            }
            welcome.push_str(&line);
            welcome.push('\n');
        } else if let Ok(event) = serde_json::from_str::<Value>(&line) {
            let f = &event["fields"];
            if f["message"] == "demo: webhook change synced" && f["trigger"] == "webhook" {
                synced.insert(f["run"].as_str().unwrap_or_default().to_owned());
            }
            log.push(line);
        }
    }
    assert!(unverified.is_empty(), "every delivery verifies: {unverified:?}");
    assert!(welcome.contains("webhooks in:") && welcome.contains("webhooks out:"), "{welcome}");

    let store = Store::connect(&format!("sqlite://{dir_text}/demo.db")).await.expect("open the demo's store");
    // The runs that stored the webhooks' changes finish (they were triggered by webhooks).
    let run = super::eventually("a webhook-triggered run to finish", || async {
        let runs = store.list_runs(None, 10_000).await.expect("list runs");
        runs.into_iter().find(|r| synced.contains(&r.id.to_string()) && r.finished_at.is_some())
    })
    .await;
    assert_eq!(run.trigger, RunTrigger::Webhook);
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    store.close().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    fx.finish().await;
}
