//! OneFile API v2.1.

use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, login_with, read};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::OneFile, n)
}

const DENIED: &str = "Authorization has been denied for this request.";

/// Walks pages until a short page or 204; returns rows and statuses seen.
async fn walk(s: &Session, path: &str, size: u64, extra: Value) -> (Vec<Value>, Vec<(u16, usize)>) {
    let mut rows = Vec::new();
    let mut seen = Vec::new();
    for page in 1.. {
        let mut body = json!({"PageNumber": page, "PageSize": size});
        if path == "/User/Search" {
            body["Role"] = json!(1);
        }
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let response = s.post(path).json(&body).send().await.expect("send");
        let (status, value) = read(response).await;
        if status == 204 {
            assert_eq!(value, Value::Null);
            seen.push((204, 0));
            break;
        }
        assert_eq!(status, 200, "{value}");
        let items = value.as_array().cloned().expect("bare array");
        seen.push((200, items.len()));
        let short = (items.len() as u64) < size;
        rows.extend(items);
        if short {
            break;
        }
    }
    (rows, seen)
}

#[tokio::test]
async fn bad_customer_token_and_missing_session_get_401() {
    let sim = boot(config(2)).await;
    let c = client();
    let auth = sim.token_url().expect("token url");
    let (status, body) = read(c.post(&auth).header("X-CustomerToken", "nope").send().await.expect("send")).await;
    assert_eq!((status, body["Message"].as_str()), (401, Some(DENIED)));
    let search = format!("{}/User/Search", sim.api_base());
    for request in [c.post(&search), c.post(&search).header("X-TokenID", "forged")] {
        let (status, body) = read(request.json(&json!({"Role": 1})).send().await.expect("send")).await;
        assert_eq!((status, body["Message"].as_str()), (401, Some(DENIED)));
    }
    assert!(sim.credentials()["customer_token"].is_string());
}

#[tokio::test]
async fn full_walk_with_partial_last_page() {
    let s = Session::start(config(25)).await;
    let (rows, seen) = walk(&s, "/User/Search", 10, json!({})).await;
    assert_eq!(seen, vec![(200, 10), (200, 10), (200, 5)]);
    assert_records(&s.sim, "learners", &rows, &(0..25).collect::<Vec<_>>());
    assert!(rows[0]["ID"].is_u64() && rows[0]["ModifiedOn"].is_string());
    let (orgs, _) = walk(&s, "/Organisation/Search", 10, json!({})).await;
    assert_records(&s.sim, "organisations", &orgs, &(0..25).collect::<Vec<_>>());
}

#[tokio::test]
async fn one_full_page_then_204_and_empty_stream_is_204() {
    let s = Session::start(config(10)).await;
    let (rows, seen) = walk(&s, "/User/Search", 10, json!({})).await;
    assert_eq!((rows.len(), seen), (10, vec![(200, 10), (204, 0)]));
    let s = Session::start(config(0)).await;
    let (_, seen) = walk(&s, "/User/Search", 10, json!({})).await;
    assert_eq!(seen, vec![(204, 0)]);
}

#[tokio::test]
async fn role_and_page_size_are_validated() {
    let s = Session::start(config(5).page_size_cap(3)).await;
    let (status, body) = read(s.post("/User/Search").json(&json!({})).send().await.expect("send")).await;
    assert_eq!(status, 400);
    assert!(body["ModelState"]["model.Role"].is_array(), "{body}");
    let (status, _) = read(s.post("/User/Search").json(&json!({"Role": 5})).send().await.expect("send")).await;
    assert_eq!(status, 204);
    let (status, _) =
        read(s.post("/User/Search").json(&json!({"Role": 1, "PageSize": 4})).send().await.expect("send")).await;
    assert_eq!(status, 400);
    let (rows, seen) = walk(&s, "/User/Search", 3, json!({})).await;
    assert_eq!((rows.len(), seen), (5, vec![(200, 3), (200, 2)]));
    let uncapped = Session::start(config(1)).await;
    let (status, _) =
        read(uncapped.post("/User/Search").json(&json!({"Role": 1, "PageSize": 501})).send().await.expect("send"))
            .await;
    assert_eq!(status, 400);
    let form = uncapped.post("/User/Search").form(&[("Role", "1"), ("PageSize", "500")]);
    let (status, body) = read(form.send().await.expect("send")).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));
}

#[tokio::test]
async fn modified_from_selects_suffix_then_modified() {
    let s = Session::start(config(20)).await;
    let since = s.sim.expected_record("learners", 15).expect("record")["ModifiedOn"].clone();
    let (rows, _) = walk(&s, "/User/Search", 100, json!({"ModifiedFrom": since})).await;
    assert_records(&s.sim, "learners", &rows, &(15..20).collect::<Vec<_>>());
    let anchor = s.sim.anchor().to_rfc3339();
    assert!(s.sim.modify("learners", 9));
    assert!(s.sim.modify("learners", 2));
    let (rows, _) = walk(&s, "/User/Search", 100, json!({"ModifiedFrom": anchor})).await;
    assert_records(&s.sim, "learners", &rows, &[2, 9]);
}

#[tokio::test]
async fn expired_sessions_are_denied_until_reauthentication() {
    let s = Session::start(config(2)).await;
    s.sim.expire_access_tokens();
    let (status, body) = read(s.probe().send().await.expect("send")).await;
    assert_eq!((status, body["Message"].as_str()), (401, Some(DENIED)));
    let fresh = Session {
        sim: s.sim.clone(),
        client: s.client.clone(),
        auth: login_with(&s.sim, &s.client, &s.sim.credentials()).await,
    };
    assert_eq!(read(fresh.probe().send().await.expect("send")).await.0, 200);
    assert_eq!(s.sim.requests_for("/api/v2.1/Authentication"), 2);
}
