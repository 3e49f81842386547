//! Slack Web API.

use serde_json::Value;
use tributary_simulator::{Provider, SimConfig};

use super::common::{Session, assert_records, boot, client, read, refresh};

fn config(n: u64) -> SimConfig {
    SimConfig::new(Provider::Slack, n)
}

async fn call(s: &Session, method: &str, q: &[(&str, &str)]) -> Value {
    let (status, body) = read(s.get(&format!("/{method}")).query(q).send().await.expect("send")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Follows `next_cursor` until it is empty.
async fn walk(s: &Session, method: &str, key: &str, q: &[(&str, &str)]) -> (Vec<Value>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut query = q.to_vec();
        if !cursor.is_empty() {
            query.push(("cursor", cursor.as_str()));
        }
        let body = call(s, method, &query).await;
        assert_eq!(body["ok"], true, "{body}");
        let page = body[key].as_array().cloned().unwrap_or_default();
        sizes.push(page.len());
        rows.extend(page);
        let next = body["response_metadata"]["next_cursor"].as_str().expect("next_cursor").to_owned();
        if method == "conversations.history" {
            assert_eq!(body["has_more"], !next.is_empty());
        }
        if next.is_empty() {
            return (rows, sizes);
        }
        cursor = next;
    }
}

#[tokio::test]
async fn auth_errors_are_http_200_with_ok_false() {
    let s = Session::start(config(2)).await;
    let url = format!("{}/users.list", s.sim.api_base());
    let (status, body) = read(s.client.get(&url).send().await.expect("send")).await;
    assert_eq!((status, body["ok"].as_bool(), body["error"].as_str()), (200, Some(false), Some("not_authed")));
    let (_, body) = read(s.client.get(&url).bearer_auth("xoxb-nope").send().await.expect("send")).await;
    assert_eq!(body["error"], "invalid_auth");
    s.sim.expire_access_tokens();
    assert_eq!(call(&s, "users.list", &[]).await["error"], "token_expired");
    s.sim.revoke();
    assert_eq!(call(&s, "users.list", &[]).await["error"], "token_revoked");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_grant() {
    let sim = boot(config(2)).await;
    let c = client();
    let creds = sim.credentials();
    let rt0 = creds["refresh_token"].as_str().unwrap_or_default().to_owned();
    assert!(rt0.starts_with("xoxe-1-"));
    let (_, first) = refresh(&sim, &c, &creds, &rt0).await;
    assert_eq!((first["ok"].as_bool(), first["expires_in"].as_u64()), (Some(true), Some(43_200)));
    let rt1 = first["refresh_token"].as_str().expect("rotated").to_owned();
    let at1 = first["access_token"].as_str().expect("access").to_owned();
    assert_ne!(rt1, rt0);
    let (_, second) = refresh(&sim, &c, &creds, &rt1).await;
    let rt2 = second["refresh_token"].as_str().expect("rotated").to_owned();
    // Presenting a spent token revokes the whole grant.
    let (status, reuse) = refresh(&sim, &c, &creds, &rt0).await;
    assert_eq!((status, reuse["ok"].as_bool(), reuse["error"].as_str()), (200, Some(false), Some("invalid_grant")));
    assert_eq!(refresh(&sim, &c, &creds, &rt2).await.1["error"], "invalid_grant");
    let url = format!("{}/users.list", sim.api_base());
    let (_, body) = read(c.get(&url).bearer_auth(&at1).send().await.expect("send")).await;
    assert_eq!(body["error"], "token_revoked");
    // Another installation is unaffected.
    let other = sim.new_grant().expect("oauth provider");
    let (_, body) = refresh(&sim, &c, &other, other["refresh_token"].as_str().unwrap_or_default()).await;
    assert_eq!(body["ok"], true);
    let mut wrong = other.clone();
    wrong["client_secret"] = "nope".into();
    assert_eq!(refresh(&sim, &c, &wrong, "x").await.1["error"], "bad_client_secret");
}

#[tokio::test]
async fn users_and_channels_walk_by_cursor() {
    let s = Session::start(config(25).parents(4)).await;
    let (rows, sizes) = walk(&s, "users.list", "members", &[("limit", "10")]).await;
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_records(&s.sim, "users", &rows, &(0..25).collect::<Vec<_>>());
    let (rows, _) = walk(&s, "conversations.list", "channels", &[("limit", "3")]).await;
    assert_records(&s.sim, "channels", &rows, &[0, 1, 2, 3]);
    let (rows, sizes) = walk(&s, "users.list", "members", &[("limit", "25")]).await;
    assert_eq!((rows.len(), sizes), (25, vec![25]));
}

#[tokio::test]
async fn history_is_newest_first_per_channel_with_exclusive_oldest() {
    let s = Session::start(config(30).parents(3)).await;
    let channel = s.sim.expected_record("channels", 1).expect("channel")["id"].as_str().expect("id").to_owned();
    let (rows, sizes) = walk(&s, "conversations.history", "messages", &[("channel", &channel), ("limit", "4")]).await;
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_records(&s.sim, "messages", &rows, &(10..20).rev().collect::<Vec<_>>());
    let oldest = s.sim.expected_record("messages", 15).expect("message")["ts"].as_str().expect("ts").to_owned();
    let q = [("channel", channel.as_str()), ("oldest", oldest.as_str())];
    let (rows, _) = walk(&s, "conversations.history", "messages", &q).await;
    assert_records(&s.sim, "messages", &rows, &[19, 18, 17, 16]);
    let q = [("channel", channel.as_str()), ("oldest", oldest.as_str()), ("inclusive", "true")];
    let (rows, _) = walk(&s, "conversations.history", "messages", &q).await;
    assert_records(&s.sim, "messages", &rows, &[19, 18, 17, 16, 15]);
    let since = format!("{}.{:06}", s.sim.anchor().timestamp(), s.sim.anchor().timestamp_subsec_micros());
    assert!(s.sim.modify("messages", 12));
    assert!(s.sim.modify("messages", 25));
    let q = [("channel", channel.as_str()), ("oldest", since.as_str())];
    let (rows, _) = walk(&s, "conversations.history", "messages", &q).await;
    assert_records(&s.sim, "messages", &rows, &[12]);
}

#[tokio::test]
async fn bad_channels_and_cursors_are_refused() {
    let s = Session::start(config(30).parents(3)).await;
    assert_eq!(call(&s, "conversations.history", &[("channel", "CNOPE")]).await["error"], "channel_not_found");
    assert_eq!(call(&s, "conversations.history", &[]).await["error"], "channel_not_found");
    let c0 = s.sim.expected_record("channels", 0).expect("channel")["id"].as_str().expect("id").to_owned();
    let c1 = s.sim.expected_record("channels", 1).expect("channel")["id"].as_str().expect("id").to_owned();
    let first = call(&s, "conversations.history", &[("channel", &c0), ("limit", "2")]).await;
    let cursor = first["response_metadata"]["next_cursor"].as_str().expect("cursor").to_owned();
    let other = call(&s, "conversations.history", &[("channel", &c1), ("cursor", &cursor)]).await;
    assert_eq!(other["error"], "invalid_cursor");
    assert_eq!(call(&s, "users.list", &[("cursor", "dXNlcjpVMDYxTkZUVDI=")]).await["error"], "invalid_cursor");
}

#[tokio::test]
async fn limits_are_capped_and_empty_streams_end_at_once() {
    let s = Session::start(config(1_200).parents(1)).await;
    let body = call(&s, "users.list", &[("limit", "5000")]).await;
    assert_eq!(body["members"].as_array().map(Vec::len), Some(1000));
    let channel = s.sim.expected_record("channels", 0).expect("channel")["id"].as_str().expect("id").to_owned();
    let body = call(&s, "conversations.history", &[("channel", &channel), ("limit", "5000")]).await;
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(999));
    assert_eq!(body["has_more"], true);
    let s = Session::start(config(0).parents(1)).await;
    let channel = s.sim.expected_record("channels", 0).expect("channel")["id"].as_str().expect("id").to_owned();
    let (rows, sizes) = walk(&s, "conversations.history", "messages", &[("channel", &channel)]).await;
    assert_eq!((rows.len(), sizes), (0, vec![0]));
    let (rows, _) = walk(&s, "users.list", "members", &[]).await;
    assert!(rows.is_empty());
}

#[tokio::test]
async fn methods_accept_form_posts_with_token_parameter() {
    let s = Session::start(config(3)).await;
    let token = match &s.auth {
        super::common::Auth::Bearer(t) => t.clone(),
        other => panic!("unexpected auth {other:?}"),
    };
    let url = format!("{}/users.list", s.sim.api_base());
    let form = [("token", token.as_str()), ("limit", "2")];
    let (_, body) = read(s.client.post(&url).form(&form).send().await.expect("send")).await;
    assert_eq!((body["ok"].as_bool(), body["members"].as_array().map(Vec::len)), (Some(true), Some(2)));
}
