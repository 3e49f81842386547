//! `tributary demo` as a process: webhooks flow both ways. The simulated providers'
//! signed webhooks trigger runs that store their changes, and the demo's local receiver
//! verifies the Standard Webhooks signature of the daemon's outbound deliveries. Writes
//! flow back: a HubSpot contact create and a Jira comment go through the outbox, the
//! daemon sends them, and the demo prints how each ended.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tributary::model::{EntityName, RunOutcome, RunTrigger, TenantId};
use tributary::store::{Store, WriteFilter, WriteState};

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
async fn the_demo_shows_webhooks_in_and_out_and_a_write_round_trip() {
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
    // Each write's lines: how it ended, what the simulator received (and for the
    // create, the stored record between them and the next write's).
    let mut writes = Vec::new();
    let mut received = 0;
    let mut write_event = false;
    let deadline = Instant::now() + DEMO_PATIENCE;
    while verified == 0 || synced.is_empty() || received < 2 || !write_event {
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
                    // Acme's endpoint hears of its HubSpot write.
                    write_event |= line.contains("delivered: write.succeeded ");
                } else {
                    unverified.push(line.clone());
                }
            }
            if line.starts_with("  write-back: wr_") || line.starts_with("    stored record:") {
                writes.push(line.clone());
            } else if line.starts_with("    the simulated ") {
                received += 1;
                writes.push(line.clone());
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
    assert!(welcome.contains("write-back:"), "{welcome}");

    let store = Store::connect(&format!("sqlite://{dir_text}/demo.db")).await.expect("open the demo's store");
    // The runs that stored the webhooks' changes finish (they were triggered by webhooks).
    let run = super::eventually("a webhook-triggered run to finish", || async {
        let runs = store.list_runs(None, 10_000).await.expect("list runs");
        runs.into_iter().find(|r| synced.contains(&r.id.to_string()) && r.finished_at.is_some())
    })
    .await;
    assert_eq!(run.trigger, RunTrigger::Webhook);
    assert_eq!(run.outcome, RunOutcome::Success, "{:?}", run.stats.error);
    check_writes(&store, &writes).await;
    // Hooli's Microsoft 365 and GitHub streams ran from the start, each with records.
    let hooli = tributary::model::TenantId::parse("hooli").expect("tenant id");
    let streams = super::eventually("hooli's Microsoft and GitHub streams to succeed", || async {
        let runs = store.list_runs(Some(&hooli), 10_000).await.expect("list runs");
        let ok: BTreeSet<String> = runs
            .iter()
            .filter(|r| r.outcome == RunOutcome::Success && r.stats.fetched > 0)
            .map(|r| format!("{}.{}", r.provider, r.stream))
            .collect();
        ["microsoft.users", "microsoft.channel_messages", "github.repositories", "github.issues"]
            .iter()
            .all(|s| ok.contains(*s))
            .then_some(ok)
    })
    .await;
    assert!(streams.contains("aptem.learners"), "{streams:?}");
    assert!(welcome.contains("hooli (Aptem + Microsoft 365 + GitHub"), "{welcome}");
    store.close().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    fx.finish().await;
}

/// The demo's write-back lines say what its store holds: the HubSpot contact created
/// (with the provider's id and version, received by the simulator, stored at once as a
/// record) and the Jira comment added, both succeeded.
async fn check_writes(store: &Store, lines: &[String]) {
    let text = lines.join("\n");
    let written = store.list_writes(&WriteFilter { limit: 10, ..WriteFilter::default() }).await.expect("list writes");
    assert_eq!(written.len(), 2, "{written:#?}");
    for w in &written {
        assert_eq!(w.state, WriteState::Succeeded, "{w:#?}\n{text}");
    }
    let contact = written.iter().find(|w| w.provider.as_str() == "hubspot").expect("the HubSpot write");
    let contact_id = contact.result_id.clone().expect("the provider's id");
    let version = contact.result_version.clone().expect("the provider's version");
    let comment = written.iter().find(|w| w.provider.as_str() == "jira").expect("the Jira write");
    let issue = comment.external_id.clone().expect("the commented issue");
    let comment_id = comment.result_id.clone().expect("the comment's id");
    let expected = [
        format!(
            "  write-back: {} hubspot contact create: succeeded, provider id {contact_id}, version {version}",
            contact.id
        ),
        "    the simulated hubspot received POST /crm/v3/objects/contacts".to_owned(),
        format!("    stored record: contact {contact_id} "),
        format!("  write-back: {} jira issue comment on {issue}: succeeded, provider id {comment_id}", comment.id),
        format!("    the simulated jira received POST /rest/api/3/issue/{issue}/comment"),
    ];
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(line.starts_with(expected.as_str()), "expected `{expected}…`, got:\n{text}");
    }
    assert!(lines[2].contains("ada.lovelace@acme.example.com"), "the stored record is the written contact: {text}");
    // The line says what the store holds: the record of the new contact, read back.
    let acme = TenantId::parse("acme").unwrap();
    let entity = EntityName::parse("contact").unwrap();
    let record = store
        .get_record(&acme, &entity, &contact.provider, &contact_id)
        .await
        .expect("read the record")
        .expect("the created contact is stored as the write succeeds");
    assert_eq!(record.data["email"], "ada.lovelace@acme.example.com", "{record:#?}");
}
