//! Bud (assumed REST shape).

use std::time::Duration;

use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, read};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Bud, n)
}

async fn walk(s: &Session, path: &str, size: u64, extra: &[(&str, &str)]) -> (Vec<Value>, Vec<usize>, u64) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut total = 0;
    for page in 1.. {
        let (p, z) = (page.to_string(), size.to_string());
        let mut q = vec![("pageNumber", p.as_str()), ("pageSize", z.as_str())];
        q.extend_from_slice(extra);
        let (status, body) = read(s.get(path).query(&q).send().await.expect("send")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["pageNumber"], page);
        total = body["totalCount"].as_u64().expect("totalCount");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        sizes.push(items.len());
        let done = (items.len() as u64) < size;
        rows.extend(items);
        if done {
            break;
        }
    }
    (rows, sizes, total)
}

#[tokio::test]
async fn tokens_are_checked_and_errors_are_oauth_shaped() {
    let sim = boot(config(2)).await;
    let c = client();
    let url = format!("{}/learners", sim.api_base());
    let response = c.get(&url).send().await.expect("send");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("www-authenticate").is_some());
    let (status, body) = read(c.get(&url).bearer_auth("forged").send().await.expect("send")).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
    let form = [("grant_type", "client_credentials"), ("client_id", "x"), ("client_secret", "y")];
    let token_url = sim.token_url().expect("token url");
    let (status, body) = read(c.post(&token_url).form(&form).send().await.expect("send")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")));
    let creds = sim.credentials();
    assert!(creds["client_id"].is_string() && creds["client_secret"].is_string());
}

#[tokio::test]
async fn full_walk_partial_last_page_and_total() {
    let s = Session::start(config(25)).await;
    let (rows, sizes, total) = walk(&s, "/learners", 10, &[]).await;
    assert_eq!((sizes, total), (vec![10, 10, 5], 25));
    assert_records(&s.sim, "learners", &rows, &(0..25).collect::<Vec<_>>());
    let (rows, _, _) = walk(&s, "/employers", 7, &[]).await;
    assert_records(&s.sim, "employers", &rows, &(0..25).collect::<Vec<_>>());
}

#[tokio::test]
async fn one_full_page_and_empty_stream() {
    let s = Session::start(config(10)).await;
    let (_, sizes, total) = walk(&s, "/learners", 10, &[]).await;
    assert_eq!((sizes, total), (vec![10, 0], 10));
    let s = Session::start(config(0)).await;
    let (rows, sizes, total) = walk(&s, "/learners", 10, &[]).await;
    assert_eq!((rows.len(), sizes, total), (0, vec![0], 0));
}

#[tokio::test]
async fn updated_since_selects_suffix_then_modified_and_added() {
    let s = Session::start(config(25)).await;
    let since =
        s.sim.expected_record("learners", 20).expect("record")["updatedAt"].as_str().expect("updatedAt").to_owned();
    let (rows, _, total) = walk(&s, "/learners", 100, &[("updatedSince", &since)]).await;
    assert_eq!(total, 5);
    assert_records(&s.sim, "learners", &rows, &(20..25).collect::<Vec<_>>());
    let anchor = s.sim.anchor().to_rfc3339();
    assert!(s.sim.modify("learners", 17));
    assert!(s.sim.modify("learners", 3));
    assert_eq!(s.sim.add("learners", 2), Some(25..27));
    assert!(s.sim.delete("learners", 4));
    let (rows, _, _) = walk(&s, "/learners", 100, &[("updatedSince", &anchor)]).await;
    assert_records(&s.sim, "learners", &rows, &[3, 17, 25, 26]);
    let (rows, _, total) = walk(&s, "/learners", 100, &[]).await;
    assert_eq!((rows.len(), total), (26, 26));
}

#[tokio::test]
async fn page_size_is_capped_and_validated() {
    let s = Session::start(config(600)).await;
    let (status, body) = read(s.get("/learners").query(&[("pageSize", "1000")]).send().await.expect("send")).await;
    assert_eq!((status, body["pageSize"].as_u64()), (200, Some(500)));
    assert_eq!(body["items"].as_array().map(Vec::len), Some(500));
    let (status, body) = read(s.get("/learners").query(&[("pageNumber", "0")]).send().await.expect("send")).await;
    assert_eq!((status, body["status"].as_u64()), (400, Some(400)));
    assert!(body["title"].is_string() && body["traceId"].is_string(), "{body}");
    let capped = Session::start(config(12).page_size_cap(5)).await;
    let (rows, sizes, _) = walk(&capped, "/learners", 5, &[]).await;
    assert_eq!(sizes, vec![5, 5, 2]);
    assert_eq!(rows.len(), 12);
}

#[tokio::test]
async fn expired_tokens_get_invalid_token_and_a_new_token_works() {
    let s = Session::start(config(3)).await;
    s.sim.expire_access_tokens();
    let response = s.get("/learners").send().await.expect("send");
    assert_eq!(response.status().as_u16(), 401);
    let challenge =
        response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(challenge.contains("invalid_token") && challenge.contains("expired"), "{challenge}");
    let again = Session {
        sim: s.sim.clone(),
        client: s.client.clone(),
        auth: super::common::login_with(&s.sim, &s.client, &s.sim.credentials()).await,
    };
    assert_eq!(read(again.get("/learners").send().await.expect("send")).await.0, 200);
    let short = Session::start(config(3).access_token_ttl(Duration::ZERO)).await;
    assert_eq!(read(short.get("/learners").send().await.expect("send")).await.0, 401);
}

#[tokio::test]
async fn revoked_clients_cannot_get_tokens() {
    let s = Session::start(config(3)).await;
    s.sim.revoke();
    assert_eq!(read(s.get("/learners").send().await.expect("send")).await.0, 401);
    let creds = s.sim.credentials();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds["client_id"].as_str().unwrap_or_default()),
        ("client_secret", creds["client_secret"].as_str().unwrap_or_default()),
    ];
    let url = s.sim.token_url().expect("token url");
    let (status, body) = read(s.client.post(url).form(&form).send().await.expect("send")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")));
}
