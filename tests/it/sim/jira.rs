//! Jira Cloud REST v3.

use serde_json::{Value, json};
use tributary_simulator::{Provider, SimConfig};

use super::common::{Auth, Session, assert_records, boot, client, login_with, read};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Jira, n)
}

async fn jql(s: &Session, body: &Value) -> (u16, Value) {
    read(s.post("/search/jql").json(body).send().await.expect("send")).await
}

/// Follows `nextPageToken` until `isLast`.
async fn walk(s: &Session, mut body: Value) -> (Vec<Value>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (status, page) = jql(s, &body).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.get("total").is_none());
        let issues = page["issues"].as_array().cloned().unwrap_or_default();
        sizes.push(issues.len());
        rows.extend(issues);
        if page["isLast"] == true {
            assert!(page.get("nextPageToken").is_none());
            return (rows, sizes);
        }
        body["nextPageToken"] = page["nextPageToken"].clone();
    }
}

#[tokio::test]
async fn bad_basic_and_bearer_credentials_get_401() {
    let s = Session::start(config(2)).await;
    let url = format!("{}/project/search", s.sim.api_base());
    for request in [s.client.get(&url), s.client.get(&url).basic_auth("sim@example.com", Some("wrong"))] {
        let (status, body) = read(request.send().await.expect("send")).await;
        assert_eq!(status, 401);
        assert_eq!(body["errorMessages"][0], "Client must be authenticated to access this resource.");
    }
    let (status, body) = read(s.client.get(&url).bearer_auth("nope").send().await.expect("send")).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(401)));
    assert_eq!(read(s.probe().send().await.expect("send")).await.0, 200);
}

#[tokio::test]
async fn oauth_refresh_rotates_with_reuse_detection() {
    let sim = boot(config(2)).await;
    let c = client();
    let creds = sim.oauth_credentials().expect("jira supports oauth");
    let url = sim.token_url().expect("token url");
    let grant = |rt: &str| json!({"grant_type": "refresh_token", "client_id": creds["client_id"], "client_secret": creds["client_secret"], "refresh_token": rt});
    let rt0 = creds["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (status, first) = read(c.post(&url).json(&grant(&rt0)).send().await.expect("send")).await;
    assert_eq!((status, first["expires_in"].as_u64()), (200, Some(3600)));
    let rt1 = first["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(rt0, rt1);
    let at = first["access_token"].as_str().expect("access").to_owned();
    let projects = format!("{}/project/search", sim.api_base());
    assert_eq!(c.get(&projects).bearer_auth(&at).send().await.expect("send").status().as_u16(), 200);
    let (status, body) = read(c.post(&url).json(&grant(&rt0)).send().await.expect("send")).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("invalid_grant")));
    assert_eq!(body["error_description"], "Unknown or invalid refresh token.");
    let (status, _) = read(c.post(&url).json(&grant(&rt1)).send().await.expect("send")).await;
    assert_eq!(status, 403, "the whole grant is revoked");
    assert_eq!(c.get(&projects).bearer_auth(&at).send().await.expect("send").status().as_u16(), 401);
    let form = [("grant_type", "refresh_token")];
    assert_eq!(c.post(&url).form(&form).send().await.expect("send").status().as_u16(), 400);
}

#[tokio::test]
async fn project_search_pages_by_offset() {
    let s = Session::start(config(0).parents(5)).await;
    let mut rows = Vec::new();
    let mut start = 0;
    loop {
        let q = [("startAt", start.to_string()), ("maxResults", "2".to_owned())];
        let (status, body) = read(s.get("/project/search").query(&q).send().await.expect("send")).await;
        assert_eq!((status, body["total"].as_u64()), (200, Some(5)));
        let values = body["values"].as_array().cloned().unwrap_or_default();
        start += values.len();
        rows.extend(values);
        assert_eq!(body["isLast"] == true, body.get("nextPage").is_none());
        if body["isLast"] == true {
            break;
        }
    }
    assert_records(&s.sim, "projects", &rows, &[0, 1, 2, 3, 4]);
    let many = Session::start(config(0).parents(60)).await;
    let (_, body) = read(many.get("/project/search").query(&[("maxResults", "100")]).send().await.expect("send")).await;
    assert_eq!((body["maxResults"].as_u64(), body["values"].as_array().map(Vec::len)), (Some(50), Some(50)));
}

#[tokio::test]
async fn jql_walk_per_project_with_partial_last_page() {
    let s = Session::start(config(30).parents(3)).await;
    let key = s.sim.expected_record("projects", 1).expect("project")["key"].as_str().expect("key").to_owned();
    let body = json!({"jql": format!("project = {key}"), "maxResults": 4, "fields": ["*all"]});
    let (rows, sizes) = walk(&s, body).await;
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_records(&s.sim, "issues", &rows, &(10..20).collect::<Vec<_>>());
    assert_eq!(rows[0]["key"].as_str(), Some(format!("{key}-1").as_str()));
    let (rows, sizes) = walk(&s, json!({"jql": format!("project = {key}"), "maxResults": 10})).await;
    assert_eq!(sizes, vec![10]);
    assert_eq!(rows[0].as_object().map(|o| o.len()), Some(1), "ids only without fields");
    let (_, page) = jql(&s, &json!({"jql": format!("project = {key}"), "fields": ["summary"]})).await;
    let fields = page["issues"][0]["fields"].as_object().expect("fields");
    assert_eq!(fields.keys().collect::<Vec<_>>(), vec!["summary"]);
    let q = [("jql", format!("project = {key}")), ("fields", "*all".to_owned()), ("maxResults", "20".to_owned())];
    let (status, page) = read(s.get("/search/jql").query(&q).send().await.expect("send")).await;
    assert_eq!((status, page["issues"].as_array().map(Vec::len)), (200, Some(10)));
}

#[tokio::test]
async fn updated_clause_at_minute_precision_then_modified() {
    let s = Session::start(config(30).parents(3)).await;
    let t = s.sim.updated_at("issues", 15).expect("issue").format("%Y-%m-%d %H:%M");
    let body =
        json!({"jql": format!("project = SIMB AND updated >= \"{t}\" ORDER BY updated ASC"), "fields": ["*all"]});
    let (rows, _) = walk(&s, body).await;
    assert_records(&s.sim, "issues", &rows, &[15, 16, 17, 18, 19]);
    let since = s.sim.anchor().format("%Y-%m-%d %H:%M");
    assert!(s.sim.modify("issues", 13));
    assert!(s.sim.modify("issues", 2));
    let body = json!({"jql": format!("updated >= '{since}' ORDER BY updated"), "fields": ["*all"]});
    let (rows, _) = walk(&s, body).await;
    assert_records(&s.sim, "issues", &rows, &[13, 2]);
}

#[tokio::test]
async fn unbounded_unknown_and_forged_queries_are_refused() {
    let s = Session::start(config(5).parents(1)).await;
    let (status, body) = jql(&s, &json!({"jql": "ORDER BY updated ASC"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errorMessages": ["Unbounded JQL queries are not allowed here. Please add a search restriction to your query."], "errors": {}})
    );
    let (status, body) = jql(&s, &json!({"jql": "project = NOPE"})).await;
    assert_eq!(status, 400);
    assert!(body["errorMessages"][0].as_str().is_some_and(|m| m.contains("NOPE")));
    let (status, _) = jql(&s, &json!({"jql": "project = SIMA", "nextPageToken": "forged"})).await;
    assert_eq!(status, 400);
    let (status, _) = jql(&s, &json!({"jql": "project = SIMA AND updated >= \"last tuesday\""})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn one_full_page_and_empty_projects() {
    let s = Session::start(config(6).parents(1)).await;
    let (rows, sizes) = walk(&s, json!({"jql": "project = SIMA", "maxResults": 6})).await;
    assert_eq!((rows.len(), sizes), (6, vec![6]));
    let s = Session::start(config(0).parents(1)).await;
    let (rows, sizes) = walk(&s, json!({"jql": "project = SIMA"})).await;
    assert_eq!((rows.len(), sizes), (0, vec![0]));
    let capped = Session::start(config(250).parents(1)).await;
    let (_, page) = jql(&capped, &json!({"jql": "project = SIMA", "maxResults": 5000})).await;
    assert_eq!(page["issues"].as_array().map(Vec::len), Some(100));
}

#[tokio::test]
async fn oauth_tokens_expire_like_basic_tokens_do_not() {
    let sim = boot(config(2).parents(1)).await;
    let c = client();
    let oauth = Session {
        sim: sim.clone(),
        client: c.clone(),
        auth: login_with(&sim, &c, &sim.oauth_credentials().expect("oauth")).await,
    };
    assert!(matches!(oauth.auth, Auth::Bearer(_)));
    let basic = Session { sim: sim.clone(), client: c.clone(), auth: login_with(&sim, &c, &sim.credentials()).await };
    sim.expire_access_tokens();
    assert_eq!(read(oauth.probe().send().await.expect("send")).await.0, 401);
    assert_eq!(read(basic.probe().send().await.expect("send")).await.0, 200);
}
