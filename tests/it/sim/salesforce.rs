//! Salesforce REST / SOQL.

use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, read, refresh};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Salesforce, n)
}

const ACCOUNT_FIELDS: &str = "Id, Name, Website, Industry, OwnerId, CreatedDate, SystemModstamp, LastModifiedDate";

/// Runs a query and follows `nextRecordsUrl`; returns records and page sizes.
async fn walk(s: &Session, soql: &str, batch: Option<u32>) -> (Vec<Value>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut request = s.get("/query").query(&[("q", soql)]);
    loop {
        if let Some(b) = batch {
            request = request.header("Sforce-Query-Options", format!("batchSize={b}"));
        }
        let response = request.send().await.expect("send");
        assert!(response.headers().get("sforce-limit-info").is_some());
        let (status, body) = read(response).await;
        assert_eq!(status, 200, "{body}");
        let page = body["records"].as_array().cloned().unwrap_or_default();
        sizes.push(page.len());
        rows.extend(page);
        if body["done"] == true {
            assert!(body.get("nextRecordsUrl").is_none());
            assert_eq!(body["totalSize"].as_u64(), Some(rows.len() as u64));
            return (rows, sizes);
        }
        let next = body["nextRecordsUrl"].as_str().expect("nextRecordsUrl");
        assert!(next.starts_with("/services/data/v60.0/query/01g"), "{next}");
        request = s.authed(s.client.get(format!("{}{next}", s.sim.base_url())));
    }
}

#[tokio::test]
async fn invalid_and_expired_sessions_get_invalid_session_id() {
    let s = Session::start(config(2)).await;
    let url = format!("{}/query?q=SELECT+Id+FROM+Account", s.sim.api_base());
    let response = s.client.get(&url).bearer_auth("nope").send().await.expect("send");
    assert!(response.headers().get("sforce-limit-info").is_some());
    let (status, body) = read(response).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (401, Some("INVALID_SESSION_ID")));
    assert_eq!(body[0]["message"], "Session expired or invalid");
    s.sim.expire_access_tokens();
    let (status, body) = read(s.probe().send().await.expect("send")).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (401, Some("INVALID_SESSION_ID")));
}

#[tokio::test]
async fn token_response_has_instance_url_and_rotation_is_optional() {
    let sim = boot(config(1)).await;
    let c = client();
    let creds = sim.credentials();
    let rt = creds["refresh_token"].as_str().unwrap_or_default();
    let (status, body) = refresh(&sim, &c, &creds, rt).await;
    assert_eq!(status, 200);
    assert_eq!(body["instance_url"].as_str(), Some(sim.base_url().as_str()));
    assert!(body.get("expires_in").is_none() && body.get("refresh_token").is_none());
    for key in ["id", "token_type", "issued_at", "signature"] {
        assert!(body[key].is_string(), "{key}");
    }
    let (status, body) = refresh(&sim, &c, &creds, "bad").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    let rotating = boot(config(1).rotate_refresh_tokens(true)).await;
    let creds = rotating.credentials();
    let rt = creds["refresh_token"].as_str().unwrap_or_default();
    let (_, body) = refresh(&rotating, &c, &creds, rt).await;
    let rt2 = body["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(rt2, rt);
    assert_eq!(refresh(&rotating, &c, &creds, rt).await.0, 400);
}

#[tokio::test]
async fn query_walk_follows_next_records_url_to_done() {
    let s = Session::start(config(25).page_size_cap(10)).await;
    let (rows, sizes) = walk(&s, &format!("SELECT {ACCOUNT_FIELDS} FROM Account"), None).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_records(&s.sim, "accounts", &rows, &(0..25).collect::<Vec<_>>());
    let ids: std::collections::HashSet<_> = rows.iter().filter_map(|r| r["Id"].as_str()).collect();
    assert_eq!(ids.len(), 25);
    assert!(ids.iter().all(|id| id.len() == 18 && id.starts_with("001")));
    let (rows, _) =
        walk(&s, "SELECT Id, FirstName, LastName, Email, AccountId, CreatedDate, SystemModstamp FROM Contact", None)
            .await;
    assert_records(&s.sim, "contacts", &rows, &(0..25).collect::<Vec<_>>());
    let (rows, _) = walk(
        &s,
        "SELECT Id, Name, Amount, StageName, CloseDate, AccountId, CreatedDate, SystemModstamp FROM Opportunity",
        None,
    )
    .await;
    assert_records(&s.sim, "opportunities", &rows, &(0..25).collect::<Vec<_>>());
}

#[tokio::test]
async fn batch_size_header_is_honoured_within_200_to_2000() {
    let s = Session::start(config(2_450)).await;
    let (_, sizes) = walk(&s, "SELECT Id FROM Account", None).await;
    assert_eq!(sizes, vec![2000, 450]);
    let (_, sizes) = walk(&s, "SELECT Id FROM Account LIMIT 450", Some(200)).await;
    assert_eq!(sizes, vec![200, 200, 50]);
    let (_, sizes) = walk(&s, "SELECT Id FROM Account LIMIT 300", Some(50)).await;
    assert_eq!(sizes, vec![200, 100]);
}

#[tokio::test]
async fn one_full_page_and_empty_results() {
    let s = Session::start(config(10).page_size_cap(10)).await;
    let (rows, sizes) = walk(&s, "SELECT Id FROM Account", None).await;
    assert_eq!((rows.len(), sizes), (10, vec![10]));
    let s = Session::start(config(0)).await;
    let (rows, sizes) = walk(&s, "SELECT Id FROM Account", None).await;
    assert_eq!((rows.len(), sizes), (0, vec![0]));
}

#[tokio::test]
async fn system_modstamp_filter_selects_suffix_then_modified() {
    let s = Session::start(config(25)).await;
    let t = s.sim.updated_at("accounts", 20).expect("record").format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let soql = format!("SELECT {ACCOUNT_FIELDS} FROM Account WHERE SystemModstamp >= {t} ORDER BY SystemModstamp");
    let (rows, _) = walk(&s, &soql, None).await;
    assert_records(&s.sim, "accounts", &rows, &(20..25).collect::<Vec<_>>());
    let soql = format!("SELECT {ACCOUNT_FIELDS} FROM Account WHERE SystemModstamp > {t}");
    let (rows, _) = walk(&s, &soql, None).await;
    assert_records(&s.sim, "accounts", &rows, &(21..25).collect::<Vec<_>>());
    let id = s.sim.expected_record("accounts", 20).expect("record")["Id"].as_str().expect("Id").to_owned();
    let soql = format!("SELECT {ACCOUNT_FIELDS} FROM Account WHERE Id > '{id}' ORDER BY Id ASC");
    let (rows, _) = walk(&s, &soql, None).await;
    assert_records(&s.sim, "accounts", &rows, &(21..25).collect::<Vec<_>>());
    let soql = format!(
        "SELECT {ACCOUNT_FIELDS} FROM Account WHERE LastModifiedDate < {t} ORDER BY LastModifiedDate DESC LIMIT 3"
    );
    let (rows, _) = walk(&s, &soql, None).await;
    assert_records(&s.sim, "accounts", &rows, &[19, 18, 17]);
    let anchor = s.sim.anchor().format("%Y-%m-%dT%H:%M:%SZ");
    assert!(s.sim.modify("accounts", 13));
    assert!(s.sim.modify("accounts", 1));
    let soql =
        format!("SELECT {ACCOUNT_FIELDS} FROM Account WHERE SystemModstamp >= {anchor} ORDER BY SystemModstamp ASC");
    let (rows, _) = walk(&s, &soql, None).await;
    assert_records(&s.sim, "accounts", &rows, &[13, 1]);
}

#[tokio::test]
async fn bad_queries_and_locators_get_salesforce_error_arrays() {
    let s = Session::start(config(3)).await;
    for (q, code) in [
        ("SELECT Id FRM Account", "MALFORMED_QUERY"),
        ("SELECT Nope FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        ("SELECT Id FROM Account WHERE SystemModstamp >= '2024-01-01T00:00:00Z'", "MALFORMED_QUERY"),
    ] {
        let (status, body) = read(s.get("/query").query(&[("q", q)]).send().await.expect("send")).await;
        assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some(code)), "{q}");
    }
    let (status, body) = read(s.get("/query/01gSIM999999999999-2000").send().await.expect("send")).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_QUERY_LOCATOR")));
}
