//! Parsing one page of records: the whole body into `serde_json::Value` (what every
//! page cost before projections) against the body with each record projected onto the
//! paths a run reads (`tributary::http::shape`), and the scan that finds the records'
//! raw bytes (dead letters). The page is 100 Jira issues of ~1.9 KB each, shaped as
//! `../shared/peers/fake_jira.py` serves them with `fields = ["*all"]`, mapped by the
//! peers' Jira manifest (7 fields plus the cursor).
//!
//! `cargo bench --bench parse`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary::http::shape::{BodyShape, Projection, parse_body, raw_records};

fn issue(i: u64) -> Value {
    let user = json!({
        "self": "https://fake-jira.atlassian.net/rest/api/3/user?accountId=5b10a2844c20165700ede000",
        "accountId": "5b10a2844c20165700ede000", "displayName": format!("User {:02} Example", i % 40),
        "active": true, "timeZone": "UTC", "accountType": "atlassian",
    });
    json!({
        "expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
        "id": (10_000 + i).to_string(),
        "self": format!("https://fake-jira.atlassian.net/rest/api/3/issue/{}", 10_000 + i),
        "key": format!("ALPHA-{i}"),
        "fields": {
            "summary": format!("Fix login flow (#{i})"),
            "status": {"self": "https://fake-jira.atlassian.net/rest/api/3/status/1", "id": "1", "name": "To Do",
                       "statusCategory": {"key": "new", "name": "To Do"}},
            "assignee": user.clone(), "reporter": user,
            "created": "2022-01-01T00:00:00.000+0000", "updated": "2022-01-01T00:05:00.000+0000",
            "project": {"self": "https://fake-jira.atlassian.net/rest/api/3/project/10000", "id": "10000",
                        "key": "ALPHA", "name": "Alpha Platform", "projectTypeKey": "software"},
            "priority": {"self": "https://fake-jira.atlassian.net/rest/api/3/priority/1", "id": "1", "name": "Highest"},
            "issuetype": {"id": "10001", "name": "Bug", "subtask": false},
            "labels": [], "resolution": null, "customfield_10016": null,
            "description": format!("ALPHA-{i}: Steps to reproduce: open the project board, filter by the current \
                sprint and drag a card between columns while a background sync is running. Expected: the card \
                moves and the change is persisted. Actual: the request times out after thirty seconds and the \
                board shows a stale state until a full reload. Logs show repeated retries against the upstream \
                API with exponential backoff; the cursor is not advanced. Environment: production, EU region, \
                build 2024.11.3. "),
            "comment": {"comments": [], "maxResults": 0, "total": 0, "startAt": 0},
            "worklog": {"startAt": 0, "maxResults": 20, "total": 0, "worklogs": []},
        },
    })
}

fn time(label: &str, bytes: usize, records: usize, mut f: impl FnMut()) {
    for _ in 0..20 {
        f();
    }
    let mut samples = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_millis(200) {
            f();
            n += 1;
        }
        samples.push(started.elapsed() / n);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let mb_s = bytes as f64 / median.as_secs_f64() / 1e6;
    let per_record = median / records as u32;
    println!("{label:<40} {median:>10.1?} per page  {per_record:>8.2?} per record  {mb_s:>7.0} MB/s");
}

fn main() {
    let records: Vec<Value> = (1..=100).map(issue).collect();
    let body = json!({"issues": records, "nextPageToken": "bzoxMDA", "isLast": false}).to_string().into_bytes();
    let mut projection = Projection::default();
    for path in
        ["id", "key", "fields.summary", "fields.status.name", "fields.assignee.displayName", "fields.project.key"]
    {
        projection.keep_path(path);
    }
    projection.keep_path("fields.updated");
    let shape = BodyShape::new("/issues", Arc::new(projection));
    println!("one page: {} records, {} bytes", records.len(), body.len());
    time("whole (serde_json::from_slice::<Value>)", body.len(), 100, || {
        black_box(serde_json::from_slice::<Value>(black_box(&body)).unwrap());
    });
    time("projected (shape::parse_body)", body.len(), 100, || {
        black_box(parse_body(black_box(&body), Some(&shape)).unwrap());
    });
    time("raw records (shape::raw_records)", body.len(), 100, || {
        black_box(raw_records(black_box(&body), "/issues").unwrap());
    });
    let whole: Value = serde_json::from_slice(&body).unwrap();
    let projected = parse_body(&body, Some(&shape)).unwrap();
    assert_eq!(projected["issues"][7]["fields"]["status"]["name"], whole["issues"][7]["fields"]["status"]["name"]);
    assert_eq!(projected["nextPageToken"], whole["nextPageToken"]);
}
