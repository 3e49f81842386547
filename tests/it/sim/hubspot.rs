//! HubSpot CRM v3.

use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, read, refresh};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::HubSpot, n)
}

const ALL_CONTACT_PROPS: &str =
    "firstname,lastname,email,company,phone,account_manager,hs_object_id,lastmodifieddate,createdate";

async fn walk_list(s: &Session, object: &str, limit: usize, props: &str) -> (Vec<Value>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let l = limit.to_string();
        let mut q = vec![("limit", l.as_str()), ("properties", props)];
        if let Some(a) = &after {
            q.push(("after", a.as_str()));
        }
        let (status, body) = read(s.get(&format!("/objects/{object}")).query(&q).send().await.expect("send")).await;
        assert_eq!(status, 200, "{body}");
        let page = body["results"].as_array().cloned().unwrap_or_default();
        sizes.push(page.len());
        rows.extend(page);
        match body["paging"]["next"]["after"].as_str() {
            Some(a) => {
                assert!(body["paging"]["next"]["link"].as_str().is_some_and(|l| l.contains(a)));
                after = Some(a.to_owned());
            }
            None => return (rows, sizes),
        }
    }
}

async fn search(s: &Session, object: &str, body: &Value) -> (u16, Value) {
    read(s.post(&format!("/objects/{object}/search")).json(body).send().await.expect("send")).await
}

async fn walk_search(s: &Session, object: &str, mut body: Value) -> Vec<Value> {
    let mut rows = Vec::new();
    loop {
        let (status, page) = search(s, object, &body).await;
        assert_eq!(status, 200, "{page}");
        rows.extend(page["results"].as_array().cloned().unwrap_or_default());
        match page["paging"]["next"]["after"].as_str() {
            Some(a) => body["after"] = json!(a),
            None => return rows,
        }
    }
}

#[tokio::test]
async fn unknown_and_expired_tokens_get_hubspot_401_bodies() {
    let s = Session::start(config(2)).await;
    let url = format!("{}/objects/contacts", s.sim.api_base());
    let (status, body) = read(s.client.get(&url).bearer_auth("nope").send().await.expect("send")).await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("Authentication credentials not found.")));
    s.sim.expire_access_tokens();
    let (status, body) = read(s.probe().send().await.expect("send")).await;
    assert_eq!((status, body["category"].as_str()), (401, Some("EXPIRED_AUTHENTICATION")));
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("The OAuth token used to make this call expired")));
    assert!(body["context"]["expire time"].is_array() && body["correlationId"].is_string());
}

#[tokio::test]
async fn refresh_tokens_are_not_rotated_and_bad_ones_are_refused() {
    let sim = boot(config(1)).await;
    let c = client();
    let creds = sim.credentials();
    let rt = creds["refresh_token"].as_str().unwrap_or_default();
    for _ in 0..2 {
        let (status, body) = refresh(&sim, &c, &creds, rt).await;
        assert_eq!(status, 200);
        assert_eq!((body["refresh_token"].as_str(), body["expires_in"].as_u64()), (Some(rt), Some(1800)));
    }
    let (status, body) = refresh(&sim, &c, &creds, "bogus").await;
    assert_eq!(
        (status, body["error"].as_str(), body["status"].as_str()),
        (400, Some("invalid_grant"), Some("BAD_REFRESH_TOKEN"))
    );
    sim.revoke();
    let (status, body) = refresh(&sim, &c, &creds, rt).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn list_walk_returns_every_contact_and_stops_without_paging() {
    let s = Session::start(config(25)).await;
    let (rows, sizes) = walk_list(&s, "contacts", 10, ALL_CONTACT_PROPS).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_records(&s.sim, "contacts", &rows, &(0..25).collect::<Vec<_>>());
    let (rows, sizes) = walk_list(&s, "deals", 25, "dealname").await;
    assert_eq!((rows.len(), sizes), (25, vec![25]));
    let props = rows[0]["properties"].as_object().expect("properties");
    assert!(props.contains_key("dealname") && props.contains_key("dealstage") && props.contains_key("pipeline"));
}

#[tokio::test]
async fn default_properties_only_unless_requested() {
    let s = Session::start(config(1)).await;
    let (_, body) = read(s.get("/objects/contacts").send().await.expect("send")).await;
    let keys: Vec<&String> = body["results"][0]["properties"].as_object().expect("props").keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(!keys.iter().any(|k| *k == "phone" || *k == "account_manager"));
    let (_, body) =
        read(s.get("/objects/contacts").query(&[("properties", "account_manager")]).send().await.expect("send")).await;
    assert!(body["results"][0]["properties"]["account_manager"].is_string());
}

#[tokio::test]
async fn limits_are_capped_and_bad_cursors_refused() {
    let s = Session::start(config(250)).await;
    let (_, body) = read(s.get("/objects/companies").query(&[("limit", "500")]).send().await.expect("send")).await;
    assert_eq!(body["results"].as_array().map(Vec::len), Some(100));
    assert!(body["paging"]["next"]["after"].is_string());
    let (status, body) = search(&s, "companies", &json!({"limit": 500})).await;
    assert_eq!((status, body["results"].as_array().map(Vec::len)), (200, Some(200)));
    let (status, body) = read(s.get("/objects/contacts").query(&[("after", "abc")]).send().await.expect("send")).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    let (status, _) = search(&s, "contacts", &json!({"after": "xyz"})).await;
    assert_eq!(status, 400);
    let (status, body) = read(s.get("/objects/widgets").send().await.expect("send")).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
}

#[tokio::test]
async fn one_full_page_and_empty_objects() {
    let s = Session::start(config(10)).await;
    let (rows, sizes) = walk_list(&s, "contacts", 10, "email").await;
    assert_eq!((rows.len(), sizes), (10, vec![10]));
    let s = Session::start(config(0)).await;
    let (rows, sizes) = walk_list(&s, "contacts", 10, "email").await;
    assert_eq!((rows.len(), sizes), (0, vec![0]));
    let (status, body) = search(&s, "contacts", &json!({})).await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(0)));
    assert!(body.get("paging").is_none());
}

#[tokio::test]
async fn search_by_last_modified_selects_suffix_then_the_modified() {
    let s = Session::start(config(25)).await;
    let ms = s.sim.updated_at("contacts", 20).expect("record").timestamp_millis().to_string();
    let body = json!({
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": ms}]}],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ALL_CONTACT_PROPS.split(',').collect::<Vec<_>>(),
        "limit": 2,
    });
    let rows = walk_search(&s, "contacts", body.clone()).await;
    assert_records(&s.sim, "contacts", &rows, &(20..25).collect::<Vec<_>>());
    let anchor = s.sim.anchor().to_rfc3339();
    assert!(s.sim.modify("contacts", 22));
    assert!(s.sim.modify("contacts", 4));
    let mut body = body;
    body["filterGroups"][0]["filters"][0]["value"] = json!(anchor);
    body["filterGroups"][0]["filters"][0]["propertyName"] = json!("hs_lastmodifieddate");
    let (_, first) = search(&s, "contacts", &body).await;
    assert_eq!(first["total"], 2);
    let rows = walk_search(&s, "contacts", body).await;
    assert_records(&s.sim, "contacts", &rows, &[22, 4]);
}

#[tokio::test]
async fn search_stops_at_ten_thousand_and_the_id_workaround_continues() {
    let s = Session::start(config(10_050).stream_records("companies", 0).stream_records("deals", 0)).await;
    let (status, body) = search(&s, "contacts", &json!({"limit": 200, "after": "9800"})).await;
    assert_eq!(status, 200);
    assert_eq!((body["total"].as_u64(), body["paging"]["next"]["after"].as_str()), (Some(10_050), Some("10000")));
    let (status, body) = search(&s, "contacts", &json!({"limit": 200, "after": "10000"})).await;
    assert_eq!((status, body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    let workaround = json!({
        "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "10000"}]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        "properties": ALL_CONTACT_PROPS.split(',').collect::<Vec<_>>(),
        "limit": 200,
    });
    let rows = walk_search(&s, "contacts", workaround).await;
    assert_records(&s.sim, "contacts", &rows, &(10_000..10_050).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_responses_carry_rate_limit_headers() {
    let s = Session::start(config(1)).await;
    let response = s.probe().send().await.expect("send");
    let h = response.headers();
    assert_eq!(h.get("x-hubspot-ratelimit-max").and_then(|v| v.to_str().ok()), Some("110"));
    assert!(h.get("x-hubspot-ratelimit-remaining").is_some());
    assert_eq!(h.get("x-hubspot-ratelimit-interval-milliseconds").and_then(|v| v.to_str().ok()), Some("10000"));
}
